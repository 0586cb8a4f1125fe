"""The idealized digital emulator: explicit-Euler relaxation ``s <- s + eps F(s)``.

This is the reference the research runs on GPUs: a fixed number of steps (``T1`` free,
``T2`` nudged) or, with ``stop_at_tol``, until the residual ``|F(s)| / |s|`` is below ``tol``.
Either way the result carries the steps used, the residual and a ``converged`` flag
(``residual <= tol``) so that an unconverged relaxation is reported, never silently used.
"""

from __future__ import annotations

import abc
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int


class RelaxResult(eqx.Module):
    """Outcome of one relaxation: final state, steps taken, settle time (units of ``tau``),
    residual ``|F|/|s|`` and convergence flag."""

    state: Array
    steps: Int[Array, ""]
    residual: Float[Array, ""]
    converged: Bool[Array, ""]
    time: Float[Array, ""]


def residual(s: Array, f: Array) -> Array:
    """Relative residual ``|F(s)| / |s|`` (Frobenius norms; ``|s|`` floored at 1e-12)."""
    num = jnp.sqrt(jnp.sum(jnp.abs(f) ** 2))
    den = jnp.sqrt(jnp.sum(jnp.abs(s) ** 2))
    return num / jnp.maximum(den, 1e-12)


def check_finite(result: RelaxResult, what: str) -> RelaxResult:
    """Flag a relaxation that produced NaN or inf: its residual becomes ``+inf`` and it is not
    converged, so gating leaves it out and the training loop reports the run as diverged
    (:func:`analogeq.training.fit`). ``what`` names the phase for readers of the code only:
    nothing is raised inside jit, because a host callback (``eqx.error_if``) turns a divergence
    into a crash and keeps the compiled step out of JAX's persistent compilation cache."""
    del what
    ok = jnp.all(jnp.isfinite(result.state))
    return eqx.tree_at(lambda r: (r.residual, r.converged), result,
                       (jnp.where(ok, result.residual, jnp.inf), result.converged & ok))


class AbstractRelaxation(eqx.Module):
    """How a realization settles a field: the free phase and the nudged phase.

    Both phases receive a structured term (:class:`analogeq.ep.term.FreeTerm`,
    :class:`analogeq.ep.term.NudgedTerm`): ``term(s)`` is the field, and the term's fields
    (model, input, cost, target, nudges, correction, held free state, noise) say what it is
    built from, for a relaxation that builds its own circuit rather than calling the field.
    """

    @abc.abstractmethod
    def free(self, term, s0: Array, key=None) -> RelaxResult:
        """Settle ``ds/dt = term(s)`` from ``s0`` (the free phase). ``term.noise`` (state units
        per ``sqrt(tau)``, broadcast to ``s0``; ``None``: noiseless) adds white noise driven by
        ``key``."""

    @abc.abstractmethod
    def nudged(self, term, s0: Array, key=None) -> RelaxResult:
        """Settle the nudged phases ``ds/dt = term(s)`` on the stacked state ``s0``
        (``(K, *shape)``, every phase starting from the held free state; noise as in
        :meth:`free`)."""

    def batched(self, fn: Callable) -> Callable:
        """``fn`` mapped over the leading (sample) axis of its arguments: ``jax.vmap`` for a
        relaxation written in JAX. A relaxation that runs outside JAX (a circuit simulator)
        overrides it with a loop on the host; estimators map every per-sample phase with it."""
        return jax.vmap(fn)

    def read(self, state: Array) -> Array:
        """What the learning rule sees of a settled state (an ADC on a chip; exact here)."""
        return state

    def hold(self, state: Array) -> Array:
        """The free state as the nudged phases start from it (exact here)."""
        return state

    def read_difference(self, nudged: Array, held: Array) -> Array:
        """What the learning rule sees of nudged states ``nudged`` (any leading axes) minus the
        held free state ``held``: by default the difference of two reads."""
        return self.read(nudged) - self.read(held)


def euler(field, s0: Array, eps: float, max_steps: int, tol: float, stop_at_tol: bool) -> RelaxResult:
    """Explicit Euler on ``field`` (a term, or any ``s -> F(s)``) for at most ``max_steps``
    steps, optionally stopping at ``tol``."""
    f0 = field(s0)

    def cond(carry):
        s, f, k = carry
        going = k < max_steps
        if stop_at_tol:
            going = going & (residual(s, f) > tol)
        return going

    def body(carry):
        s, f, k = carry
        s = s + eps * f
        return s, field(s), k + 1

    s, f, k = jax.lax.while_loop(cond, body, (s0, f0, jnp.asarray(0)))
    r = residual(s, f)
    return RelaxResult(state=s, steps=k, residual=r, converged=r <= tol, time=eps * k)


def term_noise(term):
    """``term.noise``, or a ``TypeError`` that names the fix when ``term`` is a bare callable."""
    try:
        return term.noise
    except AttributeError:
        raise TypeError(f"a relaxation takes a term, e.g. analogeq.ep.FreeTerm(model, x) or "
                        f"NudgedTerm(...), not a bare field; got {type(term).__name__}") from None


def _noiseless(term):
    if term_noise(term) is not None:
        raise ValueError("the digital emulator is noiseless; relax a noisy chip with "
                         "analogeq.hardware.ChipRelaxation")


class EulerRelaxation(AbstractRelaxation):
    """Float explicit-Euler relaxation as the research emulator runs it.

    Attributes:
        eps: Euler step in units of ``tau`` (> 0).
        T1: free-phase steps (the maximum when ``stop_at_tol``).
        T2: nudged-phase steps (the maximum when ``stop_at_tol``).
        tol: relative residual ``|F|/|s|`` below which a state counts as converged.
        stop_at_tol: stop as soon as the residual is below ``tol`` instead of running the full
            step count.
    """

    eps: float = eqx.field(static=True, default=0.5)
    T1: int = eqx.field(static=True, default=60)
    T2: int = eqx.field(static=True, default=20)
    tol: float = eqx.field(static=True, default=1e-4)
    stop_at_tol: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0 (Euler step in units of tau); got {self.eps}")
        for name in ("T1", "T2"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1 step; got {getattr(self, name)}")
        if not self.tol > 0:
            raise ValueError(f"tol must be > 0; got {self.tol}")

    def free(self, term, s0, key=None):
        _noiseless(term)
        r = euler(term, s0, self.eps, self.T1, self.tol, self.stop_at_tol)
        return check_finite(r, "free phase")

    def nudged(self, term, s0, key=None):
        _noiseless(term)
        r = euler(term, s0, self.eps, self.T2, self.tol, self.stop_at_tol)
        return check_finite(r, "nudged phase")
