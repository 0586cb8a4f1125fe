"""K chips trained at once (analogeq.fleet): each chip equals its single run, resume is exact,
the CLI and sweeps use it.

The reference for chip ``i`` of a K-chip run is independent code: the single-chip training
``analogeq train --chip-seed chip_seeds[i]`` runs (:func:`analogeq.assembly.train`), a separate
compiled program over unbatched arrays.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import equinox as eqx
import jax
import numpy as np
import pytest

from analogeq.assembly import build_analog, train
from analogeq.cli import main
from analogeq.config import TrainConfig
from analogeq.data import load_digits
from analogeq.fleet import chip_seeds_of, train_chips
from analogeq.hardware.config import ChipConfig

# Chip instances that differ (levels, programming error, bound spread, offsets, gain mismatch)
# but settle noise-free, so the program is small and compiles fast.
CHIP_CHANGES = {"crossbar.n_levels": 64, "crossbar.prog_noise": 0.005, "crossbar.d2d_bounds": 0.1,
                "neuron.offset_sigma": 1e-3, "neuron.gain_sigma": 0.02}
HW = ChipConfig.preset("ideal").replace(**CHIP_CHANGES)
CFG = TrainConfig(hidden=(16,), optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking", steps=3,
                  batch_size=8, eval_every=3, probe_every=3, checkpoint_every=1, gate=False,
                  hardware="ideal", chip_seed=5)
SEEDS = (5, 6)
# History fields computed by reductions (max/mean over samples, the probe's cosine): a batched
# program may order them differently, so they agree to float32 rounding, not bit for bit.
REDUCED = {"free_residual_max", "nudged_residual_max", "test_residual_max", "grad_cosine",
           "grad_rel_error", "settle_time_tau", "free_steps_mean"}
RTOL = 1e-5


def small_data():
    d = load_digits()
    return dataclasses.replace(d, x_test=d.x_test[:60], y_test=d.y_test[:60])


def leaves(model):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    data = small_data()
    out = tmp_path_factory.mktemp("chips")
    fleet = train_chips(CFG, out, n_chips=2, hardware=HW, data=data, mode="vmap", progress=False)
    single = [train(CFG.replace(chip_seed=s), None, progress=False, parts=build_analog(CFG.replace(chip_seed=s), HW, data))
              for s in SEEDS]
    return {"fleet": fleet, "single": single, "out": out, "data": data}


def compare_histories(a: list[dict], b: list[dict]) -> float:
    """Largest relative difference of the reduced fields; every other field must be equal."""
    assert [r["kind"] for r in a] == [r["kind"] for r in b]
    worst = 0.0
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k in REDUCED and isinstance(rb[k], float):
                worst = max(worst, abs(ra[k] - rb[k]) / max(abs(rb[k]), 1e-30))
            else:
                assert ra[k] == rb[k], (ra["kind"], ra["step"], k, ra[k], rb[k])
    return worst


def test_each_chip_is_its_single_run(runs):
    fleet, single = runs["fleet"], runs["single"]
    assert fleet.chip_seeds == SEEDS
    for chip, ref in zip(fleet.runs, single):
        for a, b in zip(leaves(chip.model), leaves(ref.model)):
            np.testing.assert_array_equal(a, b)  # the trained conductances, bit for bit
        for a, b in zip(jax.tree_util.tree_leaves(chip.state), jax.tree_util.tree_leaves(ref.state)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert compare_histories(chip.history, ref.history) <= RTOL
        assert chip.summary["final_test_acc"] == ref.summary["final_test_acc"]
    # the chips differ: the test can tell chip 5 from chip 6
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(fleet.runs[0].model), leaves(fleet.runs[1].model)))


def test_spread_and_files(runs):
    fleet, out = runs["fleet"], runs["out"]
    s = json.loads((out / "summary.json").read_text())
    acc = [r.summary["final_test_acc"] for r in fleet.runs]
    d = s["spread"]["final_test_acc"]
    assert d["values"] == pytest.approx(acc) and d["mean"] == pytest.approx(np.mean(acc))
    assert d["std"] == pytest.approx(np.std(acc)) and d["min"] == min(acc) and d["max"] == max(acc)
    assert [c["chip_seed"] for c in s["chips"]] == list(SEEDS)
    lines = (out / "chips.csv").read_text().splitlines()
    assert lines[0].startswith("chip_seed,status,final_test_acc") and len(lines) == 3
    curves = (out / "curves.csv").read_text().splitlines()
    assert len(curves) == 1 + 2 * 2  # header + 2 chips x evaluations at steps 0 and 3
    recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    for i, c in enumerate(SEEDS):
        mine = [{k: v for k, v in r.items() if k != "chip"} for r in recs if r["chip"] == c]
        assert mine == fleet.runs[i].history
    assert (out / "learning_curves.png").stat().st_size > 0


def test_resume_is_exact(runs, tmp_path, monkeypatch):
    """Ctrl-C during step 2 (the 6th metrics record: 2 evaluations, 2 x step 1, 2 x step 2):
    step 1 is checkpointed; resuming gives the uninterrupted run, bit for bit."""
    from analogeq import checkpoint
    from analogeq.training import TrainingInterrupted

    checkpoint._fault_counts.clear()
    monkeypatch.setenv("ANALOGEQ_FAULT", "metrics:appended@6")
    monkeypatch.setenv("ANALOGEQ_FAULT_SIGNAL", "INT")
    with pytest.raises(TrainingInterrupted, match="step 1 is checkpointed"):
        train_chips(CFG, tmp_path, n_chips=2, hardware=HW, data=runs["data"], mode="vmap", progress=False)
    monkeypatch.delenv("ANALOGEQ_FAULT")
    resumed = train_chips(CFG, tmp_path, n_chips=2, hardware=HW, data=runs["data"], mode="vmap",
                          progress=False, resume=True)
    for a, b in zip(resumed.runs, runs["fleet"].runs):
        for x, y in zip(leaves(a.model), leaves(b.model)):
            np.testing.assert_array_equal(x, y)
        assert a.history == b.history
    assert (tmp_path / "metrics.jsonl").read_bytes() == (runs["out"] / "metrics.jsonl").read_bytes()
    with pytest.raises(ValueError, match="this run trains"):
        train_chips(CFG, tmp_path, n_chips=3, hardware=HW, data=runs["data"], progress=False, resume=True)


def test_chip_seeds_are_validated():
    assert chip_seeds_of(CFG, 3) == (5, 6, 7)
    assert chip_seeds_of(CFG, chip_seeds=[9, 2]) == (9, 2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="expected an integer"):
            chip_seeds_of(CFG, bad)
    with pytest.raises(ValueError, match="distinct"):
        chip_seeds_of(CFG, chip_seeds=[1, 1])
    with pytest.raises(ValueError, match="needs a chip"):
        train_chips(CFG.replace(hardware=""), None, n_chips=2, progress=False)


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_cli_rejects_bad_chip_counts(value, capsys):
    assert main(["train", "--chips", value, "--hardware", "ideal", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chips" in err[0] and "integer" in err[0]


def test_cli_chips_need_hardware(capsys):
    assert main(["train", "--chips", "2", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--chips 2" in err[0] and "--hardware" in err[0]


def test_sweep_groups_chip_seeds_into_one_training():
    from analogeq.sweep.execute import chip_groups
    from analogeq.sweep.spec import SweepSpec

    spec = SweepSpec.from_dict({"sweep": {"seeds": [0, 1], "chips": 3},
                                "train": {"hardware": "ideal", "hidden": [16], "steps": 2},
                                "grid": {"lr": [0.1, 0.2]}})
    assert spec.chips == (0, 1, 2)
    groups = chip_groups(spec.runs())
    assert len(groups) == 4 and all(len(g) == 3 for g in groups)  # (lr, seed) points x 3 chips
    for g in groups:
        assert [r.chip_seed for r in g] == [0, 1, 2] and len({(r.seed, r.point) for r in g}) == 1
    digital = SweepSpec.from_dict({"sweep": {"chips": 2}, "train": {"hidden": [16], "steps": 2}})
    assert [len(g) for g in chip_groups(digital.runs())] == [1, 1]  # no chip: one run each
    with pytest.raises(ValueError, match="sweep.chips"):
        SweepSpec.from_dict({"sweep": {"chips": 0}, "train": {"hardware": "ideal"}})


@pytest.mark.slow
def test_sweep_chip_rows_equal_single_runs(tmp_path):
    """A sweep over chips = 2 trains both chips in one call; each row equals the chip's own run."""
    from analogeq.sweep import run_sweep
    from analogeq.sweep.spec import SweepSpec

    train_fields = {"hardware": "ideal", "hidden": [16], "steps": 2, "batch_size": 8, "eval_every": 2,
                    "probe_every": 2, "gate": False, "optimizer": "sgd", "lr": 0.1, "beta": 0.2,
                    "correction": "asym-tracking"}
    spec = SweepSpec.from_dict({"sweep": {"name": "c", "chips": 2}, "train": train_fields, "chip": CHIP_CHANGES})
    result = run_sweep(spec, tmp_path, progress=False, log=lambda m: None)
    assert result.computed == 2
    for row, job in zip(result.rows, spec.runs()):
        cfg = job.config()
        ref = train(cfg, None, progress=False, parts=build_analog(cfg, job.hardware()))
        assert row["final_test_acc"] == ref.summary["final_test_acc"]
        assert row["grad_cosine_final"] == pytest.approx(ref.summary["grad_cosine_final"], rel=RTOL)


SHARD_SCRIPT = r"""
import json, sys
import numpy as np, jax, equinox as eqx
from analogeq.assembly import train
from analogeq.demo import DEMO_CONFIG
from analogeq.fleet import train_chips
assert jax.local_device_count() == 2
cfg = DEMO_CONFIG.replace(hidden=(16,), steps=3, batch_size=8, eval_every=3, probe_every=3, chip_seed=11)
out = {}
for mode in ("shard", "vmap", "loop"):
    res = train_chips(cfg, None, n_chips=3, mode=mode, progress=False)
    out[mode] = [[np.asarray(x).tolist() for x in jax.tree.leaves(eqx.filter(r.model, eqx.is_array))] for r in res.runs]
    out[mode + "_hist"] = [r.history for r in res.runs]
single = [train(cfg.replace(chip_seed=s), None, progress=False) for s in (11, 12, 13)]
out["single"] = [[np.asarray(x).tolist() for x in jax.tree.leaves(eqx.filter(r.model, eqx.is_array))] for r in single]
out["single_hist"] = [r.history for r in single]
json.dump(out, open(sys.argv[1], "w"))
"""


@pytest.mark.slow
def test_demo_chip_shard_vmap_loop_match_single_runs(tmp_path):
    """The demo's chip (realistic preset with noise, pulsed ECRAM devices, mixed updates) on 3
    chips, sharded over 2 host devices (3 chips: one padded), vmapped and looped: every mode
    gives each chip's single run."""
    path = tmp_path / "out.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    subprocess.run([sys.executable, "-c", SHARD_SCRIPT, str(path)], check=True, env=env, timeout=3000)
    out = json.loads(path.read_text())
    for mode in ("shard", "vmap", "loop"):
        for chip, ref in zip(out[mode], out["single"]):
            for a, b in zip(chip, ref):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        for h, ref in zip(out[mode + "_hist"], out["single_hist"]):
            assert compare_histories(h, ref) <= RTOL
