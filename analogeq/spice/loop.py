"""SPICE-in-the-loop EP against ODE EP on the same chip.

SPICE-in-the-loop EP is the ordinary estimator with ngspice as its relaxation,
``EP(...).estimate(chip, SquaredError(), SpiceRelaxation(chip.config), xs, ys)``
(:class:`analogeq.spice.SpiceRelaxation`); :func:`compare_with_ode` runs it next to the same
estimator on the chip's ODE (:func:`analogeq.spice.reference_relaxation`) and compares the two
weight updates.
"""

from __future__ import annotations

import os
import time

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from analogeq.costs import SquaredError
from analogeq.ep.estimators import EP
from analogeq.ep.gradients import compare_gradients
from analogeq.hardware.chip import Chip
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.spice.netlist import SpiceOptions, check_block
from analogeq.spice.relaxation import SpiceRelaxation
from analogeq.spice.validate import reference_relaxation, require_float64


@eqx.filter_jit
def ode_ep(estimator: EP, chip: Chip, relax: ChipRelaxation, xs, targets):
    """``estimator.estimate`` (squared-error cost) on the chip's ODE relaxation ``relax``, jitted:
    the reference :func:`compare_with_ode` compares ngspice with."""
    return estimator.estimate(chip, SquaredError(), relax, xs, targets)


def compare_with_ode(
    chip: Chip,
    xs,
    targets,
    *,
    beta: float = 1e-3,
    correction: str = "none",
    options: SpiceOptions = SpiceOptions(),
    mode: str = "op",
    workdir: str | os.PathLike | None = None,
) -> dict:
    """Centered EP (squared-error cost) with ngspice as the relaxation against the same
    :class:`analogeq.ep.EP` on the chip's ODE (:func:`reference_relaxation`), same chip and batch.

    Args:
        chip: a realized :class:`Chip` of at most :data:`~analogeq.spice.netlist.MAX_NEURONS` (256) neurons (float64).
        xs: inputs (state units), ``(B, sizes[0])``.
        targets: labels ``(B,)`` or target outputs ``(B, n_outputs)`` (state units).
        beta: nudge strength (dimensionless, > 0).
        correction: ``"none"`` or ``"asym"`` (AsymEP correction circuit; chips without a pole).
        options, mode, workdir: as :class:`SpiceRelaxation` (``mode="tran"`` settles each phase
            for ``40 tau``).

    Returns ``{"cosine", "rel_error"}`` of the weight updates (in weight units,
    :meth:`Chip.weight_gradient`), the largest free-state difference ``free_error_V`` [V], the
    wall time of the SPICE-in-the-loop estimate ``spice_seconds`` [s] (ngspice plus the host-side
    EP arithmetic), and both :class:`analogeq.ep.Estimate` (``"spice"``, ``"ode"``).
    """
    require_float64()
    chip = check_block(chip)
    estimator = EP(beta=beta, kind="centered", correction=correction)
    spice = SpiceRelaxation(chip.config, options=options, mode=mode, workdir=workdir)
    xs = jnp.asarray(xs, chip.offset.dtype)
    targets = jnp.asarray(targets)
    start = time.perf_counter()
    sp = estimator.estimate(chip, SquaredError(), spice, xs, targets, gate=False)
    seconds = time.perf_counter() - start
    ode = ode_ep(estimator, chip, reference_relaxation(chip), xs, targets)
    cmp = compare_gradients(chip.weight_gradient(sp.grads), chip.weight_gradient(ode.grads))["overall"]
    free_err = float(np.max(np.abs(np.asarray(sp.free.state) - np.asarray(ode.free.state))))
    return {"cosine": cmp["cosine"], "rel_error": cmp["rel_error"],
            "free_error_V": free_err * chip.config.neuron.v_unit, "spice_seconds": seconds,
            "spice": sp, "ode": ode}
