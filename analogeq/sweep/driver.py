"""``analogeq sweep``: run a sweep and write its tables and figures."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from analogeq.sweep.execute import TIMING_FIELDS, execute
from analogeq.sweep.plots import plot_curves, plot_heatmaps, plot_scatter
from analogeq.sweep.spec import SweepSpec
from analogeq.sweep.table import aggregate, write_csv, write_json


@dataclass
class SweepResult:
    """A finished sweep: ``rows`` (one per run, the spec's order), ``points`` (mean/std/n over
    replicates per point), how many runs were computed now and how many were reused from the
    store, the failed runs (key -> error) and the files written."""

    spec: SweepSpec
    rows: list[dict]
    points: list[dict]
    computed: int
    cached: int
    failed: dict[str, str]
    files: list[Path]


def load_spec(spec: SweepSpec | str | Path) -> SweepSpec:
    """A :class:`SweepSpec` from itself or a ``sweep.toml`` path."""
    return spec if isinstance(spec, SweepSpec) else SweepSpec.from_toml(spec)


def run_sweep(spec: SweepSpec | str | Path, out_dir: str | Path, *, scheduler: str | None = None,
              workers: int = 0, progress: bool = True, log=print) -> SweepResult:
    """Run a sweep (resuming from ``out_dir``) and write, into ``out_dir``:

    - ``results.csv`` / ``results.json``: one row per run (axes, seed, chip_seed, metrics; the
      JSON also holds the spec);
    - ``points.csv``: mean, std and count over replicates per point;
    - ``curves.png`` (grid axes), ``heatmap.png`` (two or more grid axes), ``scatter.png``
      (random axes);
    - ``runs/<key>.json``: each finished run (the cache that makes a restart resume);
    - ``sweep.toml``: a copy of the sweep file, when ``spec`` is a path.

    ``scheduler`` / ``workers`` choose where runs execute (see :func:`analogeq.sweep.execute.execute`).
    Energy is in J and latency in s per training step; accuracies are fractions.
    """
    source = None if isinstance(spec, SweepSpec) else Path(spec)
    spec = load_spec(spec)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if source is not None and source.resolve() != (out / "sweep.toml").resolve():
        shutil.copyfile(source, out / "sweep.toml")
    outcome = execute(spec, out, scheduler=scheduler, workers=workers, progress=progress, log=log)
    points = aggregate(outcome.rows, spec.axes)
    files = [write_csv(outcome.rows, out / "results.csv"),
             write_json({"spec": _spec_record(spec), "rows": outcome.rows,
                         "failed": outcome.failed}, out / "results.json"),
             write_csv(points, out / "points.csv")]
    if outcome.rows:
        metrics = tuple(m for m in spec.metrics if m in outcome.rows[0])
        grid_axes = tuple(spec.grid)
        if grid_axes:
            grid_points = aggregate(outcome.rows, grid_axes)
            files.append(plot_curves(grid_points, grid_axes, metrics, out / "curves.png"))
            if len(grid_axes) >= 2:
                files.append(plot_heatmaps(grid_points, grid_axes[:2], metrics, out / "heatmap.png"))
        if spec.random:
            files.append(plot_scatter(outcome.rows, tuple(spec.random), metrics, out / "scatter.png"))
    return SweepResult(spec=spec, rows=outcome.rows, points=points, computed=outcome.computed,
                       cached=outcome.cached, failed=outcome.failed, files=files)


def _spec_record(spec: SweepSpec) -> dict:
    return {"name": spec.name, "train": spec.train, "chip": spec.chip, "grid": spec.grid,
            "random": {k: {d.kind: list(d.args)} for k, d in spec.random.items()},
            "samples": spec.samples, "random_seed": spec.random_seed, "seeds": list(spec.seeds),
            "chips": list(spec.chips), "metrics": list(spec.metrics),
            "timing_columns": list(TIMING_FIELDS)}
