"""Measured pulse traces of devices: the CSV format ``analogeq devices fit`` reads
(docs/device-fitting.md).

One row per reading. Columns (header row required, any order, names case-insensitive; lines
starting with ``#`` and blank lines are skipped):

==============  ========  ======================================================================
column          required  meaning
==============  ========  ======================================================================
``device``      no        device label (any text; default: one device ``"1"``)
``cycle``       no        integer >= 0, one programming sequence of a device (default 0)
``pulse``       yes       integer >= 0, consecutive within a (device, cycle)
``direction``   yes       the pulse applied just before this reading: ``up`` / ``+1`` / ``1``,
                          ``down`` / ``-1``, or ``none`` / ``0`` (a read without a pulse); the
                          first reading of a cycle is its starting state (direction not used)
``conductance`` one of    conductance in siemens (finite, >= 0) ...
``weight``      the two   ... or the weight in weight units (finite)
==============  ========  ======================================================================

Conductances are mapped linearly onto weights by the range seen in the whole file:
``w = (G - G_mid) / G_half`` with ``G_mid = (G_max + G_min) / 2``, ``G_half = (G_max - G_min) / 2``,
so the measured range becomes ``[-1, 1]`` weight units (the map is recorded with the fit).
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analogeq.package_data import data_dir
from analogeq.spec import ConfigError

__all__ = ["EXAMPLE", "MIN_PULSES", "Cycle", "Traces", "read_traces"]

COLUMNS = ("device", "cycle", "pulse", "direction", "conductance", "weight")
"""The columns a trace CSV may have."""
EXAMPLE = data_dir("device_models") / "examples" / "pulse-traces.csv"
"""The example trace file shipped with the package (synthetic: its header says how it was made)."""
MIN_PULSES = 10
"""Fewest up pulses and fewest down pulses per device that a fit accepts."""
_DIRECTIONS = {"up": 1, "+1": 1, "1": 1, "down": -1, "-1": -1, "none": 0, "0": 0}
_INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Cycle:
    """One programming sequence of one device.

    Attributes:
        w: readings (weight units), shape ``(T,)``.
        signs: ``signs[t]`` is the pulse applied between readings ``t - 1`` and ``t`` (+1 up,
            -1 down, 0 none); ``signs[0]`` is 0 (the starting state).
        lines: the file's line number of each reading (1-based), for messages.
    """

    w: np.ndarray
    signs: np.ndarray
    lines: np.ndarray


@dataclass(frozen=True)
class Traces:
    """Traces read from a CSV file.

    Attributes:
        path: the file read.
        sha256: hex SHA-256 of its bytes (the fit's provenance).
        unit: ``"weight"`` or ``"conductance"`` (the value column found).
        devices: ``{label: (Cycle, ...)}`` in the order the labels first appear.
        g_mid, g_half: the conductance map ``w = (G - g_mid) / g_half`` in S (None for weights).
        n_rows: readings in the file.
    """

    path: Path
    sha256: str
    unit: str
    devices: dict[str, tuple[Cycle, ...]]
    g_mid: float | None
    g_half: float | None
    n_rows: int

    def pairs(self, label: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One-step pairs of a device with a pulse between them: ``(w_before, sign, w_after)``
        (weight units, +-1, weight units), all cycles concatenated."""
        before, signs, after = [], [], []
        for c in self.devices[label]:
            s = c.signs[1:]
            keep = s != 0
            before.append(c.w[:-1][keep])
            signs.append(s[keep])
            after.append(c.w[1:][keep])
        return np.concatenate(before), np.concatenate(signs), np.concatenate(after)


def _fail(path: Path, line: int | None, column: str | None, value: str | None, allowed: str) -> ConfigError:
    where = f"{path}" + (f": line {line}" if line else "") + (f", column {column!r}" if column else "")
    got = f": got {value!r}; " if value is not None else ": "
    return ConfigError(f"{where}{got}{allowed}")


def _read_text(path: Path) -> tuple[str, str]:
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; expected a trace CSV file")
    if not path.exists():
        raise ConfigError(f"{path}: no such file; expected a trace CSV file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the trace file: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected a CSV file") from None
    return text, hashlib.sha256(data).hexdigest()


def _header(path: Path, line: int, fields: list[str]) -> dict[str, int]:
    names = [f.strip().lower() for f in fields]
    cols: dict[str, int] = {}
    for i, name in enumerate(names):
        if name not in COLUMNS:
            raise _fail(path, line, None, fields[i].strip(), f"not a column; allowed columns: {', '.join(COLUMNS)}")
        if name in cols:
            raise _fail(path, line, name, None, "appears twice in the header")
        cols[name] = i
    missing = [c for c in ("pulse", "direction") if c not in cols]
    if missing:
        raise _fail(path, line, None, None, f"the header lacks column(s) {missing}; required: pulse, direction "
                    "and one of conductance [S] or weight [weight units]")
    if ("conductance" in cols) == ("weight" in cols):
        raise _fail(path, line, None, None, "the header needs exactly one of the columns conductance [S] "
                    "or weight [weight units]")
    return cols


def _integer(path, line, column, text) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if not 0 <= v <= _INT_MAX:
        raise _fail(path, line, column, text, f"allowed: an integer in [0, {_INT_MAX}]")
    return v


def _value(path, line, column, text) -> float:
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or (column == "conductance" and v < 0):
        allowed = "a finite number >= 0 (siemens)" if column == "conductance" else "a finite number (weight units)"
        raise _fail(path, line, column, text, f"allowed: {allowed}")
    return v


def read_traces(path: str | Path) -> Traces:
    """Read and validate a trace CSV (format in this module's docstring and
    docs/device-fitting.md).

    Every problem raises :class:`~analogeq.spec.ConfigError` in one line naming the file, the
    line and column, the value and what is allowed: unknown or missing columns, a value that is
    not a number (or not finite, or a negative conductance), a bad direction, a non-integer or
    negative pulse/cycle, a repeated or missing pulse number within a cycle, a device with fewer
    than :data:`MIN_PULSES` up or down pulses, readings that are all equal.
    """
    path = Path(path)
    text, digest = _read_text(path)
    rows = [(i + 1, line) for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise _fail(path, None, None, None, "no header row; expected a CSV with columns pulse, direction and "
                    "conductance or weight (optional: device, cycle)")
    head_line, head = rows[0]
    cols = _header(path, head_line, next(csv.reader([head])))
    vcol = "conductance" if "conductance" in cols else "weight"
    groups: dict[tuple[str, int], list[tuple[int, int, float, int]]] = {}
    labels: list[str] = []
    for line, raw in rows[1:]:
        fields = next(csv.reader([raw]))
        if len(fields) != len(cols):
            raise _fail(path, line, None, None, f"{len(fields)} fields; the header has {len(cols)} "
                        f"({', '.join(sorted(cols, key=cols.get))})")
        get = {c: fields[i].strip() for c, i in cols.items()}
        label = get.get("device", "1")
        if not label:
            raise _fail(path, line, "device", "", "allowed: a non-empty device label")
        cycle = _integer(path, line, "cycle", get["cycle"]) if "cycle" in get else 0
        pulse = _integer(path, line, "pulse", get["pulse"])
        sign = _DIRECTIONS.get(get["direction"].lower())
        if sign is None:
            raise _fail(path, line, "direction", get["direction"], "allowed: up, down, none, +1, 1, -1, 0")
        value = _value(path, line, vcol, get[vcol])
        if label not in labels:
            labels.append(label)
        groups.setdefault((label, cycle), []).append((pulse, line, value, sign))
    if not groups:
        raise _fail(path, None, None, None, "no readings below the header")

    values = np.array([r[2] for g in groups.values() for r in g])
    lo, hi = float(values.min()), float(values.max())
    if not hi > lo:
        raise _fail(path, None, vcol, None, f"every reading is {lo!r}; a fit needs readings that change")
    g_mid, g_half = ((hi + lo) / 2, (hi - lo) / 2) if vcol == "conductance" else (None, None)

    devices: dict[str, list[Cycle]] = {label: [] for label in labels}
    for (label, cycle), g in sorted(groups.items(), key=lambda kv: (labels.index(kv[0][0]), kv[0][1])):
        g.sort()
        for (p0, l0, *_), (p1, l1, *_) in itertools.pairwise(g):
            if p1 != p0 + 1:
                what = "repeats" if p1 == p0 else f"follows pulse {p0} (line {l0}); pulse numbers must be consecutive"
                raise _fail(path, l1, "pulse", str(p1), f"in device {label!r} cycle {cycle} this pulse number {what}")
        w = np.array([r[2] for r in g])
        if g_mid is not None:
            w = (w - g_mid) / g_half
        signs = np.array([0] + [r[3] for r in g[1:]], dtype=np.int32)
        devices[label].append(Cycle(w=w, signs=signs, lines=np.array([r[1] for r in g])))
    for label, cycles in devices.items():
        w = np.concatenate([c.w for c in cycles])
        if not np.ptp(w) > 0:
            raise _fail(path, int(cycles[0].lines[0]), vcol, None, f"every reading of device {label!r} is "
                        f"the same; a fit needs readings that change")
        n_up = sum(int((c.signs == 1).sum()) for c in cycles)
        n_down = sum(int((c.signs == -1).sum()) for c in cycles)
        if min(n_up, n_down) < MIN_PULSES:
            raise _fail(path, None, "direction", None, f"device {label!r} has {n_up} up and {n_down} down pulses; "
                        f"a fit needs at least {MIN_PULSES} of each (after the first reading of each cycle)")
    return Traces(path=path, sha256=digest, unit=vcol, devices={k: tuple(v) for k, v in devices.items()},
                  g_mid=g_mid, g_half=g_half, n_rows=len(rows) - 1)
