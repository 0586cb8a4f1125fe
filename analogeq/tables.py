"""Plain-text tables for the terminal."""

from __future__ import annotations


def format_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Rows as an aligned table; ``columns`` are ``(key, header, format spec)``."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        cells.append([format(r[k], f) if isinstance(r.get(k), (int, float)) else str(r.get(k, ""))
                      for k, _, f in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


TRAIN_COLUMNS = [
    ("label", "run", ""),
    ("final_test_acc", "test acc", ".4f"),
    ("best_test_acc", "best acc", ".4f"),
    ("grad_cosine_mean", "cos(EP, exact) mean", ".5f"),
    ("grad_cosine_min", "min", ".5f"),
    ("grad_cosine_final", "final", ".5f"),
    ("unconverged_train_samples", "unconverged", "d"),
    ("steps_per_second", "steps/s", ".1f"),
    ("energy_per_step_J", "J/step", ".3g"),
    ("latency_per_step_s", "s/step", ".3g"),
]
