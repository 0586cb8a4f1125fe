"""The cos(EP, BPTT) probe: a run's gradient against backpropagation through the Euler unroll.

The implicit adjoint is the exact gradient *at the fixed point*; BPTT differentiates what the
emulator actually computes, ``T1`` Euler steps from ``init_state``. Where the free phase has not
converged (a residual floor, an Euler limit cycle) the two references part, and the EP gradient's
cosine against BPTT tells how much of the training signal survives.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp

from analogeq.emulator import EulerRelaxation
from analogeq.ep import BPTT, compare_gradients


@eqx.filter_jit
def bptt_gradient(model, cost, relaxation: EulerRelaxation, xs, ys):
    """Gradient of the mean cost through the ``relaxation.T1``-step Euler unroll (a pytree shaped
    like ``model``); every sample counts (no convergence gate)."""
    return BPTT().estimate(model, cost, relaxation, xs, ys, gate=False).grads


def bptt_probe(grads, model, cost, relaxation, xs, ys) -> dict:
    """``{"grad_cosine_bptt", "grad_rel_error_bptt"}`` of ``grads`` (e.g. the EP gradient of the
    same batch) against :func:`bptt_gradient`; empty for a relaxation that is not explicit Euler
    (a chip settles in continuous time, so there is no unroll to differentiate)."""
    if not isinstance(relaxation, EulerRelaxation):
        return {}
    ref = bptt_gradient(model, cost, relaxation, jnp.asarray(xs), jnp.asarray(ys))
    overall = compare_gradients(grads, ref)["overall"]
    return {"grad_cosine_bptt": overall["cosine"], "grad_rel_error_bptt": overall["rel_error"]}
