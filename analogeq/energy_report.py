"""Energy and latency of a run's chip: one inference settle and one training step, measured on
the run's first batch (``analogeq energy`` prints this; ``compare`` includes it)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.config import TrainConfig
from analogeq.energy.breakdown import (
    COUNT_KEYS,
    ENERGY_KEYS,
    LABELS,
    LATENCY_KEYS,
    as_floats,
    dominant,
)
from analogeq.energy.pulses import step_pulses
from analogeq.energy.settle import mean_settle_breakdown
from analogeq.energy.step import nudges, train_step_breakdown
from analogeq.hardware.config import ChipConfig

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


@eqx.filter_jit
def _first_step(estimator, cost, relaxation, updater, gate, chip, state, xb, yb, key):
    # The same key split and update as analogeq.training.make_train_step.
    k_est, k_write = jax.random.split(key)
    est = estimator.estimate(chip, cost, relaxation, xb, yb, gate=gate, key=k_est)
    new_chip, new_state = updater.update(chip, est.grads, state, k_write, estimate=est)
    step = train_step_breakdown(chip, estimator, est, step_pulses(chip, new_chip, state, new_state))
    return mean_settle_breakdown(chip, xb, est.free), step


def energy_report(cfg: TrainConfig, hardware: str | ChipConfig | None = None,
                  out_dir: str | Path | None = None) -> dict:
    """Breakdowns of one inference settle (mean over the first batch's samples, output layer read)
    and of the first training step of ``cfg`` realized on ``hardware`` (default
    ``cfg.hardware``, else ``"realistic"``); ``analogeq energy`` calls this.

    Returns ``{"hardware", "label", "batch_size", "sizes", "nudged_phases", "settle",
    "train_step", "dominant"}`` (breakdowns as in :mod:`analogeq.energy.breakdown`, plain floats); with
    ``out_dir`` also written to ``out_dir/energy.json``.
    """
    from analogeq.hardware.run import build_analog

    spec = hardware or cfg.hardware or "realistic"
    parts = build_analog(cfg, spec)
    chip, data = parts.model, parts.data
    idx = data.batch_indices(0, cfg.batch_size, cfg.seed)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1),
                                                cfg.chip_seed), 0)
    settle, step = _first_step(parts.estimator, parts.cost, parts.relaxation, parts.updater, cfg.gate,
                               chip, parts.updater.init(chip),
                               jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx]), key)
    settle, step = as_floats(settle), as_floats(step)
    report = {
        "hardware": spec if isinstance(spec, str) else "custom",
        "label": parts.label,
        "batch_size": cfg.batch_size,
        "sizes": list(chip.sizes),
        "nudged_phases": len(nudges(parts.estimator)),
        "settle": settle,
        "train_step": step,
        "dominant": {"settle_energy": dominant(settle), "train_step_energy": dominant(step),
                     "settle_latency": dominant(settle, LATENCY_KEYS),
                     "train_step_latency": dominant(step, LATENCY_KEYS)},
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "energy.json").write_text(json.dumps(report, indent=2))
    return report


def format_energy(report: dict) -> str:
    """The breakdown table printed by ``analogeq energy``: one row per component, columns for a
    settle and a training step."""
    from analogeq.report import format_table

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
