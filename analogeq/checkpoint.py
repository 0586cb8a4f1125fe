"""Checkpoints: one verifiable file holding the weights, the updater state, the step and the
configuration.

``checkpoint.eqx`` is written as a unit: the whole file goes to ``checkpoint.eqx.tmp``, is
``fsync``-ed, renamed over the old one with ``os.replace`` (atomic on POSIX) and the directory
entry is ``fsync``-ed. A reader therefore sees either the previous checkpoint or the new one,
never new weights paired with old metadata. Layout (format 2)::

    ANALOGEQ-CHECKPOINT\\n
    format 2 sha256 <64 hex digits> bytes <n>\\n
    <n bytes of body>: one line of JSON metadata (step, config, ...) + "\\n" + the Equinox leaves

The SHA-256 covers the body, so a truncated, padded or altered file is refused on reading with
one line naming the file. Checkpoints of format 1 (``checkpoint.eqx`` leaves plus a separate
``checkpoint.json``, no hash) can still be read for inspection (:func:`load_checkpoint` with
``legacy=True``) but not resumed from: the pair cannot be verified.

The run's ``metrics.jsonl`` is append-only (:class:`MetricsLog`); each checkpoint records the
length and SHA-256 of the log as it stood, so a resume keeps exactly that prefix (replacing
the log through a temporary file, never rewriting it in place) and refuses a log that was
shortened, edited or lost.

Fault injection (testing only): with the environment variable ``ANALOGEQ_FAULT=<point>`` (or
``<point>@<n>`` for its n-th occurrence) the process kills itself with ``SIGKILL`` at that
point, e.g. ``checkpoint:renamed``; :data:`FAULT_POINTS` lists them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable

import equinox as eqx

from analogeq.jsonio import append_jsonl, dumps, fsync_dir, write_bytes_atomic

STATE = "checkpoint.eqx"
METRICS = "metrics.jsonl"  # the run's log, whose prefix a checkpoint names (MetricsLog)
META = "checkpoint.json"  # format 1 only: the separate metadata file
MAGIC = b"ANALOGEQ-CHECKPOINT\n"
FORMAT = 2

FAULT_ENV = "ANALOGEQ_FAULT"
FAULT_SIGNAL_ENV = "ANALOGEQ_FAULT_SIGNAL"  # e.g. INT: a Ctrl-C at the point instead of SIGKILL
FAULT_POINTS = (
    "checkpoint:partial",       # half of the temporary file written
    "checkpoint:temp-written",  # temporary file complete, not yet fsync-ed
    "checkpoint:temp-fsynced",  # temporary file durable, not yet renamed
    "checkpoint:renamed",       # renamed over the old checkpoint, directory not yet fsync-ed
    "checkpoint:done",          # directory fsync-ed
    "metrics:appended",         # a metrics record appended (training)
    "metrics:truncate-written",  # resume: the kept prefix written to a temporary file (training)
    "metrics:truncated",        # resume: the kept prefix renamed over metrics.jsonl (training)
)
"""Where :func:`fault` can kill the process (the write boundaries of a checkpoint and of the
metrics log)."""

_fault_counts: dict[str, int] = {}


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged or does not fit the run (message names the file)."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """No checkpoint (or no metrics log beside it) where one is needed."""


def fault(point: str) -> None:
    """Kill this process with ``SIGKILL`` if ``$ANALOGEQ_FAULT`` names ``point`` (fault-injection
    tests of crash safety; ``$ANALOGEQ_FAULT_SIGNAL=INT`` sends a Ctrl-C instead); a no-op
    otherwise."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, nth = spec.partition("@")
    if name != point:
        return
    _fault_counts[point] = _fault_counts.get(point, 0) + 1
    if _fault_counts[point] == (int(nth) if nth else 1):
        sys.stdout.flush()
        sys.stderr.flush()
        sig = getattr(signal, "SIG" + os.environ.get(FAULT_SIGNAL_ENV, "KILL"))
        if sig == signal.SIGINT:
            # A shell starts background jobs with SIGINT ignored, and Python keeps it ignored:
            # restore Ctrl-C's KeyboardInterrupt so the injected one is the user's.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        os.kill(os.getpid(), sig)


def encode(tree, meta: dict) -> bytes:
    """The bytes of a format-2 checkpoint of ``tree`` (a pytree of arrays) and ``meta``."""
    buf = io.BytesIO()
    eqx.tree_serialise_leaves(buf, tree)
    body = dumps({**meta, "format": FORMAT}).encode("utf-8") + b"\n" + buf.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    return MAGIC + f"format {FORMAT} sha256 {digest} bytes {len(body)}\n".encode("ascii") + body


def save_checkpoint(directory: str | Path, tree, meta: dict) -> Path:
    """Write ``tree`` and ``meta`` (JSON-able; ``step`` and ``config`` by convention) as one
    file ``directory/checkpoint.eqx``, atomically and durably (module docstring)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = encode(tree, meta)
    path, tmp = d / STATE, d / (STATE + ".tmp")
    with open(tmp, "wb") as f:
        half = len(data) // 2
        f.write(data[:half])
        f.flush()
        fault("checkpoint:partial")
        f.write(data[half:])
        f.flush()
        fault("checkpoint:temp-written")
        os.fsync(f.fileno())
    fault("checkpoint:temp-fsynced")
    os.replace(tmp, path)
    fault("checkpoint:renamed")
    stale = d / META  # a format-1 sidecar would describe other weights
    if stale.exists():
        stale.unlink()
    fsync_dir(d)
    fault("checkpoint:done")
    return path


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a checkpoint file (not yet verified)."""
    return (Path(directory) / STATE).is_file()


def remove_checkpoint(directory: str | Path) -> None:
    """Delete the checkpoint of ``directory`` (a fresh run in a used folder starts with this so
    an old checkpoint is never resumed against the new run's log)."""
    d = Path(directory)
    removed = False
    for name in (STATE, STATE + ".tmp", META):
        if (d / name).exists():
            (d / name).unlink()
            removed = True
    if removed:
        fsync_dir(d)


def _split(path: Path, data: bytes) -> tuple[dict, bytes]:
    """Verify a format-2 file's hash; returns ``(meta, leaves bytes)``."""
    head, sep, rest = data[len(MAGIC):].partition(b"\n")
    words = head.decode("ascii", errors="replace").split()
    if (not sep or len(words) != 6 or words[0] != "format" or words[2] != "sha256"
            or words[4] != "bytes" or not words[5].isdigit()):
        raise CheckpointError(f"{path}: damaged checkpoint (unreadable header); it cannot be used")
    if words[1] != str(FORMAT):
        raise CheckpointError(f"{path}: checkpoint format {words[1]} is not supported (this "
                              f"analogeq reads format {FORMAT})")
    if len(rest) != int(words[5]):
        raise CheckpointError(f"{path}: damaged checkpoint ({len(rest)} bytes of body, the header "
                              f"says {words[5]}: truncated or appended to); it cannot be used")
    if hashlib.sha256(rest).hexdigest() != words[3]:
        raise CheckpointError(f"{path}: damaged checkpoint (SHA-256 of its contents does not match "
                              "the one recorded in it); it cannot be used")
    line, _, leaves = rest.partition(b"\n")
    try:
        meta = json.loads(line)
    except ValueError:
        raise CheckpointError(f"{path}: damaged checkpoint (metadata is not JSON)") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int) or meta["step"] < 0:
        raise CheckpointError(f"{path}: checkpoint metadata has no valid 'step'")
    return meta, leaves


def _read(d: Path, legacy: bool) -> tuple[dict, bytes]:
    path = d / STATE
    if not path.is_file():
        what = "is a directory, not a checkpoint file" if path.is_dir() else "does not exist"
        raise CheckpointMissing(f"{path} {what} (no checkpoint in {d}; 'analogeq train' writes one "
                              "every --checkpoint-every steps)")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path}: empty checkpoint file (interrupted before its first write "
                              "completed?); it cannot be used")
    if data.startswith(MAGIC):
        return _split(path, data)
    if not (d / META).is_file():
        raise CheckpointError(f"{path}: not an analogeq checkpoint (no header, no {META}); it is "
                              "damaged or another program's file")
    if not legacy:
        raise CheckpointError(f"{path}: checkpoint of an older analogeq (weights and {META} as two "
                              "files without a hash), which cannot be verified; it cannot be resumed "
                              "from: start the run again")
    try:
        meta = json.loads((d / META).read_text())
    except ValueError as e:
        raise CheckpointError(f"{d / META}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{d / META}: expected a JSON object")
    return meta, data


def read_checkpoint_meta(directory: str | Path, legacy: bool = False) -> dict:
    """The verified metadata of ``directory``'s checkpoint (``step``, ``config``, ...)."""
    return _read(Path(directory), legacy)[0]


def load_checkpoint(directory: str | Path, like, legacy: bool = True,
                    check: Callable[[dict], None] | None = None):
    """Read and verify the checkpoint in ``directory`` into a pytree shaped like ``like``.

    Returns ``(tree, meta)``. Raises :class:`CheckpointError` (one line naming the file) when it
    is missing, empty, truncated, altered, of another program or does not fit ``like``.
    ``legacy`` allows reading an unverifiable format-1 checkpoint (for inspection, not resume).
    ``check(meta)`` runs on the verified metadata before the arrays are read (e.g. to refuse a
    configuration the checkpoint was not written with, with a better message than a shape error).
    """
    d = Path(directory)
    meta, leaves = _read(d, legacy)
    if check is not None:
        check(meta)
    f = io.BytesIO(leaves)
    try:
        tree = eqx.tree_deserialise_leaves(f, like)
    except Exception as e:  # noqa: BLE001 -- equinox/numpy raise many types for a bad stream
        raise CheckpointError(f"{d / STATE}: the stored arrays do not fit the model built from the "
                              f"run's configuration ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if f.tell() != len(leaves):
        raise CheckpointError(f"{d / STATE}: holds {len(leaves) - f.tell()} bytes more than the model "
                              "built from the run's configuration needs; it belongs to another model")
    return tree, meta


class MetricsLog:
    """``metrics.jsonl``, append-only, with a running SHA-256 of its bytes: a checkpoint records
    the length and hash of the log it was written after (:meth:`mark`), so a resume keeps
    exactly that prefix and can tell when the log was replaced or edited."""

    def __init__(self, path: Path, prefix: bytes = b""):
        self.path = path
        self._hash = hashlib.sha256(prefix)
        self._n = len(prefix)

    @classmethod
    def create(cls, path: Path) -> "MetricsLog":
        """An empty log at ``path`` (replacing any old one atomically)."""
        write_bytes_atomic(path, b"")
        return cls(path)

    @classmethod
    def resume(cls, path: Path, meta: dict) -> tuple["MetricsLog", list[dict]]:
        """The log as the checkpoint ``meta`` saw it, and its records. Bytes written after the
        checkpoint are dropped by writing the kept prefix to a temporary file and renaming it
        over the log (never by rewriting the log in place)."""
        step = meta["step"]
        if not path.is_file():
            raise CheckpointMissing(
                f"{path} is missing: the checkpoint of step {step} belongs to the metrics written "
                "up to that step, and resuming without them would lose the run's history; restore "
                "the file or start the run again")
        n, digest = meta.get("metrics_bytes"), meta.get("metrics_sha256")
        if not isinstance(n, int) or not isinstance(digest, str):
            raise CheckpointError(f"{path.parent / STATE}: the checkpoint does not record which part "
                                  f"of {path.name} belongs to it; cannot resume")
        data = path.read_bytes()
        if len(data) < n:
            raise CheckpointError(
                f"{path}: holds {len(data)} bytes, but the checkpoint of step {step} was written "
                f"after {n} bytes of it (the log was truncated or replaced); cannot resume")
        kept = data[:n]
        if hashlib.sha256(kept).hexdigest() != digest:
            raise CheckpointError(
                f"{path}: its first {n} bytes differ from the log the checkpoint of step {step} "
                "was written with (edited or replaced); cannot resume")
        if len(data) > n:
            write_bytes_atomic(path, kept, before_rename=lambda: fault("metrics:truncate-written"))
            fault("metrics:truncated")
        history = [json.loads(line) for line in kept.decode("utf-8").splitlines()]
        return cls(path, kept), history

    def append(self, rec: dict) -> None:
        """Append one (already JSON-safe) record."""
        line = append_jsonl(self.path, rec)
        self._hash.update(line)
        self._n += len(line)
        fault("metrics:appended")

    def mark(self) -> dict:
        """``{"metrics_bytes", "metrics_sha256"}`` of the log as written so far."""
        return {"metrics_bytes": self._n, "metrics_sha256": self._hash.hexdigest()}

    def sync(self) -> None:
        """``fsync`` the log (before a checkpoint claims its contents)."""
        with open(self.path, "ab") as f:
            os.fsync(f.fileno())
