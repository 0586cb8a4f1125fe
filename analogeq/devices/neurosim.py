"""The NeuroSim conductance-curve device model (Ag:a-Si synapse of Jo et al. 2010; curve and
nonlinearity labels of NeuroSim, Chen, Peng & Yu 2018), with the same interface as the aihwkit-style
pulsed devices of :mod:`analogeq.devices.pulsed`."""

from __future__ import annotations

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, PRNGKeyArray

from analogeq.devices.pulsed import _jit_call, _scan_signs, _float_dtype, DeviceState, AbstractDevice

__all__ = ["NeuroSimDevice", "a_to_nonlinearity", "nonlinearity_to_a"]


_NL_SCALE = 0.07 * math.sqrt(2.0)  # max deviation (fraction of range) per unit of NL label
_NL_MAX = 1.0 / _NL_SCALE - 1e-9  # labels beyond this (about 10.1) cannot be reached
_NL_SMALL = 1e-3  # below this |NL| the asymptotic a = 1 / (8 * 0.07 sqrt(2) |NL|) is exact


def _max_deviation(a):
    """Max of ``g(p) - p`` over ``p in [0, 1]`` for ``g(p) = (1 - e^{-p/a}) / (1 - e^{-1/a})``,
    ``a > 0`` (float64 NumPy, written to avoid cancellation)."""
    a = np.asarray(a, np.float64)
    u = 1.0 / a
    one_minus_s = (u + np.expm1(-u)) / u  # s = a (1 - e^{-1/a})
    s = -np.expm1(-u) / u
    t = one_minus_s / s
    return a * (t - np.log1p(t))


def nonlinearity_to_a(nl: ArrayLike) -> np.ndarray:
    """Normalised NeuroSim shape parameter ``a = A / P_max`` for a nonlinearity label ``NL``.

    Definition used (it reproduces NeuroSim's ``getParamA`` table in ``formula.cpp``, labels
    0.01..9 in steps of 0.01, to the table's 6 printed digits): with the normalised curve
    ``g(p) = (1 - e^{-p/a}) / (1 - e^{-1/a})`` (``p = P / P_max``, ``g = (G - G_min) /
    (G_max - G_min)``), the label is the largest deviation from the straight line in units of
    ``0.07 sqrt(2)`` (i.e. the largest perpendicular distance to the diagonal in units of 0.07)::

        |NL| = max_p |g(p) - p| / (0.07 sqrt(2)),      sign(a) = sign(NL).

    ``a`` is found by bisection in ``log a`` (float64). For ``|NL| < 1e-3`` the asymptotic form
    ``a = 1 / (8 * 0.07 sqrt(2) |NL|)`` is used; ``NL = 0`` gives ``a = inf`` (linear device).
    Unlike NeuroSim the label is not truncated to the 0.01 grid.

    Args:
        nl: nonlinearity label(s) (dimensionless, ``|NL| <= 10.1``).

    Returns:
        NumPy float64 array of ``a`` (dimensionless; multiply by ``P_max`` for ``A`` in pulses).
    """
    nl = np.asarray(nl, np.float64)
    mag = np.abs(nl)
    if np.any(mag > _NL_MAX):
        raise ValueError(f"|NL| must be below {_NL_MAX:.4f}")
    target = np.maximum(mag, _NL_SMALL) * _NL_SCALE
    lo = np.full(nl.shape, np.log(1e-7))
    hi = np.full(nl.shape, np.log(2e3))
    for _ in range(120):
        mid = 0.5 * (lo + hi)
        too_curved = _max_deviation(np.exp(mid)) > target
        lo = np.where(too_curved, mid, lo)
        hi = np.where(too_curved, hi, mid)
    a = np.exp(0.5 * (lo + hi))
    with np.errstate(divide="ignore"):
        a = np.where(mag < _NL_SMALL, 1.0 / (8.0 * _NL_SCALE * mag), a)
    return np.where(nl < 0, -a, a)


def a_to_nonlinearity(a: ArrayLike) -> np.ndarray:
    """Inverse of :func:`nonlinearity_to_a`: the NeuroSim label of a normalised ``a = A/P_max``
    (dimensionless), ``NL = sign(a) max_p |g(p) - p| / (0.07 sqrt(2))``."""
    a = np.asarray(a, np.float64)
    return np.sign(a) * _max_deviation(np.abs(a)) / _NL_SCALE


@functools.lru_cache(maxsize=1)
def _nl_grid():
    """Log-log table of ``a(|NL|)`` for per-device labels (device-to-device variation)."""
    nl = np.geomspace(_NL_SMALL, 10.0, 4001)
    return np.log(nl), np.log(nonlinearity_to_a(nl))


def _nl_to_a_jax(nl: Array) -> Array:
    """Traceable ``a(NL)`` by log-log interpolation of :func:`_nl_grid` (relative error < 1e-6)."""
    log_nl, log_a = _nl_grid()
    mag = jnp.clip(jnp.abs(nl), 1e-12, 10.0)
    a_tab = jnp.exp(jnp.interp(jnp.log(mag), jnp.asarray(log_nl, nl.dtype),
                               jnp.asarray(log_a, nl.dtype)))
    a = jnp.where(mag < _NL_SMALL, 1.0 / (8.0 * _NL_SCALE * mag), a_tab)
    return jnp.where(nl < 0, -a, a)


_A_LINEAR = 1e9  # |a| used for NL = 0 (a linear curve to ~1e-9)


def _curve(p, a, p_max):
    """Normalised conductance after ``p`` pulses (``0 <= p <= p_max``) on the curve with
    normalised shape ``a`` (``A = a P_max`` pulses): ``expm1(-p/A) / expm1(-P_max/A)``.
    For ``a < 0`` the mirror identity ``g_{-|a|}(p) = 1 - g_{|a|}(P_max - p)`` keeps all
    exponentials decaying (no overflow in float32)."""
    big_a = jnp.abs(a) * p_max
    den = jnp.expm1(-p_max / big_a)
    pos = jnp.expm1(-p / big_a) / den
    neg = 1 - jnp.expm1(-(p_max - p) / big_a) / den
    return jnp.where(a >= 0, pos, neg)


def _inverse_curve(g, a, p_max):
    """Pulse-equivalent position (pulses) of the normalised conductance ``g`` on the curve
    (inverse of :func:`_curve`; may be +-inf at the ends, callers clip to ``[0, P_max]``)."""
    big_a = jnp.abs(a) * p_max
    e = jnp.expm1(-p_max / big_a)
    pos = -big_a * jnp.log1p(g * e)
    neg = p_max + big_a * jnp.log1p((1 - g) * e)
    return jnp.where(a >= 0, pos, neg)


class NeuroSimDevice(AbstractDevice):
    """NeuroSim (MLP+NeuroSim V3.0) analytic synapse: Ag:a-Si by default.

    Conductance vs pulse number (``P`` in pulses, ``G`` in siemens)::

        G(P) = B (1 - e^{-P/A}) + G_min,    B = (G_max - G_min) / (1 - e^{-P_max/A}),

    with separate curves for potentiation (``NL_LTP``, ``P_max = 97``) and depression
    (``NL_LTD``, ``P_max = 100``). ``A = a(NL) P_max`` where ``a(NL)`` is
    :func:`nonlinearity_to_a` (a numerical solve that reproduces NeuroSim's ``getParamA``
    table; see there for the label definition). A positive label gives a concave (saturating)
    curve, a negative label a convex one; NeuroSim's default ``NL_LTD = -4.88`` thus makes
    depression steps largest near ``G_max``.

    An update of ``n`` pulses (sign = direction) first inverts the curve of that direction at the
    present conductance (the pulse-equivalent position ``P0``), moves to ``P0 + n`` (clipped to
    ``[0, P_max]``), then adds cycle-to-cycle noise ``N(0, (c2c_std (G_max - G_min))^2 |n|)``
    once per update (NeuroSim ``RealDevice::Write``) and clips to ``[G_min, G_max]``.
    Device-to-device variation (NeuroSim ``sigmaDtoD``) is an additive spread ``nl_dtod`` of the
    labels.

    The state is the weight (conductance) itself, so a curve step must be representable in the
    weight dtype: for strongly convex curves (e.g. ``NL_LTP <= -8``) the first steps from
    ``G_min`` are below float32 resolution and the device stays at ``G_min``; use float64 there.

    Weight convention: the device's conductance range maps linearly onto the weight range,
    ``w = w_min + (w_max - w_min) (G - G_min) / (G_max - G_min)``; NeuroSim's MLP uses
    ``[-1, 1]`` (the defaults here).

    Attributes:
        g_min, g_max: conductance range (S); defaults 3.08 nS / 38.5 nS (MLP+NeuroSim V3.0, Chen et al. 2018).
        nl_ltp, nl_ltd: nonlinearity labels (dimensionless); defaults +2.40 / -4.88.
        p_max_ltp, p_max_ltd: number of pulses spanning the range (97 / 100).
        c2c_std: cycle-to-cycle std as a fraction of the range per sqrt(pulse) (0.035).
        nl_dtod: device-to-device std of the labels (absolute; NeuroSim default 0).
        w_min, w_max: weight range mapped onto ``[g_min, g_max]`` (weight units).
    """

    g_min: float = eqx.field(default=3.08e-9, static=True)
    g_max: float = eqx.field(default=38.5e-9, static=True)
    nl_ltp: float = eqx.field(default=2.40, static=True)
    nl_ltd: float = eqx.field(default=-4.88, static=True)
    p_max_ltp: int = eqx.field(default=97, static=True)
    p_max_ltd: int = eqx.field(default=100, static=True)
    c2c_std: float = eqx.field(default=0.035, static=True)
    nl_dtod: float = eqx.field(default=0.0, static=True)
    w_min: float = eqx.field(default=-1.0, static=True)
    w_max: float = eqx.field(default=1.0, static=True)

    def __check_init__(self):
        if not self.g_max > self.g_min >= 0:
            raise ValueError("need g_max > g_min >= 0")
        if not self.w_max > self.w_min:
            raise ValueError("need w_max > w_min")

    @property
    def dw_min(self) -> float:
        """Mean weight change of one LTP pulse, ``(w_max - w_min) / p_max_ltp`` (weight units)."""
        return (self.w_max - self.w_min) / self.p_max_ltp

    # ------------------------------------------------------------------ conversions
    def conductance(self, w: Array) -> Array:
        """Conductance (S) of a device holding weight ``w`` (weight units)."""
        return self.g_min + (self.g_max - self.g_min) * self._g(w)

    def weight(self, g: Array) -> Array:
        """Weight (weight units) of a device with conductance ``g`` (S)."""
        return self._w((g - self.g_min) / (self.g_max - self.g_min))

    def _g(self, w):
        return (w - self.w_min) / (self.w_max - self.w_min)

    def _w(self, g):
        return self.w_min + (self.w_max - self.w_min) * g

    def pulses_for_update(self, dw: Array) -> Array:
        """NeuroSim's pulse count for a desired weight change ``dw`` (weight units):
        ``round(dw / (w_max - w_min) * P_max)`` with ``P_max`` of the update's direction
        (``int32``, positive = LTP)."""
        frac = dw / (self.w_max - self.w_min)
        p_max = jnp.where(dw > 0, self.p_max_ltp, self.p_max_ltd)
        return jnp.round(frac * p_max).astype(jnp.int32)

    # ------------------------------------------------------------------ sampling
    def sample(self, key: PRNGKeyArray, shape: tuple[int, ...], dtype=None) -> DeviceState:
        """Per-device state: weight bounds (weight units), nominal mean steps ``D+ = range /
        P_max_ltp`` and ``D- = range / P_max_ltd`` (weight units per pulse, informational),
        and ``params`` ``a_ltp``/``a_ltd`` (normalised shape parameters ``A / P_max``).

        Args:
            key: PRNG key (used only when ``nl_dtod > 0``).
            shape: device array shape.
            dtype: float dtype (default: JAX's default float dtype).
        """
        dtype = _float_dtype(dtype)
        full = functools.partial(jnp.full, shape, dtype=dtype)
        rng = self.w_max - self.w_min
        if self.nl_dtod > 0:
            k1, k2 = jax.random.split(key)
            nl_up = self.nl_ltp + self.nl_dtod * jax.random.normal(k1, shape, dtype)
            nl_dn = self.nl_ltd + self.nl_dtod * jax.random.normal(k2, shape, dtype)
            a_ltp = _nl_to_a_jax(nl_up)
            a_ltd = _nl_to_a_jax(nl_dn)
        else:
            a_ltp = full(self._a_static(self.nl_ltp))
            a_ltd = full(self._a_static(self.nl_ltd))
        a_ltp = jnp.clip(a_ltp, -_A_LINEAR, _A_LINEAR)
        a_ltd = jnp.clip(a_ltd, -_A_LINEAR, _A_LINEAR)
        return DeviceState(
            b_min=full(self.w_min),
            b_max=full(self.w_max),
            d_up=full(rng / self.p_max_ltp),
            d_down=full(rng / self.p_max_ltd),
            params={"a_ltp": a_ltp, "a_ltd": a_ltd},
        )

    @staticmethod
    def _a_static(nl: float) -> float:
        if nl == 0:
            return _A_LINEAR
        return float(nonlinearity_to_a(nl))

    # ------------------------------------------------------------------ curve moves
    def _move(self, w, st, n):
        """Noise-free weight after moving ``n`` (signed, float) pulses along the curves."""
        g = jnp.clip(self._g(w), 0.0, 1.0)
        a_up, a_dn = st.params["a_ltp"], st.params["a_ltd"]
        p_up = jnp.clip(_inverse_curve(g, a_up, self.p_max_ltp) + n, 0.0, self.p_max_ltp)
        p_dn = jnp.clip(_inverse_curve(g, a_dn, self.p_max_ltd) + n, 0.0, self.p_max_ltd)
        g_new = jnp.where(
            n > 0, _curve(p_up, a_up, self.p_max_ltp),
            jnp.where(n < 0, _curve(p_dn, a_dn, self.p_max_ltd), g),
        )
        return g_new

    def step_up(self, w: Array, st: DeviceState) -> Array:
        """Noise-free weight increase of one LTP pulse from ``w`` (weight units)."""
        w = jnp.asarray(w)
        return self._w(self._move(w, st, jnp.ones_like(w))) - w

    def step_down(self, w: Array, st: DeviceState) -> Array:
        """Noise-free weight decrease (magnitude) of one LTD pulse from ``w`` (weight units)."""
        w = jnp.asarray(w)
        return w - self._w(self._move(w, st, -jnp.ones_like(w)))

    def _update(self, w, st, n, xi):
        nf = n.astype(w.dtype)
        g = self._move(w, st, nf)
        g = g + self.c2c_std * jnp.sqrt(jnp.abs(nf)) * xi
        g = jnp.where(n != 0, jnp.clip(g, 0.0, 1.0), jnp.clip(self._g(w), 0.0, 1.0))
        return jnp.where(n != 0, self._w(g), w)

    def apply_pulses(
        self, w: Array, st: DeviceState, n: Array, key: PRNGKeyArray, max_pulses: int | None = None
    ) -> Array:
        """Apply signed pulse counts as one NeuroSim write per device (closed form).

        Args:
            w: weights (weight units).
            st: device state from :meth:`sample`.
            n: signed integer pulse counts (positive = LTP).
            key: PRNG key for the cycle-to-cycle noise (one draw per device and update).
            max_pulses: optional cap on ``|n|``.

        Returns:
            New weights (weight units); devices with ``n = 0`` are unchanged.
        """
        return _jit_call(type(self)._apply_pulses, self, w, st, n, key, max_pulses)

    def _apply_pulses(self, w, st, n, key, max_pulses):
        w = jnp.asarray(w)
        n = jnp.asarray(n)
        if max_pulses is not None:
            n = jnp.clip(n, -max_pulses, max_pulses)
        xi = (jax.random.normal(key, w.shape, w.dtype) if self.c2c_std > 0
              else jnp.zeros(w.shape, w.dtype))
        return self._update(w, st, n, xi)

    def trace(self, w0: Array, st: DeviceState, signs: Array, key: PRNGKeyArray) -> Array:
        """Weights after each single-pulse write of the sequence ``signs`` (``(T,)``, -1/0/+1);
        write ``t`` draws its noise from ``fold_in(key, t)``. Returns ``(T, *w0.shape)``."""
        return _jit_call(type(self)._trace, self, w0, st, signs, key)

    def _trace(self, w0, st, signs, key):
        def step(w, t, s):
            xi = (jax.random.normal(jax.random.fold_in(key, t), w.shape, w.dtype)
                  if self.c2c_std > 0 else jnp.zeros(w.shape, w.dtype))
            return self._update(w, st, jnp.full(w.shape, s, jnp.int32), xi)

        return _scan_signs(w0, signs, step)
