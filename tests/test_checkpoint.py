"""Checkpoints are one verified unit; a crash at any write boundary never yields a silently
different run (kill tests drive ``python -m analogeq train`` with SIGKILL fault injection)."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from analogeq.checkpoint import (
    FAULT_POINTS,
    MAGIC,
    META,
    STATE,
    CheckpointError,
    MetricsLog,
    encode,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from analogeq.config import TrainConfig

TREE = {"w": jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4), "count": jnp.asarray(7, jnp.int32)}
LIKE = {"w": jnp.zeros((3, 4), jnp.float32), "count": jnp.asarray(0, jnp.int32)}


def _one_line_naming(e, path):
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_round_trip_is_exact_and_one_file(tmp_path):
    save_checkpoint(tmp_path, TREE, {"step": 4, "config": {"beta": 0.05}})
    assert sorted(p.name for p in tmp_path.iterdir()) == [STATE]  # one unit: no sidecar, no temp
    tree, meta = load_checkpoint(tmp_path, LIKE)
    np.testing.assert_array_equal(tree["w"], TREE["w"])
    assert int(tree["count"]) == 7 and meta["step"] == 4 and meta["config"] == {"beta": 0.05}
    data = (tmp_path / STATE).read_bytes()
    assert data.startswith(MAGIC)
    head = data[len(MAGIC):].split(b"\n", 1)
    assert hashlib.sha256(head[1]).hexdigest() == head[0].split()[3].decode()


@pytest.mark.parametrize("damage, match", [
    (lambda d: b"", "empty"),
    (lambda d: d[: len(d) // 2], "truncated"),
    (lambda d: d + b"\0" * 8, "truncated or appended"),
    (lambda d: d[:-5] + bytes([d[-5] ^ 1]) + d[-4:], "SHA-256"),
    (lambda d: d[:len(MAGIC)] + b"garbage\n" + d[len(MAGIC) + 20:], "header"),
    (lambda d: os.urandom(300), "not an analogeq checkpoint"),
    (lambda d: d.replace(b"format 2", b"format 9", 1), "format 9"),
])
def test_damaged_checkpoints_are_refused_with_one_line(tmp_path, damage, match):
    save_checkpoint(tmp_path, TREE, {"step": 4})
    path = tmp_path / STATE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(tmp_path, LIKE)
    _one_line_naming(e, path)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path, TREE, {"step": 1})
    with pytest.raises(CheckpointError, match="do not fit") as e:
        load_checkpoint(tmp_path, {"w": jnp.zeros((4, 4), jnp.float32), "count": jnp.asarray(0)})
    _one_line_naming(e, tmp_path / STATE)
    with pytest.raises(CheckpointError, match="more than the model"):
        load_checkpoint(tmp_path, {"count": jnp.asarray(0, jnp.int32)})  # leaves in key order


def test_missing_and_directory_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path, LIKE)
    (tmp_path / STATE).mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        read_checkpoint_meta(tmp_path)


def test_legacy_pair_is_readable_for_inspection_but_not_resumable(tmp_path):
    import equinox as eqx

    eqx.tree_serialise_leaves(tmp_path / STATE, TREE)
    (tmp_path / META).write_text(json.dumps({"step": 2, "config": {}}))
    tree, meta = load_checkpoint(tmp_path, LIKE, legacy=True)
    assert meta["step"] == 2 and int(tree["count"]) == 7
    with pytest.raises(CheckpointError, match="older analogeq"):
        load_checkpoint(tmp_path, LIKE, legacy=False)
    save_checkpoint(tmp_path, TREE, {"step": 3})  # a new save retires the unverifiable sidecar
    assert not (tmp_path / META).exists() and read_checkpoint_meta(tmp_path)["step"] == 3


def test_a_leftover_temporary_file_is_ignored(tmp_path):
    save_checkpoint(tmp_path, TREE, {"step": 2})
    (tmp_path / (STATE + ".tmp")).write_bytes(encode(TREE, {"step": 9})[:50])  # a torn write
    assert read_checkpoint_meta(tmp_path)["step"] == 2


def _log(tmp_path, records):
    log = MetricsLog.create(tmp_path / "metrics.jsonl")
    marks = []
    for r in records:
        log.append(r)
        marks.append({"step": r["step"], **log.mark()})
    return log, marks


def test_metrics_log_is_cut_back_to_the_checkpoint_through_a_new_file(tmp_path):
    recs = [{"kind": "train", "step": k, "loss": 1.0 / k} for k in range(1, 6)]
    log, marks = _log(tmp_path, recs)
    path = tmp_path / "metrics.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"kind": "train", "st')  # a torn last line from a kill
    inode = path.stat().st_ino
    log2, history = MetricsLog.resume(path, marks[2])
    assert history == recs[:3]
    assert path.read_bytes() == b"".join(json.dumps(r).encode() + b"\n" for r in recs[:3])
    assert path.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert log2.mark() == {k: v for k, v in marks[2].items() if k != "step"}


def test_metrics_log_refusals(tmp_path):
    recs = [{"kind": "train", "step": k, "loss": 0.5} for k in range(1, 4)]
    _, marks = _log(tmp_path, recs)
    path = tmp_path / "metrics.jsonl"
    data = path.read_bytes()
    path.write_bytes(data[:10])
    with pytest.raises(CheckpointError, match="truncated or replaced") as e:
        MetricsLog.resume(path, marks[1])
    _one_line_naming(e, path)
    path.write_bytes(data.replace(b"0.5", b"0.6", 1))
    with pytest.raises(CheckpointError, match="differ"):
        MetricsLog.resume(path, marks[1])
    path.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        MetricsLog.resume(path, marks[1])


# --- through the training loop --------------------------------------------------------------

CFG = dict(hidden=(16,), steps=4, eval_every=2, probe_every=4, checkpoint_every=2, batch_size=16)


def test_resume_refuses_missing_log_and_checkpoint_past_steps(tmp_path):
    from analogeq.assembly import train

    cfg = TrainConfig(**CFG)
    train(cfg, tmp_path, progress=False)
    with pytest.raises(CheckpointError, match="beyond steps = 2") as e:
        train(cfg.replace(steps=2), tmp_path, resume=True, progress=False)
    _one_line_naming(e, tmp_path / STATE)
    (tmp_path / "metrics.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match="metrics.jsonl is missing"):
        train(cfg, tmp_path, resume=True, progress=False)


def test_fresh_run_retires_an_old_checkpoint(tmp_path, monkeypatch):
    import analogeq.training as training
    from analogeq.assembly import train

    cfg = TrainConfig(**CFG)
    train(cfg, tmp_path, progress=False)
    assert read_checkpoint_meta(tmp_path)["step"] == 4

    # A new run in the same folder that dies before its first checkpoint must not leave the
    # old run's checkpoint to be resumed against its own (new) log.
    def crashing_step(parts, gate):
        def step(*args):
            raise RuntimeError("crash in step 1")
        return step

    monkeypatch.setattr(training, "make_train_step", crashing_step)
    with pytest.raises(RuntimeError, match="crash"):
        train(cfg.replace(seed=3), tmp_path, progress=False)
    assert not (tmp_path / STATE).exists()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        train(cfg.replace(seed=3), tmp_path, resume=True, progress=False)


# Subprocess runs of `python -m analogeq train`: the kill must hit the real CLI process.
ARGS = ["--hidden", "16", "--steps", "6", "--checkpoint-every", "2", "--eval-every", "3",
        "--probe-every", "3", "--batch-size", "16", "--dtype", "float32", "--no-progress"]


_ENV = {}


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(tmp_path_factory):
    """One JAX compilation cache for the module's subprocesses: the first run compiles, the
    others load (the same executables, so results are unchanged; ~2.5x faster here)."""
    _ENV.update(JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.mktemp("jax-cache")),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", JAX_PLATFORMS="cpu")
    yield
    _ENV.clear()


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANALOGEQ_FAULT")}
    return {**env, **_ENV}


def _train(out, *extra, fault=None, signal_name=None, timeout=300):
    env = _env()
    if fault:
        env["ANALOGEQ_FAULT"] = fault
    if signal_name:
        env["ANALOGEQ_FAULT_SIGNAL"] = signal_name
    return subprocess.run([sys.executable, "-m", "analogeq", "train", *ARGS, "--out", str(out), *extra],
                          env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (6 steps, checkpoints at 2, 4, 6)."""
    out = tmp_path_factory.mktemp("reference")
    r = _train(out)
    assert r.returncode == 0, r.stderr
    return out


def _assert_same_run(out, ref):
    """Final weights and metrics bit for bit (the checkpoint file holds the weights, the updater
    state, the config and the metrics hash), and a strict-JSON summary."""
    assert (out / "metrics.jsonl").read_bytes() == (ref / "metrics.jsonl").read_bytes()
    assert (out / STATE).read_bytes() == (ref / STATE).read_bytes()
    strict = json.loads((out / "summary.json").read_text(), parse_constant=_no_constant)
    assert strict["status"] == "completed" and strict["steps"] == 6


def _no_constant(name):
    raise AssertionError(f"summary.json holds {name}")


def _kill_then_resume(tmp_path, ref, fault, resume_fault=None):
    """Run with SIGKILL at ``fault``; resume (killed again at ``resume_fault`` if given) until
    done. Returns the resume's stderr when it refused."""
    r = _train(tmp_path, fault=fault)
    assert r.returncode == -signal.SIGKILL, (fault, r.returncode, r.stderr[-2000:])
    if resume_fault:
        r = _train(tmp_path, "--resume", fault=resume_fault)
        if r.returncode == 2:
            return r.stderr
        assert r.returncode == -signal.SIGKILL, (resume_fault, r.stderr[-2000:])
    r = _train(tmp_path, "--resume")
    if r.returncode == 2:  # a refusal must be one clear line naming the checkpoint
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "checkpoint" in lines[0] and str(tmp_path) in lines[0], r.stderr
        return lines[0]
    assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_run(tmp_path, ref)
    return None


def test_kill_after_weights_rename_resumes_bit_for_bit(tmp_path, reference):
    # The data-loss path: SIGKILL right after the checkpoint swap (here of step 4).
    assert _kill_then_resume(tmp_path, reference, "checkpoint:renamed@2") is None


@pytest.mark.slow
@pytest.mark.parametrize("fault", [f"{p}@{n}" for p in FAULT_POINTS if p.startswith("checkpoint:")
                                   for n in (1, 2, 3)]
                         + [f"metrics:appended@{n}" for n in (1, 3, 4, 6, 9)])
def test_kill_at_every_write_boundary(tmp_path, reference, fault):
    refused = _kill_then_resume(tmp_path, reference, fault)
    if refused is not None:  # only possible before the first checkpoint completed
        assert "does not exist" in refused or "empty" in refused, refused


@pytest.mark.slow
@pytest.mark.parametrize("resume_fault", ["metrics:truncate-written", "metrics:truncated"])
def test_kill_while_cutting_the_log_back(tmp_path, reference, resume_fault):
    # killed mid-checkpoint of step 4: the log holds records past the step-2 checkpoint
    assert _kill_then_resume(tmp_path, reference, "checkpoint:partial@2", resume_fault) is None


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_kill_at_random_points(tmp_path, reference, seed):
    env = _env()
    p = subprocess.Popen([sys.executable, "-m", "analogeq", "train", *ARGS, "--out", str(tmp_path)],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(3.0, 20.0))
    p.send_signal(signal.SIGKILL)
    p.wait()
    r = _train(tmp_path, "--resume")
    if r.returncode != 0:  # refused: killed before the first checkpoint completed
        line = r.stderr.strip().splitlines()[-1]
        assert r.returncode == 2 and str(tmp_path) in line, r.stderr
        r = _train(tmp_path)
        assert r.returncode == 0, r.stderr[-2000:]
    _assert_same_run(tmp_path, reference)


def test_ctrl_c_checkpoints_the_last_step_and_says_how_to_resume(tmp_path, reference):
    # Records: eval 0, train 1, 2 (checkpoint 2), train 3, eval 3, train 4, ... A Ctrl-C while
    # the 6th (train 4) is written checkpoints step 3, the last completed step (its eval
    # included), and exits 130 with one line saying how to resume.
    r = _train(tmp_path, fault="metrics:appended@6", signal_name="INT")
    assert r.returncode == 130, r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "--resume" in line and str(tmp_path) in line and "step 3" in line, r.stderr
    assert read_checkpoint_meta(tmp_path)["step"] == 3
    r = _train(tmp_path, "--resume")
    assert r.returncode == 0, r.stderr
    _assert_same_run(tmp_path, reference)
