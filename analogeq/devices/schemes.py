"""Update schemes: turning a weight update into programming pulses.

The desired update of a crossbar layer with input ``x`` (shape ``(n_in,)``) and error ``d``
(shape ``(n_out,)``) is the SGD outer product ``dW = -lr d x^T`` (shape ``(n_out, n_in)``, weight
units). The schemes below turn it into signed integer pulse counts per device (positive = up)
and apply them with a device model from :mod:`analogeq.devices.pulsed`:

- :func:`deterministic_pulses`: ``round(|dW| / dw_min)`` pulses of sign ``sign(dW)``.
- :func:`stochastic_pulses`: aihwkit's stochastic pulse coincidence (bit length ``BL``, update
  management); unbiased: ``E[counts] dw_min = -lr d x^T`` for ideal constant-step devices.
- :class:`PulsedSGD`: either of the above applied directly to one device array.
- :class:`MixedPrecision`: digital accumulator ``chi``; ``trunc(chi / dw_min)`` pulses are sent,
  the remainder is kept.
- :class:`TikiTaka`: ``W = gamma A + C``; gradient pulses go to ``A``; every ``k`` updates one
  column of ``A`` is read and transferred onto ``C`` (TTv1), or buffered digitally and
  transferred only when the buffer exceeds ``thres_scale * dw_min`` (TTv2).

All updaters keep cumulative per-device pulse counters (``|pulses|``, for endurance and energy
accounting). Every ``step`` accepts a single sample (``x: (n_in,)``, ``d: (n_out,)``) or a
batch (``x: (B, n_in)``, ``d: (B, n_out)``), which is applied sample by sample as in aihwkit.
"""

from __future__ import annotations

import functools
from typing import Literal

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from analogeq.devices.pulsed import AbstractDevice, DeviceState, _float_dtype

__all__ = [
    "MixedPrecision",
    "MixedPrecisionState",
    "PulseCountState",
    "PulsedSGD",
    "TikiTaka",
    "TikiTakaState",
    "deterministic_pulses",
    "outer_update",
    "stochastic_pulses",
]

Scheme = Literal["stochastic", "deterministic"]


def outer_update(x: Array, d: Array, lr: ArrayLike) -> Array:
    """The SGD update ``-lr d x^T`` (shape ``(n_out, n_in)``, weight units) for input ``x``
    ``(n_in,)``, error ``d`` ``(n_out,)`` and learning rate ``lr`` (weight units per unit of
    ``x d``)."""
    return -lr * jnp.outer(d, x)


def deterministic_pulses(dw: Array, dw_min: ArrayLike, max_pulses: int | None = None) -> Array:
    """Pulse counts ``sign(dw) min(round(|dw| / dw_min), max_pulses)``.

    Args:
        dw: desired weight change (weight units), any shape.
        dw_min: weight change of one pulse (weight units; scalar or broadcastable to ``dw``).
        max_pulses: cap on ``|count|`` (``None``: no cap).

    Returns:
        ``int32`` array of signed pulse counts (positive = up), shape of ``dw``.
    """
    m = jnp.round(jnp.abs(dw) / dw_min)
    if max_pulses is not None:
        m = jnp.minimum(m, max_pulses)
    return (jnp.sign(dw) * m).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("bl_max", "update_management", "bl_management"))
def stochastic_pulses(
    x: Array,
    d: Array,
    lr: ArrayLike,
    dw_min: ArrayLike,
    key: PRNGKeyArray,
    bl_max: int = 31,
    update_management: bool = True,
    bl_management: bool = True,
) -> Array:
    """Stochastic pulse coincidence (aihwkit's ``PulseType.StochasticCompressed`` semantics).

    ``BL = min(ceil(lr max|x| max|d| / dw_min), bl_max)`` (at least 1; ``bl_max`` when
    ``bl_management`` is off), ``A = B = sqrt(lr / (dw_min BL))``; update management rescales
    ``A -> A sqrt(x_max / d_max)`` (rows, ``d``) and ``B -> B sqrt(d_max / x_max)`` (columns,
    ``x``). In each of the ``BL`` slots column ``j`` fires with probability ``clip(B |x_j|, 0,
    1)``, row ``i`` with ``clip(A |d_i|, 0, 1)``; each coincidence is one pulse of sign
    ``-sign(x_j d_i)``. ``BL`` is data dependent, so the slots run to the static ``bl_max`` and
    slots ``>= BL`` are masked out.

    Args:
        x: input vector ``(n_in,)`` (any units, dimensionless in practice).
        d: error vector ``(n_out,)``.
        lr: learning rate; the target update is ``-lr d x^T`` (weight units).
        dw_min: nominal weight change of one pulse (weight units).
        key: PRNG key for the bit streams.
        bl_max: maximum bit length (static; aihwkit ``desired_bl``, default 31).
        update_management: balance the row and column probabilities (aihwkit default on).
        bl_management: choose ``BL`` from the data (aihwkit ``update_bl_management``, default on).

    Returns:
        ``int32`` pulse counts ``(n_out, n_in)`` with ``|count| <= BL``.
    """
    x = jnp.asarray(x)
    d = jnp.asarray(d)
    dtype = jnp.result_type(x, d, jnp.asarray(lr), jnp.asarray(dw_min), jnp.float32)
    x = x.astype(dtype)
    d = d.astype(dtype)
    x_max = jnp.max(jnp.abs(x))
    d_max = jnp.max(jnp.abs(d))
    if bl_management:
        bl = jnp.ceil(lr * x_max * d_max / dw_min)
        bl = jnp.clip(bl, 1, bl_max)
    else:
        bl = jnp.asarray(bl_max, dtype)
    k = jnp.sqrt(lr / (dw_min * bl))
    a_scale, b_scale = k, k
    if update_management:
        ok = (x_max > 0) & (d_max > 0)
        ratio = jnp.sqrt(jnp.where(ok, x_max, 1.0) / jnp.where(ok, d_max, 1.0))
        a_scale = jnp.where(ok, k * ratio, k)
        b_scale = jnp.where(ok, k / ratio, k)
    p_x = jnp.clip(b_scale * jnp.abs(x), 0.0, 1.0)
    p_d = jnp.clip(a_scale * jnp.abs(d), 0.0, 1.0)

    kx, kd = jax.random.split(key)
    slots = (jnp.arange(bl_max) < bl)[:, None]
    bits_x = (jax.random.uniform(kx, (bl_max, x.shape[0]), dtype) < p_x) & slots
    bits_d = (jax.random.uniform(kd, (bl_max, d.shape[0]), dtype) < p_d) & slots
    coinc = jnp.einsum("ti,tj->ij", bits_d.astype(jnp.int32), bits_x.astype(jnp.int32))
    sign = -(jnp.sign(d)[:, None] * jnp.sign(x)[None, :]).astype(jnp.int32)
    return sign * coinc


def _pulses_for(scheme: Scheme, x, d, lr, dw_min, key, bl_max, update_management):
    if scheme == "stochastic":
        return stochastic_pulses(x, d, lr, dw_min, key, bl_max, update_management)
    if scheme == "deterministic":
        return deterministic_pulses(outer_update(x, d, lr), dw_min, bl_max)
    raise ValueError(f"unknown scheme {scheme!r}; choose 'stochastic' or 'deterministic'")


def _check_scheme(scheme):
    if scheme not in ("stochastic", "deterministic"):
        raise ValueError(f"unknown scheme {scheme!r}; choose 'stochastic' or 'deterministic'")


def _over_batch(step_one, carry, x, d, key):
    """Apply ``step_one(carry, x, d, key) -> carry`` to a sample or sequentially to a batch."""
    x = jnp.asarray(x)
    d = jnp.asarray(d)
    if x.ndim == 1:
        return step_one(carry, x, d, key)
    keys = jax.random.split(key, x.shape[0])

    def body(c, xdk):
        return step_one(c, *xdk), None

    carry, _ = jax.lax.scan(body, carry, (x, d, keys))
    return carry


# ====================================================================== plain pulsed SGD
class PulseCountState(eqx.Module):
    """Cumulative number of pulses each device has received (``int32``, ``|pulses|``)."""

    pulse_count: Array


class PulsedSGD(eqx.Module):
    """SGD written directly onto one device array with stochastic or deterministic pulses.

    Attributes:
        device: the device model (its ``dw_min`` sets the pulse granularity).
        scheme: ``"stochastic"`` (pulse coincidence) or ``"deterministic"`` (rounded counts).
        bl_max: maximum bit length / pulses per update and device.
        update_management: aihwkit update management for the stochastic scheme.
    """

    device: AbstractDevice
    scheme: Scheme = eqx.field(default="stochastic", static=True)
    bl_max: int = eqx.field(default=31, static=True)
    update_management: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_scheme(self.scheme)

    def init(self, shape: tuple[int, ...]) -> PulseCountState:
        """Zero pulse counters for a device array of ``shape``."""
        return PulseCountState(jnp.zeros(shape, jnp.int32))

    def step(
        self, state: PulseCountState, w: Array, dev: DeviceState, x: Array, d: Array,
        lr: ArrayLike, key: PRNGKeyArray,
    ) -> tuple[Array, PulseCountState]:
        """Apply the update ``-lr d x^T`` to the weights ``w`` (weight units) of devices ``dev``.

        Returns:
            ``(w_new, state)`` with the pulse counters advanced.
        """

        def one(carry, x, d, key):
            w, count = carry
            k_p, k_w = jax.random.split(key)
            n = _pulses_for(self.scheme, x, d, lr, self.device.dw_min, k_p, self.bl_max,
                            self.update_management)
            w = self.device.apply_pulses(w, dev, n, k_w)
            return w, count + jnp.abs(n)

        w, count = _over_batch(one, (w, state.pulse_count), x, d, key)
        return w, PulseCountState(count)


# ====================================================================== mixed precision
class MixedPrecisionState(eqx.Module):
    """Mixed-precision updater state.

    Attributes:
        chi: digital accumulator of not-yet-written update (weight units), device array shape.
        pulse_count: cumulative ``|pulses|`` per device (``int32``).
    """

    chi: Array
    pulse_count: Array


class MixedPrecision(eqx.Module):
    """Mixed-precision update (Nandakumar et al. 2020; aihwkit ``MixedPrecisionCompound``).

    The update is accumulated digitally, ``chi += dW``; then ``n = trunc(chi / dw_min)`` pulses
    are sent to each device and ``chi -= n dw_min`` (so ``|chi| < dw_min`` afterwards unless
    ``max_pulses`` capped the write). aihwkit sends the ``n`` through a pulse train; here they
    are applied directly as ``n`` pulses. Optional input quantisation as in aihwkit: ``x``
    (``d``) is rounded to ``n_x_bins // 2`` (``n_d_bins // 2``) levels of its abs-max.

    Attributes:
        dw_min: accumulator granularity, i.e. weight change of one pulse (weight units).
        max_pulses: optional cap on pulses per device and update.
        n_x_bins, n_d_bins: quantisation bins for ``x`` and ``d`` (0 = off).
    """

    dw_min: float = eqx.field(static=True)
    max_pulses: int | None = eqx.field(default=None, static=True)
    n_x_bins: int = eqx.field(default=0, static=True)
    n_d_bins: int = eqx.field(default=0, static=True)

    def init(self, shape: tuple[int, ...], dtype=None) -> MixedPrecisionState:
        """Zero accumulator and counters for a device array of ``shape``."""
        dtype = _float_dtype(dtype)
        return MixedPrecisionState(jnp.zeros(shape, dtype), jnp.zeros(shape, jnp.int32))

    def counts(self, state: MixedPrecisionState, dw: Array) -> tuple[MixedPrecisionState, Array]:
        """Accumulate ``dw`` (weight units) and return the pulses to send.

        Returns:
            ``(state, n)``: updated accumulator/counters and ``int32`` signed pulse counts
            ``trunc(chi / dw_min)`` (capped by ``max_pulses``).
        """
        chi = state.chi + dw
        n = jnp.trunc(chi / self.dw_min)
        if self.max_pulses is not None:
            n = jnp.clip(n, -self.max_pulses, self.max_pulses)
        chi = chi - n * self.dw_min
        n = n.astype(jnp.int32)
        return MixedPrecisionState(chi, state.pulse_count + jnp.abs(n)), n

    @staticmethod
    def _quantize(v, n_bins):
        if n_bins <= 0:
            return v
        half = n_bins // 2
        vmax = jnp.max(jnp.abs(v))
        width = jnp.where(vmax > 0, vmax / half, 1.0)
        return jnp.clip(jnp.round(v / width), -half, half) * width

    def step(
        self, state: MixedPrecisionState, device: AbstractDevice, w: Array, dev: DeviceState,
        x: Array, d: Array, lr: ArrayLike, key: PRNGKeyArray,
    ) -> tuple[Array, MixedPrecisionState]:
        """Accumulate ``-lr d x^T`` and write ``trunc(chi / dw_min)`` pulses onto ``w``.

        Args:
            state: accumulator state.
            device: device model of the array.
            w: weights (weight units), ``(n_out, n_in)``.
            dev: device state.
            x, d: input ``(n_in,)`` / error ``(n_out,)``, or batches of them.
            lr: learning rate.
            key: PRNG key (device cycle-to-cycle noise).

        Returns:
            ``(w_new, state)``.
        """

        def one(carry, x, d, key):
            w, st = carry
            dw = outer_update(self._quantize(x, self.n_x_bins), self._quantize(d, self.n_d_bins),
                              lr)
            st, n = self.counts(st, dw.astype(st.chi.dtype))
            w = device.apply_pulses(w, dev, n, key)
            return w, st

        return _over_batch(one, (w, state), x, d, key)


# ====================================================================== Tiki-Taka
class TikiTakaState(eqx.Module):
    """Tiki-Taka state (two device arrays and the transfer bookkeeping).

    Attributes:
        a, a_dev: fast (gradient) array ``A`` (weight units) and its device state.
        c, c_dev: slow array ``C`` (weight units) and its device state.
        buffer: TTv2 digital transfer buffer ``H`` (weight units; unused by TTv1).
        count: number of updates so far (``int32`` scalar).
        col: next column of ``A`` to transfer (``int32`` scalar).
        transfers: number of transfers so far (``int32`` scalar).
        pulses_a, pulses_c: cumulative ``|pulses|`` per device of ``A`` and ``C``.
    """

    a: Array
    a_dev: DeviceState
    c: Array
    c_dev: DeviceState
    buffer: Array
    count: Array
    col: Array
    transfers: Array
    pulses_a: Array
    pulses_c: Array


class TikiTaka(eqx.Module):
    """Tiki-Taka (Gokmen & Haensch 2020; aihwkit ``TransferCompound`` / TTv2
    ``BufferedTransferCompound``).

    Effective weights ``W = gamma A + C``. Each update sends the gradient pulses of
    ``-lr d x^T`` to ``A``. Every ``transfer_every`` updates column ``j`` of ``A`` is read
    (``v = A[:, j]`` plus optional Gaussian read noise) and ``j`` advances cyclically:

    - TTv1: ``C[:, j] += transfer_lr v`` is written with the same pulse scheme (stochastic: pulse
      coincidence with ``x = 1`` on column ``j``; deterministic: rounded counts).
    - TTv2 (``buffered=True``): ``H[:, j] += transfer_lr v``; ``n = clip(trunc(H / (thres_scale
      dw_min_C)), +-bl_max)`` pulses are sent to ``C[:, j]`` directly; ``H`` keeps the remainder
      ``H - (1 - momentum) n thres_scale dw_min_C`` (or, with ``forget_buffer``, ``momentum H``
      where ``n != 0``), as in aihwkit. (aihwkit writes the ``n`` through a pulse train; here they
      are exact.)

    Attributes:
        device_a, device_c: device models of ``A`` and ``C``.
        gamma: weight of ``A`` in ``W`` (aihwkit default 0).
        transfer_every: ``k``, updates between column transfers.
        transfer_lr: scale of the transfer (dimensionless; absolute, not scaled by ``lr``).
        buffered: TTv2 (True) or TTv1 (False).
        thres_scale: TTv2 threshold in units of ``device_c.dw_min``.
        momentum: TTv2 fraction of the buffer kept after a transfer.
        forget_buffer: TTv2 buffer reset rule (aihwkit default True).
        read_noise: std of Gaussian noise on the column read (weight units).
        scheme: ``"stochastic"`` or ``"deterministic"`` gradient (and TTv1 transfer) pulses.
        bl_max: maximum bit length / pulses per update.
        update_management: aihwkit update management for the stochastic scheme.
    """

    device_a: AbstractDevice
    device_c: AbstractDevice
    gamma: float = eqx.field(default=0.0, static=True)
    transfer_every: int = eqx.field(default=1, static=True)
    transfer_lr: float = eqx.field(default=1.0, static=True)
    buffered: bool = eqx.field(default=False, static=True)
    thres_scale: float = eqx.field(default=1.0, static=True)
    momentum: float = eqx.field(default=0.0, static=True)
    forget_buffer: bool = eqx.field(default=True, static=True)
    read_noise: float = eqx.field(default=0.0, static=True)
    scheme: Scheme = eqx.field(default="stochastic", static=True)
    bl_max: int = eqx.field(default=31, static=True)
    update_management: bool = eqx.field(default=True, static=True)

    def __check_init__(self):
        _check_scheme(self.scheme)
        if self.transfer_every < 1:
            raise ValueError("transfer_every must be >= 1")

    def init(
        self, key: PRNGKeyArray, shape: tuple[int, int], a0: Array | None = None,
        c0: Array | None = None, dtype=None,
    ) -> TikiTakaState:
        """Sample the two device arrays and set the initial weights.

        Args:
            key: PRNG key for the device-to-device parameters of ``A`` and ``C``.
            shape: ``(n_out, n_in)``.
            a0, c0: initial weights of ``A`` / ``C`` (weight units; default 0), clipped to bounds.
            dtype: float dtype (default: JAX's default float dtype).
        """
        k_a, k_c = jax.random.split(key)
        a_dev = self.device_a.sample(k_a, shape, dtype)
        c_dev = self.device_c.sample(k_c, shape, dtype)
        dt = a_dev.b_min.dtype
        a = jnp.zeros(shape, dt) if a0 is None else jnp.asarray(a0, dt)
        c = jnp.zeros(shape, dt) if c0 is None else jnp.asarray(c0, dt)
        zeros_i = jnp.zeros(shape, jnp.int32)
        return TikiTakaState(
            a=jnp.clip(a, a_dev.b_min, a_dev.b_max), a_dev=a_dev,
            c=jnp.clip(c, c_dev.b_min, c_dev.b_max), c_dev=c_dev,
            buffer=jnp.zeros(shape, dt), count=jnp.zeros((), jnp.int32),
            col=jnp.zeros((), jnp.int32), transfers=jnp.zeros((), jnp.int32),
            pulses_a=zeros_i, pulses_c=zeros_i,
        )

    def weights(self, state: TikiTakaState) -> Array:
        """Effective weights ``gamma A + C`` (weight units)."""
        return self.gamma * state.a + state.c

    def _transfer(self, state: TikiTakaState, key: PRNGKeyArray) -> TikiTakaState:
        k_read, k_pulse, k_write = jax.random.split(key, 3)
        j = state.col
        v = state.a[:, j]
        if self.read_noise > 0:
            v = v + self.read_noise * jax.random.normal(k_read, v.shape, v.dtype)
        dw_c = self.device_c.dw_min
        buffer = state.buffer
        if self.buffered:
            thres = self.thres_scale * dw_c
            h = buffer[:, j] + self.transfer_lr * v
            n = jnp.clip(jnp.trunc(h / thres), -self.bl_max, self.bl_max)
            if self.forget_buffer:
                h = jnp.where(n != 0, h * self.momentum, h)
            else:
                h = jnp.where(n != 0, h - (1 - self.momentum) * n * thres, h)
            buffer = buffer.at[:, j].set(h)
            n = n.astype(jnp.int32)
        elif self.scheme == "stochastic":
            n = stochastic_pulses(jnp.ones((1,), v.dtype), -v, self.transfer_lr, dw_c, k_pulse,
                                  self.bl_max, self.update_management)[:, 0]
        else:
            n = deterministic_pulses(self.transfer_lr * v, dw_c, self.bl_max)
        c_dev_col = jax.tree.map(lambda p: p[:, j], state.c_dev)
        c_col = self.device_c.apply_pulses(state.c[:, j], c_dev_col, n, k_write)
        n_in = state.a.shape[1]
        return eqx.tree_at(
            lambda s: (s.c, s.buffer, s.col, s.transfers, s.pulses_c),
            state,
            (state.c.at[:, j].set(c_col), buffer, (j + 1) % n_in, state.transfers + 1,
             state.pulses_c.at[:, j].add(jnp.abs(n))),
        )

    def step(
        self, state: TikiTakaState, x: Array, d: Array, lr: ArrayLike, key: PRNGKeyArray
    ) -> TikiTakaState:
        """One Tiki-Taka update with input ``x`` ``(n_in,)`` and error ``d`` ``(n_out,)`` (or a
        batch, applied sample by sample): gradient pulses of ``-lr d x^T`` onto ``A``, then a
        column transfer to ``C`` when the update counter reaches a multiple of
        ``transfer_every``."""

        def one(st, x, d, key):
            k_p, k_w, k_t = jax.random.split(key, 3)
            n = _pulses_for(self.scheme, x, d, lr, self.device_a.dw_min, k_p, self.bl_max,
                            self.update_management)
            a = self.device_a.apply_pulses(st.a, st.a_dev, n, k_w)
            count = st.count + 1
            st = eqx.tree_at(lambda s: (s.a, s.count, s.pulses_a), st,
                             (a, count, st.pulses_a + jnp.abs(n)))
            return jax.lax.cond(count % self.transfer_every == 0,
                                lambda s: self._transfer(s, k_t), lambda s: s, st)

        return _over_batch(one, state, x, d, key)
