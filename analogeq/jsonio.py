"""Strict JSON out: no ``NaN``/``Infinity`` ever reaches a file, and files are replaced atomically.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which RFC 8259 JSON does not
allow (``jq``, JavaScript and most readers refuse the file). Every JSON this package writes goes
through :func:`dumps`: a non-finite float becomes ``null`` and, in a mapping, a sibling
``"<field>_reason"`` says why (``"nan"``, ``"inf"``, ``"-inf"``, or the reason the caller gave).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np


def _reason(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _scalar(v):
    """NumPy/JAX scalars and 0-d arrays as Python numbers; anything else unchanged."""
    if isinstance(v, (np.generic,)) or (hasattr(v, "shape") and getattr(v, "shape", None) == ()
                                        and hasattr(v, "item")):
        return v.item()
    if hasattr(v, "tolist") and hasattr(v, "shape"):
        return v.tolist()
    return v


def sanitize(obj):
    """``obj`` with every non-finite float replaced by ``None``; in a dict, ``key_reason`` is
    added beside such a value (unless the dict already has one). NumPy and JAX scalars and
    arrays become Python numbers and lists; tuples become lists."""
    obj = _scalar(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, complex):
        return sanitize([obj.real, obj.imag])
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _scalar(v)
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
                out.setdefault(f"{k}_reason", obj.get(f"{k}_reason", _reason(v)))
            else:
                out[k] = sanitize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    return obj


def dumps(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`sanitize` ``(obj)``; refuses non-finite numbers it missed."""
    return json.dumps(sanitize(obj), allow_nan=False, **kwargs)


def fsync_dir(directory: str | Path) -> None:
    """Flush a directory entry (a rename or unlink inside it) to disk (POSIX; no-op elsewhere)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | Path, data: bytes, before_rename=None) -> Path:
    """Write ``data`` to ``path`` so a reader sees the old file or the new one, never a mix:
    a temporary file beside it, ``fsync``, ``os.replace``, ``fsync`` of the directory.
    ``before_rename()`` (optional) runs once the temporary file is durable (fault injection)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    if before_rename is not None:
        before_rename()
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`dumps`) atomically, with a final newline."""
    return write_text_atomic(path, dumps(obj, indent=indent) + "\n")


def jsonl_line(record: dict) -> bytes:
    """One JSON Lines record as bytes (strict JSON, newline-terminated)."""
    return (dumps(record) + "\n").encode("utf-8")


def append_jsonl(path: str | Path, record: dict, fsync: bool = False) -> bytes:
    """Append one record to a JSON Lines file; returns the bytes written. The line is written
    with one ``write`` call on an ``O_APPEND`` descriptor, so a crash can only tear the last line."""
    line = jsonl_line(record)
    with open(path, "ab") as f:
        f.write(line)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    return line


def loads_strict(text: str, what: str = "JSON"):
    """``json.loads`` that refuses ``NaN``/``Infinity``; errors name ``what`` (e.g. the file)."""
    def bad(name):
        raise ValueError(f"{what}: non-finite number {name} is not valid JSON")
    try:
        return json.loads(text, parse_constant=bad)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
