"""Costs on the readout ``y = R(s)``: value, and a holomorphic gradient ``dC/dy``.

Targets are either integer class labels (turned into one-hot vectors) or float arrays of the
readout's shape. ``grad_y`` accepts complex readouts so the holomorphic estimator can nudge
with complex ``beta``.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array


def as_target(y: Array, target: Array) -> Array:
    """Targets as float arrays shaped like ``y`` (labels become one-hot)."""
    target = jnp.asarray(target)
    if jnp.issubdtype(target.dtype, jnp.integer):
        return jax.nn.one_hot(target, y.shape[-1], dtype=jnp.real(y).dtype)
    if target.shape != y.shape:
        raise ValueError(f"target has shape {target.shape} but the readout has shape {y.shape}")
    return target


class AbstractCost(eqx.Module):
    """A cost ``C(y, target)`` summed over all readout positions (dimensionless)."""

    @abc.abstractmethod
    def __call__(self, y: Array, target: Array) -> Array:
        """Scalar cost of real outputs ``y``."""

    @abc.abstractmethod
    def grad_y(self, y: Array, target: Array) -> Array:
        """``dC/dy``, holomorphic in ``y``."""


class SquaredError(AbstractCost):
    """``C = 1/2 |y - target|^2``."""

    def __call__(self, y, target):
        return 0.5 * jnp.sum((y - as_target(y, target)) ** 2)

    def grad_y(self, y, target):
        return y - as_target(y, target)


class CrossEntropy(AbstractCost):
    """Softmax cross-entropy over the last axis, ``C = -sum target * log_softmax(y)``."""

    def __call__(self, y, target):
        return -jnp.sum(as_target(y, target) * jax.nn.log_softmax(y, axis=-1))

    def grad_y(self, y, target):
        # softmax written out so it stays holomorphic for complex y (the shift is a constant).
        shift = jax.lax.stop_gradient(jnp.max(jnp.real(y), axis=-1, keepdims=True))
        e = jnp.exp(y - shift)
        return e / jnp.sum(e, axis=-1, keepdims=True) - as_target(y, target)


class TokenCrossEntropy(AbstractCost):
    """Per-position softmax cross-entropy for sequences, averaged over the scored positions.

    ``y`` are logits ``(T, V)`` (or ``(V,)``), ``target`` integer token ids ``(T,)`` (or ``()``);
    a negative target marks a position that is not scored (its cost and gradient are zero).
    ``C = -(1/n) sum_{t: target_t >= 0} log softmax(y_t)[target_t]`` in nats per scored token,
    ``n`` the number of scored positions (at least 1).
    """

    def _weights(self, y, target):
        target = jnp.asarray(target)
        if not jnp.issubdtype(target.dtype, jnp.integer):
            raise ValueError(f"token_cross_entropy needs integer token targets; got dtype {target.dtype}")
        if target.shape != y.shape[:-1]:
            raise ValueError(f"target has shape {target.shape} but the logits have shape {y.shape}; "
                             "expected one token id per position")
        scored = (target >= 0).astype(jnp.real(y).dtype)
        onehot = jax.nn.one_hot(jnp.maximum(target, 0), y.shape[-1], dtype=jnp.real(y).dtype)
        return onehot * scored[..., None], scored[..., None] / jnp.maximum(jnp.sum(scored), 1.0)

    def __call__(self, y, target):
        onehot, w = self._weights(y, target)
        return -jnp.sum(w * onehot * jax.nn.log_softmax(y, axis=-1))

    def grad_y(self, y, target):
        onehot, w = self._weights(y, target)
        shift = jax.lax.stop_gradient(jnp.max(jnp.real(y), axis=-1, keepdims=True))
        e = jnp.exp(y - shift)
        return w * (e / jnp.sum(e, axis=-1, keepdims=True) - onehot)


COSTS = {"squared_error": SquaredError, "cross_entropy": CrossEntropy,
         "token_cross_entropy": TokenCrossEntropy}


def make_cost(name: str) -> AbstractCost:
    """Cost by name: ``squared_error``, ``cross_entropy`` or ``token_cross_entropy``."""
    try:
        return COSTS[name]()
    except KeyError:
        raise ValueError(f"unknown cost {name!r}; choose one of {sorted(COSTS)}") from None


def cost_grad_s(model, cost: AbstractCost, s: Array, target: Array) -> Array:
    """``dC/ds = R^T dC/dy`` through the (linear) readout; holomorphic in ``s``."""
    y, pullback = jax.vjp(model.readout, s)
    (g,) = pullback(cost.grad_y(y, target))
    return g
