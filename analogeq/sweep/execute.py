"""Running a sweep: each run trains as :func:`analogeq.training.train` would, locally in this
process or on a Dask cluster; finished runs are stored as they arrive, so an interrupted sweep
resumes where it stopped."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from analogeq import compile_cache
from analogeq.spec import ConfigError
from analogeq.sweep.spec import SUMMARY_FIELDS, TIMING_FIELDS, Job, SweepSpec
from analogeq.sweep.store import RunStore

__all__ = ["SUMMARY_FIELDS", "TIMING_FIELDS", "SweepOutcome", "chip_groups", "execute", "run_group", "run_one"]

CONNECT_TIMEOUT = 20.0
"""Seconds to reach a Dask scheduler (``--scheduler``) before giving up with a clear message."""
MAX_WORKERS = 256


def run_one(run: Job) -> dict:
    """Train one run (no files written) and return its table row."""
    from analogeq.assembly import build_parts, train

    cfg = run.config()
    t0 = time.perf_counter()
    # A run's numbers must not depend on the process it lands in: a float32 run computes in
    # float32 even where the host process enabled 64-bit types (tests, notebooks).
    with _x64(cfg.dtype == "float64"):
        parts = build_parts(cfg, run.hardware() if run.chip is not None else "")
        result = train(cfg, None, progress=False, parts=parts)
    summary = result.summary
    row = {"key": run.key, **dict(run.point), "seed": run.seed, "chip_seed": run.chip_seed}
    row.update({k: summary.get(k, math.nan) for k in SUMMARY_FIELDS})
    row["seconds"] = time.perf_counter() - t0
    return row


def run_group(runs: list[Job]) -> list[dict]:
    """Train runs that differ only in their chip instance (``chip_seed``) and return their table
    rows: one run as :func:`run_one`, several as one K-chip training
    (:func:`analogeq.fleet.train_chips`: one vmapped step for all chips, each chip the run its
    single training would be). ``seconds`` is the group's wall clock shared equally."""
    if len(runs) == 1:
        return [run_one(runs[0])]
    from analogeq.fleet import train_chips

    cfg = runs[0].config()
    t0 = time.perf_counter()
    with _x64(cfg.dtype == "float64"):
        result = train_chips(cfg, None, chip_seeds=[r.chip_seed for r in runs], hardware=runs[0].hardware(),
                             progress=False)
    seconds = (time.perf_counter() - t0) / len(runs)
    rows = []
    for run, chip in zip(runs, result.runs):
        row = {"key": run.key, **dict(run.point), "seed": run.seed, "chip_seed": run.chip_seed}
        row.update({k: chip.summary.get(k, math.nan) for k in SUMMARY_FIELDS})
        row["seconds"] = seconds
        rows.append(row)
    return rows


def chip_groups(runs: list[Job]) -> list[list[Job]]:
    """``runs`` grouped into runs that differ only in ``chip_seed`` (chip runs; each digital run
    is a group of its own), in first-appearance order: each group trains as one K-chip run."""
    groups: dict[str, list[Job]] = {}
    for r in runs:
        if r.chip is None:
            groups[r.key] = [r]
            continue
        same = json.dumps({"train": {**r.train, "chip_seed": None}, "chip": r.chip}, sort_keys=True, default=repr)
        groups.setdefault(same, []).append(r)
    return list(groups.values())


def _x64(on: bool):
    import jax

    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(on)
    from jax.experimental import disable_x64, enable_x64  # JAX < 0.6

    return enable_x64() if on else disable_x64()


@dataclass
class SweepOutcome:
    """What :func:`execute` did: every row (in the spec's run order), how many runs it computed
    and how many it found already stored, and the runs that failed (key -> error message)."""

    rows: list[dict]
    computed: int
    cached: int
    failed: dict[str, str]


def execute(spec: SweepSpec, out_dir: str | Path, *, scheduler: str | None = None, workers: int = 0,
            progress: bool = True, log=print) -> SweepOutcome:
    """Run every run of ``spec`` that ``out_dir`` does not hold yet.

    Args:
        spec: the sweep.
        out_dir: output directory; finished runs go to ``out_dir/runs/<key>.json``.
        scheduler: address of a Dask scheduler (``tcp://host:8786``) to run on; ``None`` runs
            locally (in this process, or on ``workers`` local worker processes).
        workers: with no ``scheduler``, ``> 0`` starts a Dask ``LocalCluster`` of this many
            single-threaded worker processes; ``0`` runs in this process.
        progress: show a progress bar.
        log: where one-line messages go.

    Raises ``ValueError`` for a bad ``workers`` / ``scheduler`` or a damaged stored result (naming
    its file), and ``ConnectionError`` when the scheduler cannot be reached within
    :data:`CONNECT_TIMEOUT` seconds.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or not 0 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be an integer in 0..{MAX_WORKERS} (0: run in this process); "
                         f"got {workers!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
        raise ValueError(f"scheduler must be a Dask scheduler address such as tcp://host:8786; got {scheduler!r}")
    store = RunStore(out_dir)
    runs = spec.runs()
    unique = {r.key: r for r in runs}
    if len(unique) < len(runs):
        log(f"{len(runs) - len(unique)} runs repeat another run's configuration; each is run once")
    for k in unique:
        if store.has(k):
            _stored_row(store, k)  # a damaged result fails now, naming its file, not after the sweep
    pending = [r for k, r in unique.items() if not store.has(k)]
    cached = len(unique) - len(pending)
    log(f"sweep {spec.name!r}: {len(unique)} runs ({len(spec.points())} points x {len(spec.seeds)} seeds "
        f"x {len(spec.chips)} chips), {cached} already done, {len(pending)} to run"
        + (f" on {scheduler}" if scheduler else f" on {workers} local workers" if workers else ""))
    failed: dict[str, str] = {}
    bar = tqdm(total=len(pending), disable=not progress, desc=spec.name, unit="run")

    def finish(run: Job, row: dict | None, error: str | None) -> None:
        if error is not None:
            failed[run.key] = error
            log(f"run {run.key} ({_describe(run)}) failed: {error}")
        else:
            store.save(run.key, {"run": {"point": dict(run.point), "train": run.train, "chip": run.chip},
                                 "row": _finite_or_null(row)})
        bar.update(1)

    # The chip instances of one point and seed train together, one vmapped step for all.
    groups = chip_groups(pending)
    if pending and (scheduler or workers):
        _on_dask(groups, finish, scheduler, workers)
    else:
        for group in groups:
            try:
                rows = run_group(group)
            except Exception as e:  # noqa: BLE001 -- one failed group must not lose the others
                for run in group:
                    finish(run, None, f"{type(e).__name__}: {e}")
                continue
            for run, row in zip(group, rows):
                finish(run, row, None)
    bar.close()
    rows = [_stored_row(store, r.key) for r in runs if store.has(r.key)]
    return SweepOutcome(rows=rows, computed=len(pending) - len(failed), cached=cached, failed=failed)


def _stored_row(store: RunStore, key: str) -> dict:
    """The table row of a stored run; a file that is not a stored result raises one line naming
    it (delete it and the run is computed again)."""
    path = store.path(key)
    try:
        rec = store.load(key)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: damaged stored sweep result (not JSON: {' '.join(str(e).split())}); "
                          "delete it to compute the run again") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the stored sweep result ({e.strerror or e})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("row"), dict) or rec["row"].get("key") != key:
        raise ConfigError(f"{path}: damaged stored sweep result (expected an object with the run's "
                          "'row'); delete it to compute the run again")
    row = rec["row"]
    # a metric stored as null (not finite, or not reported) is NaN in the table, as when computed
    return {k: math.nan if v is None and k in SUMMARY_FIELDS + TIMING_FIELDS else v for k, v in row.items()}


def _finite_or_null(row: dict) -> dict:
    """A table row for the store: a non-finite metric is written as ``null`` (strict JSON)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}


def _connect(scheduler: str):
    """A Dask client of ``scheduler``, or ``ConnectionError`` after :data:`CONNECT_TIMEOUT` s."""
    from distributed import Client

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT)
    except Exception as e:  # noqa: BLE001 -- refused, timed out, or a peer that is not Dask
        raise ConnectionError(f"cannot reach a Dask scheduler at {scheduler!r} within {CONNECT_TIMEOUT:g} s "
                              f"({type(e).__name__}: {' '.join(str(e).split())[:160]}); check the address "
                              "and that the scheduler is running") from None


def _on_dask(groups: list[list[Job]], finish, scheduler: str | None, workers: int) -> None:
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        # Single-threaded processes: JAX uses the cores itself, and one run per process keeps
        # compilation caches from contending.
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
    try:
        with (Client(cluster) if cluster is not None else _connect(scheduler)) as client:
            cache = compile_cache.settings()
            futures = {client.submit(_run_group_on_worker, g, cache, key=f"analogeq-run-{g[0].key}", pure=False): g
                       for g in groups}
            for fut in as_completed(futures):
                group = futures[fut]
                if fut.status == "error":
                    err = fut.exception()
                    for run in group:
                        finish(run, None, f"{type(err).__name__}: {err}")
                else:
                    for run, row in zip(group, fut.result()):
                        finish(run, row, None)
    finally:
        if cluster is not None:
            cluster.close()


def _run_group_on_worker(runs: list[Job], cache: tuple[str, float] | None) -> list[dict]:
    """:func:`run_group` in a Dask worker, with the submitting process's persistent compilation
    cache (``(directory, min_compile_seconds)`` from :func:`compile_cache.settings`, or
    ``None``): a worker process would otherwise compile every program anew, as it does not
    run the command line that turns the cache on. A directory the worker cannot create leaves
    its cache off."""
    if cache is not None:
        compile_cache.enable(*cache)
    return run_group(runs)


def _describe(run: Job) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.point) + f", seed={run.seed}, chip={run.chip_seed}"
