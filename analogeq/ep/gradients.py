"""Parameter gradients in force form and comparison of two gradients."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array


def force_gradient(model, xs: Array, states: Array, contrast: Array):
    """``g = sum_b a_b^T dF(s_b; x_b)/dtheta`` for a batch, as a pytree shaped like ``model``.

    Args:
        model: the field whose parameters get the gradient.
        xs: inputs, shape ``(B, ...)``.
        states: the states at which ``dF/dtheta`` is taken (the free equilibria), ``(B, ...)``.
        contrast: per-sample adjoint estimates ``a_b``, ``(B, ...)``, already weighted (e.g.
            divided by the batch size for a mean).
    """
    _, pullback = eqx.filter_vjp(lambda m: jax.vmap(m.force)(states, xs), model)
    (g,) = pullback(contrast)
    return g


def _named_leaves(tree):
    leaves = jax.tree_util.tree_leaves_with_path(eqx.filter(tree, eqx.is_array))
    return {jax.tree_util.keystr(path): np.asarray(leaf, dtype=np.float64) for path, leaf in leaves}


def _stats(a: np.ndarray, b: np.ndarray) -> dict:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    cos = float(a.ravel() @ b.ravel() / (na * nb)) if na > 0 and nb > 0 else float("nan")
    rel = float(np.linalg.norm(a - b) / nb) if nb > 0 else float("nan")
    return {"cosine": cos, "rel_error": rel}


def compare_gradients(grad, reference) -> dict:
    """Cosine and relative error ``|g - g_ref| / |g_ref|`` of ``grad`` against ``reference``.

    Returns ``{"overall": {...}, "per_param": {path: {"cosine", "rel_error"}}}``; both pytrees
    must have the same structure (e.g. two estimators' gradients of one model).
    """
    ga, gb = _named_leaves(grad), _named_leaves(reference)
    if ga.keys() != gb.keys():
        raise ValueError(
            f"gradients have different parameters: {sorted(ga)} vs {sorted(gb)}"
        )
    per = {k: _stats(ga[k], gb[k]) for k in ga}
    flat_a = np.concatenate([v.ravel() for v in ga.values()])
    flat_b = np.concatenate([v.ravel() for v in gb.values()])
    return {"overall": _stats(flat_a, flat_b), "per_param": per}


def global_norm(tree) -> Array:
    """Euclidean norm over every array leaf."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))
    return jnp.sqrt(sum(jnp.sum(jnp.abs(x) ** 2) for x in leaves))


def tree_cosine(a, b) -> Array:
    """Cosine between two gradient pytrees (traceable: usable inside jit and vmap)."""
    la = jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_array))
    lb = jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_array))
    dot = sum(jnp.sum(x * y) for x, y in zip(la, lb))
    return dot / (global_norm(a) * global_norm(b))
