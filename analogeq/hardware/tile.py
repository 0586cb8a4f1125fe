"""One crossbar tile and the one read of it: every crossbar matrix-vector product in analogeq.

A tile is ``rows x cols`` differential pairs ``(G+_ij, G-_ij)`` [S]. In the forward read
(:meth:`Tile.read`) column ``j`` is driven at ``u_j`` (units of ``v_unit``); the ``G+`` and ``G-``
lines of row ``i`` sit at the virtual ground of a transimpedance stage with feedback conductance
``G_ref`` and the two stage outputs are subtracted, so by Ohm's and Kirchhoff's laws

    y_i = s sum_j (G+_ij - G-_ij) u_j / G_ref = sum_j W_ij u_j,      W = s (G+ - G-) / G_ref,

with ``s`` the tile's own stage gain (:attr:`Tile.scale`, 1 on a layered chip) -- the
differential-pair crossbar of Burr et al., IEEE Trans. Electron Devices 62, 3498 (2015) and the
dot-product engine of Hu et al., DAC 2016. The transposed read (:meth:`Tile.read_t`) drives the
rows and senses the columns, ``y = W^T v``: the backward cycle of Gokmen & Vlasov, Front.
Neurosci. 10, 333 (2016); it is what autodiff's transpose of :meth:`Tile.read` computes, and what
the AsymEP correction's ``J^T v`` uses on a chip. A one-dimensional tile (shape ``(n,)``) is a
single drive line feeding ``n`` sense lines (a bias line, driven at ``v_unit``), in either read.

Two pair layouts share this read: programmed pairs (both devices written around the mid
conductance, :func:`analogeq.hardware.realize.map_tile`) and referenced pairs (``G+`` a pulsed
device, ``G-`` a fixed reference device at the conductance of weight 0, as aihwkit's reference
unit cell: Rasch et al., AICAS 2021; :func:`analogeq.hardware.pulsed.attach_devices`), which
are written with :meth:`Tile.with_weight`.

Wires are ideal here: every device sees its drive line's voltage (:meth:`Tile.read_power`) and
every sense line collects its devices' currents exactly. Wire resistance (IR drop) turns the
read into the solution of the tile's resistive network; it belongs in these methods, so the
chip, the analog transformer, the energy model and the netlist writer follow it unchanged.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from analogeq.devices.pulsed import DeviceState
from analogeq.hardware.config import CrossbarConfig


class Tile(eqx.Module):
    """One crossbar tile of differential pairs: conductances [S] and per-device bounds [S].

    Attributes:
        g_pos, g_neg: the conductances of the ``+`` and ``-`` device of each pair [S], shape
            ``(rows, cols)`` (or ``(n,)`` for a single drive line); the programmable state.
        lo, hi: device-to-device bounds (shape ``(2, *g_pos.shape)`` for the ``+`` and ``-``
            device) [S], sampled once per chip.
        device: per-device parameters of a pulsed device model (:mod:`analogeq.devices`) when
            the tile is programmed with pulses (then ``g_neg`` is a fixed reference device).
        scale: gain of the tile's transimpedance stage relative to ``1 / G_ref``
            (dimensionless, ``W = scale (G+ - G-) / G_ref``): 1 on a layered chip; larger when
            a tile stores ``W / scale`` to fit the conductance window.
    """

    g_pos: Array
    g_neg: Array
    lo: Array
    hi: Array
    device: DeviceState | None = None
    scale: float = eqx.field(static=True, default=1.0)

    # ----------------------------------------------------------------- weights
    def weight(self, g_ref: float) -> Array:
        """Device-pair weight ``(G+ - G-) / g_ref`` (dimensionless) for a reference
        conductance ``g_ref`` [S], without the stage gain :attr:`scale`."""
        return (self.g_pos - self.g_neg) / g_ref

    def weights(self, cb: CrossbarConfig) -> Array:
        """The weights the tile's read applies, ``scale (G+ - G-) / G_ref`` (dimensionless)."""
        w = self.weight(cb.G_ref)
        return w if self.scale == 1.0 else self.scale * w

    def weight_gradient(self, grad: Tile, cb: CrossbarConfig) -> Array:
        """A gradient w.r.t. this tile's conductances (``grad``, a tile of ``dL/dG+``, ``dL/dG-``
        [1/S]) in weight units: ``dL/dW = (G_ref / scale) dL/dG+ = -(G_ref / scale) dL/dG-``,
        the average of both."""
        g = cb.G_ref * (grad.g_pos - grad.g_neg) / 2
        return g if self.scale == 1.0 else g / self.scale

    def with_weight(self, w: Array, g_ref: float) -> Tile:
        """The tile with its ``+`` devices rewritten so that ``(G+ - G-) / g_ref = w`` against
        the present ``-`` devices (a referenced pair's fixed reference): ``G+ = G- + w g_ref``."""
        return eqx.tree_at(lambda t: t.g_pos, self, self.g_neg + w * g_ref)

    # ----------------------------------------------------------------- reads
    def read(self, u: Array, cb: CrossbarConfig, key=None) -> Array:
        """Forward read: columns driven at ``u`` (shape ``(cols,)``, or ``(1,)`` for a single
        drive line; units of ``v_unit``), returns the row outputs ``W u`` (shape ``(rows,)``,
        units of ``v_unit``). With ``key`` the read sees one draw of read noise
        (:meth:`with_read_noise`, ``cb.read_noise``)."""
        w = self._read_weights(cb, key)
        return w * u if w.ndim == 1 else w @ u

    def read_t(self, v: Array, cb: CrossbarConfig, key=None) -> Array:
        """Transposed read: rows driven at ``v`` (shape ``(..., rows)``, or ``(..., 1)`` for a
        single drive line; units of ``v_unit``), returns the column outputs ``v W``
        (``W^T v`` per leading index; shape ``(..., cols)``)."""
        w = self._read_weights(cb, key)
        return w * v if w.ndim == 1 else v @ w

    def _read_weights(self, cb: CrossbarConfig, key) -> Array:
        return (self if key is None else self.with_read_noise(key, cb.read_noise)).weights(cb)

    def with_read_noise(self, key, sigma: float) -> Tile:
        """Conductances seen by one read: each device scaled by ``1 + sigma xi`` (``xi`` standard
        normal, one per device, the ``+`` devices from the first half of ``key``)."""
        kp, kn = jax.random.split(key)
        return eqx.tree_at(
            lambda t: (t.g_pos, t.g_neg), self,
            (self.g_pos * (1 + sigma * jax.random.normal(kp, self.g_pos.shape, self.g_pos.dtype)),
             self.g_neg * (1 + sigma * jax.random.normal(kn, self.g_neg.shape, self.g_neg.dtype))),
        )

    # ----------------------------------------------------------------- what a read costs
    def line_conductance(self, transposed: bool = False) -> Array:
        """Total device conductance ``sum (G+ + G-)`` on each sense line [S]: per row for
        :meth:`read` (``transposed=False``), per column for :meth:`read_t`; each entry of a
        single drive line's tile is its own sense line. Sets the Johnson noise a sense line
        collects (PSD ``4 k T sum G``)."""
        g = self.g_pos + self.g_neg
        if g.ndim == 1:
            return g
        return jnp.sum(g, axis=0 if transposed else -1)

    def read_power(self, v_in: Array) -> Array:
        """Power dissipated in the devices during a forward read [W]: ``sum_ij (G+_ij + G-_ij)
        V_ij^2`` with ``V_ij = v_in_j`` the drive voltage of column ``j`` [V] (shape ``(cols,)``,
        or ``(1,)`` for a single drive line): with ideal wires each device of a pair sees its
        column's voltage against the virtual ground, whatever the sign of the weight."""
        g = self.g_pos + self.g_neg
        return jnp.sum(g * jnp.asarray(v_in) ** 2)

    def row_pairs(self, lines: list[str]) -> list[list[tuple[str, float, float]]]:
        """The devices of a forward read as a circuit: per row (sense line), a list of
        ``(drive line, G+, G-)`` [S] (float64) in column order, ``lines`` naming the drive line of
        each column (one name for a single drive line)."""
        gp, gn = np.asarray(self.g_pos, np.float64), np.asarray(self.g_neg, np.float64)
        if gp.ndim == 1:
            gp, gn = gp[:, None], gn[:, None]
        if gp.shape[1] != len(lines):
            raise ValueError(f"Tile.row_pairs: the tile has {gp.shape[1]} columns but {len(lines)} "
                             f"drive lines were named ({lines[:4]}...); name one line per column")
        return [[(line, gp[i, j], gn[i, j]) for j, line in enumerate(lines)] for i in range(gp.shape[0])]
