"""A trained run's test samples through ngspice against the chip's ODE.

For every test sample, the chip's ODE steady state (:func:`analogeq.spice.ode_steady_state`,
adaptive to a ``1e-10`` relative residual) and ngspice's ``.op`` of every block of the exported
netlist (:func:`analogeq.spice.export.export_chip`; a layer block with its boundary sources at
the ODE steady state) give the per-node voltage errors and the two classifications (argmax of
the output neurons). For the first ``tran_samples`` samples the written files themselves are
run with ``.tran`` from rest and compared with the ODE (a layer block: the ODE with every state
outside the block frozen, :func:`analogeq.spice.partition.block_field`) at ngspice's own time
points.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analogeq.spice.export import RunChip, export_chip, read_netlist, to_state
from analogeq.spice.netlist import MAX_NEURONS, SpiceOptions, chip_netlist
from analogeq.spice.partition import block_state, block_trajectory, layer_blocks
from analogeq.spice.runner import run_netlist
from analogeq.spice.validate import Validation, ode_steady_state, reference_relaxation, require_float64, settle_time


@dataclass(frozen=True, eq=False)
class RunValidation:
    """ngspice vs the ODE over a run's test samples (volts, seconds).

    Attributes:
        summary: JSON-ready numbers (:meth:`write` stores them as ``run_validation.json``):
            ``agreement`` (fraction of samples ngspice and the ODE classify alike),
            ``op_error_max_uV`` / ``tran_error_max_uV`` (over every node and sample),
            accuracies against the labels, ``spice_op_seconds_per_sample`` (all blocks), ...
        op_errors: ``|ngspice .op - ODE steady state|`` [V], ``(samples, n_neurons)``.
        tran_errors: largest ``|ngspice .tran - ODE|`` over time and the ``.tran`` samples [V]
            per state, ``(n_states,)``.
        transients: the :class:`Validation` of each block on the first sample.
    """

    summary: dict
    op_errors: np.ndarray
    tran_errors: np.ndarray
    transients: tuple[Validation, ...]

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``run_validation.json``, ``node_errors.png`` and ``overlay_block<k>.png``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "run_validation.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        self.plot_nodes(out / "node_errors.png")
        for k, v in enumerate(self.transients):
            v.plot(out / f"overlay_block{k}.png")
        return out

    def plot_nodes(self, path: str | os.PathLike, bound_uV: float = 50.0) -> Path:
        """Per node: the largest ``.op`` error over the samples and the largest ``.tran`` error
        [uV], against ``bound_uV``."""
        from analogeq.plots import save_figure  # sets the Agg backend before pyplot loads

        import matplotlib.pyplot as plt

        n = self.op_errors.shape[1]
        fig, ax = plt.subplots(figsize=(9, 4))
        k = np.arange(n)
        ax.semilogy(k, np.maximum(self.op_errors.max(0) * 1e6, 1e-6), "o", ms=3,
                    label=f".op, max over {self.op_errors.shape[0]} samples")
        ax.semilogy(k, np.maximum(self.tran_errors[:n] * 1e6, 1e-6), "s", ms=3, mfc="none",
                    label=".tran, max over time")
        ax.axhline(bound_uV, color="k", ls="--", lw=0.8, label=f"{bound_uV:g} uV")
        ax.set_xlabel("neuron (node v<i>)")
        ax.set_ylabel("|ngspice - ODE| [uV]")
        ax.set_title(f"sizes {tuple(self.summary['sizes'])}: agreement {self.summary['agreement'] * 100:.1f} % "
                     f"over {self.summary['samples']} test samples")
        ax.legend(fontsize=7)
        return save_figure(fig, path)


def validate_run(rc: RunChip, out_dir: str | os.PathLike, *, samples: int | None = None, tran_samples: int = 1,
                 max_neurons: int = MAX_NEURONS, options: SpiceOptions = SpiceOptions(),
                 t_stop: float | None = None, progress=None) -> RunValidation:
    """Run the first ``samples`` test samples (default: all) of ``rc`` (:func:`run_chip`)
    through ngspice and its ODE (module docstring); the netlists of the ``.tran`` samples go to
    ``out_dir/netlists/sample_<i>``. ``t_stop`` [s] is the ``.tran`` length (default
    ``20 tau``); ``progress(i, n)`` is called after each sample."""
    require_float64()
    chip, data = rc.chip, rc.data
    n_all = len(data.y_test)
    samples = n_all if samples is None else int(samples)
    if not 1 <= samples <= n_all:
        raise ValueError(f"samples must be in [1, {n_all}] (the run's test set); got {samples}")
    if not 0 <= tran_samples <= samples:
        raise ValueError(f"tran_samples must be in [0, samples={samples}]; got {tran_samples}")
    out = Path(out_dir)
    xs = np.asarray(data.x_test[:samples], np.float64)
    labels = np.asarray(data.y_test[:samples])
    n, n_out = chip.n_neurons, chip.sizes[-1]
    relax = reference_relaxation(chip)
    t0 = time.perf_counter()
    steady = np.stack([ode_steady_state(chip, x, relax) for x in xs])
    ode_seconds = time.perf_counter() - t0
    blocks = layer_blocks(chip.sizes, max_neurons)
    vu = chip.config.neuron.v_unit
    spice = np.array(steady, copy=True)
    op_seconds = np.zeros(samples)
    tran_err = np.zeros(chip.state_shape)
    transients: list[Validation] = []
    for i, x in enumerate(xs):
        if i < tran_samples:
            ex = export_chip(chip, x, out / "netlists" / f"sample_{i}", boundary=steady[i, :n], options=options,
                             t_stop=t_stop, max_neurons=max_neurons, title=f"analogeq run {rc.run_dir.name}, test sample {i}")
            for k, (idx, path) in enumerate(zip(blocks, ex.files)):
                nodes = ex.manifest["blocks"][k]["state_nodes"]
                res = run_netlist(read_netlist(path, nodes, vu, chip.tau), timeout=None)
                op_seconds[i] += res.wall_time
                nl_states = np.stack([np.asarray(res.tran[m]) for m in nodes], -1) / vu
                spice[i] = to_state(np.array([res.op[m] for m in nodes]) / vu, chip, idx, spice[i])
                v = _transient(chip, x, idx, steady[i], res, nl_states, relax, path, options)
                tran_err = np.maximum(tran_err, to_state(v.tran_errors, chip, idx, np.zeros(chip.state_shape)))
                if i == 0:
                    transients.append(v.validation)
        else:
            for idx in blocks:
                nl = chip_netlist(chip, x, neurons=idx, boundary=steady[i, :n], analyses=("op",), options=options)
                res = run_netlist(nl)
                op_seconds[i] += res.wall_time
                spice[i] = to_state(nl.states(res.op), chip, idx, spice[i])
        if progress is not None:
            progress(i + 1, samples)
    op_err = np.abs(spice[:, :n] - steady[:, :n]) * vu
    cls_ode = np.argmax(steady[:, n - n_out:n], -1)
    cls_spice = np.argmax(spice[:, n - n_out:n], -1)
    summary = {
        "run": str(rc.run_dir), "kind": rc.kind, "hardware": rc.hardware, "step": rc.step,
        "sizes": list(chip.sizes), "neurons": n, "blocks": [[b[0], b[-1]] for b in blocks],
        "samples": samples, "tran_samples": tran_samples,
        "agreement": float(np.mean(cls_ode == cls_spice)),
        "disagreeing_samples": [int(k) for k in np.nonzero(cls_ode != cls_spice)[0]],
        "accuracy_ode": float(np.mean(cls_ode == labels)), "accuracy_spice": float(np.mean(cls_spice == labels)),
        "op_error_max_uV": float(op_err.max() * 1e6), "op_error_rms_uV": float(np.sqrt(np.mean(op_err**2)) * 1e6),
        "tran_error_max_uV": float(tran_err.max() * vu * 1e6) if tran_samples else None,
        "op_error_max_per_node_uV": [float(e) for e in op_err.max(0) * 1e6],
        "tran_error_max_per_node_uV": [float(e) for e in tran_err[:n] * vu * 1e6] if tran_samples else None,
        "spice_op_seconds_per_sample": float(op_seconds[tran_samples:].mean()) if samples > tran_samples else None,
        "spice_op_tran_seconds_per_sample": float(op_seconds[:tran_samples].mean()) if tran_samples else None,
        "ode_seconds_per_sample": ode_seconds / samples,
        "ngspice_options": {k: getattr(options, k) for k in ("reltol", "abstol", "vntol", "method", "max_step")},
    }
    return RunValidation(summary=summary, op_errors=op_err, tran_errors=tran_err * vu, transients=tuple(transients))


@dataclass(frozen=True, eq=False)
class _Transient:
    validation: Validation
    tran_errors: np.ndarray  # per block state, max over time [state units]


def _transient(chip, x, idx, steady, res, nl_states, relax, path, options) -> _Transient:
    """A block's ``.tran`` against the frozen-boundary ODE from rest."""
    vu = chip.config.neuron.v_unit
    t = np.asarray(res.time)
    keep = np.concatenate([[True], np.diff(t) > 0])
    t, sp = t[keep], nl_states[keep]
    s0 = block_state(chip, idx, steady)
    t1 = time.perf_counter()
    traj = block_trajectory(chip, x, idx, s0, t, relax)
    ode_seconds = time.perf_counter() - t1
    sel = list(idx) + ([chip.n_neurons + i for i in idx] if chip.has_pole else [])
    ode = traj[:, sel]
    d_tr = (sp - ode) * vu
    spice_op = np.array([res.op[f"v{i}"] for i in idx] + ([res.op[f"y{i}"] for i in idx] if chip.has_pole else []))
    d_op = spice_op - steady[sel] * vu
    v = Validation(sizes=tuple(chip.sizes), op_error_max=float(np.abs(d_op).max()),
                   op_error_rms=float(np.sqrt(np.mean(d_op**2))), tran_error_max=float(np.abs(d_tr).max()),
                   tran_error_rms=float(np.sqrt(np.mean(d_tr**2))), settle_ode=settle_time(t, ode * vu, 1e-4),
                   settle_spice=settle_time(t, sp * vu, 1e-4), settle_band=1e-4, time=t, spice=sp * vu,
                   ode=ode * vu, spice_op=spice_op, ode_steady=steady[sel] * vu, spice_seconds=res.wall_time,
                   ode_seconds=ode_seconds, netlist_path=Path(path), options=options)
    return _Transient(validation=v, tran_errors=np.abs(d_tr).max(0) / vu)
