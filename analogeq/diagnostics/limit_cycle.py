"""Long relaxations and a limit-cycle detector.

A relaxation that does not reach a fixed point either still drifts, diverges, or has settled on
an oscillation (a limit cycle). :func:`detect` tells them apart from a uniformly sampled trace:
the relative residual ``|F(s)| / |s|`` (its floor over the tail) and a few fixed random
projections ``p_i(t) = <q_i, s(t)>`` of the state, whose autocorrelation over the tail gives the
period and whose spread the amplitude. :func:`euler_trace` produces such a trace for explicit
Euler ``s <- s + eps F(s)`` without storing the states (memory ``O(steps x n_proj)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, PRNGKeyArray

from analogeq.diagnostics.eigen import flat_field

OUTCOMES = ("converged", "limit-cycle", "diverged", "unconverged")


@dataclass(frozen=True)
class Trace:
    """A sampled relaxation.

    Attributes:
        dt: time between samples (units of ``tau``).
        residual: ``|F(s)| / |s|`` at each sample, shape ``(T,)``.
        proj: projections of the state on fixed unit vectors, shape ``(T, P)`` (state units).
        norm: ``|s|`` at each sample, shape ``(T,)`` (state units).
        final_state: the last state (shaped like the initial state).
    """

    dt: float
    residual: np.ndarray
    proj: np.ndarray
    norm: np.ndarray
    final_state: object


@dataclass(frozen=True)
class CycleReport:
    """What a long relaxation did.

    Attributes:
        outcome: one of :data:`OUTCOMES`.
        residual_floor: minimum residual over the tail (second half) of the trace.
        residual_final: residual at the last sample.
        oscillating: a periodic signal was found in the tail's projections.
        period_tau: the oscillation period (units of ``tau``; ``nan`` when none).
        period_samples: the period in samples (Euler steps for an Euler trace).
        amplitude: half the peak-to-peak range of the most active projection over the tail
            (state units; ``nan`` when none).
        autocorrelation: normalized autocorrelation at the detected period (1 = exactly periodic).
        time_tau: length of the trace (units of ``tau``).
    """

    outcome: str
    residual_floor: float
    residual_final: float
    oscillating: bool
    period_tau: float
    period_samples: float
    amplitude: float
    autocorrelation: float
    time_tau: float

    def to_dict(self) -> dict:
        """JSON-ready record."""
        return {**self.__dict__}


def projections(key: PRNGKeyArray, n: int, n_proj: int = 3, dtype=jnp.float64) -> Array:
    """``n_proj`` random unit vectors in ``R^n`` drawn from ``key``, shape ``(n_proj, n)``."""
    q = jax.random.normal(key, (n_proj, n), dtype)
    return q / jnp.linalg.norm(q, axis=1, keepdims=True)


@eqx.filter_jit
def _euler_scan(field, s0, q, eps, steps):
    f, v0 = flat_field(field, s0)

    def step(v, _):
        fv = f(v)
        nv = jnp.linalg.norm(v)
        return v + eps * fv, (jnp.linalg.norm(fv) / jnp.maximum(nv, 1e-12), q @ v, nv)

    return jax.lax.scan(step, v0, None, length=steps)


def euler_trace(field: Callable[[Array], Array], s0: Array, eps: float, steps: int, *,
                key: PRNGKeyArray, n_proj: int = 3) -> Trace:
    """Run ``steps`` explicit-Euler steps ``s <- s + eps F(s)`` from ``s0`` and sample every step.

    Args:
        field: ``s -> F(s)`` (state units per ``tau``); a pytree field
            (``equinox.Partial(model.force, x=x)``) reuses the compilation across inputs.
        s0: initial state (any array shape).
        eps: Euler step (units of ``tau``, > 0).
        steps: number of steps (>= 8).
        key: PRNG key for the projection vectors.
        n_proj: number of random projections recorded.
    """
    if not eps > 0:
        raise ValueError(f"eps (Euler step, units of tau) must be > 0; got {eps!r}")
    if not (isinstance(steps, int) and steps >= 8):
        raise ValueError(f"steps must be an integer >= 8; got {steps!r}")
    v0, unravel = ravel_pytree(s0)
    q = projections(key, v0.size, n_proj, v0.dtype)
    v_end, (res, proj, norm) = _euler_scan(field, s0, q, float(eps), int(steps))
    return Trace(dt=float(eps), residual=np.asarray(res, np.float64), proj=np.asarray(proj, np.float64),
                 norm=np.asarray(norm, np.float64), final_state=unravel(v_end))


def _period(x: np.ndarray, min_corr: float) -> tuple[float, float]:
    """``(period in samples, autocorrelation there)`` of a zero-mean series, or ``(nan, c)``.

    The period is the lag of the first local maximum of the autocorrelation, after its first
    sign change, that reaches ``min_corr`` (refined by a parabola through the three samples
    around it); ``c`` is the largest autocorrelation seen when none does.
    """
    n = x.size
    if n < 8 or not np.any(x):
        return float("nan"), float("nan")
    spec = np.fft.rfft(x, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac = ac / ac[0] / (1.0 - np.arange(n) / n)  # unbiased, normalized
    lim = n // 2
    neg = np.nonzero(ac[1:lim] < 0)[0]
    if neg.size == 0:
        return float("nan"), float("nan")
    j0 = neg[0] + 1
    seg = ac[j0:lim]
    peaks = [j0 + i for i in range(1, seg.size - 1)
             if seg[i] >= seg[i - 1] and seg[i] >= seg[i + 1] and seg[i] >= min_corr]
    if not peaks:
        return float("nan"), float(np.max(seg)) if seg.size else float("nan")
    j = peaks[0]
    a, b, c = ac[j - 1], ac[j], ac[j + 1]
    den = a - 2 * b + c
    shift = 0.5 * (a - c) / den if den < 0 else 0.0
    return float(j + shift), float(b)


def detect(trace: Trace, tol: float, *, min_corr: float = 0.5, rel_amplitude: float = 1e-6) -> CycleReport:
    """Classify a trace: ``converged`` (tail residual floor <= ``tol``), ``diverged``
    (non-finite or a state norm growing without bound), ``limit-cycle`` (periodic projections
    over the tail with autocorrelation >= ``min_corr`` and amplitude above ``rel_amplitude``
    times the mean state norm), else ``unconverged``.

    Args:
        trace: a uniformly sampled relaxation (:func:`euler_trace` or a continuous trace).
        tol: residual ``|F|/|s|`` below which the relaxation counts as converged.
        min_corr: autocorrelation needed at the period to call the tail periodic.
        rel_amplitude: smallest oscillation amplitude, relative to ``|s|``, counted as one.
    """
    if not tol > 0:
        raise ValueError(f"tol (relative residual) must be > 0; got {tol!r}")
    res, proj, norm = trace.residual, trace.proj, trace.norm
    T = res.size
    time_tau = float(T * trace.dt)
    tail = slice(T // 2, T)
    nan = float("nan")
    finite = bool(np.all(np.isfinite(res)) and np.all(np.isfinite(proj)))
    if not finite:
        return CycleReport("diverged", nan, nan, False, nan, nan, nan, nan, time_tau)
    floor, final = float(np.min(res[tail])), float(res[-1])
    base = {"residual_floor": floor, "residual_final": final, "time_tau": time_tau}
    if floor <= tol:
        return CycleReport("converged", oscillating=False, period_tau=nan, period_samples=nan,
                           amplitude=nan, autocorrelation=nan, **base)
    p = proj[tail] - proj[tail].mean(axis=0)
    i = int(np.argmax(p.std(axis=0)))
    amp = float(0.5 * (p[:, i].max() - p[:, i].min()))
    period, corr = _period(p[:, i], min_corr)
    scale = float(np.mean(norm[tail]))
    oscillating = bool(np.isfinite(period) and amp > rel_amplitude * max(scale, 1e-12))
    n_tail = norm[tail]
    growing = n_tail[-1] > 1e6 * max(n_tail[0], 1e-12)
    outcome = "diverged" if growing else ("limit-cycle" if oscillating else "unconverged")
    return CycleReport(outcome, oscillating=oscillating, period_tau=period * trace.dt if oscillating else nan,
                       period_samples=period if oscillating else nan, amplitude=amp if oscillating else nan,
                       autocorrelation=corr, **base)
