"""Finished runs of a sweep on disk: one JSON file per run, named by the run's configuration hash.

A file appears only once its run has finished (written to a temporary name, then renamed), so a
sweep killed at any moment leaves complete results only, and a restart recomputes exactly the
runs without a file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class RunStore:
    """The ``runs/`` folder of a sweep's output directory."""

    def __init__(self, out_dir: str | Path):
        self.dir = Path(out_dir) / "runs"
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.path(key).exists()

    def load(self, key: str) -> dict:
        return json.loads(self.path(key).read_text())

    def save(self, key: str, record: dict) -> None:
        tmp = self.dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record, indent=1, default=_plain))
        os.replace(tmp, self.path(key))


def _plain(x):
    return x.item() if hasattr(x, "item") else repr(x)
