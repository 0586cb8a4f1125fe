"""Equilibrium Propagation estimators built from free and nudged phases.

Nudged dynamics for nudge ``beta_k`` (the :class:`~analogeq.ep.term.NudgedTerm`):
``ds/dt = F(s) - beta_k dC/ds [- 2 A (s - s*)]`` with ``A = (J - J^T)/2`` taken at ``s*``
(AsymEP) or, with common-mode tracking, at the mean of the nudged states. All nudged phases
are relaxed together as one stacked state, so tracking can see the common mode.

The contrast is ``a = -Re[(1/K) sum_k (s_k - s*) / beta_k]``: one-sided (``K = 1``),
centered (``+-beta``) and holomorphic (``beta_k = |beta| e^{2 pi i k / N}``) are the same
formula with different nudges.
"""

from __future__ import annotations

from typing import ClassVar

import math
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.costs import cost_grad_s
from analogeq.emulator import RelaxResult
from analogeq.ep.base import AbstractForceFormEstimator, phase
from analogeq.ep.linear import jacobian_products
from analogeq.ep.term import CORRECTIONS, NudgedTerm

KINDS = ("one-sided", "centered", "holomorphic")
"""Values of :attr:`EP.kind`, i.e. the nudges: ``beta``; ``+-beta``; ``N`` complex ``beta_k``."""


def nudged_phases(model, cost, relaxation, x, target, s_star, betas, correction="none", key=None) -> RelaxResult:
    """Relax every nudged phase from ``s*`` together; the result's state is ``(K, *shape)``.

    The relaxation receives the phases as one :class:`~analogeq.ep.term.NudgedTerm`.

    Args:
        betas: the nudges ``beta_k`` (real or complex numbers).
        correction: one of :data:`CORRECTIONS`.
        key: draws the phase's read and relaxation noise (``None``: noiseless).
    """
    model, k_noise = phase(model, key)
    term = NudgedTerm(model, x, cost, target, s_star, betas, correction, noise=model.noise())
    return relaxation.nudged(term, term.initial_state(), key=k_noise)


class EP(AbstractForceFormEstimator):
    """Force-form EP: ``g = a^T dF/dtheta`` with ``a`` from nudged phases.

    Attributes:
        beta: nudge strength (> 0, dimensionless; the radius for holomorphic).
        kind: ``"one-sided"``, ``"centered"`` or ``"holomorphic"``.
        n_points: number of complex nudges ``N`` for holomorphic (>= 2).
        correction: ``"none"`` (plain force-form EP), ``"asym"`` (AsymEP, ``-2A(s*)(s - s*)``)
            or ``"asym-tracking"`` (the same term linearized at the nudged states' mean).
    """

    beta: float = eqx.field(static=True, default=1e-2)
    kind: str = eqx.field(static=True, default="centered")
    n_points: int = eqx.field(static=True, default=2)
    correction: str = eqx.field(static=True, default="asym")

    def __check_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown EP kind {self.kind!r}; choose one of {KINDS}")
        if not (isinstance(self.beta, (int, float)) and math.isfinite(self.beta)) or self.beta <= 0:
            raise ValueError(f"beta must be a finite number > 0 (the nudge strength); got {self.beta}")
        if self.kind == "holomorphic" and int(self.n_points) < 2:
            raise ValueError(f"n_points (N) must be >= 2 for holomorphic EP; got {self.n_points}")
        if self.correction not in CORRECTIONS:
            raise ValueError(f"unknown correction {self.correction!r}; choose one of {CORRECTIONS}")

    def nudges(self) -> tuple[complex | float, ...]:
        """The nudges ``beta_k`` used by this estimator."""
        if self.kind == "one-sided":
            return (self.beta,)
        if self.kind == "centered":
            return (self.beta, -self.beta)
        n = int(self.n_points)
        return tuple(self.beta * complex(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n))
                     for k in range(n))

    def contrast(self, model, cost, relaxation, x, target, s_star, key=None):
        betas = self.nudges()
        s_star = relaxation.hold(s_star)
        nudged = nudged_phases(model, cost, relaxation, x, target, s_star, betas, self.correction, key)
        b = jnp.asarray(betas, dtype=nudged.state.dtype).reshape((-1,) + (1,) * s_star.ndim)
        diff = relaxation.read_difference(nudged.state, s_star)
        a = -jnp.real(jnp.mean(diff / b, axis=0)).astype(s_star.dtype)
        return a, nudged.residual


class ImplicitAdjoint(AbstractForceFormEstimator):
    """Exact gradient at the free equilibrium: solve ``J^T lambda = -dC/ds`` matrix-free (GMRES).

    Attributes:
        tol: relative tolerance of the linear solve.
        maxiter: GMRES restarts.

    The returned per-sample "nudged residual" is the solve's relative residual.
    """

    sensed: ClassVar[bool] = False  # the exact reference, never a hardware's approximation
    tol: float = eqx.field(static=True, default=1e-8)
    maxiter: int = eqx.field(static=True, default=50)

    def contrast(self, model, cost, relaxation, x, target, s_star, key=None):
        del relaxation, key
        g = cost_grad_s(model, cost, s_star, target)
        _, jtv = jacobian_products(partial(model.force, x=x), s_star)
        flat = lambda v: jtv(v.reshape(s_star.shape)).ravel()  # noqa: E731
        lam, _ = jax.scipy.sparse.linalg.gmres(
            flat, -g.ravel(), tol=self.tol, atol=0.0, restart=min(s_star.size, 64),
            maxiter=self.maxiter, solve_method="incremental",
        )
        lam = lam.reshape(s_star.shape)
        solve_res = jnp.linalg.norm(jtv(lam) + g) / jnp.maximum(jnp.linalg.norm(g), 1e-30)
        return lam, solve_res
