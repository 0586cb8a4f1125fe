"""ngspice as a relaxation: the free and nudged phases of a chip block solved by SPICE.

:class:`SpiceRelaxation` implements :class:`analogeq.emulator.AbstractRelaxation` with ngspice
on the exported chip (:func:`analogeq.spice.chip_netlist`):

* ``free(term, s0)`` writes the netlist of ``term.model`` (a realized :class:`Chip`) driven by
  ``term.x`` and solves its steady state with ``.op``, or integrates it with ``.tran`` over a
  settle window from ``s0`` and reads the last point.
* ``nudged(term, s0)`` reads the :class:`~analogeq.ep.term.NudgedTerm` and solves one netlist per
  nudge ``beta_k``, with the nudging branches (a transconductance ``beta_k g_leak`` from every
  output node to its target: the squared-error cost ``1/2 |y - t|^2``) and, for AsymEP, the
  correction circuit ``-2 A g_leak`` around the held free state ``s*`` (``A = (J - J^T)/2``,
  ``J = dF/ds`` at ``s*``; the term that makes the nudged phase's linearization ``J^T``:
  Laborieux & Zenke 2024, ICLR).

The estimator stays the one the ODE uses: ``EP(...).estimate(chip, SquaredError(),
SpiceRelaxation(chip.config), xs, ys)`` is SPICE-in-the-loop EP, with EP's own contrast and
force-form update. ngspice runs on the host, so :meth:`SpiceRelaxation.batched` loops over the
samples in Python and the estimate must be called outside ``jax.jit``.
"""

from __future__ import annotations

import math
import os
from functools import partial
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.costs import SquaredError, as_target
from analogeq.emulator import AbstractRelaxation, RelaxResult, residual, term_noise
from analogeq.ep.linear import jacobian_products
from analogeq.ep.term import NudgedTerm
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.spice.netlist import Nudge, SpiceOptions, check_block, chip_netlist
from analogeq.spice.runner import run_netlist
from analogeq.spice.validate import require_float64

MODES = ("op", "tran")
"""Values of :attr:`SpiceRelaxation.mode`: ``.op`` steady states or ``.tran`` settle windows."""
CORRECTIONS = ("none", "asym")
"""Nudged-phase corrections the netlist writer has a circuit for."""


@eqx.filter_jit
def asym_matrix(chip, x, s_star):
    """``-2 A`` with ``A = (J - J^T)/2``, ``J = dF/ds`` at ``s*`` (units of ``1/tau``), the
    matrix of the AsymEP correction circuit (:class:`analogeq.spice.Nudge`)."""
    jv, _ = jacobian_products(partial(chip.force, x=x), s_star)
    eye = jnp.eye(s_star.shape[0], dtype=s_star.dtype)
    j = jax.vmap(jv)(eye).T
    return -(j - j.T)


@eqx.filter_jit
def _field_residual(term, state):
    # One compiled call per phase kind instead of the field's ops one by one on the host.
    return residual(state, term(state))


def _host_loop(fn):
    """``fn`` over the leading axis of its (pytree) arguments, one call per sample on the host."""

    def run(*args):
        leaves = jax.tree_util.tree_leaves(args)
        if not leaves:
            raise ValueError("SpiceRelaxation.batched: no per-sample arguments to loop over")
        outs = [fn(*jax.tree_util.tree_map(lambda a: a[i], args)) for i in range(leaves[0].shape[0])]
        return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *outs)

    return run


class SpiceRelaxation(AbstractRelaxation):
    """Free and nudged phases of a chip block solved by ngspice (module docstring).

    Attributes:
        config: the chip's hardware description; its periphery is the ADC that :meth:`read`
            applies and the sample-and-hold of :meth:`hold` (as :class:`ChipRelaxation`).
            ``None``: states are read and held exactly.
        options: netlist and ngspice settings (:class:`SpiceOptions`).
        mode: ``"op"`` (each phase's steady state by ``.op``; the nudged phases start Newton
            from their initial state, the held free state) or ``"tran"`` (each phase integrated
            for ``t_settle`` from its initial state, the last point read).
        t_settle: settle window [s] of ``mode="tran"`` (``None``: ``40 tau`` of the chip).
        workdir: folder that keeps every netlist that ran, numbered in the order they ran:
            ``free_<i>.cir`` and ``nudged_<i>_<k>.cir`` (``k`` the nudge), ``i`` the first index
            not used yet in the folder. ``None``: none kept.
        tol: relative residual ``|F(s)| / |s|`` of the chip's own field at the ngspice state
            above which a phase counts as not converged (not settled within the ``.tran``
            window, or a netlist that departs from the model).
    """

    config: ChipConfig | None = eqx.field(static=True, default=None)
    options: SpiceOptions = eqx.field(static=True, default=SpiceOptions())
    mode: str = eqx.field(static=True, default="op")
    t_settle: float | None = eqx.field(static=True, default=None)
    workdir: str | None = eqx.field(static=True, default=None,
                                    converter=lambda p: None if p is None else os.fspath(p))
    tol: float = eqx.field(static=True, default=1e-4)

    def __check_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"SpiceRelaxation.mode must be one of {MODES}; got {self.mode!r}")
        if self.t_settle is not None and not (math.isfinite(self.t_settle) and self.t_settle > 0):
            raise ValueError(f"SpiceRelaxation.t_settle must be a finite number > 0 seconds; "
                             f"got {self.t_settle!r}")
        if not (math.isfinite(self.tol) and self.tol > 0):
            raise ValueError(f"SpiceRelaxation.tol must be a finite number > 0; got {self.tol!r}")

    def batched(self, fn):
        # ngspice is a host call: one sample after the other instead of jax.vmap.
        return _host_loop(fn)

    def read(self, state):
        return state if self.config is None else ChipRelaxation(self.config).read(state)

    def hold(self, state):
        return state if self.config is None else ChipRelaxation(self.config).hold(state)

    def free(self, term, s0, key=None):
        chip, x = self._block(term, "free")
        i = self._next_index("free_{}.cir")
        path = None if i is None else Path(self.workdir) / f"free_{i}.cir"
        s0 = np.asarray(s0, np.float64)
        # .op finds the free steady state from ngspice's own initial guess; .tran starts at s0.
        state = self._solve(chip, x, path, **({} if self.mode == "op" else {"s0": s0}))
        return self._result(term, chip, jnp.asarray(state, jnp.result_type(s0)))

    def nudged(self, term, s0, key=None):
        chip, x = self._block(term, "nudged")
        if not isinstance(term, NudgedTerm):
            raise TypeError(f"SpiceRelaxation.nudged takes a NudgedTerm; got {type(term).__name__}")
        if term.complex_nudges:
            raise ValueError("SpiceRelaxation: a circuit relaxes real voltages; holomorphic (complex) "
                             "nudges need the digital emulator; use kind 'centered' or 'one-sided'")
        if not isinstance(term.cost, SquaredError):
            raise ValueError(f"SpiceRelaxation: the nudging branch realizes the squared-error cost only; "
                             f"got cost {type(term.cost).__name__} (use analogeq.SquaredError())")
        if term.correction not in CORRECTIONS:
            raise ValueError(f"SpiceRelaxation: correction must be one of {CORRECTIONS} (the netlist has "
                             f"no common-mode tracking circuit); got {term.correction!r}")
        s_star = jnp.asarray(term.s_star)
        target = np.asarray(as_target(chip.readout(s_star), jnp.asarray(term.target)), np.float64)
        m = np.asarray(asym_matrix(chip, x, s_star)) if term.correction == "asym" else None
        hold = np.asarray(s_star, np.float64)[: chip.n_neurons] if m is not None else None
        i = self._next_index("nudged_{}_0.cir")
        s0 = np.asarray(s0, np.float64)
        states = []
        for k, beta in enumerate(term.betas):
            nudge = Nudge(beta=float(beta), target=target, hold=hold, correction=m)
            start = {"guess": s0[k]} if self.mode == "op" else {"s0": s0[k]}
            path = None if i is None else Path(self.workdir) / f"nudged_{i}_{k}.cir"
            states.append(self._solve(chip, x, path, nudge=nudge, **start))
        return self._result(term, chip, jnp.asarray(np.stack(states), s_star.dtype))

    def _block(self, term, phase: str):
        if term_noise(term) is not None:
            raise ValueError(f"SpiceRelaxation ({phase} phase): the netlist is noiseless; relax a chip "
                             "with noise off (noise.temperature = 0)")
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(term)):
            raise TypeError(f"SpiceRelaxation ({phase} phase) runs ngspice on the host: call the "
                            "estimator outside jax.jit (it loops over samples itself)")
        require_float64()
        return check_block(term.model), jnp.asarray(term.x)

    def _next_index(self, pattern: str) -> int | None:
        """The first unused index of ``pattern`` in :attr:`workdir` (created if missing), or
        ``None`` when no netlists are kept."""
        if self.workdir is None:
            return None
        folder = Path(self.workdir)
        folder.mkdir(parents=True, exist_ok=True)
        i = 0
        while (folder / pattern.format(i)).exists():
            i += 1
        return i

    def _window(self, chip) -> float:
        return 40 * chip.tau if self.t_settle is None else float(self.t_settle)

    def _solve(self, chip, x, path, **kw) -> np.ndarray:
        tran = self.mode == "tran"
        nl = chip_netlist(chip, x, options=self.options, analyses=(self.mode,),
                          t_stop=self._window(chip) if tran else None, **kw)
        res = run_netlist(nl, path)
        return nl.states(res.tran)[-1] if tran else nl.states(res.op)

    def _result(self, term, chip, state) -> RelaxResult:
        r = _field_residual(term, state)
        # .op is the t -> infinity limit; .tran ran its window.
        t = self._window(chip) / chip.tau if self.mode == "tran" else math.inf
        return RelaxResult(state=state, steps=jnp.asarray(1), residual=r, converged=r <= self.tol,
                           time=jnp.asarray(t, r.dtype))
