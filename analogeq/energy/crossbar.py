"""Read energy of the crossbar tiles over a settle window.

How a tile is read (:meth:`analogeq.hardware.Tile.read`, the read the chip forms its currents
with): the column driver applies the same voltage ``V_j`` (the DAC output, the presynaptic
nonlinearity output, or ``v_unit`` for a bias column) to both devices of pair ``(i, j)``; the
``G+`` and ``G-`` lines of row ``i`` sit at the virtual ground of their transimpedance stage,
whose outputs are subtracted, giving ``I_i = sum_j (G+_ij - G-_ij) V_j``. Each device therefore
has ``V_j`` across it and dissipates ``G V_j^2``, whatever the sign of the weight: a tile
dissipates ``sum_ij (G+_ij + G-_ij) V_j^2`` (:meth:`analogeq.hardware.Tile.read_power`) for as
long as it is driven. With digital tile summation (``crossbar.tile_sum = "digital"``) every
physical tile's partial outputs also go through their own ADCs for the whole window
(:func:`partial_sum_conversions`), charged with the other ADC conversions.

Over a settle the drives are the settled ones held for the whole window: exact for the input
tile (the DAC output is constant), an upper estimate for tiles driven by neurons that approach
their fixed point monotonically from the reset state, and close when the window is long
against the settling itself.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from analogeq.hardware.chip import Chip
from analogeq.hardware.tile import Tile, tile_grid


def tile_read_energy(tile: Tile, v_in: Float[ArrayLike, " c"],
                     window: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """``sum_ij (G+_ij + G-_ij) v_in_j^2 window`` [J] for ``tile`` (conductances [S], shape
    ``(rows, cols)``, or ``(rows,)`` for a bias column with ``v_in`` of shape ``(1,)``) read
    with column voltages ``v_in`` [V] for a window [s]: :meth:`Tile.read_power` times the
    window."""
    return tile.read_power(v_in) * window


def column_voltages(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"]) -> tuple[Array, ...]:
    """Voltages [V] driving each tile's columns (in :meth:`Chip.tiles` order) for input ``x``
    and state ``s``: the DAC output, the presynaptic nonlinearity outputs, or ``v_unit`` for a
    bias column -- the same signals the chip's tile reads are driven with
    (:meth:`Chip.tile_inputs`)."""
    vu = chip.config.neuron.v_unit
    return tuple(inp * vu for inp in chip.tile_inputs(x, chip.voltages(s)))


def chip_read_energy(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"],
                     window: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """Read energy [J] of every tile of ``chip`` driven as at state ``s`` with input ``x`` for
    ``window`` [s] (see the module docstring)."""
    return sum(tile_read_energy(t, v, window)
               for t, v in zip(chip.tiles(), column_voltages(chip, x, s)))


def partial_sum_lines(chip: Chip) -> int:
    """Sense lines whose partial outputs a ``crossbar.tile_sum = "digital"`` chip digitizes: each
    physical tile's own rows (a layer of ``n`` neurons over ``k`` tile columns has ``n k``);
    ``0`` with analog summation."""
    cb = chip.config.crossbar
    if cb.tile_sum != "digital":
        return 0
    return sum(t.g_pos.shape[0] * (tile_grid(t.g_pos.shape, cb)[1] if t.g_pos.ndim == 2 else 1)
               for t in chip.tiles())


def partial_sum_conversions(chip: Chip, window: Float[ArrayLike, "..."]) -> Float[Array, ""]:
    """Partial-sum ADC conversions over settle windows ``window`` [s] (one, or one per
    sample) with digital tile summation: the relaxation's loop closes through those ADCs, so
    every partial-sum line converts once per ``energy.adc_time`` for each whole window
    (``partial_sum_lines * sum ceil(window / adc_time)``); the integer ``0`` with analog
    summation."""
    lines = partial_sum_lines(chip)
    if lines == 0:
        return 0
    return lines * jnp.sum(jnp.ceil(jnp.asarray(window) / chip.config.energy.adc_time))
