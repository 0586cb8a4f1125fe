"""The equilibrium transformer block as behavioral analog circuits, relaxed in continuous time.

The digital block (:class:`analogeq.models.transformer.EqTransformer`) is the field
``F(z) = -(z - x_in) + Attn(LN1 z) + FFN(LN2 z) - c z`` on token states ``z`` (shape ``(T, d)``).
:func:`realize_transformer` builds one chip instance of it from behavioral models of its parts
(all signals in units of ``neuron.v_unit``, time in units of ``tau = C / g_leak``):

==========================  ==================================================================
part                        circuit and its non-idealities
==========================  ==================================================================
``x_in = tok[idx] + pos``   digital embedding through the input DAC (``periphery.dac_*``)
``W_q, W_k, W_v, W_o``,     crossbar tiles ``W = (G+ - G-) / G_ref`` programmed with
``W_1, W_2, b_1, b_2``      :func:`analogeq.hardware.realize.map_tile` (levels, programming noise,
                            device-to-device bounds), read noise per settle; a tile whose
                            ``max |W|`` exceeds ``crossbar.w_max`` is stored as ``W / s`` and its
                            transimpedance stage has gain ``s`` (``Tile.scale``); every
                            product is a transposed tile read (``Tile.read_t``, rows driven)
``LN1``, ``LN2``, q/k norm  normalization circuit: mean subtraction and division by
                            ``sqrt(mean(c^2) + eps)`` (the digital epsilons), with a gain error
                            ``(1 + gamma)`` per instance (per token; per head and token for q, k);
                            the layer-norm gain and bias are programmable trims of the circuit
``q . k``, ``sum_j p v``    four-quadrant (Gilbert) multipliers, one per product: output
                            ``(1 + gamma) a b + o`` with gain error ``gamma`` and offset ``o``
                            sampled once per chip, plus additive noise at each array output drawn
                            per settle
softmax                     translinear: ``p_ij = g_ij e^{s_ij} / sum_{j<=i} g_ij e^{s_ij}``
                            (scores in units of the exponentiator's ``U_T``), a lognormal gain
                            mismatch ``g = exp(sigma xi)`` per exponentiator, causal masking by
                            switching the future keys' exponentiators off
GELU                        the neuron nonlinearity circuit: ``(1 + gamma) gelu(u + o)`` with the
                            chip's ``neuron.offset_sigma`` / ``neuron.gain_sigma``, optionally
                            saturated by the rails ``R tanh(. / R)``, ``R = rail / v_unit``
node                        RC node with leak ``(1 + c) g_leak``; optional amplifier pole
                            (``neuron.amp_pole_tau``: the summed branch currents pass a
                            first-order stage ``y``, state ``(2, T, d)``); ``kT/C`` and crossbar
                            thermal noise as on the layered chip
==========================  ==================================================================

The circuits' own non-idealities are the chip's ``circuits`` section
(:class:`~analogeq.hardware.sections.CircuitConfig`, ``[circuits]`` in a chip TOML file). With
:meth:`ChipConfig.ideal` (whose ``circuits`` are ideal) the analog field equals the digital one
to rounding. :func:`continuous_verdict` answers, for a trained block, whether a
cycle (or divergence) seen by the Euler emulator exists in continuous time on the analog block.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from analogeq.hardware.config import ChipConfig
from analogeq.hardware.constants import K_B
from analogeq.hardware.converters import quantize
from analogeq.hardware.realize import map_tile
from analogeq.hardware.sections import CircuitConfig
from analogeq.models.base import AbstractModel
from analogeq.models.transformer import LN_EPS, RMS_EPS, EqTransformer, gelu_tanh

__all__ = ["AnalogEqTransformer", "CircuitConfig", "realize_transformer"]

TILES = ("W_q", "W_k", "W_v", "W_o", "W_1", "W_2", "b_1", "b_2")
"""The block's parameters stored on crossbar tiles (biases as one-column tiles driven by
``v_unit``)."""


class AnalogEqTransformer(AbstractModel):
    """One analog chip instance of an :class:`EqTransformer` (see the module docstring).

    State: node voltages ``z`` (units of ``v_unit``) of shape ``(T, d)``, or ``(2, T, d)`` with an
    amplifier pole (``[0]`` the nodes, ``[1]`` the stage outputs). Inputs: token ids ``(T,)``,
    ``T <= max_len``.

    Attributes:
        tiles: crossbar tiles by name (:data:`TILES`), each with its stage gain
            :attr:`Tile.scale` (``W = s (G+ - G-) / G_ref``; see :attr:`tile_scale`).
        tok, pos, ln1_g, ln1_b, ln2_g, ln2_b, W_h: digital embeddings, layer-norm trims, readout.
        ln1_gain, ln2_gain: normalization-circuit gains ``(L,)``.
        q_gain, k_gain: q/k RMS-norm circuit gains ``(H, L)``.
        qk_gain, qk_offset: score multipliers ``(H, L, L, d_h)`` (offset in units of ``v_unit``).
        pv_gain, pv_offset: value multipliers ``(H, L, L, d_h)`` (query, key, channel).
        sm_gain: exponentiator gains ``(H, L, L)``.
        gelu_offset, gelu_gain: GELU neuron mismatch ``(L, m d)``.
        qk_noise, pv_noise: this settle's multiplier-output noise ``(H, L, L)``, ``(H, L, d_h)``.
        config: the hardware description; its ``circuits`` section is :attr:`circuits`.
    """

    tiles: dict
    tok: Array
    pos: Array
    ln1_g: Array
    ln1_b: Array
    ln2_g: Array
    ln2_b: Array
    W_h: Array
    ln1_gain: Array
    ln2_gain: Array
    q_gain: Array
    k_gain: Array
    qk_gain: Array
    qk_offset: Array
    pv_gain: Array
    pv_offset: Array
    sm_gain: Array
    gelu_offset: Array
    gelu_gain: Array
    qk_noise: Array
    pv_noise: Array
    n_heads: int = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    qk_norm: bool = eqx.field(static=True)
    seq_len: int = eqx.field(static=True)
    config: ChipConfig = eqx.field(static=True)

    # ----------------------------------------------------------------- sizes
    @property
    def d_model(self) -> int:
        return int(self.tok.shape[1])

    @property
    def max_len(self) -> int:
        return int(self.pos.shape[0])

    @property
    def vocab_size(self) -> int:
        return int(self.tok.shape[0])

    @property
    def circuits(self) -> CircuitConfig:
        """The non-idealities of the block's circuits (``config.circuits``)."""
        return self.config.circuits

    @property
    def has_pole(self) -> bool:
        return self.config.neuron.amp_pole_tau > 0

    @property
    def tile_scale(self) -> tuple[float, ...]:
        """The transimpedance gain ``s`` of each tile in :data:`TILES` order
        (``W = s (G+ - G-) / G_ref``; dimensionless)."""
        return tuple(self.tiles[n].scale for n in TILES)

    @property
    def state_shape(self) -> tuple[int, ...]:
        core = (self.seq_len, self.d_model)
        return (2, *core) if self.has_pole else core

    @property
    def tau(self) -> float:
        """Neuron time constant ``C / g_leak`` [s]."""
        return self.config.neuron.tau

    # ----------------------------------------------------------------- circuits
    def weight(self, name: str) -> Array:
        """Effective weight of tile ``name`` (dimensionless): ``s (G+ - G-) / G_ref``."""
        return self.tiles[name].weights(self.config.crossbar)

    def read(self, name: str, h: Array) -> Array:
        """Tile ``name`` read with its rows driven at ``h`` (``(T, rows)``, units of
        ``v_unit``; ``(T, 1)``-broadcastable ones for a bias tile): ``h W``."""
        return self.tiles[name].read_t(h, self.config.crossbar)

    def dac(self, x_in: Array) -> Array:
        """The input DAC's output for embedded inputs ``x_in`` (units of ``v_unit``).

        Its derivative is taken as the identity (straight-through): the embeddings are digital
        parameters before the DAC, and the periphery updates them with the adjoint at the nodes
        as if the conversion were exact (a rounding step has derivative 0 almost everywhere,
        which would freeze them)."""
        p, vu = self.config.periphery, self.config.neuron.v_unit
        q = quantize(x_in * vu, p.dac_bits, p.dac_range) / vu
        return q if p.dac_bits == 0 else x_in + jax.lax.stop_gradient(q - x_in)

    def embed(self, x: Array) -> Array:
        """``dac(tok[idx] + pos[:T])`` for token ids ``x`` ``(T,)`` (units of ``v_unit``)."""
        return self.dac(self.tok[x] + self.pos[: x.shape[0]])

    @staticmethod
    def normalize(h: Array, g: Array, b: Array, gain: Array) -> Array:
        """Layer-norm circuit over the last axis: ``(h - mean) / sqrt(var + 1e-5) * gain * g + b``
        (``gain`` per row, broadcast over features)."""
        mu = jnp.mean(h, axis=-1, keepdims=True)
        c = h - mu
        var = jnp.mean(c * c, axis=-1, keepdims=True)
        return c / jnp.sqrt(var + LN_EPS) * gain[..., None] * g + b

    @staticmethod
    def rms(h: Array, gain: Array) -> Array:
        """RMS-norm circuit ``h / sqrt(mean(h^2) + 1e-6) * gain`` (``gain`` per row)."""
        return h / jnp.sqrt(jnp.mean(h * h, axis=-1, keepdims=True) + RMS_EPS) * gain[..., None]

    @staticmethod
    def translinear_softmax(scores: Array, gain: Array) -> Array:
        """Causal translinear softmax of ``(H, T, T)`` scores (units of ``U_T``) with per
        exponentiator gains ``gain``; future keys (``j > i``) are switched off. The shift by the
        largest allowed score cancels in the ratio (it models the common-mode level of the
        translinear loop)."""
        t = scores.shape[-1]
        mask = jnp.tril(jnp.ones((t, t), dtype=bool))
        re = jnp.where(mask, jnp.real(scores), -jnp.inf)
        shift = jax.lax.stop_gradient(jnp.max(re, axis=-1, keepdims=True))
        safe = jnp.where(mask, scores, shift)
        e = jnp.exp(safe - shift) * gain * mask
        return e / jnp.sum(e, axis=-1, keepdims=True)

    def attention(self, h: Array) -> Array:
        """Attention branch of normalized states ``h`` ``(T, d)``: :meth:`attention_output`
        through the ``W_o`` crossbar."""
        return self.read("W_o", self.attention_output(h))

    def attention_output(self, h: Array) -> Array:
        """The heads' outputs ``(T, d)`` that drive ``W_o``, for normalized states ``h``:
        crossbar projections, q/k norm circuits, score multipliers, translinear softmax, value
        multipliers."""
        t, d = h.shape
        nh, dh = self.n_heads, d // self.n_heads
        heads = lambda a: a.reshape(t, nh, dh).transpose(1, 0, 2)
        q, k, v = (heads(self.read(n, h)) for n in ("W_q", "W_k", "W_v"))
        if self.qk_norm:
            q, k = self.rms(q, self.q_gain[:, :t]), self.rms(k, self.k_gain[:, :t])
        mask = jnp.tril(jnp.ones((t, t), h.dtype))
        c = self.circuits
        # Multiplier arrays whose mismatch is off are evaluated as plain contractions (same
        # values, without the (H, T, T, d_h) gain arrays).
        if c.mult_gain_sigma > 0:
            raw = jnp.einsum("hic,hjc,hijc->hij", q, k, self.qk_gain[:, :t, :t])
        else:
            raw = q @ k.transpose(0, 2, 1)
        if c.mult_offset_sigma > 0:
            raw = raw + jnp.sum(self.qk_offset[:, :t, :t], -1)
        scores = raw / math.sqrt(dh) + self.qk_noise[:, :t, :t]
        p = self.translinear_softmax(scores, self.sm_gain[:, :t, :t])
        o = jnp.einsum("hij,hjc,hijc->hic", p, v, self.pv_gain[:, :t, :t]) if c.mult_gain_sigma > 0 else p @ v
        if c.mult_offset_sigma > 0:
            o = o + jnp.einsum("ij,hijc->hic", mask, self.pv_offset[:, :t, :t])
        o = o + self.pv_noise[:, :t]
        return o.transpose(1, 0, 2).reshape(t, d)

    def gelu(self, u: Array) -> Array:
        """The GELU neuron circuits for pre-activations ``u`` ``(T, m d)``."""
        t = u.shape[0]
        out = gelu_tanh(u + self.gelu_offset[:t]) * self.gelu_gain[:t]
        if self.circuits.gelu_rails:
            r = self.config.neuron.rail_units
            out = r * jnp.tanh(out / r)
        return out

    def ffn(self, h: Array) -> Array:
        """FFN branch: ``gelu(h W_1 + b_1) W_2 + b_2`` on crossbars and GELU neurons."""
        one = jnp.ones((1,), h.dtype)  # the bias tiles' drive line, at v_unit
        return self.read("W_2", self.ffn_hidden(h)) + self.read("b_2", one)

    def ffn_hidden(self, h: Array) -> Array:
        """The GELU outputs ``gelu(h W_1 + b_1)`` ``(T, m d)`` that drive ``W_2``."""
        one = jnp.ones((1,), h.dtype)
        return self.gelu(self.read("W_1", h) + self.read("b_1", one))

    def normalized(self, z: Array) -> tuple[Array, Array]:
        """``(LN1 z, LN2 z)``: the normalization circuits' outputs for node states ``z`` ``(T, d)``."""
        t = z.shape[0]
        return (self.normalize(z, self.ln1_g, self.ln1_b, self.ln1_gain[:t]),
                self.normalize(z, self.ln2_g, self.ln2_b, self.ln2_gain[:t]))

    def branches(self, z: Array) -> Array:
        """The branch currents into the nodes, ``Attn(LN1 z) + FFN(LN2 z)`` (units of ``v_unit``
        per ``tau``)."""
        h1, h2 = self.normalized(z)
        return self.attention(h1) + self.ffn(h2)

    def tile_drives(self, z: Array) -> dict[str, Array]:
        """What drives the rows of each tile in :data:`TILES` at node states ``z`` ``(T, d)``
        (units of ``v_unit``, one row of drives per position): the normalized states, the
        heads' outputs, the GELU outputs, and ``1`` on the bias tiles' line."""
        h1, h2 = self.normalized(z)
        one = jnp.ones((z.shape[0], 1), z.dtype)
        return {"W_q": h1, "W_k": h1, "W_v": h1, "W_o": self.attention_output(h1), "W_1": h2,
                "W_2": self.ffn_hidden(h2), "b_1": one, "b_2": one}

    def local_signals(self, x: Array, s: Array, a: Array) -> dict[str, tuple[Array, Array]]:
        """The rank-one factors of one sample's update, per tile in :data:`TILES`.

        For token ids ``x`` ``(T,)``, state ``s`` and adjoint ``a`` (as in ``g = a^T
        dF/dtheta``), tile ``n`` gets ``(inp, d)``, ``inp`` ``(T, rows)`` what drives its rows
        (:meth:`tile_drives`, units of ``v_unit``) and ``d`` ``(T, cols)`` the adjoint of its
        read output, so that its weight-unit gradient is ``dL/dW = sum_t outer(inp_t, d_t)``
        (``W`` is ``(rows, cols)``, read ``h W``). These are the signals a crossbar's periphery
        has for a pulsed rank-one update, one pair per token position."""
        t = x.shape[0]
        dtype = self.tok.dtype
        offsets = {n: jnp.zeros((t, self.tiles[n].g_pos.shape[-1]), dtype) for n in TILES}

        def shifted_force(off):
            # The adjoint of a read output is the pullback of a current added at that output; a
            # bias tile's (cols,) read broadcasts against the (T, cols) offset where it is summed
            # into its (T, cols) branch.
            shifted = {n: _Offset(self.tiles[n], off[n]) for n in TILES}
            return eqx.tree_at(lambda c: c.tiles, self, shifted).force(s, x)

        _, pullback = jax.vjp(shifted_force, offsets)
        (d,) = pullback(a)
        drives = self.tile_drives(self.nodes(s))
        return {n: (drives[n], d[n]) for n in TILES}

    # ----------------------------------------------------------------- field
    def _check_state(self, s: Array, t: int) -> None:
        want = (2, t, self.d_model) if self.has_pole else (t, self.d_model)
        if s.shape != want:
            raise ValueError(f"state must have shape {want} for {t} tokens"
                             f"{' (nodes and amplifier outputs)' if self.has_pole else ''}; got {s.shape}")

    def force(self, s: Array, x: Array) -> Array:
        """``tau ds/dt`` (units of ``v_unit``): ``-(1 + c) z + x_in + branches`` (with a pole,
        ``-(1 + c) z + y`` and ``(x_in + branches - y) tau / tau_a``)."""
        t = x.shape[0]
        self._check_state(s, t)
        x_in = self.embed(x)
        if not self.has_pole:
            return self._node_field(s, x_in)
        z, y = s[0], s[1]
        ratio = self.config.neuron.amp_pole_tau / self.tau
        return jnp.stack([-z + y - self.damping * z, (x_in + self.branches(z) - y) / ratio])

    def correction_force(self, s: Array, x: Array) -> Array:
        """With an amplifier pole, the node field with the stage at its adiabatic value,
        ``-(1 + c) z + x_in + branches(z)``, and zero on the stage's rows
        (:meth:`~analogeq.models.base.AbstractModel.correction_force`): the AsymEP correction
        acts on the nodes. The correction of the full field has ``J - J^T`` entries of size
        ``|dBranches/dz| tau / tau_a`` that the exact-decay step integrates explicitly: at the
        default step the nudged phases of the ``realistic`` block (``tau_a = tau / 10``)
        diverged (residual 5.8 against 0.006 at a 50x smaller step or with this field).
        Without a pole, the force."""
        if not self.has_pole:
            return self.force(s, x)
        self._check_state(s, x.shape[0])
        node = self._node_field(s[0], self.embed(x))
        return jnp.stack([node, jnp.zeros_like(node)])

    def _node_field(self, z: Array, x_in: Array) -> Array:
        """``-(1 + c) z + x_in + branches(z)``: the nodes' field with the branch currents
        arriving at once (the field without a pole)."""
        return -(z - x_in) + self.branches(z) - self.damping * z

    def update_adjoint(self, a: Array) -> Array:
        """With an amplifier pole the adjoint's stage part is exactly ``tau_a / tau`` times its
        node part at the fixed point (the stage output ``y`` enters the cost only through the
        nodes: ``lambda_z - lambda_y tau / tau_a = 0``), so the update uses the node contrast,
        which the ADC reads at ``tau / tau_a`` times the amplitude (as the layered chip's
        :meth:`~analogeq.hardware.Chip.update_adjoint`)."""
        if not self.has_pole:
            return a
        return jnp.stack([a[0], (self.config.neuron.amp_pole_tau / self.tau) * a[0]])

    def nodes(self, s: Array) -> Array:
        """The node voltages ``z`` ``(T, d)`` of a state."""
        return s[0] if self.has_pole else s

    def readout(self, s: Array) -> Array:
        """Logits ``z W_h`` ``(T, V)`` (the nodes read through the ADC by the relaxation, the
        readout matrix digital)."""
        return self.nodes(s) @ self.W_h

    def init_state(self, x: Array) -> Array:
        """``x_in / (1 + c)`` at the nodes (and ``x_in`` at the amplifier outputs)."""
        self.check_input(x)
        x_in = self.embed(x)
        z0 = jax.lax.stop_gradient(x_in / (1.0 + self.damping))
        return jnp.stack([z0, jax.lax.stop_gradient(x_in)]) if self.has_pole else z0

    def check_input(self, x: Array) -> None:
        """Token ids ``(T,)``, integer, ``1 <= T <= max_len``."""
        if x.ndim != 1 or not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"inputs x must be integer token ids of shape (T,); got shape "
                             f"{tuple(x.shape)}, dtype {x.dtype}")
        if not 1 <= x.shape[0] <= self.max_len:
            raise ValueError(f"sequence length must lie in [1, max_len={self.max_len}]; got {x.shape[0]}")

    # ----------------------------------------------------------------- noise
    @property
    def read_noise_per_sample(self) -> bool:
        """``crossbar.read_noise_scope == "sample"``: one read-noise draw per sample."""
        return self.config.crossbar.read_noise_scope == "sample"

    def sample_phase(self, key) -> AnalogEqTransformer:
        """The block as one settle sees it: read noise on every tile
        (``crossbar.read_noise``) and multiplier-output noise (``circuits.mult_noise``)."""
        sigma, m = self.config.crossbar.read_noise, self.circuits.mult_noise
        out = self
        k_read, k_qk, k_pv = jax.random.split(key, 3)
        if sigma > 0:
            keys = dict(zip(TILES, jax.random.split(k_read, len(TILES))))
            out = eqx.tree_at(lambda a: a.tiles, out,
                              {n: t.with_read_noise(keys[n], sigma) for n, t in self.tiles.items()})
        if m > 0:
            vu = self.config.neuron.v_unit
            out = eqx.tree_at(lambda a: (a.qk_noise, a.pv_noise), out, (
                m / vu * jax.random.normal(k_qk, self.qk_noise.shape, self.qk_noise.dtype),
                m / vu * jax.random.normal(k_pv, self.pv_noise.shape, self.pv_noise.dtype)))
        return out

    def noise(self):
        """White-noise amplitude per state entry (units of ``v_unit`` per ``sqrt(tau)``): the
        node's ``kT/C`` noise and the Johnson noise of the ``W_o``, ``W_2``, ``b_2`` devices
        that drive each node (as :meth:`analogeq.hardware.Chip.noise`); ``None`` when off."""
        cfg = self.config
        kt = K_B * cfg.noise.temperature
        if kt == 0 or not (cfg.neuron.kTC_noise or cfg.crossbar.thermal_noise):
            return None
        vu, dtype = cfg.neuron.v_unit, self.tok.dtype
        node = math.sqrt(2 * kt / cfg.neuron.C) / vu if cfg.neuron.kTC_noise else 0.0
        xbar = jnp.zeros((self.d_model,), dtype)
        if cfg.crossbar.thermal_noise:
            g = sum(self.tiles[n].line_conductance(transposed=True) for n in ("W_o", "W_2"))
            g = g + self.tiles["b_2"].line_conductance(transposed=True)
            xbar = jnp.sqrt(2 * kt * g / self.tau) / (cfg.crossbar.G_ref * vu)
        shape = (self.seq_len, self.d_model)
        if not self.has_pole:
            return jnp.broadcast_to(jnp.sqrt(node**2 + xbar**2), shape)
        ratio = cfg.neuron.amp_pole_tau / self.tau
        return jnp.stack([jnp.full(shape, node, dtype), jnp.broadcast_to(xbar / ratio, shape)])


class _Offset(eqx.Module):
    """A tile whose transposed read has a constant added at its outputs (for
    :meth:`AnalogEqTransformer.local_signals`)."""

    tile: object
    offset: Array

    def read_t(self, h: Array, cb, key=None, *, v_unit: float | None = None) -> Array:
        return self.tile.read_t(h, cb, key, v_unit=v_unit) + self.offset


def _tile_scale(name: str, w, w_max: float, headroom: float = 1.0) -> float:
    if isinstance(w, jax.core.Tracer):
        raise TypeError(f"realize_transformer needs concrete weights ({name} is traced): call it "
                         "outside jit")
    m = float(jnp.max(jnp.abs(w)))
    if not math.isfinite(m):
        raise ValueError(f"block.{name} holds non-finite entries (NaN/inf); nothing to program")
    return max(1.0, headroom * m / w_max)


def realize_transformer(block: EqTransformer, config: ChipConfig, key, *,
                        circuits: CircuitConfig | None = None,
                        headroom: float = 1.0) -> AnalogEqTransformer:
    """One analog chip instance of ``block``: programming error, bounds, levels and every circuit
    mismatch drawn once from ``key`` (the same key gives the same chip).

    Args:
        block: the digital :class:`EqTransformer` (its dtype is kept; use float64 to compare
            with the digital field to rounding).
        config: the chip (crossbar, neuron, periphery, noise, circuits; SI units).
        key: PRNG key of this chip instance.
        circuits: replaces ``config.circuits`` (the non-idealities of the multipliers, softmax
            and normalization circuits), for a study of one circuit effect; ``None``: the
            chip's own section. The chip instance's ``config`` holds the circuits it was built
            with.
        headroom: growth room of each tile's weights (dimensionless, >= 1): a tile whose
            ``headroom max |W|`` exceeds ``crossbar.w_max`` gets the stage gain
            ``s = headroom max |W| / w_max``, so its largest weight sits at ``w_max / headroom``
            of the conductance window and training can grow it (1: at the window's edge, enough
            for inference; training uses 2, see :mod:`analogeq.hardware.transformer_updates`).

    Returns:
        An :class:`AnalogEqTransformer`; relax it with
        :class:`analogeq.hardware.ChipRelaxation` (ODE to the steady state, or an SDE with noise)
        or :func:`analogeq.diagnostics.settle`.
    """
    if not isinstance(block, EqTransformer):
        raise TypeError(f"realize_transformer maps an EqTransformer; got {type(block).__name__} "
                        "(use analogeq.hardware.realize for a LeakyNetwork)")
    if not isinstance(config, ChipConfig):
        raise TypeError(f"config must be a ChipConfig; got {type(config).__name__}")
    if circuits is not None and not isinstance(circuits, CircuitConfig):
        raise TypeError(f"circuits must be a CircuitConfig or None; got {type(circuits).__name__}")
    if circuits is not None:
        config = config.replace(circuits=circuits)
    if not (isinstance(headroom, (int, float)) and math.isfinite(headroom) and headroom >= 1):
        raise ValueError(f"headroom must be a finite number >= 1 (growth room of the tiles' "
                         f"weights); got {headroom!r}")
    cb, nc = config.crossbar, config.neuron
    dtype = block.tok.dtype
    L, d, nh = block.max_len, block.d_model, block.n_heads
    dh, md = d // nh, block.W_1.shape[1]
    ks = iter(jax.random.split(key, len(TILES) + 12))
    tiles = {}
    for name in TILES:
        w = getattr(block, name)
        s = _tile_scale(name, w, cb.w_max, headroom)
        tiles[name] = map_tile(w / s if s != 1.0 else w, cb, next(ks), scale=s)

    def normal(shape, sigma):
        k = next(ks)
        return sigma * jax.random.normal(k, shape, dtype) if sigma > 0 else jnp.zeros(shape, dtype)

    c, vu = config.circuits, nc.v_unit
    return AnalogEqTransformer(
        tiles=tiles, tok=block.tok, pos=block.pos, ln1_g=block.ln1_g, ln1_b=block.ln1_b,
        ln2_g=block.ln2_g, ln2_b=block.ln2_b, W_h=block.W_h,
        ln1_gain=1 + normal((L,), c.norm_gain_sigma), ln2_gain=1 + normal((L,), c.norm_gain_sigma),
        q_gain=1 + normal((nh, L), c.norm_gain_sigma), k_gain=1 + normal((nh, L), c.norm_gain_sigma),
        qk_gain=1 + normal((nh, L, L, dh), c.mult_gain_sigma),
        qk_offset=normal((nh, L, L, dh), c.mult_offset_sigma / vu),
        pv_gain=1 + normal((nh, L, L, dh), c.mult_gain_sigma),
        pv_offset=normal((nh, L, L, dh), c.mult_offset_sigma / vu),
        sm_gain=jnp.exp(normal((nh, L, L), c.softmax_gain_sigma)),
        gelu_offset=normal((L, md), nc.offset_sigma / vu),
        gelu_gain=1 + normal((L, md), nc.gain_sigma),
        qk_noise=jnp.zeros((nh, L, L), dtype), pv_noise=jnp.zeros((nh, L, dh), dtype),
        n_heads=nh, damping=block.damping, qk_norm=block.qk_norm,
        seq_len=block.seq_len, config=config,
    )
