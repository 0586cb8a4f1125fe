"""Programming pulses of one update: how many, what they cost, how long they take.

Counts per device, per tile (in :meth:`~analogeq.hardware.chip.Chip.tiles` order), shaped
``(devices per crosspoint, rows, ...)``:

* pulsed devices (:class:`~analogeq.hardware.pulsed.PulsedUpdater`): the increase of the
  updater's cumulative counters ``state["pulses"]`` (the ``G+`` device of each pair; ``G-`` is a
  fixed reference);
* quantized writes (:class:`~analogeq.hardware.programming.ConductanceUpdater`): one pulse per
  level a device moves (its level estimated from the conductance before and after), at least
  one for a device that was written; with continuous conductances (``n_levels = 0``) one pulse
  per written device. Both devices of a pair count.

Timing: a tile is programmed one row at a time (the select line of a 1T1R row); the devices of a
row (both of each pair) take their pulses in parallel in successive pulse slots, so a row takes
as many slots as its busiest device and a tile the sum over its rows. Tiles have their own
drivers and are programmed in parallel. Up and down pulses of a row are not separated into two
phases. For the stochastic-coincidence schemes, which pulse a whole array at once, this row by row
count is an upper estimate.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array

from analogeq.hardware.chip import Chip, Tile
from analogeq.hardware.config import CrossbarConfig


def level_changes(old: Tile, new: Tile, cb: CrossbarConfig) -> Array:
    """Pulses of a quantized write from ``old`` to ``new`` conductances, shape
    ``(2, *g_pos.shape)`` (``G+`` and ``G-``; see the module docstring)."""
    before = jnp.stack([old.g_pos, old.g_neg])
    after = jnp.stack([new.g_pos, new.g_neg])
    written = after != before
    if not cb.on("n_levels"):  # continuous (n_levels = 0): a static switch, levels traced
        return written.astype(jnp.int32)
    step = (new.hi - new.lo) / (cb.n_levels - 1)
    moved = jnp.abs(jnp.round((after - new.lo) / step) - jnp.round((before - new.lo) / step))
    return jnp.where(written, jnp.maximum(moved, 1), 0).astype(jnp.int32)


def step_pulses(old_chip: Chip, new_chip: Chip, old_state, new_state) -> tuple[Array, ...]:
    """Per-device pulses of the update that took ``old_chip`` (updater state ``old_state``) to
    ``new_chip`` (``new_state``), one array per tile (see the module docstring)."""
    if isinstance(new_state, dict) and "pulses" in new_state:
        return tuple((n - o)[None] for o, n in zip(old_state["pulses"], new_state["pulses"]))
    cb = new_chip.config.crossbar
    return tuple(level_changes(o, n, cb) for o, n in zip(old_chip.tiles(), new_chip.tiles()))


def total_pulses(pulses: tuple[Array, ...]) -> Array:
    """All pulses of an update."""
    return sum(jnp.sum(p) for p in pulses)


def programming_rounds(pulses: tuple[Array, ...]) -> Array:
    """Pulse slots in series to program an update: per tile the sum over rows of the row's
    largest count, tiles in parallel (see the module docstring)."""
    def tile(p):
        rows = p.reshape(p.shape[0], p.shape[1], -1)
        return jnp.sum(jnp.max(rows, axis=(0, 2)))
    return jnp.max(jnp.stack([tile(p) for p in pulses]))
