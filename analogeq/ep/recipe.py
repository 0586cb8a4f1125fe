"""Pieces of the equilibrium-transformer research recipe that sit on top of the estimators.

* :class:`WithReadoutGradient` -- adds the direct gradient of the cost through a readout that
  has parameters (``logits = z W_h``): ``dL/dtheta = lambda^T dF/dtheta + dC/dtheta|_{s*}``.
  Force-form estimators and the implicit adjoint only give the first term (exact for models
  whose readout is a slice of the state); BPTT already contains both.
* :class:`AdaptiveEP` -- EP whose nudged phase length is chosen in hindsight: the nudged phases
  are relaxed in ``chunks`` equal chunks of Euler steps, the contrast estimate ``a_c`` is formed
  after every chunk, and the estimate kept is the ``a_c`` (``c >= 2``) whose change
  ``|a_c - a_{c-1}|`` from the previous chunk is smallest -- the point where the nudged phase
  had settled best, before discretization drift or a slow instability takes over.
* :class:`RefinedEulerRelaxation` -- Euler with ``T1`` free steps, then, for samples whose
  residual is still above ``tol``, up to ``refine_steps`` more steps until it is below.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.emulator import AbstractRelaxation, EulerRelaxation, RelaxResult, check_finite, euler, term_noise
from analogeq.ep.base import AbstractEstimator, Estimate
from analogeq.ep.estimators import EP, nudged_phases
from analogeq.ep.references import BPTT


def readout_gradient(model, cost, states, targets, weights):
    """``sum_b w_b dC(R_theta(s_b), t_b)/dtheta`` with the states held fixed.

    Args:
        states: settled states ``(B, *state_shape)`` (no gradient flows into them).
        targets: per-sample targets ``(B, ...)``.
        weights: per-sample weights ``(B,)`` (e.g. ``used / sum(used)`` for a gated mean).

    Returns a pytree shaped like ``model`` (zero for parameter-free readouts).
    """
    states = jax.lax.stop_gradient(states)

    def direct(m):
        per = jax.vmap(lambda s, t: cost(m.readout(s), t))(states, targets)
        return jnp.sum(weights * per)

    return eqx.filter_grad(direct)(model)


def add_trees(a, b):
    """Leaf-wise ``a + b`` of two gradient pytrees (``None`` leaves stay ``None``)."""
    return jax.tree_util.tree_map(lambda x, y: x + y, a, b)


class WithReadoutGradient(AbstractEstimator):
    """Wraps an estimator and adds the readout's direct parameter gradient at the free states.

    Attributes:
        inner: the wrapped estimator (returned unchanged when it is :class:`BPTT`, whose
            gradient already contains the readout term).
    """

    inner: AbstractEstimator

    def nudges(self):
        return self.inner.nudges()

    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        est = self.inner.estimate(model, cost, relaxation, xs, targets, gate=gate, key=key)
        if isinstance(self.inner, BPTT):
            return est
        used = est.used.astype(jnp.real(est.free.state).dtype)
        w = used / jnp.maximum(jnp.sum(used), 1)
        direct = readout_gradient(model, cost, relaxation.read(est.free.state), targets, w)
        return eqx.tree_at(lambda e: e.grads, est, add_trees(est.grads, direct))


class _ChunkRecorder(AbstractRelaxation):
    """Nudged relaxation in ``n_chunks`` chunks of ``chunk`` Euler steps; its result's state
    stacks the state after every chunk, ``(n_chunks, *shape)``, and ``residual`` per chunk."""

    eps: float = eqx.field(static=True)
    chunk: int = eqx.field(static=True)
    n_chunks: int = eqx.field(static=True)

    def free(self, term, s0, key=None):
        raise TypeError("_ChunkRecorder relaxes nudged phases only")

    def nudged(self, term, s0, key=None):
        if term_noise(term) is not None:
            raise ValueError("AdaptiveEP runs on the noiseless digital emulator only")

        def body(s, _):
            r = euler(term, s, self.eps, self.chunk, 1.0, False)
            return r.state, (r.state, r.residual)

        _, (states, res) = jax.lax.scan(body, s0, None, length=self.n_chunks)
        out = RelaxResult(state=states, steps=jnp.asarray(self.chunk * self.n_chunks), residual=res,
                          converged=jnp.zeros((), bool), time=jnp.asarray(self.eps * self.chunk * self.n_chunks))
        return check_finite(out, "nudged phase")


class AdaptiveEP(EP):
    """EP with the nudged-phase length chosen by hindsight selection (module docstring).

    The relaxation must be an :class:`~analogeq.emulator.EulerRelaxation`; its ``T2`` is split
    into ``chunks`` chunks of ``T2 // chunks`` steps (``T2 >= chunks``). Other attributes as in
    :class:`~analogeq.ep.EP`. The per-sample ``nudged_residual`` is that of the chosen chunk.
    """

    chunks: int = eqx.field(static=True, default=4)

    def __check_init__(self):
        if isinstance(self.chunks, bool) or not isinstance(self.chunks, int) or self.chunks < 2:
            raise ValueError(f"chunks (t2_chunks) must be an integer >= 2; got {self.chunks!r}")

    def contrast_trajectory(self, model, cost, relaxation, x, target, s_star, key=None):
        """Contrast estimates after every chunk, ``(chunks, *shape)``, and the residuals ``(chunks,)``."""
        if not isinstance(relaxation, EulerRelaxation):
            raise TypeError("AdaptiveEP chunks the Euler nudged phase: it needs an EulerRelaxation")
        if relaxation.T2 < self.chunks:
            raise ValueError(f"T2 ({relaxation.T2}) must be >= t2_chunks ({self.chunks})")
        rec = _ChunkRecorder(eps=relaxation.eps, chunk=relaxation.T2 // self.chunks, n_chunks=self.chunks)
        betas = self.nudges()
        s_star = relaxation.hold(s_star)
        nudged = nudged_phases(model, cost, rec, x, target, s_star, betas, self.correction, key)
        b = jnp.asarray(betas, dtype=nudged.state.dtype).reshape((1, -1) + (1,) * s_star.ndim)
        diff = relaxation.read_difference(nudged.state, s_star[None, None])
        a = -jnp.real(jnp.mean(diff / b, axis=1)).astype(s_star.dtype)
        return a, nudged.residual

    def contrast(self, model, cost, relaxation, x, target, s_star, key=None):
        a, res = self.contrast_trajectory(model, cost, relaxation, x, target, s_star, key)
        change = jnp.sqrt(jnp.sum((a[1:] - a[:-1]) ** 2, axis=tuple(range(1, a.ndim))))
        pick = jnp.argmin(change) + 1
        return a[pick], res[pick]


class RefinedEulerRelaxation(EulerRelaxation):
    """Euler free phase of ``T1`` steps, then up to ``refine_steps`` more while the residual
    ``|F|/|s|`` exceeds ``tol`` (per sample). The nudged phase is as in
    :class:`~analogeq.emulator.EulerRelaxation`. BPTT still unrolls ``T1`` steps.

    Attributes:
        refine_steps: extra free steps at most (>= 0).
    """

    refine_steps: int = eqx.field(static=True, default=0)

    def __check_init__(self):
        if isinstance(self.refine_steps, bool) or not isinstance(self.refine_steps, int) or self.refine_steps < 0:
            raise ValueError(f"refine_steps must be an integer >= 0; got {self.refine_steps!r}")

    def free(self, term, s0, key=None):
        r = super().free(term, s0, key=key)
        if self.refine_steps == 0:
            return r
        more = euler(term, r.state, self.eps, self.refine_steps, self.tol, True)
        out = RelaxResult(state=more.state, steps=r.steps + more.steps, residual=more.residual,
                          converged=more.converged, time=r.time + more.time)
        return check_finite(out, "free phase (refinement)")
