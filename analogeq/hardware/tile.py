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

A :class:`Tile` holds one layer's crossbar, laid out on physical tiles of
``crossbar.tile_rows x crossbar.tile_cols`` device pairs (``0`` = unbounded: one physical tile).
Each physical tile has its own transimpedance stage, so its own gain :attr:`Tile.gain` (with
``crossbar.tile_gain = "auto"`` set at programming time from the weights it holds, the per-array
weight scaling of Rasch et al., Nat. Commun. 14, 5282 (2023) and of aihwkit's
``MappingParameter``), and the partial outputs of the tiles feeding one neuron add either as
currents on its node (``tile_sum = "analog"``: exactly the untiled read) or after one ADC per
tile (``"digital"``; the ISAAC organisation, Shafiee et al., ISCA 2016).

With ideal wires every device sees its drive line's voltage (:meth:`Tile.read_power`) and every
sense line collects its devices' currents exactly. With wire resistance (``crossbar.r_segment``,
``r_drive``, ``r_sense``; :mod:`analogeq.hardware.wires`) each physical tile's ``G+`` and ``G-``
arrays are resistive networks on their own wires: the read applies their exact transfer
matrices ``A(G)`` (:meth:`Tile.with_wires`, solved once per settle by the relaxation, per read
otherwise), and a physical update senses the voltage across each device
(:meth:`Tile.device_voltages`). A partly filled physical tile at a layer's edge is a full tile
whose unused cells hold no device (zero conductance), so its wires keep their full length. A
bias line is its own one-column array.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array

from analogeq.devices.pulsed import DeviceState
from analogeq.hardware.config import CrossbarConfig
from analogeq.hardware.converters import quantize
from analogeq.hardware.wires import Wires, node_voltages, transfer


def _unit(gain) -> bool:
    """Whether a stage gain is the plain Python ``1`` (no multiply: bit-identical reads)."""
    return isinstance(gain, (int, float)) and gain == 1


def tile_blocks(shape: tuple[int, ...], cb: CrossbarConfig) -> tuple[int, ...]:
    """Lines per physical tile along each axis of a crossbar of ``shape`` (sense lines, then
    drive lines; a one-dimensional crossbar has sense lines only): ``crossbar.tile_rows`` /
    ``tile_cols``, or the whole axis where those are ``0`` or larger than it."""
    limits = (cb.tile_rows, cb.tile_cols)[: len(shape)]
    return tuple(min(b, n) if b else n for n, b in zip(shape, limits))


def tile_grid(shape: tuple[int, ...], cb: CrossbarConfig) -> tuple[int, ...]:
    """Physical tiles along each axis of a crossbar of ``shape`` (``ceil(n / block)``)."""
    return tuple(-(-n // b) for n, b in zip(shape, tile_blocks(shape, cb)))


def expand_tiles(per_tile: Array, shape: tuple[int, ...], cb: CrossbarConfig) -> Array:
    """A per-physical-tile array (shape :func:`tile_grid`) repeated onto every device pair of
    a crossbar of ``shape``."""
    out = per_tile
    for axis, (n, b) in enumerate(zip(shape, tile_blocks(shape, cb))):
        out = jnp.take(jnp.repeat(out, b, axis=axis), jnp.arange(n), axis=axis)
    return out


def reduce_tiles(x: Array, cb: CrossbarConfig, fn=jnp.max) -> Array:
    """``fn`` over each physical tile's device pairs of ``x`` (shape of the crossbar), shape
    :func:`tile_grid` (zero-padded at the ragged edge, so ``fn`` must ignore zeros: max of
    magnitudes, sums)."""
    blocks, grid = tile_blocks(x.shape, cb), tile_grid(x.shape, cb)
    padded = jnp.pad(x, [(0, g * b - n) for n, b, g in zip(x.shape, blocks, grid)])
    split = padded.reshape(tuple(v for gb in zip(grid, blocks) for v in gb))
    return fn(split, axis=tuple(range(1, 2 * len(grid), 2)))


def auto_gains(w: Array, cb: CrossbarConfig, limit: float) -> Array:
    """Per-physical-tile gains (dimensionless, shape :func:`tile_grid`) chosen at programming
    time for weights ``w``: ``gain_t = gain_headroom max_{ij in t} |w_ij| / limit``, so that the
    tile's devices hold ``w / gain_t`` with its largest weight at ``limit / gain_headroom``
    (``limit``: the largest device-pair weight, e.g. ``crossbar.w_max``); 1 on a tile of zeros."""
    m = reduce_tiles(jnp.abs(w), cb)
    return jnp.where(m > 0, cb.gain_headroom * m / limit, 1.0).astype(w.dtype)


def _wires(cb: CrossbarConfig) -> Wires:
    return Wires(r_segment=cb.r_segment, r_drive=cb.r_drive, r_sense=cb.r_sense)


def _solver(cb: CrossbarConfig) -> dict:
    return {"method": cb.wire_solver, "sweeps": cb.wire_sweeps}


def _device_voltages(g: Array, u: Array, wires: Wires, cb: CrossbarConfig) -> Array:
    d, s = node_voltages(g, u, wires, **_solver(cb))
    return d - s


def _per_block(f, g: Array, cb: CrossbarConfig, u: Array | None = None) -> Array:
    """``f`` applied to each physical tile of the crossbar ``g`` (a 2-D array, or a single drive
    line of shape ``(n,)``, handled as ``(n, 1)``), with ``u[..., its columns]`` when ``u`` is
    given; results (shaped like each tile's ``g``, with ``u``'s leading axes) reassembled onto
    ``g``'s shape. Ragged edge tiles are padded with empty cells (zero conductance)."""
    line = g.ndim == 1
    g2 = g[:, None] if line else g
    (br, bc), (nr, nc) = tile_blocks(g2.shape, cb), tile_grid(g2.shape, cb)
    rows, cols = g2.shape
    gp = jnp.pad(g2, ((0, nr * br - rows), (0, nc * bc - cols)))
    blocks = gp.reshape(nr, br, nc, bc).transpose(0, 2, 1, 3)  # (nr, nc, br, bc)
    if u is None:
        out = jax.vmap(jax.vmap(f))(blocks)  # (nr, nc, br, bc)
        out = out.transpose(0, 2, 1, 3).reshape(nr * br, nc * bc)[:rows, :cols]
        return out[:, 0] if line else out
    lead = u.shape[:-1]
    up = jnp.pad(u, [(0, 0)] * len(lead) + [(0, nc * bc - cols)]).reshape(*lead, nc, bc)
    per_col = jax.vmap(f, in_axes=(0, -2), out_axes=-3)  # over tile columns
    out = jax.vmap(per_col, in_axes=(0, None), out_axes=-4)(blocks, up)  # (..., nr, nc, br, bc)
    out = jnp.swapaxes(out, -3, -2).reshape(*lead, nr * br, nc * bc)
    return out[..., :rows, :cols]


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
        gain: the further gain of each physical tile's stage (dimensionless, shape
            :func:`tile_grid`), ``W = scale gain_t (G+ - G-) / G_ref`` on tile ``t``: its
            transimpedance is ``G_ref / (scale gain_t)``; ``None`` = 1 on every tile.
    """

    g_pos: Array
    g_neg: Array
    lo: Array
    hi: Array
    device: DeviceState | None = None
    scale: float = eqx.field(static=True, default=1.0)
    gain: Array | None = None
    wires_solved: bool = eqx.field(static=True, default=False)

    # ----------------------------------------------------------------- weights
    def weight(self, g_ref: float) -> Array:
        """Device-pair weight ``(G+ - G-) / g_ref`` (dimensionless) for a reference
        conductance ``g_ref`` [S], without the stage gain :attr:`scale`."""
        return (self.g_pos - self.g_neg) / g_ref

    def stage_gain(self, cb: CrossbarConfig) -> Array | float:
        """Gain of the stage each device pair's current goes through, relative to ``1 / G_ref``
        (dimensionless): ``scale`` times its physical tile's :attr:`gain`, per device pair (or
        the scalar ``scale`` when every tile has gain 1)."""
        if self.gain is None:
            return self.scale
        return self.scale * expand_tiles(self.gain, self.g_pos.shape, cb)

    def weights(self, cb: CrossbarConfig) -> Array:
        """The weights the tile's read applies, ``scale gain_t (G+ - G-) / G_ref``
        (dimensionless)."""
        w, s = self.weight(cb.G_ref), self.stage_gain(cb)
        return w if _unit(s) else s * w

    def weight_gradient(self, grad: Tile, cb: CrossbarConfig) -> Array:
        """A gradient w.r.t. this tile's conductances (``grad``, a tile of ``dL/dG+``, ``dL/dG-``
        [1/S]) in weight units: ``dL/dW = (G_ref / s) dL/dG+ = -(G_ref / s) dL/dG-`` with ``s``
        the pair's :meth:`stage_gain`, the average of both."""
        g, s = cb.G_ref * (grad.g_pos - grad.g_neg) / 2, self.stage_gain(cb)
        return g if _unit(s) else g / s

    def device_step(self, delta_w: Array, cb: CrossbarConfig) -> Array:
        """A weight change ``delta_w`` (weight units, as the read applies them) as a change of
        the pair's device weight ``(G+ - G-) / G_ref``: ``delta_w / s`` (:meth:`stage_gain`)."""
        s = self.stage_gain(cb)
        return delta_w if _unit(s) else delta_w / s

    def with_weight(self, w: Array, g_ref: float) -> Tile:
        """The tile with its ``+`` devices rewritten so that ``(G+ - G-) / g_ref = w`` against
        the present ``-`` devices (a referenced pair's fixed reference): ``G+ = G- + w g_ref``."""
        return eqx.tree_at(lambda t: t.g_pos, self, self.g_neg + w * g_ref)

    # ----------------------------------------------------------------- reads
    def read(self, u: Array, cb: CrossbarConfig, key=None, *, v_unit: float | None = None) -> Array:
        """Forward read: columns driven at ``u`` (shape ``(cols,)``, or ``(1,)`` for a single
        drive line; units of ``v_unit``), returns the row outputs ``W u`` (shape ``(rows,)``,
        units of ``v_unit``). With ``key`` the read sees one draw of read noise
        (:meth:`with_read_noise`, ``cb.read_noise``).

        With ``crossbar.tile_sum = "digital"`` and ``v_unit`` [V] given, each physical tile's
        partial output is digitized (:func:`quantize`, ``tile_adc_bits`` over
        ``+-tile_adc_range``) before the sum. Its derivative is taken as the unquantized one
        (straight-through), so without ``v_unit`` the read is the linear map a Jacobian
        product uses."""
        return self._read(u, cb, key, v_unit, axis=1)

    def read_t(self, v: Array, cb: CrossbarConfig, key=None, *, v_unit: float | None = None) -> Array:
        """Transposed read: rows driven at ``v`` (shape ``(..., rows)``, or ``(..., 1)`` for a
        single drive line; units of ``v_unit``), returns the column outputs ``v W``
        (``W^T v`` per leading index; shape ``(..., cols)``); ``v_unit`` as in :meth:`read`."""
        return self._read(v, cb, key, v_unit, axis=0)

    def _read(self, x: Array, cb: CrossbarConfig, key, v_unit: float | None, axis: int) -> Array:
        """The read driving ``axis`` of the weights (1: columns, :meth:`read`; 0: rows,
        :meth:`read_t`)."""
        w = self._read_weights(cb, key)
        if w.ndim == 1:
            return self._digitize(w * x, cb, v_unit)
        if cb.tile_sum == "analog" or v_unit is None:
            return w @ x if axis == 1 else x @ w
        return self._digital_sum(w, x, cb, v_unit, axis)

    @staticmethod
    def _digitize(y: Array, cb: CrossbarConfig, v_unit: float | None) -> Array:
        if cb.tile_sum == "analog" or v_unit is None:
            return y
        q = quantize(y * v_unit, cb.tile_adc_bits, cb.tile_adc_range) / v_unit
        return y + jax.lax.stop_gradient(q - y)

    def _digital_sum(self, w: Array, x: Array, cb: CrossbarConfig, v_unit: float, axis: int) -> Array:
        """Sum over the physical tiles along the driven ``axis`` of ``w`` of each tile's
        digitized partial output."""
        b = tile_blocks(w.shape, cb)[axis]
        n = w.shape[axis]
        nb = -(-n // b)
        pad = nb * b - n
        xp = jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)]).reshape(*x.shape[:-1], nb, b)
        if axis == 1:
            wp = jnp.pad(w, ((0, 0), (0, pad))).reshape(w.shape[0], nb, b)
            parts = jnp.einsum("rkb,...kb->...kr", wp, xp)
        else:
            wp = jnp.pad(w, ((0, pad), (0, 0))).reshape(nb, b, w.shape[1])
            parts = jnp.einsum("kbc,...kb->...kc", wp, xp)
        return jnp.sum(self._digitize(parts, cb, v_unit), axis=-2)

    def _read_weights(self, cb: CrossbarConfig, key) -> Array:
        return (self if key is None else self.with_read_noise(key, cb.read_noise)).with_wires(cb).weights(cb)

    # ----------------------------------------------------------------- wires (IR drop)
    def with_wires(self, cb: CrossbarConfig) -> Tile:
        """The tile as its sense lines see it through resistive wires: each physical tile's
        ``G+`` and ``G-`` replaced by their transfer matrices ``A(G)`` [S] (sense current of row
        ``i`` per volt on drive line ``j``; :func:`analogeq.hardware.wires.transfer`), so a read
        is again one matrix product, exact for the linear network. The tile itself with ideal
        wires or when already solved."""
        if not cb.wired or self.wires_solved:
            return self
        wires = _wires(cb)
        a_pos, a_neg = (_per_block(lambda g: transfer(g, wires, **_solver(cb)), g, cb)
                        for g in (self.g_pos, self.g_neg))
        return dataclasses.replace(self, g_pos=a_pos, g_neg=a_neg, wires_solved=True)

    def device_voltages(self, u: Array, cb: CrossbarConfig) -> tuple[Array, Array]:
        """Voltage across each ``+`` and each ``-`` device ``(V+, V-)`` (units of ``u``, shape
        ``(..., rows, cols)``; ``(..., n, 1)`` for a single drive line) when the columns are
        driven at ``u`` (shape ``(..., cols)``): drive-wire node minus sense-wire node
        (:func:`analogeq.hardware.wires.node_voltages`); ``u_j`` on every device of column ``j``
        with ideal wires. What a physical update can sense."""
        if self.wires_solved:
            raise ValueError("Tile.device_voltages needs the device conductances, not the solved "
                             "transfer matrices of Tile.with_wires")
        g_pos, g_neg = (g[:, None] if g.ndim == 1 else g for g in (self.g_pos, self.g_neg))
        if not cb.wired:
            v = jnp.broadcast_to(u[..., None, :], u.shape[:-1] + g_pos.shape)
            return v, v
        wires = _wires(cb)
        return tuple(_per_block(lambda gb, ub: _device_voltages(gb, ub, wires, cb), g, cb, u)
                     for g in (g_pos, g_neg))

    def sensed_gradient(self, inp: Array, d: Array, cb: CrossbarConfig) -> tuple[Array, Array]:
        """``(dL/dG+, dL/dG-)`` [1/S] of a batch as the chip senses it: each device's update is
        its row's drive adjoint ``d`` (shape ``(B, rows)``) times the voltage across it under
        the column drive ``inp`` (shape ``(B, cols)``; :meth:`device_voltages`), times its stage
        gain ``s / G_ref`` -- the local derivative of the device's current ``G V`` at fixed node
        voltages. With ideal wires this is the exact ``sum_b d_b inp_b^T``; with IR drop it
        leaves out how a device's conductance moves the other devices' voltages."""
        vp, vn = self.device_voltages(inp, cb)
        s = self.stage_gain(cb) / cb.G_ref
        gp, gn = (jnp.einsum("br,brc->rc", d, v) for v in (vp, vn))
        if self.g_pos.ndim == 1:
            gp, gn = gp[:, 0], gn[:, 0]
        return s * gp, -s * gn

    def with_read_noise(self, key, sigma: float) -> Tile:
        """Conductances seen by one read: each device scaled by ``1 + sigma xi`` (``xi`` standard
        normal, one per device, the ``+`` devices from the first half of ``key``). On a tile
        whose wires are solved (:meth:`with_wires`) the entries of the transfer matrices are
        scaled instead: the wires are solved once per batch, not per read, which is exact to
        first order in ``sigma`` times the IR drop (``G r``)."""
        kp, kn = jax.random.split(key)
        return eqx.tree_at(
            lambda t: (t.g_pos, t.g_neg), self,
            (self.g_pos * (1 + sigma * jax.random.normal(kp, self.g_pos.shape, self.g_pos.dtype)),
             self.g_neg * (1 + sigma * jax.random.normal(kn, self.g_neg.shape, self.g_neg.dtype))),
        )

    # ----------------------------------------------------------------- what a read costs
    def noise_conductance(self, cb: CrossbarConfig) -> Array:
        """Device conductance on each forward sense line weighted by the square of its tile's
        stage gain, ``sum_t (s gain_t)^2 sum_{j in t} (G+ + G-)`` [S]: the Johnson current of
        tile ``t``'s devices reaches the neuron through that tile's stage, so this times
        ``4 k T / G_ref^2`` is the output noise PSD. Equals :meth:`line_conductance` with unit
        gains."""
        s = self.stage_gain(cb)
        g = self.g_pos + self.g_neg
        g = g if _unit(s) else g * s**2
        return g if g.ndim == 1 else jnp.sum(g, axis=-1)

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

    def read_power_t(self, v: Array) -> Array:
        """Power [W] of transposed reads (:meth:`read_t`) with the rows driven at ``v`` [V]
        (shape ``(..., rows)``, one read per leading index, e.g. one tile replica per token
        position; ``(..., 1)`` for a single drive line), summed over the reads."""
        g = self.g_pos + self.g_neg
        v2 = jnp.asarray(v) ** 2
        return jnp.sum(g) * jnp.sum(v2) if g.ndim == 1 else jnp.sum(v2 @ g)

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
