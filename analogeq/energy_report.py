"""Energy and latency of a run's chip: one inference settle and one training step, measured on
the run's first batch (``analogeq energy`` prints this; ``compare`` includes it)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax.numpy as jnp

from analogeq.assembly import build_analog
from analogeq.config import TrainConfig
from analogeq.energy import StepEnergy, real_nudges
from analogeq.energy.breakdown import (
    COUNT_KEYS,
    ENERGY_KEYS,
    LABELS,
    LATENCY_KEYS,
    as_floats,
    dominant,
)
from analogeq.hardware.config import ChipConfig
from analogeq.jsonio import write_json
from analogeq.streams import Streams
from analogeq.tables import format_table
from analogeq.training import make_train_step

_PREFIXES = ((1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p"), (1e-15, "f"), (1e-18, "a"))


def si(value: float, unit: str) -> str:
    """``value`` with an SI prefix, e.g. ``si(2.5e-9, "J") == "2.50 nJ"``."""
    v = float(value)
    if v == 0 or math.isnan(v):
        return f"{v:.3g} {unit}"
    for scale, prefix in ((1.0, ""),) + _PREFIXES:
        if abs(v) >= scale * (1 - 1e-6):  # float32 values land just below a decade
            return f"{v / scale:.3g} {prefix}{unit}"
    return f"{v:.3g} {unit}"


def energy_report(cfg: TrainConfig, hardware: str | ChipConfig | None = None,
                  out_dir: str | Path | None = None) -> dict:
    """Breakdowns of one inference settle (mean over the first batch's samples, output layer read)
    and of the first training step of ``cfg`` realized on ``hardware`` (default
    ``cfg.hardware``, else ``"realistic"``); ``analogeq energy`` calls this.

    The step is the run's own compiled training step (:func:`analogeq.training.make_train_step`)
    with the energy hook asking for the full breakdown.

    Returns ``{"hardware", "label", "batch_size", "sizes", "nudged_phases", "settle",
    "train_step", "dominant"}`` (breakdowns as in :mod:`analogeq.energy.breakdown`, plain floats); with
    ``out_dir`` also written to ``out_dir/energy.json``.
    """
    spec = hardware or cfg.hardware or "realistic"
    parts = build_analog(cfg, spec)
    betas = tuple(real_nudges(parts.estimator))
    parts = dataclasses.replace(parts, hooks=(StepEnergy(betas, full=True),))
    chip, data = parts.model, parts.data
    idx = data.batch_indices(0, cfg.batch_size, cfg.seed)
    _, _, metrics = make_train_step(parts, cfg.gate)(
        chip, parts.updater.init(chip), jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx]),
        Streams.of(cfg).step(0))
    settle = as_floats({k[len("settle/"):]: v for k, v in metrics.items() if k.startswith("settle/")})
    step = as_floats({k[len("step/"):]: v for k, v in metrics.items() if k.startswith("step/")})
    report = {
        "hardware": spec if isinstance(spec, str) else "custom",
        "label": parts.label,
        "batch_size": cfg.batch_size,
        "sizes": list(chip.sizes),
        "nudged_phases": len(betas),
        "settle": settle,
        "train_step": step,
        "dominant": {"settle_energy": dominant(settle), "train_step_energy": dominant(step),
                     "settle_latency": dominant(settle, LATENCY_KEYS),
                     "train_step_latency": dominant(step, LATENCY_KEYS)},
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "energy.json", report)
    return report


def format_energy(report: dict) -> str:
    """The breakdown table printed by ``analogeq energy``: one row per component, columns for a
    settle and a training step."""
    s, t = report["settle"], report["train_step"]
    rows = []
    for keys, unit in ((ENERGY_KEYS, "J"), (LATENCY_KEYS, "s")):
        for k in keys:
            rows.append({"component": LABELS[k], "settle": si(s[k], unit), "step": si(t[k], unit)})
        total = "energy_J" if unit == "J" else "latency_s"
        rows.append({"component": "total " + ("energy" if unit == "J" else "latency"),
                     "settle": si(s[total], unit), "step": si(t[total], unit)})
    for k in COUNT_KEYS:
        rows.append({"component": k.replace("_", " "), "settle": f"{s[k]:.0f}", "step": f"{t[k]:.0f}"})
    cols = [("component", "component", ""), ("settle", "one settle (mean sample)", ""),
            ("step", f"training step (batch {report['batch_size']})", "")]
    return (f"{report['label']}, sizes {tuple(report['sizes'])}, "
            f"{report['nudged_phases']} nudged phase(s) per sample\n" + format_table(rows, cols)
            + "\n" + energy_line(report))


def energy_line(report: dict) -> str:
    """One line: energy and latency of a settle and of a training step, and what dominates."""
    s, t, d = report["settle"], report["train_step"], report["dominant"]
    return (f"energy: settle {si(s['energy_J'], 'J')} in {si(s['latency_s'], 's')}, training step "
            f"{si(t['energy_J'], 'J')} in {si(t['latency_s'], 's')} (batch {report['batch_size']}); "
            f"dominated by {LABELS[d['train_step_energy']]} / {LABELS[d['train_step_latency']]}")
