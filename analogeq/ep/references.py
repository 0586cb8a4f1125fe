"""Gradient references that are not force-form: BPTT and classic energy-based EP."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.emulator import EulerRelaxation
from analogeq.ep.base import AbstractEstimator, Estimate, free_phase
from analogeq.ep.estimators import nudged_phases
from analogeq.models.base import AbstractConservativeModel


def euler_unroll(model, x, eps: float, steps: int):
    """``steps`` Euler steps of ``F(s; x)`` from ``model.init_state(x)`` (differentiable)."""

    def step(s, _):
        return s + eps * model.force(s, x), None

    return jax.lax.scan(step, model.init_state(x), None, length=steps)[0]


class BPTT(AbstractEstimator):
    """Backpropagation through the ``T1``-step Euler unroll of the free phase.

    Attributes:
        steps: unroll length; ``None`` uses the relaxation's ``T1``.
    """

    steps: int | None = eqx.field(static=True, default=None)

    def estimate(self, model, cost, relaxation, xs, targets, *, gate=True, key=None):
        del key
        if not isinstance(relaxation, EulerRelaxation):
            raise TypeError("BPTT differentiates the Euler unroll: it needs an EulerRelaxation")
        steps = self.steps or relaxation.T1

        def loss(m):
            per = jax.vmap(lambda x, t: cost(m.readout(euler_unroll(m, x, relaxation.eps, steps)), t))
            return jnp.mean(per(xs, targets))

        grads = eqx.filter_grad(loss)(model)
        free = free_phase(model, relaxation, xs)
        zeros = jnp.zeros(free.state.shape[:1], free.residual.dtype)
        return Estimate(grads=grads, free=free, contrast=jnp.zeros_like(free.state),
                        nudged_residual=zeros, used=jnp.ones_like(free.converged))


class EnergyEP(AbstractEstimator):
    """Classic centered EP for conservative models (Scellier & Bengio 2017):
    ``g = (dE/dtheta(s_+) - dE/dtheta(s_-)) / (2 beta)``.

    Attributes:
        beta: nudge strength (> 0).
    """

    beta: float = eqx.field(static=True, default=1e-2)

    def __check_init__(self):
        if not self.beta > 0:
            raise ValueError(f"beta must be > 0 (the nudge strength); got {self.beta}")

    def nudges(self) -> tuple[float, float]:
        return (self.beta, -self.beta)

    def estimate(self, model, cost, relaxation, xs, targets, *, gate=True, key=None):
        del key
        if not isinstance(model, AbstractConservativeModel):
            raise TypeError(f"{type(model).__name__} has no energy; EnergyEP needs a conservative model")
        free = free_phase(model, relaxation, xs)
        betas = [self.beta, -self.beta]
        nudged = relaxation.batched(
            lambda x, t, s: nudged_phases(model, cost, relaxation, x, t, s, betas)
        )(xs, targets, free.state)
        used = free.converged if gate else jnp.ones_like(free.converged)
        w = used.astype(free.state.dtype) / jnp.maximum(jnp.sum(used), 1)

        def contrast_energy(m):
            e = jax.vmap(lambda sp, sm, x: m.energy(sp, x) - m.energy(sm, x))
            return jnp.sum(w * e(nudged.state[:, 0], nudged.state[:, 1], xs)) / (2 * self.beta)

        grads = eqx.filter_grad(contrast_energy)(model)
        a = (nudged.state[:, 1] - nudged.state[:, 0]) / (2 * self.beta)
        return Estimate(grads=grads, free=free, contrast=a, nudged_residual=nudged.residual, used=used)
