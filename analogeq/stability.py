"""Stability controls of the equilibrium-transformer recipe: pure functions plus the training step
that applies them (the Jacobian penalty after Bai, Koltun & Kolter 2021, arXiv:2106.14342).

As training makes attention expressive, a complex eigenvalue pair of the relaxation can cross
into instability (a Hopf bifurcation): the free phase stops converging and EP breaks. The
controls, all optional:

* ``resreg`` -- penalty ``R(theta) = mean_b |eps F_theta(z_b)|^2 / |z_b|^2`` at the free states
  ``z_b`` after ``T1`` steps, held fixed (no gradient through ``z``); its weight is
  ``resreg * min(1, res / resreg_scale)`` and zero while ``res <= resreg_deadband``, where
  ``res = mean_b |eps F(z_b)| / |z_b|`` is the batch's step residual (``resreg_scale = 2e-2``).
* ``jacreg`` -- Hutchinson penalty ``mean_b |A_b v_b|^2 / |v_b|^2`` with ``A = (J - J^T)/2`` the
  non-conservative part of ``J = dF/dz`` at the (fixed) free state and ``v_b ~ N(0, I)``
  (an unbiased estimate of ``|A|_F^2 / n``), weighted by ``lambda`` from a residual-driven
  controller: ``r_ema <- m r_ema + (1 - m) res``, ``lambda <- clip(lambda (r_ema / target)^0.3,
  floor, max)``. ``lambda`` and ``r_ema`` live in the training state and are checkpointed.
* ``weight_cap`` -- after each update every capped matrix (``W_q, W_k, W_v, W_o, W_1, W_2`` of the
  transformer, every 2-D weight of other models) is rescaled so its Frobenius norm is at most
  ``weight_cap * sqrt(min(rows, cols))`` (a bound on its RMS singular value).
* ``ema`` -- exponential moving average of the parameters (decay ``ema``); evaluation uses it.
* ``warmup`` -- linear learning-rate warmup over that many steps; ``grad_clip`` -- clip the
  global gradient norm.
* The validity gate is the existing per-sample ``gate`` (samples whose free phase did not reach
  ``tol`` are left out of the EP gradient); the penalties above always apply.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float

from analogeq.ep.base import AbstractEstimator, Estimate
from analogeq.ep.recipe import add_trees
from analogeq.updaters import AbstractUpdater

CONTROLLER_POWER = 0.3


class StabilityState(eqx.Module):
    """Controller and EMA state carried through training (and checkpointed).

    Attributes:
        jac_lambda: current ``jacreg`` weight (scalar).
        res_ema: EMA of the batch step residual (scalar).
        ema_params: EMA of the model's float arrays (a model-shaped pytree) or ``None``.
    """

    jac_lambda: Float[Array, ""]
    res_ema: Float[Array, ""]
    ema_params: object


def enabled(cfg) -> bool:
    """Whether ``cfg`` asks for any control that needs the stability training step."""
    return cfg.resreg > 0 or cfg.jacreg > 0 or cfg.weight_cap > 0 or cfg.ema > 0


class StabilizedUpdater(AbstractUpdater):
    """Wraps an updater: its state is ``(inner_state, StabilityState)``. Before the inner update
    the ``jacreg`` controller reads the step residual measured by :class:`Penalized` and adds
    ``lambda`` times the Jacobian penalty's gradient; after it the capped matrices are clipped to
    ``weight_cap`` and the parameter EMA is advanced.

    Because the controller state is part of the updater state, ``updater.init(model)`` is the
    template a checkpoint of a stabilized run is read into (see :func:`analogeq.training.train`).

    Attributes:
        inner: the wrapped updater (e.g. :class:`~analogeq.updaters.OptaxUpdater`).
        jacreg: initial ``jacreg`` weight (0: off); ``jacreg_target``: residual the controller
            steers to (also the initial residual EMA); ``jacreg_floor``, ``jacreg_max``: clip
            of ``lambda``; ``jacreg_ema``: EMA decay of the residual.
        weight_cap: Frobenius cap factor (0: off); ``ema``: EMA decay (0: off).
    """

    inner: AbstractUpdater
    jacreg: float = eqx.field(static=True, default=0.0)
    jacreg_target: float = eqx.field(static=True, default=1e-3)
    jacreg_floor: float = eqx.field(static=True, default=0.1)
    jacreg_max: float = eqx.field(static=True, default=10.0)
    jacreg_ema: float = eqx.field(static=True, default=0.9)
    weight_cap: float = eqx.field(static=True, default=0.0)
    ema: float = eqx.field(static=True, default=0.0)

    def init(self, model):
        leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
        dtype = leaves[0].dtype if leaves else jnp.result_type(float)
        ema = eqx.filter(model, eqx.is_inexact_array) if self.ema > 0 else None
        st = StabilityState(jac_lambda=jnp.asarray(self.jacreg, dtype),
                            res_ema=jnp.asarray(self.jacreg_target, dtype), ema_params=ema)
        return self.inner.init(model), st

    def update(self, model, grads, state, key, estimate=None):
        inner_state, st = state
        lam, r_ema = st.jac_lambda, st.res_ema
        if self.jacreg > 0:
            res = estimate.metrics["step_residual"].astype(r_ema.dtype)
            lam, r_ema = controller_update(lam, r_ema, res, target=self.jacreg_target,
                                           floor=self.jacreg_floor, maximum=self.jacreg_max,
                                           momentum=self.jacreg_ema)
            grads = add_trees(grads, jax.tree_util.tree_map(lambda a: (lam * a).astype(a.dtype),
                                                            estimate.penalties["jacreg"]))
        model, inner_state = self.inner.update(model, grads, inner_state, key, estimate=estimate)
        if self.weight_cap > 0:
            model = cap_weights(model, self.weight_cap)
        ema = ema_update(st.ema_params, model, self.ema) if self.ema > 0 else st.ema_params
        return model, (inner_state, StabilityState(lam, r_ema, ema))


def controller_metrics(model, new_model, state, new_state, est) -> dict:
    """Step hook: the ``jacreg`` controller's weight and residual EMA after the step."""
    del model, new_model, state, est
    st = new_state[1]
    return {"jacreg_lambda": st.jac_lambda, "res_ema": st.res_ema}


class Penalized(AbstractEstimator):
    """Wraps an estimator and adds the stability penalties of the module docstring, measured at
    the free states ``z`` as the realization reads them (held fixed).

    The step residual ``mean_b |eps F(z_b)| / |z_b|`` goes to ``Estimate.metrics["step_residual"]``;
    ``resreg`` adds its weighted gradient to the estimate's gradient (its weight depends on this
    step only); ``jacreg`` leaves its unweighted gradient in ``Estimate.penalties["jacreg"]``
    for :class:`StabilizedUpdater`, whose controller state sets the weight.

    Attributes:
        inner: the wrapped estimator.
        eps: the emulator's Euler step (units of ``tau``) that scales the residual.
        resreg, resreg_scale, resreg_deadband: the residual penalty's weight and schedule.
        jacreg: whether to measure the Jacobian penalty.
    """

    inner: AbstractEstimator
    eps: float = eqx.field(static=True, default=1.0)
    resreg: float = eqx.field(static=True, default=0.0)
    resreg_scale: float = eqx.field(static=True, default=2e-2)
    resreg_deadband: float = eqx.field(static=True, default=0.0)
    jacreg: bool = eqx.field(static=True, default=False)

    def nudges(self):
        return self.inner.nudges()

    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        if key is None:
            raise ValueError("the stability penalties draw Hutchinson probes: pass a PRNG key")
        k_inner, k_jac = jax.random.split(key)
        est = self.inner.estimate(model, cost, relaxation, xs, targets, gate=gate, key=k_inner)
        z = jax.lax.stop_gradient(relaxation.read(est.free.state))
        res = jnp.mean(step_residual(model, xs, z, self.eps))
        grads, metrics, penalties = est.grads, {**est.metrics, "step_residual": res}, dict(est.penalties)
        if self.resreg > 0:
            w = resreg_weight(res, self.resreg, self.resreg_scale, self.resreg_deadband)
            pen, g = eqx.filter_value_and_grad(lambda m: residual_penalty(m, xs, z, self.eps))(model)
            grads = add_trees(grads, jax.tree_util.tree_map(lambda a: (w * a).astype(a.dtype), g))
            metrics.update(resreg_weight=w, resreg_penalty=pen)
        if self.jacreg:
            pen, g = eqx.filter_value_and_grad(lambda m: jacobian_penalty(m, xs, z, k_jac))(model)
            penalties["jacreg"] = g
            metrics["jacreg_penalty"] = pen
        return dataclasses.replace(est, grads=grads, metrics=metrics, penalties=penalties)


def step_residual(model, xs: Array, states: Array, eps: float) -> Float[Array, " B"]:
    """Per-sample ``|eps F(z_b)| / |z_b|`` (dimensionless)."""
    def one(s, x):
        f = model.force(s, x)
        return eps * jnp.sqrt(jnp.sum(f * f)) / jnp.maximum(jnp.sqrt(jnp.sum(s * s)), 1e-12)
    return jax.vmap(one)(states, xs)


def residual_penalty(model, xs: Array, states: Array, eps: float) -> Float[Array, ""]:
    """``mean_b |eps F_theta(z_b)|^2 / |z_b|^2`` with the states ``(B, *shape)`` held fixed."""
    states = jax.lax.stop_gradient(states)

    def one(s, x):
        f = model.force(s, x)
        return eps ** 2 * jnp.sum(f * f) / jnp.maximum(jnp.sum(s * s), 1e-24)
    return jnp.mean(jax.vmap(one)(states, xs))


def resreg_weight(res: Array, weight: float, scale: float = 2e-2, deadband: float = 0.0) -> Array:
    """``weight * min(1, res / scale)`` where ``res > deadband``, else 0."""
    return jnp.where(res > deadband, weight * jnp.minimum(1.0, res / scale), 0.0)


def jacobian_penalty(model, xs: Array, states: Array, key) -> Float[Array, ""]:
    """Hutchinson estimate ``mean_b |A_b v_b|^2 / |v_b|^2``, ``A = (J - J^T)/2`` at fixed states,
    one Gaussian probe ``v_b`` per sample drawn from ``key``; differentiable in the parameters."""
    states = jax.lax.stop_gradient(states)
    vs = jax.random.normal(key, states.shape, states.dtype)

    def one(s, x, v):
        f = lambda z: model.force(z, x)  # noqa: E731
        _, jv = jax.jvp(f, (s,), (v,))
        _, pull = jax.vjp(f, s)
        av = 0.5 * (jv - pull(v)[0])
        return jnp.sum(av * av) / jnp.sum(v * v)
    return jnp.mean(jax.vmap(one)(states, xs, vs))


def controller_update(lam: Array, res_ema: Array, res: Array, *, target: float, floor: float,
                      maximum: float, momentum: float) -> tuple[Array, Array]:
    """One step of the residual-driven ``jacreg`` controller; returns ``(lambda, r_ema)``."""
    r = momentum * res_ema + (1.0 - momentum) * res
    lam = jnp.clip(lam * (r / target) ** CONTROLLER_POWER, floor, maximum)
    return lam, r


def capped_names(model) -> tuple[str, ...]:
    """Names of the matrices a weight cap applies to."""
    from analogeq.models.transformer import MATRICES, EqTransformer

    if isinstance(model, EqTransformer):
        return MATRICES
    return ()


def cap_weights(model, cap: float):
    """Rescale each capped matrix ``W`` so that ``|W|_F <= cap sqrt(min(W.shape))``.

    For the transformer the capped matrices are ``W_q, W_k, W_v, W_o, W_1, W_2``; for other
    models every 2-D array leaf."""
    def scale(w):
        bound = cap * math.sqrt(min(w.shape))
        return w * jnp.minimum(1.0, bound / jnp.maximum(jnp.sqrt(jnp.sum(w * w)), 1e-30))

    names = capped_names(model)
    if names:
        return eqx.tree_at(lambda m: [getattr(m, n) for n in names], model,
                           [scale(getattr(model, n)) for n in names])
    return jax.tree_util.tree_map(lambda w: scale(w) if eqx.is_inexact_array(w) and w.ndim == 2 else w, model)


def ema_update(ema_params, model, decay: float):
    """``ema <- decay ema + (1 - decay) theta`` over the model's float arrays."""
    params = eqx.filter(model, eqx.is_inexact_array)
    return jax.tree_util.tree_map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def ema_model(model, state):
    """``model`` with its parameters replaced by the EMA in ``state`` (``model`` itself when the
    state carries no EMA)."""
    if not isinstance(state, tuple) or len(state) != 2 or not isinstance(state[1], StabilityState):
        return model
    ema = state[1].ema_params
    if ema is None:
        return model
    _, static = eqx.partition(model, eqx.is_inexact_array)
    return eqx.combine(ema, static)


def build_optimizer(cfg) -> optax.GradientTransformation:
    """``cfg.optimizer`` at ``cfg.lr``, with linear warmup over ``cfg.warmup`` steps and global
    gradient-norm clipping at ``cfg.grad_clip`` when those are > 0.

    Equal settings return the same object: an optax optimizer is a pair of closures held as a
    static field (compared by identity), so a fresh one per run would make every run's compiled
    training step a cache miss although its structure is the same."""
    return _optimizer(cfg.optimizer, float(cfg.lr), int(cfg.warmup), float(cfg.grad_clip))


@functools.lru_cache(maxsize=256)
def _optimizer(name: str, lr: float, warmup: int, grad_clip: float) -> optax.GradientTransformation:
    rate = optax.linear_schedule(0.0, lr, warmup) if warmup > 0 else lr
    opt = optax.adam(rate) if name == "adam" else optax.sgd(rate)
    if grad_clip > 0:
        opt = optax.chain(optax.clip_by_global_norm(grad_clip), opt)
    return opt


def scored_accuracy(y: Array, targets: Array) -> Array:
    """Fraction of correct argmax predictions over scored positions (integer targets >= 0)."""
    targets = jnp.asarray(targets)
    scored = targets >= 0
    hit = (jnp.argmax(y, axis=-1) == targets) & scored
    return jnp.sum(hit) / jnp.maximum(jnp.sum(scored), 1)
