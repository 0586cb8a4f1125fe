"""The main job (``make demo``): EP on digits, AsymEP vs uncorrected force-form EP, both
measured against the implicit adjoint along training."""

from __future__ import annotations

import json
from pathlib import Path

from analogeq.config import TrainConfig
from analogeq.plots import plot_learning_curves
from analogeq.report import TRAIN_COLUMNS, format_table
from analogeq.training import train

DEMO_RUNS = {
    "digital AsymEP": {"correction": "asym"},
    "digital EP (no correction)": {"correction": "none"},
}


def run_demo(out: Path, steps: int | None = None, progress: bool = True) -> list[dict]:
    """Train every run of :data:`DEMO_RUNS`, print the table, write plots and ``summary.json``."""
    out = Path(out)
    summaries, histories = [], {}
    for label, changes in DEMO_RUNS.items():
        cfg = TrainConfig(**changes)
        if steps is not None:
            cfg = cfg.replace(steps=steps)
        slug = label.replace(" ", "_").replace("(", "").replace(")", "")
        result = train(cfg, out / slug, progress=progress, label=label)
        summaries.append(result.summary)
        histories[label] = result.history
    plot_learning_curves(histories, out / "learning_curves.png")
    (out / "summary.json").write_text(json.dumps(summaries, indent=2))
    print()
    print("Digits (8x8, 1437 train / 360 test), leaky-integrator network 64-128-10, "
          "centered EP beta=0.05, float32 Euler")
    print(format_table(summaries, TRAIN_COLUMNS))
    print(f"\nwrote {out}/learning_curves.png and {out}/summary.json")
    return summaries
