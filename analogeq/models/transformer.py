"""The equilibrium transformer block: a pre-norm block (Vaswani et al. 2017) as a fixed-point field.

One pre-norm transformer block turned into a vector field on the token states ``z`` (shape
``(T, d)`` per sequence)::

    F(z; idx) = -(z - x_in) + Attn(LN1 z) + FFN(LN2 z) - c z,      x_in = tok[idx] + pos[:T]

* ``Attn``: causal multi-head softmax attention with independent ``W_Q, W_K, W_V, W_O``
  (no biases), ``H`` heads of size ``d / H``, optional RMS norm of each head's ``q`` and ``k``
  (no gain), scores scaled by ``1 / sqrt(d / H)``.
* ``FFN``: untied ``d -> ffn_mult d -> d`` MLP with biases and the tanh form of GELU.
* ``LN1``, ``LN2``: layer norms (gain and bias) over the feature axis.
* ``c``: damping (``1.0`` in the recipe); the free dynamics then contract at rate ``1 + c``
  where the branches are weak.
* Readout: ``logits = z W_h`` (shape ``(T, V)``), linear in ``z`` as EP requires.

Every operation is written so it extends holomorphically to complex states (holomorphic EP
evaluates ``F`` at complex nudges): layer norm and RMS norm use ``x * x`` (not ``|x|^2``) and a
principal square root, the softmax subtracts a constant real shift (``stop_gradient`` of the
real part's maximum) and masks the future by multiplication, never by ``-inf``.

Parameter shapes (``V`` vocabulary, ``L`` positional table length, ``d`` width,
``m = ffn_mult``): ``tok (V, d)``, ``pos (L, d)``, ``ln1_g, ln1_b, ln2_g, ln2_b (d,)``,
``W_q, W_k, W_v, W_o (d, d)`` applied as ``h @ W`` (input axis first), ``W_1 (d, m d)``,
``b_1 (m d,)``, ``W_2 (m d, d)``, ``b_2 (d,)``, ``W_h (d, V)``. The PyTorch names and
layouts are in :mod:`analogeq.interop.torch`.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, PRNGKeyArray

from analogeq.models.base import AbstractModel

LN_EPS = 1e-5
RMS_EPS = 1e-6
# Linear parameters the residual branch and attention read through (weight-norm caps apply to these).
MATRICES = ("W_q", "W_k", "W_v", "W_o", "W_1", "W_2")


def layer_norm(h: Array, g: Array, b: Array) -> Array:
    """Layer norm over the last axis, ``(h - mean) / sqrt(var + 1e-5) * g + b`` (holomorphic)."""
    mu = jnp.mean(h, axis=-1, keepdims=True)
    c = h - mu
    var = jnp.mean(c * c, axis=-1, keepdims=True)
    return c / jnp.sqrt(var + LN_EPS) * g + b


def rms_norm(h: Array) -> Array:
    """RMS norm over the last axis without gain, ``h / sqrt(mean(h^2) + 1e-6)`` (holomorphic)."""
    return h / jnp.sqrt(jnp.mean(h * h, axis=-1, keepdims=True) + RMS_EPS)


def gelu_tanh(u: Array) -> Array:
    """GELU, tanh form: ``0.5 u (1 + tanh(sqrt(2/pi) (u + 0.044715 u^3)))``."""
    return 0.5 * u * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (u + 0.044715 * u * u * u)))


def causal_softmax(scores: Array) -> Array:
    """Softmax over the last axis of ``(..., T, T)`` scores with key ``j > i`` masked out.

    Holomorphic in ``scores``: the shift is a constant (the real part's maximum over allowed
    keys, gradient stopped) and masked entries are zeroed by multiplication.
    """
    t = scores.shape[-1]
    mask = jnp.tril(jnp.ones((t, t), dtype=bool))
    re = jnp.where(mask, jnp.real(scores), -jnp.inf)
    shift = jax.lax.stop_gradient(jnp.max(re, axis=-1, keepdims=True))
    safe = jnp.where(mask, scores, shift)
    e = jnp.exp(safe - shift) * mask
    return e / jnp.sum(e, axis=-1, keepdims=True)


class EqTransformer(AbstractModel):
    """Equilibrium transformer block: state ``z`` of shape ``(T, d)``, input token ids ``(T,)``.

    Attributes:
        tok: token embedding ``(V, d)``.
        pos: learned positional table ``(max_len, d)``.
        ln1_g, ln1_b, ln2_g, ln2_b: layer-norm gains and biases ``(d,)``.
        W_q, W_k, W_v, W_o: attention projections ``(d, d)`` (``h @ W``).
        W_1, b_1, W_2, b_2: FFN ``(d, m d), (m d,), (m d, d), (d,)``.
        W_h: readout ``(d, V)``; ``logits = z @ W_h``.
        n_heads: ``H`` (divides ``d``).
        damping: ``c >= 0``.
        qk_norm: RMS-normalize each head's queries and keys.
        seq_len: sequences the model is built for (``T = seq_len`` in :attr:`state_shape`);
            shorter sequences up to ``max_len`` are accepted too.
    """

    tok: Float[Array, "V d"]
    pos: Float[Array, "L d"]
    ln1_g: Float[Array, " d"]
    ln1_b: Float[Array, " d"]
    ln2_g: Float[Array, " d"]
    ln2_b: Float[Array, " d"]
    W_q: Float[Array, "d d"]
    W_k: Float[Array, "d d"]
    W_v: Float[Array, "d d"]
    W_o: Float[Array, "d d"]
    W_1: Float[Array, "d md"]
    b_1: Float[Array, " md"]
    W_2: Float[Array, "md d"]
    b_2: Float[Array, " d"]
    W_h: Float[Array, "d V"]
    n_heads: int = eqx.field(static=True)
    damping: float = eqx.field(static=True)
    qk_norm: bool = eqx.field(static=True)
    seq_len: int = eqx.field(static=True)

    def __init__(
        self,
        vocab_size: int,
        seq_len: int,
        d_model: int = 64,
        n_heads: int = 4,
        *,
        key: PRNGKeyArray,
        ffn_mult: int = 4,
        damping: float = 1.0,
        qk_norm: bool = True,
        max_len: int | None = None,
        residual_scale: float = 0.1,
        pos_std: float = 1.0,
        dtype=jnp.float32,
        parameters: dict | None = None,
    ):
        """Random initialization (or explicit ``parameters``, a dict of the fields above).

        Args:
            vocab_size: ``V`` (>= 2), token ids lie in ``[0, V)``.
            seq_len: sequence length ``T`` of the training data (>= 1).
            d_model: width ``d`` (divisible by ``n_heads``).
            n_heads: ``H`` (>= 1).
            key: PRNG key.
            ffn_mult: FFN hidden width as a multiple of ``d`` (4 in the recipe).
            damping: ``c >= 0``.
            qk_norm: RMS norm of per-head queries and keys.
            max_len: positional table length (default ``seq_len``).
            residual_scale: factor on the initial residual-branch outputs ``W_o`` and ``W_2``
                (0.1 in the recipe).
            pos_std: standard deviation of the initial positional embeddings.
            dtype: parameter dtype.
            parameters: explicit arrays by field name (every field; ``key`` is then unused).

        Entries start as ``N(0, 1/fan_in)`` for the projections, ``N(0, 1)`` for token and
        ``N(0, pos_std^2)`` for positional embeddings, gains 1, biases 0.
        """
        for name, value, low in (("vocab_size", vocab_size, 2), ("seq_len", seq_len, 1),
                                 ("d_model", d_model, 1), ("n_heads", n_heads, 1),
                                 ("ffn_mult", ffn_mult, 1)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not (math.isfinite(damping) and damping >= 0):
            raise ValueError(f"damping (c) must be a finite number >= 0; got {damping!r}")
        max_len = seq_len if max_len is None else int(max_len)
        if max_len < seq_len:
            raise ValueError(f"max_len ({max_len}) must be >= seq_len ({seq_len})")
        self.n_heads = int(n_heads)
        self.damping = float(damping)
        self.qk_norm = bool(qk_norm)
        self.seq_len = int(seq_len)
        if parameters is not None:
            missing = sorted(set(PARAMETER_NAMES) - set(parameters))
            if missing:
                raise ValueError(f"parameters is missing {missing}; it needs every one of {PARAMETER_NAMES}")
            for name in PARAMETER_NAMES:
                setattr(self, name, jnp.asarray(parameters[name]))
            _check_shapes(self)
            return
        d, h, v = int(d_model), int(ffn_mult) * int(d_model), int(vocab_size)
        ks = jax.random.split(key, 9)

        def normal(k, shape, std):
            return std * jax.random.normal(k, shape, dtype)

        self.tok = normal(ks[0], (v, d), 1.0)
        self.pos = normal(ks[1], (max_len, d), pos_std)
        self.ln1_g, self.ln2_g = jnp.ones((d,), dtype), jnp.ones((d,), dtype)
        self.ln1_b, self.ln2_b = jnp.zeros((d,), dtype), jnp.zeros((d,), dtype)
        self.W_q = normal(ks[2], (d, d), 1 / math.sqrt(d))
        self.W_k = normal(ks[3], (d, d), 1 / math.sqrt(d))
        self.W_v = normal(ks[4], (d, d), 1 / math.sqrt(d))
        self.W_o = normal(ks[5], (d, d), residual_scale / math.sqrt(d))
        self.W_1 = normal(ks[6], (d, h), 1 / math.sqrt(d))
        self.b_1 = jnp.zeros((h,), dtype)
        self.W_2 = normal(ks[7], (h, d), residual_scale / math.sqrt(h))
        self.b_2 = jnp.zeros((d,), dtype)
        self.W_h = normal(ks[8], (d, v), 1 / math.sqrt(d))

    # ----------------------------------------------------------------- sizes
    @property
    def d_model(self) -> int:
        return int(self.tok.shape[1])

    @property
    def vocab_size(self) -> int:
        return int(self.tok.shape[0])

    @property
    def max_len(self) -> int:
        return int(self.pos.shape[0])

    @property
    def ffn_mult(self) -> int:
        return int(self.W_1.shape[1]) // self.d_model

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.seq_len, self.d_model)

    # ----------------------------------------------------------------- field
    def embed(self, x: Int[Array, " T"]) -> Float[Array, "T d"]:
        """``x_in = tok[idx] + pos[:T]`` for token ids ``x`` (shape ``(T,)``, ``T <= max_len``)."""
        self.check_input(x)
        return self.tok[x] + self.pos[: x.shape[0]]

    def attention(self, h: Array) -> Array:
        """Causal multi-head attention of normalized states ``h`` ``(T, d)``; returns ``(T, d)``."""
        t, d = h.shape
        nh, dh = self.n_heads, d // self.n_heads
        q = (h @ self.W_q).reshape(t, nh, dh).transpose(1, 0, 2)
        k = (h @ self.W_k).reshape(t, nh, dh).transpose(1, 0, 2)
        v = (h @ self.W_v).reshape(t, nh, dh).transpose(1, 0, 2)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        p = causal_softmax(q @ k.transpose(0, 2, 1) / math.sqrt(dh))
        o = (p @ v).transpose(1, 0, 2).reshape(t, d)
        return o @ self.W_o

    def ffn(self, h: Array) -> Array:
        """``gelu(h W_1 + b_1) W_2 + b_2`` of normalized states ``h`` ``(T, d)``."""
        return gelu_tanh(h @ self.W_1 + self.b_1) @ self.W_2 + self.b_2

    def force_with_input(self, z: Array, x_in: Array) -> Array:
        """``F(z)`` given the embedded input ``x_in`` ``(T, d)`` (saves re-embedding)."""
        a = self.attention(layer_norm(z, self.ln1_g, self.ln1_b))
        f = self.ffn(layer_norm(z, self.ln2_g, self.ln2_b))
        return -(z - x_in) + a + f - self.damping * z

    def force(self, s: Array, x: Array) -> Array:
        """``F(z; idx)`` for a state ``s`` ``(T, d)`` and token ids ``x`` ``(T,)``."""
        if s.shape != (x.shape[0], self.d_model):
            raise ValueError(f"state must have shape (T, d) = ({x.shape[0]}, {self.d_model}) for "
                             f"{x.shape[0]} tokens; got {s.shape}")
        return self.force_with_input(s, self.tok[x] + self.pos[: x.shape[0]])

    def readout(self, s: Array) -> Array:
        """Logits ``z W_h`` of shape ``(T, V)``."""
        return s @ self.W_h

    def init_state(self, x: Array) -> Array:
        """The free phase starts at the embedded input ``x_in / (1 + c)`` (the fixed point of the
        field without its branches), treated as a constant (no gradient flows into it).

        Concrete token ids are checked (:meth:`check_input`); traced ones are the caller's: a
        run's data are checked against the vocabulary when loaded, and nothing raises inside
        jit, where a host callback would keep the compiled step out of JAX's persistent cache
        (a non-finite relaxation is flagged by :func:`analogeq.emulator.check_finite`)."""
        self.check_input(x)
        return jax.lax.stop_gradient(self.embed(x) / (1.0 + self.damping))

    def check_input(self, x: Array) -> None:
        """Token ids of shape ``(T,)``, integer, ``1 <= T <= max_len``; concrete ids in ``[0, V)``."""
        if x.ndim != 1:
            raise ValueError(f"each input x must be token ids of shape (T,) for the EqTransformer; "
                             f"got a sample of shape {tuple(x.shape)}")
        if not jnp.issubdtype(x.dtype, jnp.integer):
            raise ValueError(f"inputs x must be integer token ids; got dtype {x.dtype}")
        if not 1 <= x.shape[0] <= self.max_len:
            raise ValueError(f"sequence length {x.shape[0]} exceeds the positional table "
                             f"(max_len={self.max_len}) of the EqTransformer" if x.shape[0] else
                             "sequences must hold at least one token")
        if not isinstance(x, jax.core.Tracer):
            xv = np.asarray(x)
            if xv.min() < 0 or xv.max() >= self.vocab_size:
                raise ValueError(f"token ids must lie in [0, vocab_size={self.vocab_size}); got ids "
                                 f"in [{xv.min()}, {xv.max()}]")

    def parameters(self) -> dict[str, Array]:
        """The parameter arrays by field name (see the module docstring for shapes)."""
        return {name: getattr(self, name) for name in PARAMETER_NAMES}


PARAMETER_NAMES = ("tok", "pos", "ln1_g", "ln1_b", "ln2_g", "ln2_b", "W_q", "W_k", "W_v", "W_o",
                   "W_1", "b_1", "W_2", "b_2", "W_h")


def _check_shapes(m: EqTransformer) -> None:
    v, d = m.tok.shape
    h = m.W_1.shape[1] if m.W_1.ndim == 2 else -1
    want = {"tok": (v, d), "pos": (m.pos.shape[0], d), "ln1_g": (d,), "ln1_b": (d,), "ln2_g": (d,),
            "ln2_b": (d,), "W_q": (d, d), "W_k": (d, d), "W_v": (d, d), "W_o": (d, d), "W_1": (d, h),
            "b_1": (h,), "W_2": (h, d), "b_2": (d,), "W_h": (d, v)}
    for name, shape in want.items():
        got = tuple(getattr(m, name).shape)
        if got != shape:
            raise ValueError(f"parameter {name} must have shape {shape} (V={v}, d={d}, ffn width={h}); got {got}")
    if h % d:
        raise ValueError(f"W_1 width {h} must be a multiple of d_model {d}")
    if d % m.n_heads:
        raise ValueError(f"d_model ({d}) must be divisible by n_heads ({m.n_heads})")
    if m.pos.shape[0] < m.seq_len:
        raise ValueError(f"pos has {m.pos.shape[0]} rows; seq_len={m.seq_len} needs at least that many")
