"""Pulsed resistive-device models with the semantics of IBM aihwkit's pulsed devices (the NeuroSim
conductance-curve model is :mod:`analogeq.devices.neurosim`).

Every model maps a *weight* ``w`` (model units, see :mod:`analogeq.devices`) and a number of
programming pulses to a new weight. One "up" pulse increases ``w``. All classes are immutable
``equinox.Module``\\ s whose scalar parameters are static (hashable, compile-time constants);
everything that varies from device to device lives in a :class:`DeviceState` pytree of arrays
drawn once per chip by :meth:`AbstractDevice.sample`. Randomness is always an explicit
``jax.random`` key; all functions are pure and work under ``jit`` / ``vmap`` in float32 or float64
(the dtype follows the weights).

aihwkit semantics (Rasch et al. 2021, arXiv:2104.02184), per device, ``xi ~ N(0, 1)``, one draw
per quantity:

- bounds ``b_max = |w_max (1 + w_max_dtod xi)|``, ``b_min = -|w_min (1 + w_min_dtod xi)|``;
- gain ``g = 1 + dw_min_dtod xi``, ``r = up_down_dtod xi'``;
- ``D+ = |dw_min (g + r + min(up_down, 0))|``, ``D- = |dw_min (g - r - max(up_down, 0))|``;
- each pulse changes ``w`` by the model's step (table below) times ``(1 + dw_min_std xi)`` with a
  fresh ``xi`` per pulse, and ``w`` is clipped to ``[b_min, b_max]`` after every pulse.

=================  =====================================  ======================================
model              up step                                down step (magnitude)
=================  =====================================  ======================================
ConstantStep       ``D+``                                 ``D-``
LinearStep         ``D+ (1 - gamma_up w / w_max)``        ``D- (1 - gamma_down w / w_min)``
SoftBounds         ``D+ (1 - w / b_max)``                 ``D- (1 - w / b_min)``
ExponentialStep    ``D+ max(1 - A_up e^{gamma_up z}, 0)`` ``D- max(1 - A_down e^{-gamma_dn z}, 0)``
PowerStep          ``D+ ((b_max - w) / R)^gamma``         ``D- ((w - b_min) / R)^gamma``
PiecewiseStep      ``D+ v_up(w)``                         ``D- v_down(w)``
=================  =====================================  ======================================

with ``z = 2 a w / (b_max - b_min) + b``, ``gamma_dn = gamma_down`` and ``R = b_max - b_min``.
"""

from __future__ import annotations

import abc
import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

__all__ = [
    "AbstractDevice",
    "AbstractPulsedDevice",
    "ConstantStep",
    "DeviceState",
    "ExponentialStep",
    "LinearStep",
    "PiecewiseStep",
    "PowerStep",
    "SoftBounds",
]


@eqx.filter_jit
def _jit_call(fn, *args):
    """``fn(*args)`` compiled (array arguments traced, everything else static), so that eager
    calls of the pulse loops do not retrace; inside an outer ``jit`` it is simply inlined."""
    return fn(*args)


def _scan_signs(w0, signs, step):
    """Weights after each write of a pulse-sign sequence: ``step(w, t, sign) -> w``."""

    def body(w, ts):
        w = step(w, *ts)
        return w, w

    signs = jnp.asarray(signs)
    return jax.lax.scan(body, jnp.asarray(w0), (jnp.arange(signs.shape[0]), signs))[1]


def _float_dtype(dtype=None):
    """``dtype`` if given, else the default float dtype (float64 when x64 is enabled)."""
    if dtype is not None:
        return jnp.dtype(dtype)
    return jnp.zeros(()).dtype


class DeviceState(eqx.Module):
    """Per-device parameters drawn once per chip (all arrays of the weight array's shape).

    Attributes:
        b_min: lower hard bound of each device (weight units, <= 0).
        b_max: upper hard bound of each device (weight units, >= 0).
        d_up: nominal up-step size ``D+`` (weight units per pulse, >= 0).
        d_down: nominal down-step size ``D-`` (weight units per pulse, >= 0).
        params: model-specific per-device arrays (e.g. ``gamma_up`` for :class:`LinearStep`,
            ``a_ltp`` for :class:`NeuroSimDevice`); empty for models without any.
    """

    b_min: Array
    b_max: Array
    d_up: Array
    d_down: Array
    params: dict[str, Array] = eqx.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the device array."""
        return self.b_min.shape


class AbstractDevice(eqx.Module):
    """Interface shared by all pulsed device models.

    Subclasses provide :meth:`sample`, :meth:`step_up`, :meth:`step_down`,
    :meth:`apply_pulses` and :meth:`trace`, and a ``dw_min`` attribute: the nominal weight change
    of one pulse (weight units), used by the update schemes to convert updates into pulse counts.
    """

    @abc.abstractmethod
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None) -> DeviceState:
        """Draw the device-to-device parameters of an array of devices of ``shape``."""

    @abc.abstractmethod
    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Deterministic weight increase of one up pulse at weight ``w`` (weight units)."""

    @abc.abstractmethod
    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Deterministic weight decrease (magnitude) of one down pulse at ``w`` (weight units)."""

    @abc.abstractmethod
    def apply_pulses(
        self, w: Array, st: DeviceState, n: Array, key: PRNGKeyArray, max_pulses: int | None = None
    ) -> Array:
        """Apply ``n`` (signed integer pulse counts, positive = up) to the weights ``w``."""

    @abc.abstractmethod
    def trace(self, w0: Array, st: DeviceState, signs: Array, key: PRNGKeyArray) -> Array:
        """Weights after each pulse of the sequence ``signs`` (shape ``(T,)``, entries -1/0/+1)."""


class AbstractPulsedDevice(AbstractDevice):
    """aihwkit-style pulsed device: per-device bounds and step sizes, multiplicative
    cycle-to-cycle noise, hard clipping after every pulse.

    Static parameters (aihwkit "PulsedDevice" generic defaults, Rasch et al. 2021):

    Attributes:
        dw_min: mean step size of one pulse at ``w = 0`` (weight units).
        dw_min_dtod: device-to-device spread of the step size (relative).
        dw_min_std: cycle-to-cycle spread of each pulse (relative, multiplicative).
        w_max: mean upper bound (weight units, >= 0).
        w_min: mean lower bound (weight units, <= 0).
        w_max_dtod: device-to-device spread of the upper bound (relative).
        w_min_dtod: device-to-device spread of the lower bound (relative).
        up_down: systematic up/down asymmetry (``> 0`` shrinks the down step).
        up_down_dtod: device-to-device spread of the up/down asymmetry (relative to ``dw_min``).
    """

    dw_min: float = eqx.field(default=0.001, static=True)
    dw_min_dtod: float = eqx.field(default=0.3, static=True)
    dw_min_std: float = eqx.field(default=0.3, static=True)
    w_max: float = eqx.field(default=0.6, static=True)
    w_min: float = eqx.field(default=-0.6, static=True)
    w_max_dtod: float = eqx.field(default=0.3, static=True)
    w_min_dtod: float = eqx.field(default=0.3, static=True)
    up_down: float = eqx.field(default=0.0, static=True)
    up_down_dtod: float = eqx.field(default=0.01, static=True)

    # ------------------------------------------------------------------ sampling
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None) -> DeviceState:
        """Draw device-to-device parameters for an array of devices.

        Args:
            key: PRNG key; the same key gives the same chip.
            shape: shape of the device (weight) array.
            dtype: float dtype of the state (default: JAX's default float dtype).

        Returns:
            :class:`DeviceState` with bounds (weight units), step sizes ``D+``/``D-`` (weight
            units per pulse) and model-specific ``params``.
        """
        dtype = _float_dtype(dtype)
        k_max, k_min, k_gain, k_r, k_extra = jax.random.split(key, 5)
        normal = functools.partial(jax.random.normal, shape=shape, dtype=dtype)
        b_max = jnp.abs(self.w_max * (1 + self.w_max_dtod * normal(k_max)))
        b_min = -jnp.abs(self.w_min * (1 + self.w_min_dtod * normal(k_min)))
        gain = 1 + self.dw_min_dtod * normal(k_gain)
        r = self.up_down_dtod * normal(k_r)
        d_up = jnp.abs(self.dw_min * (gain + r + min(self.up_down, 0.0)))
        d_down = jnp.abs(self.dw_min * (gain - r - max(self.up_down, 0.0)))
        params = self._sample_params(k_extra, shape, dtype)
        return DeviceState(b_min=b_min, b_max=b_max, d_up=d_up, d_down=d_down, params=params)

    def _sample_params(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype) -> dict[str, Array]:
        """Model-specific per-device parameters (none by default)."""
        del key, shape, dtype
        return {}

    # ------------------------------------------------------------------ one pulse
    def _increment(self, w: Array, st: DeviceState, up: Array, xi: Array) -> Array:
        """Signed weight change of one pulse including cycle-to-cycle noise ``xi`` (N(0,1))."""
        step = jnp.where(up, self.step_up(w, st), -self.step_down(w, st))
        return step * (1 + self.dw_min_std * xi)

    def _pulse(self, w: Array, st: DeviceState, up: Array, xi: Array) -> Array:
        """One pulse (direction ``up``), clipped to the device's bounds."""
        return jnp.clip(w + self._increment(w, st, up, xi), st.b_min, st.b_max)

    def _noise(self, key: PRNGKeyArray, i, shape, dtype) -> Array:
        if self.dw_min_std == 0:
            return jnp.zeros(shape, dtype)
        return jax.random.normal(jax.random.fold_in(key, i), shape, dtype)

    # ------------------------------------------------------------------ many pulses
    def apply_pulses(
        self, w: Array, st: DeviceState, n: Array, key: PRNGKeyArray, max_pulses: int | None = None
    ) -> Array:
        """Apply signed pulse counts, one pulse at a time (compiled with ``eqx.filter_jit``).

        Device ``k`` receives ``|n_k|`` pulses in direction ``sign(n_k)``; each is multiplied by
        its own ``(1 + dw_min_std xi)`` and followed by clipping to ``[b_min, b_max]``. Pulse
        ``i`` (0-based) of every device uses the noise ``normal(fold_in(key, i))``, so applying
        ``n`` pulses equals the last entry of :meth:`trace` with ``n`` equal signs.

        Args:
            w: weights (weight units), any shape matching ``st``.
            st: device state from :meth:`sample`.
            n: signed integer pulse counts per device (positive = up), shape of ``w``.
            key: PRNG key for the cycle-to-cycle noise.
            max_pulses: optional static upper bound on ``|n|``; the loop then has a fixed
                trip count (``scan``-like). Counts beyond it are ignored. Default: loop to
                ``max |n|`` (a ``while_loop``).

        Returns:
            The new weights (weight units), same shape and dtype as ``w``.
        """
        return _jit_call(type(self)._apply_pulses, self, w, st, n, key, max_pulses)

    def _apply_pulses(self, w, st, n, key, max_pulses):
        w = jnp.asarray(w)
        n = jnp.asarray(n)
        up = n > 0
        m = jnp.abs(n)

        def body(i, w):
            xi = self._noise(key, i, w.shape, w.dtype)
            return jnp.where(i < m, self._pulse(w, st, up, xi), w)

        upper = jnp.max(m, initial=0) if max_pulses is None else max_pulses
        return jax.lax.fori_loop(0, upper, body, w)

    def trace(self, w0: Array, st: DeviceState, signs: Array, key: PRNGKeyArray) -> Array:
        """Weight after each pulse of a pulse sequence (for tests and plots).

        Args:
            w0: initial weights (weight units), shape of ``st``.
            st: device state.
            signs: integer array ``(T,)`` of -1 (down), 0 (no pulse) or +1 (up), applied to all
                devices alike.
            key: PRNG key; pulse ``t`` uses ``normal(fold_in(key, t))``.

        Returns:
            Array ``(T, *w0.shape)``: the weights after pulses ``1..T`` (weight units).
        """
        return _jit_call(type(self)._trace, self, w0, st, signs, key)

    def _trace(self, w0, st, signs, key):
        def step(w, t, s):
            xi = self._noise(key, t, w.shape, w.dtype)
            return jnp.where(s != 0, self._pulse(w, st, s > 0, xi), w)

        return _scan_signs(w0, signs, step)


# ====================================================================== concrete aihwkit models
class ConstantStep(AbstractPulsedDevice):
    """Constant step ``D+`` up / ``D-`` down, hard bounds (aihwkit ``ConstantStepDevice``)."""

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+`` (weight units), independent of ``w``."""
        return jnp.broadcast_to(st.d_up, jnp.shape(w)).astype(jnp.result_type(w, st.d_up))

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D-`` (weight units), independent of ``w``."""
        return jnp.broadcast_to(st.d_down, jnp.shape(w)).astype(jnp.result_type(w, st.d_down))


class LinearStep(AbstractPulsedDevice):
    """Step size linear in ``w`` (aihwkit ``LinearStepDevice``).

    Up: ``D+ (1 - gamma_up w / w_ref_up)``, down: ``D- (1 - gamma_down w / w_ref_down)`` where the
    references are the mean bounds ``w_max`` / ``w_min`` (``mean_bound_reference=True``, the
    aihwkit default, Rasch et al. 2021) or the device bounds ``b_max`` / ``b_min``.
    Per device ``gamma = |gamma + gamma_dtod xi|`` (aihwkit ``allow_increasing=False``).
    With ``mult_noise`` (default) the cycle-to-cycle factor multiplies the whole step; otherwise
    only the constant part ``D``. As in aihwkit the step is not clamped at zero.

    Attributes:
        gamma_up, gamma_down: relative step decrease at the reference bound (dimensionless).
        gamma_up_dtod, gamma_down_dtod: device-to-device spread of gamma (absolute).
        mean_bound_reference: divide by ``w_max``/``w_min`` (True) or ``b_max``/``b_min``.
        mult_noise: multiplicative (True) or additive cycle-to-cycle noise.
    """

    gamma_up: float = eqx.field(default=0.0, static=True)
    gamma_down: float = eqx.field(default=0.0, static=True)
    gamma_up_dtod: float = eqx.field(default=0.05, static=True)
    gamma_down_dtod: float = eqx.field(default=0.05, static=True)
    mean_bound_reference: bool = eqx.field(default=True, static=True)
    mult_noise: bool = eqx.field(default=True, static=True)

    def _sample_params(self, key, shape, dtype):
        k_up, k_down = jax.random.split(key)
        gu = jnp.abs(self.gamma_up + self.gamma_up_dtod * jax.random.normal(k_up, shape, dtype))
        gd = jnp.abs(
            self.gamma_down + self.gamma_down_dtod * jax.random.normal(k_down, shape, dtype)
        )
        return {"gamma_up": gu, "gamma_down": gd}

    def _refs(self, st: DeviceState):
        if self.mean_bound_reference:
            return self.w_max, self.w_min
        return st.b_max, st.b_min

    def _slopes(self, st: DeviceState):
        ref_up, ref_down = self._refs(st)
        slope_up = jnp.where(ref_up != 0, -st.params["gamma_up"] * st.d_up / _nz(ref_up), 0.0)
        slope_down = jnp.where(
            ref_down != 0, -st.params["gamma_down"] * st.d_down / _nz(ref_down), 0.0
        )
        return slope_up, slope_down

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+ (1 - gamma_up w / w_max)`` (weight units)."""
        slope_up, _ = self._slopes(st)
        return slope_up * w + st.d_up

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D- (1 - gamma_down w / w_min)`` (weight units)."""
        _, slope_down = self._slopes(st)
        return slope_down * w + st.d_down

    def _increment(self, w, st, up, xi):
        if self.mult_noise:
            return super()._increment(w, st, up, xi)
        slope_up, slope_down = self._slopes(st)
        noise = 1 + self.dw_min_std * xi
        return jnp.where(up, slope_up * w + st.d_up * noise, -(slope_down * w + st.d_down * noise))


def _nz(x):
    """``x`` with zeros replaced by ones (to keep ``where`` branches finite)."""
    return jnp.where(jnp.asarray(x) == 0, 1.0, x)


class SoftBounds(AbstractPulsedDevice):
    """Soft bounds: step vanishes linearly at the device's bounds (aihwkit ``SoftBoundsDevice``).

    Up ``D+ (1 - w / b_max)``, down ``D- (1 - w / b_min)``, multiplicative noise.
    """

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+ (1 - w / b_max)`` (weight units)."""
        return jnp.where(st.b_max != 0, st.d_up * (1 - w / _nz(st.b_max)), 0.0)

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D- (1 - w / b_min)`` (weight units)."""
        return jnp.where(st.b_min != 0, st.d_down * (1 - w / _nz(st.b_min)), 0.0)


class ExponentialStep(AbstractPulsedDevice):
    """Exponential step (aihwkit ``ExpStepDevice``, CMOS-like).

    Up ``D+ max(1 - A_up e^{gamma_up z}, 0)``, down ``D- max(1 - A_down e^{-gamma_down z}, 0)``
    with ``z = 2 a w / (b_max - b_min) + b``. Defaults are aihwkit's ``ExpStepDevice`` fit
    (Rasch et al. 2021).
    """

    A_up: float = eqx.field(default=0.00081, static=True)
    A_down: float = eqx.field(default=0.36833, static=True)
    gamma_up: float = eqx.field(default=12.44625, static=True)
    gamma_down: float = eqx.field(default=12.78785, static=True)
    a: float = eqx.field(default=0.244, static=True)
    b: float = eqx.field(default=0.2425, static=True)

    def _z(self, w, st):
        return 2 * self.a * w / _nz(st.b_max - st.b_min) + self.b

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+ max(1 - A_up exp(gamma_up z), 0)`` (weight units)."""
        y = jnp.maximum(1 - self.A_up * jnp.exp(self.gamma_up * self._z(w, st)), 0.0)
        return jnp.where(st.b_max > st.b_min, st.d_up * y, 0.0)

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D- max(1 - A_down exp(-gamma_down z), 0)`` (weight units)."""
        y = jnp.maximum(1 - self.A_down * jnp.exp(-self.gamma_down * self._z(w, st)), 0.0)
        return jnp.where(st.b_max > st.b_min, st.d_down * y, 0.0)


class PowerStep(AbstractPulsedDevice):
    """Power-law step (aihwkit ``PowStepDevice``).

    Up ``D+ ((b_max - w) / R)^gamma_up``, down ``D- ((w - b_min) / R)^gamma_down`` with
    ``R = b_max - b_min``. Per device (as aihwkit) ``gamma_up = |(min(ud,0) + g + r) gamma|``,
    ``gamma_down = |(-max(ud,0) + g - r) gamma|`` with ``g = 1 + gamma_dtod xi``,
    ``r = gamma_up_down_dtod xi'``, ``ud = gamma_up_down``.

    Attributes:
        gamma: exponent (dimensionless; 1 = soft bounds normalised to the range).
        gamma_dtod: device-to-device spread of the exponent (relative; aihwkit default 0.1).
        gamma_up_down: systematic up/down difference of the exponent.
        gamma_up_down_dtod: device-to-device spread of that difference.
    """

    gamma: float = eqx.field(default=1.0, static=True)
    gamma_dtod: float = eqx.field(default=0.1, static=True)
    gamma_up_down: float = eqx.field(default=0.0, static=True)
    gamma_up_down_dtod: float = eqx.field(default=0.0, static=True)

    def _sample_params(self, key, shape, dtype):
        k_g, k_r = jax.random.split(key)
        gain = 1 + self.gamma_dtod * jax.random.normal(k_g, shape, dtype)
        r = self.gamma_up_down_dtod * jax.random.normal(k_r, shape, dtype)
        ud = self.gamma_up_down
        gu = jnp.abs((min(ud, 0.0) + gain + r) * self.gamma)
        gd = jnp.abs((-max(ud, 0.0) + gain - r) * self.gamma)
        return {"gamma_up": gu, "gamma_down": gd}

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+ ((b_max - w) / R)^gamma_up`` (weight units)."""
        rng = st.b_max - st.b_min
        x = jnp.maximum((st.b_max - w) / _nz(rng), 0.0)
        return jnp.where(rng > 0, st.d_up * x ** st.params["gamma_up"], 0.0)

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D- ((w - b_min) / R)^gamma_down`` (weight units)."""
        rng = st.b_max - st.b_min
        x = jnp.maximum((w - st.b_min) / _nz(rng), 0.0)
        return jnp.where(rng > 0, st.d_down * x ** st.params["gamma_down"], 0.0)


class PiecewiseStep(AbstractPulsedDevice):
    """Piecewise-linear step profile (aihwkit ``PiecewiseStepDevice``).

    Node values ``v_up`` / ``v_down`` (relative step sizes, dimensionless) are spaced evenly over
    each device's ``[b_min, b_max]`` and linearly interpolated; up step ``D+ v_up(w)``, down step
    ``D- v_down(w)``. With a single node the value is a constant factor.
    """

    v_up: tuple[float, ...] = eqx.field(default=(1.0, 1.0), static=True)
    v_down: tuple[float, ...] = eqx.field(default=(1.0, 1.0), static=True)

    def __check_init__(self):
        if len(self.v_up) != len(self.v_down) or len(self.v_up) < 1:
            raise ValueError("v_up and v_down need the same (non-zero) number of nodes")

    def _interp(self, nodes, w, st):
        nodes_arr = jnp.asarray(nodes, dtype=jnp.result_type(w, st.b_min))
        n_sec = len(nodes) - 1
        if n_sec == 0:
            return jnp.broadcast_to(nodes_arr[0], jnp.shape(w))
        rng = st.b_max - st.b_min
        ws = jnp.maximum((w - st.b_min) / _nz(rng) * n_sec, 0.0)
        idx = jnp.minimum(jnp.floor(ws), n_sec - 1).astype(jnp.int32)
        t = jnp.minimum(ws - idx, 1.0)
        v = (1 - t) * nodes_arr[idx] + t * nodes_arr[idx + 1]
        return jnp.where(rng > 0, v, nodes_arr[0])

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Up step ``D+ v_up(w)`` (weight units)."""
        return st.d_up * self._interp(self.v_up, w, st)

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Down step magnitude ``D- v_down(w)`` (weight units)."""
        return st.d_down * self._interp(self.v_down, w, st)
