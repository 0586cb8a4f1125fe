"""Standard sweep figures: metric curves with their spread over replicates, heatmaps over two
grid axes, and scatter plots over random axes."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np

from analogeq.plots import plt, save_figure

LABELS = {
    "final_test_acc": "test accuracy (final)",
    "best_test_acc": "test accuracy (best)",
    "energy_per_step_J": "energy per training step [J]",
    "latency_per_step_s": "latency per training step [s]",
    "grad_cosine_final": "cos(gradient, exact) final",
    "grad_cosine_mean": "cos(gradient, exact) mean",
}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _logscale(values) -> bool:
    v = np.asarray([x for x in values if isinstance(x, (int, float))], dtype=float)
    return v.size > 1 and bool(np.all(v > 0)) and v.max() / v.min() >= 20


def plot_curves(agg: list[dict], axes: tuple[str, ...], metrics: tuple[str, ...], path: str | Path) -> Path:
    """One panel per metric against the first axis: the mean over replicates with a +-1 std band,
    one line per combination of the other axes' values."""
    x_axis, others = axes[0], axes[1:]
    fig, panels = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 3.6), squeeze=False)
    combos = sorted({tuple(r[a] for a in others) for r in agg}, key=lambda c: tuple(map(_sort_key, c)))
    for ax, metric in zip(panels[0], metrics):
        for combo in combos:
            pts = sorted(((r[x_axis], r[f"{metric}_mean"], r[f"{metric}_std"]) for r in agg
                          if tuple(r[a] for a in others) == combo and f"{metric}_mean" in r),
                         key=lambda p: _sort_key(p[0]))
            if not pts:
                continue
            x, m, s = (np.array(v, dtype=float) for v in zip(*pts))
            label = ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}" for a, v in zip(others, combo))
            line, = ax.plot(x, m, "o-", label=label or None)
            ax.fill_between(x, m - s, m + s, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(x_axis)
        ax.set_ylabel(_label(metric))
        if _logscale([r[x_axis] for r in agg]):
            ax.set_xscale("log")
        if _logscale([r.get(f"{metric}_mean") for r in agg]):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if others:
            ax.legend(fontsize=7)
    fig.suptitle(f"mean +- std over {agg[0]['n']} replicates per point" if agg else "")
    return save_figure(fig, path)


def plot_heatmaps(agg: list[dict], axes: tuple[str, str], metrics: tuple[str, ...], path: str | Path) -> Path:
    """One heatmap per metric over two grid axes (mean over replicates, and over any further
    axes), each cell annotated with its value."""
    a0, a1 = axes
    xs = sorted({r[a0] for r in agg}, key=_sort_key)
    ys = sorted({r[a1] for r in agg}, key=_sort_key)
    fig, panels = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(panels[0], metrics):
        grid = np.full((len(ys), len(xs)), np.nan)
        for (i, y), (j, x) in itertools.product(enumerate(ys), enumerate(xs)):
            vals = [r[f"{metric}_mean"] for r in agg if r[a0] == x and r[a1] == y
                    and r.get(f"{metric}_mean") is not None and math.isfinite(r[f"{metric}_mean"])]
            if vals:
                grid[i, j] = np.mean(vals)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis")
        for i, j in itertools.product(range(len(ys)), range(len(xs))):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7, color="w")
        ax.set_xticks(range(len(xs)), [f"{x:g}" if isinstance(x, float) else str(x) for x in xs], fontsize=7)
        ax.set_yticks(range(len(ys)), [f"{y:g}" if isinstance(y, float) else str(y) for y in ys], fontsize=7)
        ax.set_xlabel(a0)
        ax.set_ylabel(a1)
        ax.set_title(_label(metric), fontsize=9)
        fig.colorbar(im, ax=ax)
    return save_figure(fig, path)


def plot_scatter(rows: list[dict], axes: tuple[str, ...], metrics: tuple[str, ...], path: str | Path) -> Path:
    """Every run's metrics against each random axis (one row of panels per metric)."""
    fig, panels = plt.subplots(len(metrics), len(axes), figsize=(4.2 * len(axes), 3.2 * len(metrics)),
                               squeeze=False)
    for (i, metric), (j, axis) in itertools.product(enumerate(metrics), enumerate(axes)):
        ax = panels[i, j]
        pts = [(r[axis], r[metric]) for r in rows if isinstance(r.get(metric), (int, float))]
        if pts:
            ax.plot(*zip(*pts), "o", alpha=0.7)
        if _logscale([p[0] for p in pts]):
            ax.set_xscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(_label(metric))
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))
