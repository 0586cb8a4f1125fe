"""A sweep's results as tables: one row per run, and one row per point with the mean, standard
deviation and count over its replicates (seeds x chips)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

REPLICATE_COLUMNS = ("key", "seed", "chip_seed", "seconds")


def aggregate(rows: list[dict], axes: tuple[str, ...]) -> list[dict]:
    """Per point (the axes' values, in first-seen order): ``<metric>_mean``, ``<metric>_std``
    (population std over replicates; 0 for one) and ``n`` for every numeric column."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(_hashable(r.get(a)) for a in axes), []).append(r)
    metrics = [k for k in (rows[0] if rows else {}) if k not in axes and k not in REPLICATE_COLUMNS
               and isinstance(rows[0][k], (int, float)) and not isinstance(rows[0][k], bool)]
    out = []
    for point, group in groups.items():
        rec = {a: group[0].get(a) for a in axes}
        rec["n"] = len(group)
        for m in metrics:
            v = np.array([float(g.get(m, math.nan)) for g in group])
            finite = v[np.isfinite(v)]
            rec[f"{m}_mean"] = float(finite.mean()) if finite.size else math.nan
            rec[f"{m}_std"] = float(finite.std()) if finite.size else math.nan
        out.append(rec)
    return out


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Rows as CSV; columns in first-seen order (a column a row lacks is left empty)."""
    path = Path(path)
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    return path


def write_json(obj, path: str | Path) -> Path:
    """JSON with NaN written as ``null`` (standard JSON has no NaN)."""
    path = Path(path)
    path.write_text(json.dumps(_nan_to_none(obj), indent=1))
    return path


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x
