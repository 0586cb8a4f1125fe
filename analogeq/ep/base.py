"""The estimator interface: from a batch and a realization to a parameter gradient."""

from __future__ import annotations

import abc
from functools import partial
from typing import ClassVar

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
        metrics: scalars an estimator (or a wrapper) measured on the way, logged by the
            training step (e.g. ``step_residual``).
        penalties: named gradient pytrees of regularizers whose weight the updater's state sets
            (e.g. ``jacreg``, see :mod:`analogeq.stability`).
    """

    grads: object
    free: RelaxResult
    contrast: Array
    nudged_residual: Array
    used: Array
    inputs: Array | None = None
    at: Array | None = None
    weighted: Array | None = None
    metrics: dict = eqx.field(default_factory=dict)
    penalties: dict = eqx.field(default_factory=dict)


def sample_keys(key, n: int):
    """``n`` per-sample keys, or ``None`` for noiseless runs."""
    return None if key is None else jax.random.split(key, n)


def phase(model, key):
    """``(field realized for this phase, noise key for the relaxation)``: ``key`` is split into
    the read-noise and the relaxation-noise key, or is already that pair stacked (``(2, 2)``,
    :func:`phase_keys`: phases of one sample sharing their read-noise draw)."""
    if key is None:
        return model, None
    k_read, k_noise = (key[0], key[1]) if jnp.ndim(key) == 2 else jax.random.split(key)
    return model.sample_phase(k_read), k_noise


def phase_keys(model, key, n: int):
    """Per-sample keys ``(free, nudged)`` of the free and the nudged phases of ``n`` samples
    (``(None, None)`` without a key).

    Each phase draws its own read noise, unless ``model.read_noise_per_sample``: then every
    phase of a sample uses the read-noise draw of its free phase (noise slower than the
    sample's settles, e.g. 1/f device noise), with relaxation noise still independent per
    phase. The free phase's draws are the same either way."""
    if key is None:
        return None, None
    k_free, k_nudged = jax.random.split(key)
    free, nudged = sample_keys(k_free, n), sample_keys(k_nudged, n)
    if not model.read_noise_per_sample:
        return free, nudged
    pair = jax.vmap(jax.random.split)
    f, m = pair(free), pair(nudged)  # (n, 2, 2): [read, relaxation] per sample
    return f, jnp.stack([f[:, 0], m[:, 1]], axis=1)


def free_phase(model, relaxation: AbstractRelaxation, xs: Array, key=None, *, keys=None) -> RelaxResult:
    """Batched free phase: settle ``F(s; x_b)`` from ``model.init_state(x_b)``.

    ``key`` (optional) draws each sample's read noise and relaxation noise; ``keys`` gives the
    per-sample keys (``sample_keys(key, n)``) directly instead, so a batch evaluated in chunks
    sees the noise it would see in one piece.
    """
    model.check_input(xs[0])
    keys = sample_keys(key, xs.shape[0]) if keys is None else keys
    model = model.for_settle()  # once for the batch, outside the per-sample map

    def one(x, k):
        m, k_noise = phase(model, k)
        return relaxation.free(FreeTerm(m, x, m.noise()), m.init_state(x), key=k_noise)

    return relaxation.batched(one)(xs, keys)


class AbstractEstimator(eqx.Module):
    """Anything that turns a batch into a gradient of the mean cost."""

    @abc.abstractmethod
    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        """Gradient of the mean cost over the batch ``(xs, targets)``; ``key`` drives the
        realization's noise (``None``: noiseless)."""

    def nudges(self) -> tuple[complex | float, ...]:
        """The nudges ``beta_k`` of the nudged phases this estimator runs per sample (empty for
        estimators that run none, such as the exact references); energy accounting and chips
        read it."""
        return ()


class AbstractForceFormEstimator(AbstractEstimator):
    """Turns the free equilibrium of each sample into an adjoint ``a`` (force-form estimators).

    ``sensed`` (a class attribute) says whether the estimate is the hardware's own: then the
    gradient is formed as the model's update senses it (:meth:`AbstractModel.update_gradient`),
    else it is the exact force gradient (a reference such as the implicit adjoint).

    Subclasses implement :meth:`contrast`; :meth:`estimate` runs the free phase, the contrast
    per sample and the force-form gradient ``g = a^T dF/dtheta``. With ``gate`` samples whose
    free phase did not converge, or whose nudged phases failed (:func:`nudged_failures`), are
    left out of the gradient (and counted in the metrics: ``unconverged``, ``nudged_failed``).
    """

    sensed: ClassVar[bool] = True

    @abc.abstractmethod
    def contrast(self, model, cost, relaxation, x, target, s_star, key=None) -> tuple[Array, Array]:
        """Per-sample ``(a, nudged_residual)``, ``a`` approximating ``-d s_beta/d beta``, formed
        from states as ``relaxation.read`` returns them."""

    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        free_keys, nudged_keys = phase_keys(model, key, xs.shape[0])
        # The phases settle the field with what is constant over the batch solved once (a chip's
        # wire networks, before each sample's read noise); the gradient is taken on the model.
        field = model.for_settle()
        free = free_phase(field, relaxation, xs, keys=free_keys)
        a, nres = relaxation.batched(
            lambda x, t, s, k: self.contrast(field, cost, relaxation, x, t, s, k)
        )(xs, targets, free.state, nudged_keys)
        nudged_failed = nudged_failures(a, nres)
        used = (free.converged & ~nudged_failed) if gate else jnp.ones_like(free.converged)
        weight = used.astype(a.dtype) / jnp.maximum(jnp.sum(used), 1)
        per_sample = (-1,) + (1,) * (a.ndim - 1)
        # where, not a product: 0 * NaN from a failed sample would poison the whole batch.
        weighted = jnp.where(used.reshape(per_sample),
                             jax.vmap(model.update_adjoint)(a) * weight.reshape(per_sample), 0)
        # The update is local: the read contrast times the presynaptic signals at the read state.
        at = relaxation.read(free.state)
        at = jnp.where(jnp.isfinite(at), at, 0)  # a non-finite free state enters with weight 0
        grads = (model.update_gradient if self.sensed else partial(force_gradient, model))(xs, at, weighted)
        return Estimate(grads=grads, free=free, contrast=a, nudged_residual=nres, used=used,
                        inputs=xs, at=at, weighted=weighted,
                        metrics={"nudged_failed": jnp.sum(nudged_failed)})


NUDGED_RESIDUAL_LIMIT = 0.1
"""Nudged-phase residual ``|F|/|s|`` (dimensionless) above which the phase counts as failed.

A residual between the relaxation's ``tol`` and this limit is a nudged phase that is still
settling at the end of ``T2`` (holomorphic EP at ``|beta| = 0.4`` ends near 1e-2 with 20 Euler
steps): it biases the finite difference ``(s_beta - s*) / beta`` a little (finite-radius
holomorphic EP: Laborieux & Zenke 2022, NeurIPS) but still carries the gradient. Above it the
force is a tenth of the state or more: the nudged state is nowhere near a fixed point
(diverging or oscillating) and the contrast is meaningless, e.g. states of size 1e80 at
``|beta| = 0.4`` on an unstable field."""


def nudged_failures(a: Array, nres: Array) -> Array:
    """Per-sample flag: the nudged phases of a sample failed (non-finite contrast or residual,
    or a residual above :data:`NUDGED_RESIDUAL_LIMIT`). ``a`` is ``(B, ...)``, ``nres`` ``(B,)``
    or ``(B, K)``."""
    bad_a = ~jnp.all(jnp.isfinite(a.reshape(a.shape[0], -1)), axis=1)
    r = nres.reshape(nres.shape[0], -1)
    bad_r = ~jnp.all(jnp.isfinite(r) & (r <= NUDGED_RESIDUAL_LIMIT), axis=1)
    return bad_a | bad_r
