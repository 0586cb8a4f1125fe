"""Energy of the neuron nodes: charging their capacitance and the leak conductance's dissipation.

Node voltages are in volts (``v = s * v_unit``). Charging convention: moving a node of
capacitance ``C`` from ``v_start`` to ``v_end`` through its driver draws ``C |v_end - v_start|
|v_end|`` from the supply rail of ``v_end``'s polarity (a source at ``v_end`` delivers the charge
``C (v_end - v_start)``); nothing is recovered when a node discharges. From the reset state
``v_start = 0`` this is ``C v^2``: half stored on the node, half dissipated in the charging path.
"""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def charging_energy(C: float, v_start: Float[ArrayLike, "*n"], v_end: Float[ArrayLike, "*n"]) -> Float[Array, ""]:
    """``sum_i C |v_end_i - v_start_i| |v_end_i|`` [J] for node capacitance ``C`` [F] and node
    voltages [V] (see the module docstring)."""
    v_start, v_end = jnp.asarray(v_start), jnp.asarray(v_end)
    return C * jnp.sum(jnp.abs(v_end - v_start) * jnp.abs(v_end))


def leak_energy(g_leak: float, v: Float[ArrayLike, "*n"], window: Float[ArrayLike, ""]) -> Float[Array, ""]:
    """``sum_i g_leak v_i^2 window`` [J]: the leak conductances [S] held at node voltages ``v``
    [V] for ``window`` [s]."""
    v = jnp.asarray(v)
    return g_leak * jnp.sum(v**2) * window
