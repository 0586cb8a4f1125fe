"""Stability diagnostics of a trained run (``analogeq diagnose``): its model read back from the
run directory and diagnosed with :mod:`analogeq.diagnostics`; for an equilibrium transformer also
on the analog block (:func:`analogeq.hardware.verdict.continuous_verdict`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from analogeq.diagnostics.report import (
    DiagnoseOptions,
    diagnose,
    plot_spectrum,
    to_float64,
)
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.verdict import continuous_verdict
from analogeq.jsonio import write_json
from analogeq.runs import load_run


def _count(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {n!r}")
    return n


def _out_dir(run_dir, out) -> Path:
    d = Path(out) if out is not None else Path(run_dir)
    return d.parent if d.name == "checkpoint.eqx" else d


def diagnose_run(run_dir: str | Path, *, n_inputs: int = 4, options: DiagnoseOptions | None = None,
                 out: str | Path | None = None) -> dict:
    """``analogeq diagnose``: load a run, diagnose its model in float64 at the first ``n_inputs``
    test inputs with the run's Euler step ``eps`` (and ``tol`` as the convergence residual unless
    ``options`` says otherwise), write ``diagnose.json`` and ``diagnose.png`` into ``out``
    (default: the run directory) and return the report."""
    _count("n_inputs", n_inputs)
    run = load_run(run_dir)
    cfg, model, data, step = run.config, run.model, run.parts.data, run.step
    jax.config.update("jax_enable_x64", True)
    model = to_float64(model)
    options = options or DiagnoseOptions(tol=cfg.tol)
    if options.tol is None:
        options = dataclasses.replace(options, tol=cfg.tol)
    xs = jnp.asarray(np.asarray(data.x_test[:n_inputs]))
    if jnp.issubdtype(xs.dtype, jnp.floating):
        xs = xs.astype(jnp.float64)
    report = diagnose(model, xs, cfg.eps, options, key=jax.random.PRNGKey(options.seed))
    report.update(run_dir=str(run_dir), step=step, hardware=cfg.hardware or None,
                  realization="chip (continuous time)" if cfg.hardware else "digital emulator (Euler)")
    out = _out_dir(run_dir, out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "diagnose.json", report)
    plot_spectrum(report, out / "diagnose.png")
    return report


def analog_verdict(run_dir: str | Path, hardware: str | ChipConfig = "ideal", *, n_inputs: int = 2,
                   options: DiagnoseOptions | None = None, seed: int = 0,
                   out: str | Path | None = None) -> dict:
    """``analogeq diagnose RUN --analog HARDWARE``: the run's equilibrium transformer at its Euler
    step ``eps`` and realized as the analog block on ``hardware`` (with the circuit mismatch of its
    ``circuits`` section), at its first ``n_inputs`` test inputs
    (:func:`~analogeq.hardware.verdict.continuous_verdict`); writes ``analog_verdict.json`` into
    ``out`` (default: the run directory) and returns the verdict."""
    _count("n_inputs", n_inputs)
    run = load_run(run_dir)
    xs = np.asarray(run.parts.data.x_test[:n_inputs])
    verdict = continuous_verdict(run.model, xs, hardware, eps=run.config.eps, tol=run.config.tol,
                                 options=options, seed=seed)
    d = _out_dir(run_dir, out)
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / "analog_verdict.json", verdict)  # strict JSON: a non-finite number becomes null
    return verdict
