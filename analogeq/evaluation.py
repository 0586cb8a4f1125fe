"""Evaluation of a realization on a data set: the free phase, read out and scored."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.costs import AbstractCost
from analogeq.emulator import AbstractRelaxation
from analogeq.ep import free_phase
from analogeq.stability import scored_accuracy


def evaluate(model, cost: AbstractCost, relaxation: AbstractRelaxation, xs, ys, key=None) -> dict:
    """Free phase on a data set: accuracy, mean cost, how many samples did not converge and the
    mean settle time (units of ``tau``). ``key`` drives the realization's noise."""
    free = _eval_free(model, relaxation, jnp.asarray(xs), key)
    y = jax.vmap(model.readout)(free.state)
    ys = jnp.asarray(ys)
    return {
        "test_acc": float(scored_accuracy(y, ys)),
        "test_loss": float(jnp.mean(jax.vmap(cost)(y, ys))),
        "test_unconverged": int(jnp.sum(~free.converged)),
        "test_residual_max": float(jnp.max(free.residual)),
        "settle_time_tau": float(jnp.mean(free.time)),
    }


@eqx.filter_jit
def _eval_free(model, relaxation, xs, key):
    return free_phase(model, relaxation, xs, key)
