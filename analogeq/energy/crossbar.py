"""Read energy of the crossbar tiles over a settle window.

How a tile is read (:meth:`analogeq.hardware.Tile.read`, the read the chip forms its currents
with): the column driver applies the same voltage ``V_j`` (the DAC output, the presynaptic
nonlinearity output, or ``v_unit`` for a bias column) to both devices of pair ``(i, j)``; the
``G+`` and ``G-`` lines of row ``i`` sit at the virtual ground of their transimpedance stage,
whose outputs are subtracted, giving ``I_i = sum_j (G+_ij - G-_ij) V_j``. Each device therefore
has ``V_j`` across it and dissipates ``G V_j^2``, whatever the sign of the weight: a tile
dissipates ``sum_ij (G+_ij + G-_ij) V_j^2`` (:meth:`analogeq.hardware.Tile.read_power`) for as
long as it is driven.

Over a settle the drives are the settled ones held for the whole window: exact for the input
tile (the DAC output is constant), an upper estimate for tiles driven by neurons that approach
their fixed point monotonically from the reset state, and close when the window is long
against the settling itself.
"""

from __future__ import annotations

from jaxtyping import Array, ArrayLike, Float

from analogeq.hardware.chip import Chip
from analogeq.hardware.tile import Tile


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
