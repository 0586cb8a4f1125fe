"""Evaluation of a realization on a data set: the free phase, read out and scored."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.costs import AbstractCost
from analogeq.emulator import AbstractRelaxation
from analogeq.ep import free_phase
from analogeq.spec import Spec
from analogeq.stability import scored_accuracy


def evaluate(model, cost: AbstractCost, relaxation: AbstractRelaxation, xs, ys, key=None) -> dict:
    """Free phase on a data set: accuracy, mean cost, how many samples did not converge and the
    mean settle time (units of ``tau``). ``key`` drives the realization's noise."""
    # A chip's numbers enter as traced arrays: one compiled free phase per structure.
    free = _eval_free(*traced((model, relaxation)), jnp.asarray(xs), key)
    scores = free_scores(model, cost, free, jnp.asarray(ys))
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
def _eval_free(model, relaxation, xs, key):
    return free_phase(model, relaxation, xs, key)


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
