"""SPICE-in-the-loop Equilibrium Propagation for tiny blocks.

The free phase and the two nudged phases (``+beta``, ``-beta``; squared-error cost) of every
sample are solved by ngspice on the exported chip. The nudged netlists add the nudging branches
(``aeq_nudge``: ``beta g_leak`` to the target) and, for AsymEP, the correction circuit
(``aeq_asym`` elements ``-2 A g_leak`` around the held free state). The weight update is then
formed exactly as the ODE-based :class:`analogeq.ep.EP` forms it -- the centered contrast
``a = -(s_+ - s_-) / (2 beta)`` of the states as the ADC reads them, and the local force-form
gradient ``g = a^T dF/dtheta`` at the free states (:func:`analogeq.ep.force_gradient`), with
``a`` passed through the chip's ``update_adjoint`` exactly as the ODE-based estimator does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.costs import SquaredError, as_target
from analogeq.ep.estimators import EP
from analogeq.ep.gradients import compare_gradients, force_gradient
from analogeq.ep.linear import jacobian_products
from analogeq.hardware.chip import Chip
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.spice.netlist import Nudge, SpiceOptions, check_block, chip_netlist
from analogeq.spice.runner import run_netlist
from analogeq.spice.validate import reference_relaxation, require_float64

CORRECTIONS = ("none", "asym")
MODES = ("op", "tran")


@dataclass(frozen=True, eq=False)
class SpiceEstimate:
    """An EP update whose phases ngspice solved.

    Attributes:
        grads: chip-shaped gradient (w.r.t. conductances), as :class:`analogeq.ep.Estimate`.
        free: free states (state units), ``(B, n_states)``.
        nudged: nudged states (state units), ``(B, 2, n_states)`` for ``+beta`` and ``-beta``.
        contrast: ``a`` per sample, ``(B, n_states)``.
        spice_seconds: total ngspice wall time [s].
    """

    grads: Chip
    free: np.ndarray
    nudged: np.ndarray
    contrast: np.ndarray
    spice_seconds: float


@eqx.filter_jit
def _ode_ep(estimator: EP, chip: Chip, relax: ChipRelaxation, xs, targets):
    return estimator.estimate(chip, SquaredError(), relax, xs, targets)


@eqx.filter_jit
def _asym_matrix(chip: Chip, x, s_star):
    """``-2 A`` with ``A = (J - J^T)/2``, ``J = dF/ds`` at ``s*`` (units of ``1/tau``)."""
    jv, _ = jacobian_products(partial(chip.force, x=x), s_star)
    eye = jnp.eye(s_star.shape[0], dtype=s_star.dtype)
    j = jax.vmap(jv)(eye).T
    return -(j - j.T)


def _solve(chip, x, options, mode, t_settle, path, **kw):
    nl = chip_netlist(chip, x, options=options, analyses=(mode,), t_stop=t_settle if mode == "tran" else None, **kw)
    res = run_netlist(nl, path)
    state = nl.states(res.op) if mode == "op" else nl.states(res.tran)[-1]
    return state, res.wall_time


def spice_ep(
    chip: Chip,
    xs,
    targets,
    *,
    beta: float = 1e-3,
    correction: str = "none",
    relaxation: ChipRelaxation | None = None,
    options: SpiceOptions = SpiceOptions(),
    mode: str = "op",
    t_settle: float | None = None,
    workdir: str | os.PathLike | None = None,
) -> SpiceEstimate:
    """Centered EP on ``chip`` with every phase solved by ngspice (squared-error cost).

    Args:
        chip: a realized :class:`Chip` of at most 64 neurons (float64).
        xs: inputs (state units), ``(B, sizes[0])``.
        targets: labels ``(B,)`` or target outputs ``(B, n_outputs)`` (state units).
        beta: nudge strength (dimensionless, > 0).
        correction: ``"none"`` or ``"asym"`` (AsymEP correction circuit; chips without a pole).
        relaxation: supplies the ADC read and the sample-and-hold (default: the chip's config).
        options: netlist and ngspice settings.
        mode: ``"op"`` (each phase's steady state by ``.op``; the nudged phases start Newton from
            the held free state) or ``"tran"`` (each phase integrated for ``t_settle`` seconds
            from ``chip.init_state`` / the held free state, last point read).
        t_settle: settle window [s] for ``mode="tran"`` (default ``40 tau``).
        workdir: directory to keep the netlists in, ``free_<b>.cir`` and ``nudged_<b>_<k>.cir``
            (default: none kept; see :meth:`analogeq.spice.runner.Ngspice.run`).
    """
    require_float64()
    chip = check_block(chip)
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}; got {correction!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a finite number > 0; got {beta!r}")
    relax = relaxation or ChipRelaxation(chip.config)
    t_settle = 40 * chip.tau if t_settle is None else float(t_settle)
    xs = jnp.asarray(xs, chip.offset.dtype)
    work = None if workdir is None else Path(workdir)
    where = lambda name: None if work is None else work / name  # noqa: E731
    n = chip.n_neurons
    frees, nudged, secs = [], [], 0.0
    for b in range(xs.shape[0]):
        x = xs[b]
        s, w = _solve(chip, x, options, mode, t_settle, where(f"free_{b}.cir"))
        secs += w
        s_hold = np.asarray(relax.hold(jnp.asarray(s)))
        y = chip.readout(jnp.asarray(s_hold))
        target = np.asarray(as_target(y, jnp.asarray(targets[b])))
        m = np.asarray(_asym_matrix(chip, x, jnp.asarray(s_hold))) if correction == "asym" else None
        pair = []
        for k, bk in enumerate((beta, -beta)):
            nudge = Nudge(beta=bk, target=target, hold=s_hold[:n] if m is not None else None, correction=m)
            extra = {"guess": s_hold} if mode == "op" else {"s0": s_hold}
            sk, w = _solve(chip, x, options, mode, t_settle, where(f"nudged_{b}_{k}.cir"), nudge=nudge, **extra)
            secs += w
            pair.append(sk)
        frees.append(s)
        nudged.append(pair)
    free = np.asarray(frees)
    nudged_arr = np.asarray(nudged)
    read = lambda v: np.asarray(relax.read(jnp.asarray(v)))  # noqa: E731
    a = -(read(nudged_arr[:, 0]) - read(nudged_arr[:, 1])) / (2 * beta)
    # The chip's periphery builds its update as the ODE loop does (Chip.update_adjoint).
    weighted = jax.vmap(chip.update_adjoint)(jnp.asarray(a / xs.shape[0]))
    grads = force_gradient(chip, xs, jnp.asarray(read(free)), weighted)
    return SpiceEstimate(grads=grads, free=free, nudged=nudged_arr, contrast=a, spice_seconds=secs)


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
    """SPICE-in-the-loop EP against the ODE-based :class:`analogeq.ep.EP` (centered, same
    ``beta`` and correction, :func:`reference_relaxation`) on the same chip and batch.

    Returns ``{"cosine", "rel_error"}`` of the weight updates (in weight units,
    :meth:`Chip.weight_gradient`), the largest free-state difference ``free_error_V`` [V], the
    ngspice time ``spice_seconds`` [s], and both estimates (``"spice"``, ``"ode"``).
    """
    relax = reference_relaxation(chip)
    sp = spice_ep(chip, xs, targets, beta=beta, correction=correction, relaxation=relax,
                  options=options, mode=mode, workdir=workdir)
    ode = _ode_ep(EP(beta=beta, kind="centered", correction=correction), chip, relax,
                  jnp.asarray(xs, chip.offset.dtype), jnp.asarray(targets))
    cmp = compare_gradients(chip.weight_gradient(sp.grads), chip.weight_gradient(ode.grads))["overall"]
    free_err = float(np.max(np.abs(sp.free - np.asarray(ode.free.state)))) * chip.config.neuron.v_unit
    return {"cosine": cmp["cosine"], "rel_error": cmp["rel_error"], "free_error_V": free_err,
            "spice_seconds": sp.spice_seconds, "spice": sp, "ode": ode}
