"""Continuous-time relaxation of a field with diffrax, as a chip would settle it.

``tau ds/dt = F(s)`` is integrated with an adaptive Runge--Kutta solver (Tsit5, PID step
control) in units of ``tau``. :func:`continuous_trace` samples it uniformly for the limit-cycle
detector; :func:`settle` runs to the steady state (or the horizon) and returns the last state.
Only ``field(s)`` is used, so any model (digital, a chip with amplifier-pole states, a token
block with a ``(T, d)`` state) relaxes the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import diffrax
import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from analogeq.diagnostics.eigen import flat_field
from analogeq.diagnostics.limit_cycle import CycleReport, Trace, detect, projections


def _check(t_max, n_samples):
    if not t_max > 0:
        raise ValueError(f"t_max (horizon, units of tau) must be > 0; got {t_max!r}")
    if not (isinstance(n_samples, int) and n_samples >= 8):
        raise ValueError(f"n_samples must be an integer >= 8; got {n_samples!r}")


@eqx.filter_jit
def _trace_run(field, s0, q, t_max, n_samples, rtol, atol, max_steps):
    f, v0 = flat_field(field, s0)
    dt = t_max / n_samples
    ts = jnp.linspace(dt, t_max, n_samples, dtype=v0.dtype)

    def record(t, v, args):
        nv = jnp.linalg.norm(v)
        return jnp.linalg.norm(f(v)) / jnp.maximum(nv, 1e-12), q @ v, nv

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, v, args: f(v)), diffrax.Tsit5(), 0.0, t_max, min(0.05, dt), v0,
        saveat=diffrax.SaveAt(ts=ts, fn=record),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    bad = jnp.where(sol.result == diffrax.RESULTS.successful, 0.0, jnp.nan)
    res, proj, norm = sol.ys
    return res + bad, proj + bad, norm + bad


def continuous_trace(field: Callable[[Array], Array], s0: Array, t_max: float, *, key: PRNGKeyArray,
                     n_samples: int = 2000, n_proj: int = 3, rtol: float = 1e-10, atol: float = 1e-12,
                     max_steps: int = 200_000) -> Trace:
    """Integrate ``ds/dt = F(s)`` from ``s0`` over ``[0, t_max]`` (units of ``tau``) and sample it
    at ``n_samples`` evenly spaced times (residual, projections on vectors drawn from ``key``,
    state norm).

    Args:
        field: ``s -> F(s)`` (state units per ``tau``); a pytree field
            (``equinox.Partial(model.force, x=x)``) reuses the compilation across inputs.
        s0: initial state (any array shape).
        t_max: horizon (units of ``tau``, > 0).
        key: PRNG key for the projection vectors.
        n_samples: number of samples (>= 8); the sample spacing is ``t_max / n_samples``.
        rtol, atol: tolerances of the adaptive solver.
        max_steps: solver step budget; a run that exhausts it is reported non-finite.
    """
    _check(t_max, n_samples)
    v0, _ = ravel_pytree(s0)
    q = projections(key, v0.size, n_proj, v0.dtype)
    res, proj, norm = _trace_run(field, s0, q, float(t_max), int(n_samples), float(rtol), float(atol),
                                 int(max_steps))
    res, proj, norm = (np.asarray(a, np.float64) for a in (res, proj, norm))
    return Trace(dt=float(t_max / n_samples), residual=res, proj=proj, norm=norm, final_state=None)


@eqx.filter_jit
def _settle_run(field, s0, t_max, tol, rtol, atol, max_steps):
    f, v0 = flat_field(field, s0)
    norm = lambda y: jnp.sqrt(jnp.sum(y**2))
    event = diffrax.Event(diffrax.steady_state_event(rtol=tol, atol=0.0, norm=norm))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(lambda t, v, args: f(v)), diffrax.Tsit5(), 0.0, t_max, 0.05, v0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), event=event,
        max_steps=max_steps, throw=False,
    )
    v = sol.ys[-1]
    ok = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
    return v, jnp.linalg.norm(f(v)) / jnp.maximum(jnp.linalg.norm(v), 1e-12), sol.ts[-1], ok


def settle(field: Callable[[Array], Array], s0: Array, t_max: float = 2000.0, *, tol: float = 1e-10,
           rtol: float = 1e-9, atol: float = 1e-11, max_steps: int = 200_000) -> tuple[Array, float, float, bool]:
    """Relax ``ds/dt = F(s)`` from ``s0`` until ``|F(s)| <= tol |s|`` or ``t = t_max``.

    Returns ``(state, residual |F|/|s|, time reached in units of tau, solver_ok)``; the state is
    the last one reached when the steady state was not (e.g. on a limit cycle), and
    ``solver_ok`` is ``False`` when the solver gave up (step budget ``max_steps`` spent, e.g. on a
    field that blows up or returns NaN).
    """
    if not t_max > 0:
        raise ValueError(f"t_max (horizon, units of tau) must be > 0; got {t_max!r}")
    _, unravel = ravel_pytree(s0)
    v, r, t, ok = _settle_run(field, s0, float(t_max), float(tol), float(rtol), float(atol), int(max_steps))
    return unravel(v), float(r), float(t), bool(ok)


def continuous_check(field: Callable[[Array], Array], s0: Array, t_max: float, tol: float, *,
                     key: PRNGKeyArray, n_samples: int = 2000) -> CycleReport:
    """Relax in continuous time over ``t_max`` (units of ``tau``) and classify the outcome with
    :func:`analogeq.diagnostics.limit_cycle.detect` (``tol``: residual ``|F|/|s|`` counted as
    converged)."""
    return detect(continuous_trace(field, s0, t_max, key=key, n_samples=n_samples), tol)
