"""The estimator interface: from a batch and a realization to a parameter gradient."""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from analogeq.emulator import AbstractRelaxation, RelaxResult
from analogeq.ep.gradients import force_gradient
from analogeq.ep.term import FreeTerm


class Estimate(eqx.Module):
    """A batch gradient and what it was built from.

    Attributes:
        grads: pytree shaped like the model (``None`` where a field is not a parameter);
            the gradient of the mean loss.
        free: the batched free-phase result.
        contrast: per-sample adjoint estimates ``a`` (``(B, *state_shape)``).
        nudged_residual: per-sample residual of the nudged phase (0 for exact references).
        used: per-sample mask of the samples the gradient was built from.
        inputs: the batch inputs ``(B, ...)`` (force-form estimators only, else ``None``).
        at: the states at which ``dF/dtheta`` was taken, as the realization read them
            (force-form estimators only, else ``None``).
        weighted: the per-sample adjoints as they enter ``grads`` (``contrast`` times the
            gating weight ``used / sum(used)``), so ``grads = sum_b weighted_b^T dF(at_b,
            inputs_b)/dtheta`` (force-form estimators only, else ``None``). These are the local
            signals an on-chip rank-one update is built from.
    """

    grads: object
    free: RelaxResult
    contrast: Array
    nudged_residual: Array
    used: Array
    inputs: Array | None = None
    at: Array | None = None
    weighted: Array | None = None


def sample_keys(key, n: int):
    """``n`` per-sample keys, or ``None`` for noiseless runs."""
    return None if key is None else jax.random.split(key, n)


def phase(model, key):
    """``(field realized for this phase, noise key for the relaxation)``."""
    if key is None:
        return model, None
    k_read, k_noise = jax.random.split(key)
    return model.sample_phase(k_read), k_noise


def free_phase(model, relaxation: AbstractRelaxation, xs: Array, key=None) -> RelaxResult:
    """Batched free phase: settle ``F(s; x_b)`` from ``model.init_state(x_b)``.

    ``key`` (optional) draws each sample's read noise and relaxation noise.
    """
    model.check_input(xs[0])

    def one(x, k):
        m, k_noise = phase(model, k)
        return relaxation.free(FreeTerm(m, x, m.noise()), m.init_state(x), key=k_noise)

    return relaxation.batched(one)(xs, sample_keys(key, xs.shape[0]))


class AbstractEstimator(eqx.Module):
    """Anything that turns a batch into a gradient of the mean cost."""

    @abc.abstractmethod
    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        """Gradient of the mean cost over the batch ``(xs, targets)``; ``key`` drives the
        realization's noise (``None``: noiseless)."""


class AbstractForceFormEstimator(AbstractEstimator):
    """Turns the free equilibrium of each sample into an adjoint ``a`` (force-form estimators).

    Subclasses implement :meth:`contrast`; :meth:`estimate` runs the free phase, the contrast
    per sample and the force-form gradient ``g = a^T dF/dtheta``. With ``gate`` samples whose
    free phase did not converge are left out of the gradient (and counted in the metrics).
    """

    @abc.abstractmethod
    def contrast(self, model, cost, relaxation, x, target, s_star, key=None) -> tuple[Array, Array]:
        """Per-sample ``(a, nudged_residual)``, ``a`` approximating ``-d s_beta/d beta``, formed
        from states as ``relaxation.read`` returns them."""

    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        k_free, k_nudged = (None, None) if key is None else jax.random.split(key)
        free = free_phase(model, relaxation, xs, k_free)
        a, nres = relaxation.batched(
            lambda x, t, s, k: self.contrast(model, cost, relaxation, x, t, s, k)
        )(xs, targets, free.state, sample_keys(k_nudged, xs.shape[0]))
        used = free.converged if gate else jnp.ones_like(free.converged)
        weight = used.astype(a.dtype) / jnp.maximum(jnp.sum(used), 1)
        weighted = jax.vmap(model.update_adjoint)(a) * weight.reshape((-1,) + (1,) * (a.ndim - 1))
        # The update is local: the read contrast times the presynaptic signals at the read state.
        at = relaxation.read(free.state)
        grads = force_gradient(model, xs, at, weighted)
        return Estimate(grads=grads, free=free, contrast=a, nudged_residual=nres, used=used,
                        inputs=xs, at=at, weighted=weighted)
