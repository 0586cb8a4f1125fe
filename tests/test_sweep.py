"""Sweeps: spec parsing, point expansion, run hashing, tables, Dask execution and resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from analogeq.cli import main
from analogeq.sweep import SweepSpec, run_sweep
from analogeq.sweep.execute import TIMING_FIELDS
from analogeq.sweep.table import aggregate

# 24 runs of the digital emulator: 4 learning rates x 3 nudges x 2 seeds, tiny and short so the
# Dask and resume tests measure the sweep machinery, not training.
TINY = {
    "sweep": {"name": "tiny", "seeds": [0, 1], "chips": [0],
              "metrics": ["final_test_acc", "grad_cosine_final"]},
    "train": {"hidden": [8], "steps": 2, "eval_every": 2, "batch_size": 8, "T1": 20, "T2": 6},
    "grid": {"lr": [1e-3, 2e-3, 4e-3, 8e-3], "beta": [0.02, 0.05, 0.1]},
}


def _table(rows):
    """Rows without machine-dependent columns, keyed by run."""
    return {r["key"]: {k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows}


def _same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        for col, va in a[key].items():
            vb = b[key][col]
            if isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb), (key, col)
            else:
                assert va == vb, (key, col, va, vb)


def test_grid_and_replicates_expand():
    spec = SweepSpec.from_dict(TINY)
    runs = spec.runs()
    assert len(spec.points()) == 12 and len(runs) == 24
    assert len({r.key for r in runs}) == 24
    assert {(r.seed, r.chip_seed) for r in runs} == {(0, 0), (1, 0)}
    first = runs[0].config()
    assert (first.lr, first.beta, first.hidden) == (1e-3, 0.02, (8,))


def test_random_axes_are_reproducible_and_in_range():
    d = {"train": {"hardware": "ideal", "steps": 1},
         "grid": {"crossbar.n_levels": [8, 16]},
         "random": {"samples": 5, "seed": 3, "neuron.offset_sigma": {"log_uniform": [1e-4, 1e-2]},
                    "lr": {"uniform": [1e-3, 2e-3]}, "hidden": {"choice": [[8], [16]]},
                    "T1": {"int_uniform": [10, 20]}}}
    spec = SweepSpec.from_dict(d)
    pts = spec.points()
    assert len(pts) == 10 and pts == SweepSpec.from_dict(d).points()
    # every grid value is crossed with the same 5 draws
    assert [p[1:] for p in pts[:5]] == [p[1:] for p in pts[5:]]
    for p in pts:
        v = dict(p)
        assert 1e-4 <= v["neuron.offset_sigma"] <= 1e-2 and 1e-3 <= v["lr"] <= 2e-3
        assert v["hidden"] in ([8], [16]) and 10 <= v["T1"] <= 20 and isinstance(v["T1"], int)
    run = spec.runs()[0]
    assert run.hardware().neuron.offset_sigma == dict(run.point)["neuron.offset_sigma"]
    assert run.hardware().crossbar.n_levels == 8


def test_run_key_tracks_the_full_configuration():
    base = {"train": {"hardware": "ideal", "steps": 1}, "grid": {"crossbar.n_levels": [8]}}
    k0 = SweepSpec.from_dict(base).runs()[0].key
    assert SweepSpec.from_dict(base).runs()[0].key == k0
    changed_chip = {**base, "chip": {"crossbar.read_noise": 0.01}}
    changed_train = {**base, "train": {"hardware": "ideal", "steps": 2}}
    changed_seed = {**base, "sweep": {"chips": [1]}}
    keys = {SweepSpec.from_dict(d).runs()[0].key for d in (changed_chip, changed_train, changed_seed)}
    assert k0 not in keys and len(keys) == 3


@pytest.mark.parametrize("d, match", [
    ({"grid": {"crossbar.n_level": [2]}, "train": {"hardware": "ideal"}}, "unknown chip field 'crossbar.n_level'"),
    ({"grid": {"xbar.n_levels": [2]}}, "unknown chip section"),
    ({"grid": {"learning_rate": [1e-3]}}, "neither a training option"),
    ({"grid": {"seed": [0, 1]}}, "replicate, not an axis"),
    ({"grid": {"lr": []}}, "non-empty list"),
    ({"grid": {"crossbar.n_levels": [8]}}, "hardware is empty"),
    ({"grid": {"crossbar.n_levels": [1]}, "train": {"hardware": "ideal"}}, "n_levels"),
    ({"grid": {"lr": [-1.0]}}, "lr must be > 0"),
    ({"random": {"samples": 2, "lr": {"normal": [0, 1]}}}, "unknown distribution 'normal'"),
    ({"random": {"samples": 2, "lr": {"log_uniform": [0, 1]}}}, "low > 0"),
    ({"random": {"lr": {"uniform": [1e-3, 1e-2]}}}, "samples must be an integer >= 1"),
    ({"sweep": {"seeds": [0, 0]}}, "distinct"),
    ({"sweep": {"seed": [0]}}, "unknown key"),
    ({"train": {"chip_seed": 1}}, "chips instead"),
    ({"grids": {}}, "unknown table"),
])
def test_bad_specs_name_the_problem(d, match):
    with pytest.raises(ValueError, match=match):
        SweepSpec.from_dict(d)


def test_aggregate_over_replicates():
    rows = [{"key": "a", "lr": 1, "seed": 0, "chip_seed": 0, "acc": 0.5, "seconds": 1.0},
            {"key": "b", "lr": 1, "seed": 1, "chip_seed": 0, "acc": 0.7, "seconds": 2.0},
            {"key": "c", "lr": 2, "seed": 0, "chip_seed": 0, "acc": float("nan"), "seconds": 1.0}]
    agg = aggregate(rows, ("lr",))
    assert agg[0]["n"] == 2 and agg[0]["acc_mean"] == pytest.approx(0.6)
    assert agg[0]["acc_std"] == pytest.approx(0.1)
    assert math.isnan(agg[1]["acc_mean"]) and "seconds_mean" not in agg[0]


def _sweep_cli(spec_file: Path, out: Path, **popen) -> subprocess.Popen:
    # Training runs execute in child processes: the test process only compares tables, so
    # compiled code does not pile up in it over the whole suite.
    return subprocess.Popen([sys.executable, "-m", "analogeq", "sweep", str(spec_file), "--out", str(out),
                             "--no-progress"], **popen)


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The 24-run sweep run locally (in one process, without Dask)."""
    tmp = tmp_path_factory.mktemp("local")
    spec_file = tmp / "sweep.toml"
    spec_file.write_text(_toml(TINY))
    proc = _sweep_cli(spec_file, tmp / "out", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log
    assert "24 runs computed, 0 reused" in log
    return tmp / "out", spec_file


def test_local_sweep_writes_tables_and_plots(reference):
    out, _ = reference
    rows = _rows(out)
    assert len(rows) == 24
    assert all(0.0 <= r["final_test_acc"] <= 1.0 and r["grad_cosine_final"] > 0.9 for r in rows)
    header = (out / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["key", "lr", "beta"] and "final_test_acc" in header
    points = (out / "points.csv").read_text().splitlines()
    assert len(points) == 13
    for png in ("curves.png", "heatmap.png"):
        assert (out / png).stat().st_size > 10_000
    # seeds differ, so the replicates spread
    std = points[0].split(",").index("final_test_acc_std")
    assert any(float(p.split(",")[std]) > 0 for p in points[1:])
    assert (out / "sweep.toml").exists()


CLUSTER = """
from distributed import LocalCluster
import sys, time
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
print(cluster.scheduler_address, flush=True)
sys.stdin.read()  # serve until the test closes our stdin
cluster.close()
"""


@pytest.mark.slow  # ~25 s: starts a dask cluster; the local executor's table is tested above
def test_dask_local_cluster_gives_the_same_table(reference, tmp_path):
    ref, spec_file = reference
    # The cluster and the sweep's driver are processes of their own, as on a real cluster. The
    # sweep hands its workers its compilation cache (the suite's, conftest), so they read back
    # the programs the local sweep compiled -- the same executables, the same table.
    cluster = subprocess.Popen([sys.executable, "-c", CLUSTER], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        address = cluster.stdout.readline().strip()
        assert address.startswith("tcp://"), address
        proc = subprocess.Popen([sys.executable, "-m", "analogeq", "sweep", str(spec_file), "--out",
                                 str(tmp_path), "--no-progress", "--scheduler", address],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        log, _ = proc.communicate(timeout=900)
    finally:
        cluster.stdin.close()
        cluster.wait(timeout=60)
    assert proc.returncode == 0, log
    assert f"on {address}" in log and "24 runs computed, 0 reused" in log
    _same(_table(_rows(tmp_path)), _table(_rows(ref)))


def test_killed_sweep_resumes_only_missing_runs(reference, tmp_path):
    ref, spec_file = reference
    out = tmp_path / "out"
    proc = _sweep_cli(spec_file, out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                      start_new_session=True)
    runs_dir = out / "runs"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if runs_dir.exists() and len(list(runs_dir.glob("*.json"))) >= 8:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list(runs_dir.glob("*.json")))
    assert 8 <= done < 24, f"the sweep should be killed halfway; {done} runs were stored"
    proc = _sweep_cli(spec_file, out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log
    assert f"{24 - done} runs computed, {done} reused" in log
    _same(_table(_rows(out)), _table(_rows(ref)))


def test_cli_dry_run_and_errors(tmp_path, capsys):
    spec_file = tmp_path / "sweep.toml"
    spec_file.write_text(_toml(TINY))
    assert main(["sweep", str(spec_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "12 points, 24 runs" in out and len(out.splitlines()) == 25
    spec_file.write_text('[grid]\n"crossbar.levels" = [2]\n[train]\nhardware = "ideal"\n')
    assert main(["sweep", str(spec_file), "--dry-run"]) == 2
    assert "unknown chip field 'crossbar.levels'" in capsys.readouterr().err


@pytest.mark.slow
def test_chip_sweep_reports_energy_and_latency(tmp_path):
    d = {"sweep": {"chips": [0, 1]},
         "train": {"hardware": "ideal", "hidden": [8], "steps": 2, "eval_every": 2, "batch_size": 8,
                   "gate": False},
         "grid": {"dynamics.settle_time": [1e-7, 4e-7]},
         "random": {"samples": 1, "crossbar.n_levels": {"int_uniform": [8, 64]}}}
    res = run_sweep(SweepSpec.from_dict(d), tmp_path, progress=False, log=lambda m: None)
    assert res.computed == 4 and not res.failed
    by_time = {t: [r for r in res.rows if r["dynamics.settle_time"] == t] for t in (1e-7, 4e-7)}
    for rows in by_time.values():
        assert all(np.isfinite(r["energy_per_step_J"]) and r["energy_per_step_J"] > 0 for r in rows)
    # the settle window is part of every step's latency
    assert (min(r["latency_per_step_s"] for r in by_time[4e-7])
            > max(r["latency_per_step_s"] for r in by_time[1e-7]))
    assert (tmp_path / "scatter.png").exists() and (tmp_path / "curves.png").exists()


def _toml(d: dict) -> str:
    def val(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {val(x)}" for k, x in v.items()) + " }"
        return repr(v)

    return "".join(f"[{t}]\n" + "".join(f"{json.dumps(k)} = {val(v)}\n" for k, v in body.items()) + "\n"
                   for t, body in d.items())
