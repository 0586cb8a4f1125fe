"""Validation: the chip's diffrax ODE against ngspice on the same exported chip instance.

``.op`` is compared with the ODE's steady state (adaptive solve to a ``1e-10`` relative residual) and the
``.tran`` waveforms with the ODE trajectory from the same initial state, evaluated at ngspice's
own time points (no interpolation on either side). Errors are in volts.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from analogeq.ep.term import FreeTerm
from analogeq.hardware.chip import Chip
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.spice.netlist import SpiceOptions, check_block, chip_netlist
from analogeq.spice.runner import run_netlist

_BUCKET = 1024


def require_float64() -> None:
    """Raise a ``RuntimeError`` unless JAX runs in float64 (microvolt agreement needs it)."""
    if jnp.zeros(()).dtype != jnp.float64:
        raise RuntimeError("SPICE validation compares at the microvolt level and needs float64: call "
                           "jax.config.update('jax_enable_x64', True) before building the chip")


def reference_relaxation(chip: Chip, rtol: float = 1e-11, steady_tol: float = 1e-10) -> ChipRelaxation:
    """The ODE the netlist is compared with: the chip's own :class:`ChipRelaxation`, adaptive to
    the steady state, with tight tolerances (``rtol`` relative, ``atol = rtol / 100`` in state
    units; ``steady_tol`` the relative residual of the steady-state event)."""
    cfg = chip.config.replace(**{"dynamics.settle_time": None, "dynamics.nudged_time": None,
                                 "dynamics.average_window": 0.0, "dynamics.steady_tol": steady_tol})
    return ChipRelaxation(cfg, rtol=rtol, atol=rtol / 100, max_steps=200_000, max_time=1e4)


def settle_time(t: np.ndarray, v: np.ndarray, band: float) -> float:
    """First time [units of ``t``] after which every column of ``v`` stays within ``band`` of its
    final value (``t[0]`` if it always does, ``nan`` if it never does by the end)."""
    outside = np.any(np.abs(v - v[-1]) > band, axis=-1)
    if not outside.any():
        return float(t[0])
    last = int(np.nonzero(outside)[0][-1])
    return float(t[last + 1]) if last + 1 < len(t) else float("nan")


@dataclass(frozen=True, eq=False)
class Validation:
    """ODE vs ngspice on one chip instance and input (volts, seconds).

    Attributes:
        sizes: the block's layer sizes.
        op_error_max, op_error_rms: ``.op`` vs the ODE steady state [V].
        tran_error_max, tran_error_rms: ``.tran`` vs the ODE trajectory over every state and
            ngspice time point [V].
        settle_ode, settle_spice: settle time into ``settle_band`` of the final value [s].
        settle_band: the band [V].
        time: ngspice's time points [s].
        spice: ngspice states [V], ``(len(time), n_states)``; ode: the ODE's at the same times.
        spice_op, ode_steady: steady states [V].
        spice_seconds: ngspice wall time of the run (both analyses) [s].
        ode_seconds: wall time of the ODE steady state plus trajectory (after compilation) [s].
        netlist_path: the netlist that ran.
        options: the :class:`SpiceOptions` used.
    """

    sizes: tuple[int, ...]
    op_error_max: float
    op_error_rms: float
    tran_error_max: float
    tran_error_rms: float
    settle_ode: float
    settle_spice: float
    settle_band: float
    time: np.ndarray
    spice: np.ndarray
    ode: np.ndarray
    spice_op: np.ndarray
    ode_steady: np.ndarray
    spice_seconds: float
    ode_seconds: float
    netlist_path: Path
    options: SpiceOptions

    def summary(self) -> dict:
        """JSON-ready numbers: errors in microvolts, times in nanoseconds / seconds."""
        return {
            "sizes": list(self.sizes), "neurons": int(sum(self.sizes[1:])),
            "op_error_max_uV": self.op_error_max * 1e6, "op_error_rms_uV": self.op_error_rms * 1e6,
            "tran_error_max_uV": self.tran_error_max * 1e6, "tran_error_rms_uV": self.tran_error_rms * 1e6,
            "settle_ode_ns": self.settle_ode * 1e9, "settle_spice_ns": self.settle_spice * 1e9,
            "settle_band_uV": self.settle_band * 1e6, "tran_points": int(len(self.time)),
            "spice_seconds": self.spice_seconds, "ode_seconds": self.ode_seconds,
            "netlist": str(self.netlist_path),
            "ngspice_options": {k: getattr(self.options, k) for k in
                                ("reltol", "abstol", "vntol", "chgtol", "trtol", "method", "max_step")},
        }

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``validation.json`` and the overlay plot ``overlay.png`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "validation.json").write_text(json.dumps(self.summary(), indent=2) + "\n")
        self.plot(out / "overlay.png")
        return out

    def plot(self, path: str | os.PathLike, n_traces: int = 8) -> Path:
        """Overlay of ODE (lines) and ngspice (dots) waveforms of up to ``n_traces`` states, and
        the error of every state (microvolts) against time (nanoseconds)."""
        from analogeq.plots import save_figure  # sets the Agg backend before pyplot loads

        import matplotlib.pyplot as plt

        t = self.time * 1e9
        fig, (a, b) = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
        pick = np.linspace(0, self.spice.shape[1] - 1, min(n_traces, self.spice.shape[1])).astype(int)
        for k, i in enumerate(pick):
            c = f"C{k % 10}"
            a.plot(t, self.ode[:, i], "-", color=c, lw=1.2, label=f"state {i} ODE")
            a.plot(t[::max(1, len(t) // 60)], self.spice[::max(1, len(t) // 60), i], ".", color=c, ms=4)
        a.set_ylabel("node voltage [V]")
        a.set_title(f"sizes {self.sizes}: ODE (lines) vs ngspice (dots); "
                    f"max |dV| = {self.tran_error_max * 1e6:.2f} uV")
        a.legend(fontsize=6, ncol=2)
        b.plot(t, (self.spice - self.ode) * 1e6, lw=0.6)
        b.set_xlabel("time [ns]")
        b.set_ylabel("ngspice - ODE [uV]")
        return save_figure(fig, path)


@eqx.filter_jit
def _steady(relax, chip, x):
    return relax.free(FreeTerm(chip, x), chip.init_state(x))


@eqx.filter_jit
def _trajectory(relax, chip, x, s0, ts):
    return relax.trajectory(partial(chip.force, x=x), s0, ts)


def ode_steady_state(chip: Chip, x, relaxation: ChipRelaxation | None = None) -> np.ndarray:
    """The ODE's steady state from ``chip.init_state(x)`` (state units); raises ``RuntimeError``
    if the adaptive solve did not reach its steady-state tolerance."""
    relax = relaxation or reference_relaxation(chip)
    x = jnp.asarray(x, chip.offset.dtype)
    res = _steady(relax, chip, x)
    if not bool(res.converged):
        raise RuntimeError(f"the ODE did not settle (residual {float(res.residual):.3g} after "
                           f"{float(res.time):.3g} tau); the block may have no stable fixed point")
    return np.asarray(res.state)


def ode_trajectory(chip: Chip, x, s0, t_seconds: np.ndarray,
                   relaxation: ChipRelaxation | None = None) -> np.ndarray:
    """The chip's ODE solution (state units) at times ``t_seconds`` [s] (non-decreasing) from
    ``s0``; shape ``(len(t_seconds), n_states)``. The times are padded to a multiple of
    ``_BUCKET`` so repeated calls reuse one compilation."""
    relax = relaxation or reference_relaxation(chip)
    x = jnp.asarray(x, chip.offset.dtype)
    ts = np.asarray(t_seconds, np.float64) / chip.tau
    n = len(ts)
    padded = np.concatenate([ts, np.full(-n % _BUCKET, ts[-1])])
    out = _trajectory(relax, chip, x, jnp.asarray(s0, chip.offset.dtype), jnp.asarray(padded))
    return np.asarray(out)[:n]


def validate(
    chip: Chip,
    x,
    *,
    s0=None,
    t_stop: float | None = None,
    options: SpiceOptions = SpiceOptions(),
    path: str | os.PathLike | None = None,
    settle_band: float = 1e-4,
    rtol: float = 1e-11,
) -> Validation:
    """Run one chip instance through ngspice (``.op`` and ``.tran``) and through its ODE.

    Args:
        chip: a realized :class:`Chip` of at most :data:`~analogeq.spice.netlist.MAX_NEURONS` (256) neurons (float64).
        x: one input (state units, shape ``(sizes[0],)``).
        s0: initial state (state units; default ``chip.init_state(x)``).
        t_stop: transient length [s] (default ``20 tau``).
        options: netlist and ngspice settings.
        path: where to write the netlist (default: a temporary file).
        settle_band: band [V] for the settle times.
        rtol: relative tolerance of the ODE solve.
    """
    require_float64()
    chip = check_block(chip)
    x = jnp.asarray(x, chip.offset.dtype)
    s0 = np.asarray(chip.init_state(x) if s0 is None else s0, np.float64)
    t_stop = 20 * chip.tau if t_stop is None else float(t_stop)
    nl = chip_netlist(chip, x, s0=s0, t_stop=t_stop, options=options)
    res = run_netlist(nl, path)
    vu = nl.v_unit
    relax = reference_relaxation(chip, rtol=rtol)
    t_sp = res.time
    keep = np.concatenate([[True], np.diff(t_sp) > 0])
    t_sp = t_sp[keep]
    spice = nl.states(res.tran)[keep]
    spice_op = nl.states(res.op)
    steady = ode_steady_state(chip, x, relax)  # compiles
    traj = ode_trajectory(chip, x, s0, t_sp, relax)
    t0 = time.perf_counter()
    steady = ode_steady_state(chip, x, relax)
    traj = ode_trajectory(chip, x, s0, t_sp, relax)
    ode_seconds = time.perf_counter() - t0
    d_op = (spice_op - steady) * vu
    d_tr = (spice - traj) * vu
    return Validation(
        sizes=tuple(chip.sizes), op_error_max=float(np.max(np.abs(d_op))),
        op_error_rms=float(np.sqrt(np.mean(d_op**2))), tran_error_max=float(np.max(np.abs(d_tr))),
        tran_error_rms=float(np.sqrt(np.mean(d_tr**2))),
        settle_ode=settle_time(t_sp, traj * vu, settle_band),
        settle_spice=settle_time(t_sp, spice * vu, settle_band), settle_band=settle_band,
        time=t_sp, spice=spice * vu, ode=traj * vu, spice_op=spice_op * vu, ode_steady=steady * vu,
        spice_seconds=res.wall_time, ode_seconds=ode_seconds, netlist_path=res.netlist_path,
        options=options,
    )


__all__ = ["Validation", "validate", "ode_steady_state", "ode_trajectory", "reference_relaxation",
           "require_float64", "settle_time"]
