"""Checkpoints: the model and updater state as Equinox leaves plus a JSON record."""

from __future__ import annotations

import json
import os
from pathlib import Path

import equinox as eqx

STATE = "checkpoint.eqx"
META = "checkpoint.json"


def save_checkpoint(directory: str | Path, tree, meta: dict) -> Path:
    """Write ``tree`` (any pytree of arrays) and ``meta`` atomically into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (STATE + ".tmp")
    eqx.tree_serialise_leaves(tmp, tree)
    os.replace(tmp, d / STATE)
    tmp_meta = d / (META + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2))
    os.replace(tmp_meta, d / META)
    return d / STATE


def has_checkpoint(directory: str | Path) -> bool:
    d = Path(directory)
    return (d / STATE).exists() and (d / META).exists()


def load_checkpoint(directory: str | Path, like):
    """Read a checkpoint into a pytree shaped like ``like``; returns ``(tree, meta)``."""
    d = Path(directory)
    if not has_checkpoint(d):
        raise FileNotFoundError(f"no checkpoint in {d} (expected {STATE} and {META})")
    meta = json.loads((d / META).read_text())
    return eqx.tree_deserialise_leaves(d / STATE, like), meta
