"""Writing conductances: quantized programming with programming noise, clipped to each
device's bounds, and the chip updater that turns an EP gradient into conductance writes."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

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


def write_levels(tile: Tile, n: Array, cb: CrossbarConfig, key) -> Tile:
    """Move each pair's weight by ``n`` whole device levels (integer array shaped like the tile;
    one level is ``w_max / (n_levels - 1)`` of device-pair weight): the ``+`` device by ``n``
    levels where that stays within its bounds, else the ``-`` device by ``-n`` (the controller
    picks the device with room, so a pair saturates only when both have reached a bound)."""
    kp, kn = jax.random.split(key)
    steps = (tile.hi - tile.lo) / (cb.n_levels - 1)
    up = tile.g_pos + n * steps[0]
    use_pos = (up >= tile.lo[0] - 0.5 * steps[0]) & (up <= tile.hi[0] + 0.5 * steps[0])
    g_pos = program(up, tile.lo[0], tile.hi[0], cb, kp, "nearest", tile.g_pos)
    g_neg = program(tile.g_neg - n * steps[1], tile.lo[1], tile.hi[1], cb, kn, "nearest", tile.g_neg)
    return eqx.tree_at(lambda t: (t.g_pos, t.g_neg), tile,
                       (jnp.where(use_pos, g_pos, tile.g_pos), jnp.where(use_pos, tile.g_neg, g_neg)))


def write_weights(tiles, dws, cb: CrossbarConfig, key, rounding: str, chi=None):
    """Write weight changes ``dws`` (weight units, one per tile of ``tiles``) as conductance
    writes: each rounded to the levels (:func:`write_tile`, ``rounding``), or with ``chi`` (one
    accumulator per tile, device-pair weight units) mixed-precision: the changes add to ``chi``
    and whole levels are written (:func:`write_levels`), ``chi`` keeping the remainder;
    continuous conductances (``n_levels = 0``) are written exactly. Returns ``(tiles, chi)``."""
    keys = jax.random.split(key, len(tiles))
    if chi is None or not cb.on("n_levels"):
        how = rounding if chi is None else "nearest"
        return [write_tile(t, d, cb, k, how) for t, d, k in zip(tiles, dws, keys)], chi
    level = cb.w_max / (cb.n_levels - 1)
    chi = [c + t.device_step(d, cb) for c, t, d in zip(chi, tiles, dws)]
    whole = [jnp.trunc(c / level) for c in chi]
    return ([write_levels(t, n, cb, k) for t, n, k in zip(tiles, whole, keys)],
            [c - n * level for c, n in zip(chi, whole)])


class ConductanceUpdater(AbstractUpdater):
    """On-chip update: the periphery turns the read gradient into weight changes with an optax
    rule (plain SGD is the textbook on-chip rule) and programs them as quantized conductance
    writes (see :func:`program`).

    With ``accumulate`` the writes are mixed-precision (Nandakumar et al., Front. Neurosci. 14,
    406 (2020)): each pair's weight changes add up in a digital accumulator ``chi`` (device-pair
    weight units) and only whole device levels are written (:func:`write_levels`), ``chi`` keeping
    the remainder; on a few-level chip this keeps the updates smaller than a level, which
    rounding each write (even stochastically) turns into noise. Continuous conductances
    (``n_levels = 0``) are written exactly either way.

    Attributes:
        optimizer: rule mapping the weight-unit gradient to weight changes.
        rounding: ``"stochastic"`` (default) or ``"nearest"`` level rounding of writes (without
            ``accumulate``).
        accumulate: mixed-precision writes through a digital accumulator (default ``False``).
    """

    optimizer: optax.GradientTransformation = eqx.field(static=True)
    rounding: str = eqx.field(static=True, default="stochastic")
    accumulate: bool = eqx.field(static=True, default=False)

    def init(self, chip: Chip):
        opt = self.optimizer.init(eqx.filter(chip.as_model(), eqx.is_inexact_array))
        if not self.accumulate:
            return opt
        return {"opt": opt, "chi": tuple(jnp.zeros_like(t.g_pos) for t in chip.tiles())}

    def update(self, chip: Chip, grads, state, key, estimate=None):
        del estimate
        gw = eqx.filter(chip.weight_gradient(grads), eqx.is_inexact_array)
        opt = state["opt"] if self.accumulate else state
        dw, opt = self.optimizer.update(gw, opt, eqx.filter(chip.as_model(), eqx.is_inexact_array))
        dws = jax.tree_util.tree_leaves((dw.weights, dw.feedback, dw.biases))
        tiles, chi = write_weights(chip.tiles(), dws, chip.config.crossbar, key, self.rounding,
                                   state["chi"] if self.accumulate else None)
        new = chip.map_tiles(lambda k, t: tiles[k])
        return new, ({"opt": opt, "chi": tuple(chi)} if self.accumulate else opt)
