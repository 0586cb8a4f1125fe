"""Standard figures, written as PNG files (any backend; no display needed)."""

from __future__ import annotations

from pathlib import Path

# No backend is forced: a library that called matplotlib.use("Agg") would turn off inline
# figures in a notebook that imports it; without a display matplotlib falls back to Agg itself.
import matplotlib.pyplot as plt


def save_figure(fig, path: str | Path) -> Path:
    """Lay out, write as PNG (120 dpi, parent folders created) and close ``fig``."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _series(history, kind, key):
    pts = [(r["step"], r[key]) for r in history if r["kind"] == kind and key in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_learning_curves(runs: dict[str, list[dict]], path: str | Path) -> Path:
    """Test accuracy (or validation accuracy and the final test-set score, for a data set with a
    validation split), training loss and gradient cosine vs step, one line per run.

    Args:
        runs: label -> metrics records (as in ``metrics.jsonl``).
        path: PNG file to write.
    """
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label, hist in runs.items():
        # A data set with a validation split: periodic validation scores, one final test score.
        val = any("val_acc" in r for r in hist if r["kind"] == "eval")
        axes[0].plot(*_series(hist, "eval", "val_acc" if val else "test_acc"), marker="o", ms=3,
                     label=f"{label} (validation)" if val else label)
        test = _series(hist, "test", "test_acc")
        if test[0]:
            axes[0].plot(*test, marker="*", ms=10, ls="none", label=f"{label} (test set)")
        axes[1].plot(*_series(hist, "train", "loss"), lw=0.8, label=label)
        axes[2].plot(*_series(hist, "eval", "grad_cosine"), marker="o", ms=3, label=label)
    axes[0].set(xlabel="training step", ylabel="test accuracy", title="Test accuracy")
    axes[1].set(xlabel="training step", ylabel="training cost", title="Training cost", yscale="log")
    axes[2].set(xlabel="training step", ylabel="cosine", title="Gradient vs implicit adjoint")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(fig, path)


MC_PANELS = [
    ("test_acc", "test accuracy"),
    ("fixed_point_error", "fixed-point error vs emulator"),
    ("cos_ep_vs_chip_exact", "cos(analog EP, chip exact)"),
    ("cos_ep_vs_digital_exact", "cos(analog EP, digital exact)"),
]


def plot_monte_carlo(mc: dict, path: str | Path) -> Path:
    """One strip per metric of a Monte Carlo over chips: every chip as a dot, mean +- std."""
    fig, axes = plt.subplots(1, len(MC_PANELS), figsize=(4 * len(MC_PANELS), 3.2))
    for ax, (key, title) in zip(axes, MC_PANELS):
        vals = mc[key]["values"]
        ax.plot(range(len(vals)), vals, "o", ms=4)
        ax.axhline(mc[key]["mean"], color="k", lw=1)
        ax.axhspan(mc[key]["mean"] - mc[key]["std"], mc[key]["mean"] + mc[key]["std"], color="k", alpha=0.1)
        ax.set(title=title, xlabel="chip instance")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)
