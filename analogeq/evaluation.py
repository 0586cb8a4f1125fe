"""Evaluation of a realization on a data set: the free phase, read out and scored."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.costs import AbstractCost
from analogeq.emulator import AbstractRelaxation
from analogeq.ep import free_phase
from analogeq.ep.base import sample_keys
from analogeq.spec import Spec
from analogeq.stability import scored_accuracy

EVAL_CHUNK = 1000
"""Most samples relaxed at once by :func:`evaluate`: a larger set (MNIST's 10,000 test images)
is relaxed in chunks of at most this size, so memory stays bounded and one compiled program
serves every set size above it."""
EVAL_ELEMENTS = 2**25
"""Parameter elements one chunk may hold per sample times samples (128 MiB in float32): a chip
with read noise realizes its conductances per sample, so a 784-500-10 chip relaxed 1000 samples
at once held ~17 GB (measured); :func:`eval_chunk` shrinks the chunk for large models."""


def eval_chunk(model) -> int:
    """The default chunk of :func:`evaluate` for ``model``: ``EVAL_ELEMENTS`` over its number of
    parameter elements, between 32 and :data:`EVAL_CHUNK` samples."""
    n = sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array)))
    return max(32, min(EVAL_CHUNK, EVAL_ELEMENTS // max(n, 1)))


def evaluate(model, cost: AbstractCost, relaxation: AbstractRelaxation, xs, ys, key=None,
             *, chunk: int | None = None) -> dict:
    """Free phase on a data set: accuracy, mean cost, how many samples did not converge and the
    mean settle time (units of ``tau``). ``key`` drives the realization's noise.

    Sets of more than ``chunk`` samples (default :func:`eval_chunk`) are relaxed ``chunk`` at a
    time (the last chunk padded by repeating its first sample, the padding dropped); each sample
    keeps the noise key it gets in one piece (``sample_keys(key, n)``) and samples relax
    independently, so the scores equal those of one batch (up to floating-point summation
    order)."""
    chunk = eval_chunk(model) if chunk is None else chunk
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"evaluate: chunk must be a positive integer; got {chunk!r}")
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    # A chip's numbers enter as traced arrays: one compiled free phase per structure.
    m, r = traced((model, relaxation))
    n = xs.shape[0]
    keys = sample_keys(key, n)
    if n <= chunk:
        free = _eval_free(m, r, xs, keys)
    else:
        parts = []
        for i in range(0, n, chunk):
            j = min(i + chunk, n)
            idx = jnp.concatenate([jnp.arange(i, j), jnp.full(chunk - (j - i), i)])
            part = _eval_free(m, r, xs[idx], None if keys is None else keys[idx])
            parts.append(jax.tree_util.tree_map(lambda a, k=j - i: a[:k], part))
        free = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *parts)
    scores = free_scores(model, cost, free, ys)
    return {k: int(v) if k == "test_unconverged" else float(v) for k, v in scores.items()}


def free_scores(model, cost: AbstractCost, free, ys) -> dict:
    """The numbers of :func:`evaluate` (as arrays, traceable) from a settled free phase ``free``
    of ``model`` on inputs whose labels are ``ys``: accuracy, mean cost, unconverged samples,
    largest residual and mean settle time (units of ``tau``)."""
    y = jax.vmap(model.readout)(free.state)
    return {
        "test_acc": scored_accuracy(y, ys),
        "test_loss": jnp.mean(jax.vmap(cost)(y, ys)),
        "test_unconverged": jnp.sum(~free.converged),
        "test_residual_max": jnp.max(free.residual),
        "settle_time_tau": jnp.mean(free.time),
    }


@eqx.filter_jit
def _eval_free(model, relaxation, xs, keys):
    return free_phase(model, relaxation, xs, keys=keys)


def _is_spec(x) -> bool:
    return isinstance(x, Spec)


def _arrays(spec):
    return jax.tree_util.tree_map(
        lambda v: jnp.asarray(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v, spec)


def traced(tree):
    """``tree`` with the numeric leaves of every configuration in it (a :class:`Spec` registered
    as a pytree: a chip's hardware description, whose leaves are its traced fields, see
    :data:`analogeq.hardware.sections.TRACED_FIELDS`) as weakly typed JAX scalars.

    ``eqx.filter_jit`` treats Python numbers as static (part of the compiled program) and arrays
    as traced arguments; passing a tree through this first makes a compiled function take those
    numbers (a chip's levels, noise amplitudes, temperature...) as arguments, so one program
    serves every value. Weak typing keeps them from promoting a float32 computation. A Spec that
    is not a pytree is a leaf and comes back unchanged."""
    return jax.tree_util.tree_map(lambda x: _arrays(x) if _is_spec(x) else x, tree, is_leaf=_is_spec)


def untraced(tree, like):
    """``tree`` (an output of a compiled function that took ``traced(like)``: the new model, or a
    gradient shaped like it) with its configurations replaced, in order, by those of ``like``, so
    the caller gets its own plain-number configurations back (and a gradient's arrays at a
    configuration, which are zero, do not count as parameters). A tree holding another number
    of configurations than ``like`` is returned as it is."""
    def specs(t):
        return [x for x in jax.tree_util.tree_leaves(t, is_leaf=_is_spec) if _is_spec(x)]

    old = specs(like)
    if not old or len(specs(tree)) != len(old):
        return tree
    it = iter(old)
    return jax.tree_util.tree_map(lambda x: next(it) if _is_spec(x) else x, tree, is_leaf=_is_spec)
