"""A programmed chip over time: PCM programming noise, per-device power-law drift, 1/f read
noise and global drift compensation, applied to every device of a chip instance
(:class:`analogeq.devices.inference.PCMInference`).

Conductances are normalized by the crossbar's ``G_max`` for the model (``gh = G / G_max``) and
scaled back. Drift compensation is one gain per chip, set from a calibration read (all-ones
input into every tile) right after programming and at time ``t``; it is applied as a scale of
every tile's output, which is what adjusting the transimpedance gain ``1/G_ref`` does.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.devices.inference import PCMInference, compensation_factor
from analogeq.hardware.chip import Chip
from analogeq.hardware.tile import Tile


class ProgrammedChip(eqx.Module):
    """A chip right after programming, with the drift exponent of each device.

    Attributes:
        chip: conductances as programmed (targets plus programming noise) [S].
        nu: per-tile ``(nu+, nu-)`` drift exponents, each shaped like the tile.
        model: the inference noise model.
    """

    chip: Chip
    nu: tuple
    model: PCMInference


def _with_g(tile: Tile, g_pos, g_neg) -> Tile:
    return eqx.tree_at(lambda t: (t.g_pos, t.g_neg), tile, (g_pos, g_neg))


def program_pcm(chip: Chip, model: PCMInference, key) -> ProgrammedChip:
    """Write ``chip``'s weights into PCM devices: one noisy write per device and a drift
    exponent per device, both drawn from ``key`` (a property of this chip instance).

    Each weight goes onto one device of its pair, ``G+ = W G_ref`` for ``W > 0`` and
    ``G- = -W G_ref`` for ``W < 0`` with the other device RESET to 0 (as aihwkit's inference
    tiles map weights): with both devices near mid-range, the spread of their drift exponents
    would turn the common mode into weight error that no global compensation can undo.
    """
    cb = chip.config.crossbar
    g_max = cb.G_max
    nus = []

    def write(i: int, t: Tile) -> Tile:
        kp, kn, knu_p, knu_n = jax.random.split(jax.random.fold_in(key, i), 4)
        w = t.weight(cb.G_ref)
        gp, gn = jnp.maximum(w, 0) * cb.G_ref / g_max, jnp.maximum(-w, 0) * cb.G_ref / g_max
        nus.append((model.drift_exponents(gp, knu_p), model.drift_exponents(gn, knu_n)))
        return _with_g(t, model.program(gp, kp) * g_max, model.program(gn, kn) * g_max)

    programmed = chip.map_tiles(write)
    return ProgrammedChip(chip=programmed, nu=tuple(nus), model=model)


def _calibration(chip: Chip):
    """The drift-compensation read (aihwkit's ``GlobalDriftCompensation``): every tile's
    outputs (:meth:`Tile.read`, weight units) for an all-ones input, one per row."""
    cb = chip.config.crossbar
    return jnp.concatenate([t.read(jnp.ones(t.g_pos.shape[1:] or (1,), t.g_pos.dtype), cb)
                            for t in chip.tiles()])


def chip_at(programmed: ProgrammedChip, t: float, key, compensate: bool = True):
    """``(chip, alpha)``: the chip ``t`` seconds after programming, with drifted conductances,
    one read's 1/f noise (drawn from ``key``) and, with ``compensate``, the global
    drift-compensation gain ``alpha`` applied (``alpha = 1`` without)."""
    chip, model = programmed.chip, programmed.model
    g_max = chip.config.crossbar.G_max

    def age(i: int, tile: Tile) -> Tile:
        (nu_p, nu_n), (kp, kn) = programmed.nu[i], jax.random.split(jax.random.fold_in(key, i))
        gp = model.read_noise(model.drift(tile.g_pos / g_max, nu_p, t), t, kp)
        gn = model.read_noise(model.drift(tile.g_neg / g_max, nu_n, t), t, kn)
        return _with_g(tile, gp * g_max, gn * g_max)

    later = chip.map_tiles(age)
    if not compensate:
        return later, jnp.ones(())
    alpha = compensation_factor(_calibration(chip), _calibration(later))
    return later.map_tiles(lambda _, x: _with_g(x, x.g_pos * alpha, x.g_neg * alpha)), alpha


def accuracy_over_time(network, hardware, model: PCMInference, data, times, key, *,
                       compensate: bool = True, cost=None, n_test: int | None = None) -> list[dict]:
    """Test accuracy of ``network`` (a trained :class:`analogeq.LeakyNetwork`) programmed into
    PCM on a chip ``hardware`` (:class:`ChipConfig`), at each time in ``times`` [s] after
    programming. The network is realized exactly (the chip's own programming noise and levels
    off: the PCM model supplies the programming error), then programmed once with
    :func:`program_pcm`; each time gets its own 1/f read-noise draw.

    Returns one record per time: ``{"t_s", "test_acc", "test_loss", "test_unconverged",
    "compensation"}``.
    """
    from analogeq.costs import SquaredError
    from analogeq.hardware.dynamics import ChipRelaxation
    from analogeq.hardware.realize import realize
    from analogeq.evaluation import evaluate

    hw = hardware.replace(**{"crossbar.prog_noise": 0.0, "crossbar.n_levels": 0})
    k_chip, k_prog, k_read, k_eval = jax.random.split(key, 4)
    programmed = program_pcm(realize(network, hw, k_chip), model, k_prog)
    relax, cost = ChipRelaxation(hw), cost or SquaredError()
    xs, ys = data.x_test[:n_test], data.y_test[:n_test]
    out = []
    for i, t in enumerate(times):
        chip, alpha = chip_at(programmed, float(t), jax.random.fold_in(k_read, i), compensate)
        rec = evaluate(chip, cost, relax, xs, ys, key=jax.random.fold_in(k_eval, i))
        out.append({"t_s": float(t), "compensation": float(alpha), **{k: rec[k] for k in
                    ("test_acc", "test_loss", "test_unconverged")}})
    return out
