"""Read energy of the crossbar tiles over a settle window.

How a tile is read (as :mod:`analogeq.hardware.chip` forms its currents): the column driver
applies the same voltage ``V_j`` (the DAC output, the presynaptic nonlinearity output, or
``v_unit`` for a bias column) to both devices of pair ``(i, j)``; the ``G+`` and ``G-`` lines of
row ``i`` sit at the virtual ground of their transimpedance stage, whose outputs are
subtracted, giving ``I_i = sum_j (G+_ij - G-_ij) V_j``. Each device therefore has ``V_j`` across
it and dissipates ``G V_j^2``, whatever the sign of the weight: a tile dissipates
``sum_ij (G+_ij + G-_ij) V_j^2`` for as long as it is driven.

Over a settle the drives are the settled ones held for the whole window: exact for the input
tile (the DAC output is constant), an upper estimate for tiles driven by neurons that approach
their fixed point monotonically from the reset state, and close when the window is long
against the settling itself.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from analogeq.hardware.chip import Chip


def tile_read_energy(g_pos: Float[ArrayLike, "*rc"], g_neg: Float[ArrayLike, "*rc"],
                     v_in: Float[ArrayLike, " c"], window: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """``sum_ij (G+_ij + G-_ij) v_in_j^2 window`` [J] for a tile of conductances [S] (shape
    ``(rows, cols)``, or ``(rows,)`` for a bias column with ``v_in`` of shape ``(1,)``), column
    voltages ``v_in`` [V] and a window [s]."""
    g = jnp.asarray(g_pos) + jnp.asarray(g_neg)
    return jnp.sum(g * jnp.asarray(v_in) ** 2) * window


def column_voltages(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"]) -> tuple[Array, ...]:
    """Voltages [V] driving each tile's columns (in :meth:`Chip.tiles` order) for input ``x``
    and state ``s``: the DAC output, the presynaptic nonlinearity outputs, or ``v_unit`` for a
    bias column -- the same signals the chip's currents are formed from
    (:meth:`Chip.local_signals`)."""
    vu = chip.config.neuron.v_unit
    signals = chip.local_signals(x, s, jnp.zeros_like(s))
    return tuple(inp * vu for inp, _ in signals)


def chip_read_energy(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"],
                     window: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """Read energy [J] of every tile of ``chip`` driven as at state ``s`` with input ``x`` for
    ``window`` [s] (see the module docstring)."""
    return sum(tile_read_energy(t.g_pos, t.g_neg, v, window)
               for t, v in zip(chip.tiles(), column_voltages(chip, x, s)))
