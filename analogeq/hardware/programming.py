"""Writing conductances: quantized programming with programming noise, clipped to each
device's bounds, and the chip updater that turns an EP gradient into conductance writes."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from analogeq.hardware.chip import Chip, Tile
from analogeq.hardware.config import CrossbarConfig
from analogeq.updaters import AbstractUpdater

ROUNDINGS = ("nearest", "stochastic")


def program(target, lo, hi, cb: CrossbarConfig, key, rounding: str = "nearest", current=None):
    """Conductances [S] after writing ``target`` [S] into devices with bounds ``[lo, hi]``.

    With ``n_levels >= 2`` each device has ``n_levels`` evenly spaced levels between its own
    bounds; ``rounding="stochastic"`` rounds up with probability equal to the fractional
    position (unbiased, so writes smaller than a level still act on average). A device whose
    level changes gets programming noise ``prog_noise (G_max - G_min) xi``. With ``current``
    given (an update), the write starts from the level nearest the device's present conductance
    and a device whose level stays is left untouched (it is not written).
    """
    if rounding not in ROUNDINGS:
        raise ValueError(f"unknown rounding {rounding!r}; choose one of {ROUNDINGS}")
    k_round, k_noise = jax.random.split(key)
    t = jnp.clip(target, lo, hi)
    # Whether levels and programming noise are on is static; their values are traced.
    if cb.on("n_levels"):  # n_levels >= 2 (0 = continuous)
        step = (hi - lo) / (cb.n_levels - 1)
        if current is None:
            pos = (t - lo) / step
        else:
            # A write moves a device from the level it sits at (its programming error is not
            # the controller's to know) by the requested change.
            now = jnp.clip(jnp.round((current - lo) / step), 0, cb.n_levels - 1)
            pos = now + (t - current) / step
        if rounding == "stochastic":
            level = jnp.floor(pos + jax.random.uniform(k_round, pos.shape, pos.dtype))
        else:
            level = jnp.round(pos)
        level = jnp.clip(level, 0, cb.n_levels - 1)
        new = lo + level * step
        written = jnp.ones(t.shape, bool) if current is None else level != now
    else:
        new = t
        written = jnp.ones(t.shape, bool) if current is None else t != current
    if cb.on("prog_noise"):
        sigma = cb.prog_noise * (cb.G_max - cb.G_min)
        new = new + sigma * jax.random.normal(k_noise, new.shape, new.dtype)
    new = jnp.clip(new, lo, hi)
    return new if current is None else jnp.where(written, new, current)


def write_tile(tile: Tile, delta_w, cb: CrossbarConfig, key, rounding: str) -> Tile:
    """Apply a weight change ``delta_w`` to a tile, split evenly over the + and - device."""
    kp, kn = jax.random.split(key)
    half = tile.device_step(delta_w, cb) * cb.G_ref / 2
    g_pos = program(tile.g_pos + half, tile.lo[0], tile.hi[0], cb, kp, rounding, tile.g_pos)
    g_neg = program(tile.g_neg - half, tile.lo[1], tile.hi[1], cb, kn, rounding, tile.g_neg)
    return eqx.tree_at(lambda t: (t.g_pos, t.g_neg), tile, (g_pos, g_neg))


class ConductanceUpdater(AbstractUpdater):
    """On-chip update: the periphery turns the read gradient into weight changes with an optax
    rule (plain SGD is the textbook on-chip rule) and programs them as quantized conductance
    writes (see :func:`program`).

    Attributes:
        optimizer: rule mapping the weight-unit gradient to weight changes.
        rounding: ``"stochastic"`` (default) or ``"nearest"`` level rounding of writes.
    """

    optimizer: optax.GradientTransformation = eqx.field(static=True)
    rounding: str = eqx.field(static=True, default="stochastic")

    def init(self, chip: Chip):
        return self.optimizer.init(eqx.filter(chip.as_model(), eqx.is_inexact_array))

    def update(self, chip: Chip, grads, state, key, estimate=None):
        del estimate
        gw = eqx.filter(chip.weight_gradient(grads), eqx.is_inexact_array)
        dw, state = self.optimizer.update(gw, state, eqx.filter(chip.as_model(), eqx.is_inexact_array))
        cb = chip.config.crossbar
        keys = jax.random.split(key, len(chip.tiles()))
        dws = jax.tree_util.tree_leaves((dw.weights, dw.feedback, dw.biases))
        return chip.map_tiles(lambda k, t: write_tile(t, dws[k], cb, keys[k], self.rounding)), state
