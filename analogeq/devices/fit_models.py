"""The device families ``analogeq devices fit`` can fit, as maps from a per-device parameter
vector to the model's own update (:mod:`analogeq.devices.pulsed`): the fit never re-derives a
step equation, it builds the model and its :class:`~analogeq.devices.pulsed.DeviceState` from
the vector and calls the model's pulse.

Per-device parameters (weight units; ``D`` in weight units per pulse):

===============  ======================================================================
family           vector
===============  ======================================================================
SoftBounds       ``b_min, b_max, D+, D-``
PowerStep        ``b_min, b_max, D+, D-, gamma_up, gamma_down``
ExponentialStep  ``b_min, b_max, D+, D-, A_up, gamma_up, A_down, gamma_down`` with ``a``
                 and ``b`` held at aihwkit's ``ExpStepDevice`` values (0.244, 0.2425): only
                 ``A e^{gamma b}`` and ``gamma a`` are identifiable, so two of the six
                 shape numbers are fixed
PiecewiseStep    ``b_min, b_max, s_up[0..n-1], s_down[0..n-1]``: the step at each of ``n``
                 nodes spaced evenly over ``[b_min, b_max]``; ``D = mean(s)``,
                 ``v = s / D`` (so the preset's ``v_up`` and ``v_down`` average 1)
===============  ======================================================================
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from analogeq.devices import pulsed

__all__ = ["FAMILIES", "Family", "x64"]

_BOUND = 1e3  # largest |bound| / step / A the preset validation accepts (analogeq.devices.presets)
_EXP = pulsed.ExponentialStep()  # aihwkit's ExpStepDevice a, b (held fixed, see the docstring)


@dataclass(frozen=True)
class Family:
    """One fittable device model.

    Attributes:
        name: the class name in :mod:`analogeq.devices.pulsed` (a preset's ``model``).
        names: the per-device parameter names for ``nodes`` (PiecewiseStep's node count).
        build: ``(theta, nodes) -> (device, state)``: the model with the noise switched off and
            a scalar :class:`DeviceState` (traceable in ``theta``).
        starts: ``((b_min, b_max), nodes, pairs) -> [theta0, ...]``: initial vectors for given
            bounds, the step profile by linear least squares on the unclipped pulses.
        bounds: ``nodes -> (lo, hi)`` box of the vector.
    """

    name: str
    names: Callable[[int], list[str]]
    build: Callable
    starts: Callable
    bounds: Callable[[int], tuple[np.ndarray, np.ndarray]]


def _state(theta, d_up, d_down, params=None) -> pulsed.DeviceState:
    return pulsed.DeviceState(b_min=theta[0], b_max=theta[1], d_up=d_up, d_down=d_down, params=params or {})


def _quiet(make):
    """``make()`` without equinox's warning about arrays in static fields: the module lives only
    inside this trace (it never crosses a ``jit`` boundary), so traced shape parameters are fine."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="A JAX array is being set as static")
        return make()


_COMMON = ["b_min", "b_max", "d_up", "d_down"]
_LO4, _HI4 = [-_BOUND, 0.0, 0.0, 0.0], [0.0, _BOUND, _BOUND, _BOUND]


def _soft_build(theta, nodes):
    return pulsed.SoftBounds(dw_min_std=0.0), _state(theta, theta[2], theta[3])


def _power_build(theta, nodes):
    st = _state(theta, theta[2], theta[3], {"gamma_up": theta[4], "gamma_down": theta[5]})
    return pulsed.PowerStep(dw_min_std=0.0), st


def _exp_build(theta, nodes):
    dev = _quiet(lambda: pulsed.ExponentialStep(A_up=theta[4], gamma_up=theta[5], A_down=theta[6],
                                                gamma_down=theta[7], a=_EXP.a, b=_EXP.b, dw_min_std=0.0))
    return dev, _state(theta, theta[2], theta[3])


def _piecewise_build(theta, nodes):
    dev = _quiet(lambda: pulsed.PiecewiseStep(v_up=tuple(theta[2:2 + nodes]),
                                              v_down=tuple(theta[2 + nodes:2 + 2 * nodes]), dw_min_std=0.0))
    one = jnp.ones((), theta.dtype)
    return dev, _state(theta, one, one)


def _unclipped(bounds, pairs, sign):
    """``(w, |dw|)`` of the pulses of direction ``sign`` whose result is not at a bound (a clipped
    step says little about the step size)."""
    (b_min, b_max), (wb, s, wa) = bounds, pairs
    edge = b_max if sign > 0 else b_min
    keep = (s == sign) & (np.abs(wa - edge) > 1e-9 * (b_max - b_min))
    if not keep.any():  # every pulse of this direction ends at the bound: use them all
        keep = s == sign
    return wb[keep], np.abs(wa - wb)[keep]


def _scale(x, y):
    """Least-squares ``D`` of ``y = D x``."""
    return float(max(np.dot(x, y) / max(np.dot(x, x), 1e-300), 1e-12))


def _soft_starts(bounds, nodes, pairs):
    b_min, b_max = bounds
    w, dy = _unclipped(bounds, pairs, 1)
    d_up = _scale(1 - w / b_max, dy)
    w, dy = _unclipped(bounds, pairs, -1)
    return [np.array([b_min, b_max, d_up, _scale(1 - w / b_min, dy)])]


def _power_starts(bounds, nodes, pairs):
    b_min, b_max = bounds
    out = []
    for sign in (1, -1):  # best gamma of a grid, D by least squares at each
        w, dy = _unclipped(bounds, pairs, sign)
        x = np.maximum((b_max - w) if sign > 0 else (w - b_min), 0.0) / (b_max - b_min)
        fits = [(float(np.sum((_scale(x**g, dy) * x**g - dy) ** 2)), _scale(x**g, dy), g)
                for g in (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)]
        out.append(min(fits)[1:])
    (d_up, g_up), (d_dn, g_dn) = out
    return [np.array([b_min, b_max, d_up, d_dn, g_up, g_dn])]


def _exp_profile(w, dy, z, sign):
    """Best ``(D, A, gamma)`` over a grid of gamma for ``|dw| = D (1 - A e^{sign gamma z})``
    (linear least squares in ``D`` and ``D A`` at each gamma)."""
    best = None
    for g in (-16.0, -8.0, -4.0, -1.0, 1.0, 4.0, 8.0, 16.0):
        X = np.stack([np.ones_like(z), np.exp(sign * g * z)], axis=1)
        coef, *_ = np.linalg.lstsq(X, dy, rcond=None)
        sse = float(np.sum((X @ coef - dy) ** 2))
        if coef[0] > 0 and (best is None or sse < best[0]):
            best = (sse, coef[0], float(np.clip(-coef[1] / coef[0], -_BOUND, _BOUND)), g)
    return best[1:] if best else (float(np.median(dy)), 0.0, 1.0)


def _exp_starts(bounds, nodes, pairs):
    b_min, b_max = bounds
    out = []
    for sign in (1, -1):
        w, dy = _unclipped(bounds, pairs, sign)
        out.append(_exp_profile(w, dy, 2 * _EXP.a * w / (b_max - b_min) + _EXP.b, sign))
    (d_up, a_up, g_up), (d_dn, a_dn, g_dn) = out
    return [np.array([b_min, b_max, d_up, d_dn, a_up, g_up, a_dn, g_dn])]


def _piecewise_starts(bounds, nodes, pairs):
    """Node steps by non-negative least squares on the interpolation's hat functions (the step
    is linear in the node values once the bounds are fixed)."""
    from scipy.optimize import nnls

    b_min, b_max = bounds
    out = [b_min, b_max]
    for sign in (1, -1):
        w, dy = _unclipped(bounds, pairs, sign)
        t = np.clip((w - b_min) / (b_max - b_min), 0.0, 1.0) * (nodes - 1)
        hat = np.maximum(1 - np.abs(t[:, None] - np.arange(nodes)[None, :]), 0.0)
        s, _ = nnls(hat, dy)
        out += list(np.maximum(s, 1e-3 * max(s.max(), 1e-12)))
    return [np.array(out)]


FAMILIES: dict[str, Family] = {
    "SoftBounds": Family("SoftBounds", lambda n: list(_COMMON), _soft_build, _soft_starts,
                         lambda n: (np.array(_LO4), np.array(_HI4))),
    "ExponentialStep": Family(
        "ExponentialStep", lambda n: _COMMON + ["A_up", "gamma_up", "A_down", "gamma_down"], _exp_build,
        _exp_starts, lambda n: (np.array(_LO4 + [-_BOUND, -50.0, -_BOUND, -50.0]),
                                np.array(_HI4 + [_BOUND, 50.0, _BOUND, 50.0]))),
    "PowerStep": Family("PowerStep", lambda n: _COMMON + ["gamma_up", "gamma_down"], _power_build, _power_starts,
                        lambda n: (np.array(_LO4 + [0.0, 0.0]), np.array(_HI4 + [100.0, 100.0]))),
    "PiecewiseStep": Family(
        "PiecewiseStep", lambda n: ["b_min", "b_max"] + [f"s_up{i}" for i in range(n)] + [f"s_down{i}" for i in range(n)],
        _piecewise_build, _piecewise_starts,
        lambda n: (np.array([-_BOUND, 0.0] + [0.0] * 2 * n), np.array([0.0, _BOUND] + [_BOUND] * 2 * n))),
}
"""The fittable families by model name, in the order they are tried."""


# ---------------------------------------------------------------------------- compiled maps
def x64():
    """Float64 for the fit (scipy's tolerances need it), as a context manager; the compiled maps
    below are called inside it."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # JAX < 0.6

    return enable_x64()


@functools.cache
def one_step(name: str, nodes: int):
    """Compiled ``(residual, jacobian)`` of the one-step prediction of family ``name``:
    ``mask * (pulse(w_before, up) - w_after)`` and its derivative in ``theta``."""
    fam = FAMILIES[name]

    def residual(theta, wb, up, wa, mask):
        dev, st = fam.build(theta, nodes)
        return mask * (dev._pulse(wb, st, up, jnp.zeros_like(wb)) - wa)

    jac = jax.jacfwd(residual)
    return jax.jit(residual), jax.jit(lambda *a: jnp.nan_to_num(jac(*a)))  # 0^gamma log 0: a subgradient 0


@functools.cache
def free_run(name: str, nodes: int):
    """Compiled ``(theta, w0, signs) -> w`` (weights after each pulse, the model's own
    noise-free :meth:`~analogeq.devices.pulsed.AbstractPulsedDevice.trace`)."""
    fam = FAMILIES[name]

    def run(theta, w0, signs):
        dev, st = fam.build(theta, nodes)
        return dev._trace(w0, st, signs, jax.random.PRNGKey(0))

    return jax.jit(run)


@functools.cache
def steps(name: str, nodes: int):
    """Compiled ``(theta, w, up) -> signed nominal step`` (before clipping)."""
    fam = FAMILIES[name]

    def step(theta, w, up):
        dev, st = fam.build(theta, nodes)
        return jnp.where(up, dev.step_up(w, st), -dev.step_down(w, st))

    return jax.jit(step)
