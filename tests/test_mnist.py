"""MNIST / Fashion-MNIST tasks (issue 15): the IDX reader, the loader's checks and split, the
``--epochs`` arithmetic, chunked evaluation, and short training runs on the real data when
``../shared/data/mnist`` exists (else on a small IDX folder written here).

References checked against: the IDX layout of LeCun's MNIST page (magic 0x00000803 / 0x00000801,
big-endian uint32 sizes) written byte by byte with ``struct`` (not with the writer under test);
the MD5s and label counts of ``/work/shared/data/README.md``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import struct

import equinox as eqx
import jax
import numpy as np
import pytest

import analogeq as aq
from analogeq.assembly import build_digital, train
from analogeq.config import TrainConfig
from analogeq.costs import make_cost
from analogeq.data import TASKS, load_task
from analogeq.data.dataset import Dataset
from analogeq.data.idx import parse_idx, read_idx, write_idx
from analogeq.data.mnist import FILES, load_fashion_mnist, load_mnist
from analogeq.data.text import REPO_ROOT
from analogeq.evaluation import evaluate
from analogeq.spec import ConfigError
from analogeq.training import steps_per_epoch, total_steps

MNIST_DIR = (REPO_ROOT / "../shared/data/mnist").resolve()
HAVE_MNIST = all((MNIST_DIR / f"{stem}.gz").is_file() or (MNIST_DIR / stem).is_file()
                 for stem in FILES.values())
# /work/shared/data/README.md: MD5 of the uncompressed files, training-label counts of digits 0-9.
TRAIN_IMAGES_MD5 = "6bbc9ace898e44ae57da46a324031adb"
TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def idx_bytes(magic: int, shape: tuple[int, ...], body: bytes) -> bytes:
    """An IDX file built by hand from the format's definition (independent of write_idx)."""
    return struct.pack(">I", magic) + struct.pack(f">{len(shape)}I", *shape) + body


def write_folder(folder, n_train=40, n_test=20, side=4, *, gz=True, seed=0):
    """A small MNIST-layout folder; returns the arrays written (uint8 images, labels)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        arrays[split] = (x, y)
        files = {f"{split}-images-idx3-ubyte": idx_bytes(0x803, x.shape, x.tobytes()),
                 f"{split}-labels-idx1-ubyte": idx_bytes(0x801, y.shape, y.tobytes())}
        for stem, data in files.items():
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return arrays


# ------------------------------------------------------------------ IDX reader
@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_hand_written_files_gzip_or_raw(tmp_path, gz):
    x = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    data = idx_bytes(0x803, x.shape, x.tobytes())
    p = tmp_path / ("a.gz" if gz else "a")
    p.write_bytes(gzip.compress(data) if gz else data)
    np.testing.assert_array_equal(read_idx(p, ndim=3, dtype_code=0x08), x)
    # gzip is recognized by its magic bytes, not the name
    q = tmp_path / "plain-name"
    q.write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_idx(q), x)


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip_every_type(tmp_path, dtype):
    rng = np.random.default_rng(1)
    a = (rng.normal(size=(3, 4)) * 50).astype(np.dtype(dtype).newbyteorder("="))
    for name in ("r.idx", "r.idx.gz"):
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / name, a)), a)
    # the writer's bytes are the format's: magic 0x0000TTDD then big-endian sizes and elements
    code = {"u1": 8, "i1": 9, ">i2": 11, ">i4": 12, ">f4": 13, ">f8": 14}[dtype]
    assert (tmp_path / "r.idx").read_bytes() == idx_bytes((code << 8) | 2, a.shape,
                                                          a.astype(np.dtype(dtype)).tobytes())


def _one_line_naming(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_idx_errors_are_one_line_naming_the_file():
    good = idx_bytes(0x803, (2, 2, 2), bytes(8))
    with pytest.raises(ValueError) as e:
        parse_idx(b"\x12\x34" + good[2:], "imgs")
    _one_line_naming(e, "imgs", "bad IDX magic number 0x12340803")
    with pytest.raises(ValueError) as e:  # a label file where images are expected
        parse_idx(idx_bytes(0x801, (8,), bytes(8)), "imgs", ndim=3, dtype_code=0x08)
    _one_line_naming(e, "imgs", "expected 0x00000803")
    with pytest.raises(ValueError) as e:
        parse_idx(good[:-1], "imgs")
    _one_line_naming(e, "imgs", "truncated", "(2, 2, 2)")
    with pytest.raises(ValueError) as e:
        parse_idx(good + b"\0", "imgs")
    _one_line_naming(e, "imgs", "trailing bytes")
    with pytest.raises(ValueError) as e:
        parse_idx(good[:9], "imgs")
    _one_line_naming(e, "imgs", "truncated IDX header")
    with pytest.raises(ValueError) as e:
        parse_idx(b"\0\0", "imgs")
    _one_line_naming(e, "imgs", "too short")


def test_truncated_gzip_is_named(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(idx_bytes(0x803, (4, 4, 4), bytes(64)))[:-12])
    with pytest.raises(ValueError) as e:
        read_idx(p)
    _one_line_naming(e, str(p), "gzip")


# ------------------------------------------------------------------ loader
@pytest.mark.parametrize("gz", [True, False])
def test_loader_scales_flattens_and_splits(tmp_path, gz):
    arrays = write_folder(tmp_path, n_train=40, n_test=20, side=4, gz=gz)
    d = load_mnist(tmp_path, validation=10, split_seed=3)
    x, y = arrays["train"]
    assert (d.x_train.shape, d.x_val.shape, d.x_test.shape) == ((30, 16), (10, 16), (20, 16))
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32 and d.n_features == 16
    np.testing.assert_array_equal(d.x_test, arrays["t10k"][0].reshape(20, 16) / np.float32(255))
    np.testing.assert_array_equal(d.y_test, arrays["t10k"][1])
    # train and validation partition the training file: every image once, with its label
    both = np.concatenate([d.x_train, d.x_val])
    rows = {r.tobytes(): i for i, r in enumerate((x.reshape(40, 16) / np.float32(255)).astype(np.float32))}
    idx = [rows[r.tobytes()] for r in both]
    assert sorted(idx) == list(range(40))
    np.testing.assert_array_equal(np.concatenate([d.y_train, d.y_val]), y[idx])
    # the split is fixed by its seed
    np.testing.assert_array_equal(load_mnist(tmp_path, validation=10, split_seed=3).y_val, d.y_val)
    assert not np.array_equal(load_mnist(tmp_path, validation=10, split_seed=4).x_val, d.x_val)
    assert d.eval_split[0] == "validation"
    none = load_mnist(tmp_path, validation=0)
    assert none.x_val is None and none.eval_split[0] == "test" and len(none.y_train) == 40


def test_loader_errors_name_the_file(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as e:
        load_mnist(tmp_path)
    _one_line_naming(e, "t10k-labels-idx1-ubyte[.gz]", str(tmp_path), *FILES.values())

    with pytest.raises(FileNotFoundError) as e:
        load_mnist(tmp_path / "nowhere")
    _one_line_naming(e, "nowhere", "not a folder")

    write_folder(tmp_path)  # a label out of range
    y = np.zeros(20, np.uint8)
    y[7] = 10
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(0x801, (20,), y.tobytes())))
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path)
    _one_line_naming(e, "t10k-labels-idx1-ubyte.gz", "label 10 at index 7", "0..9")

    # a count mismatch between images and labels
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(0x801, (19,), bytes(19))))
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path)
    _one_line_naming(e, "t10k-labels-idx1-ubyte.gz", "19 labels for the 20 images")

    write_folder(tmp_path)
    with pytest.raises(ValueError) as e:
        load_mnist(tmp_path, validation=40)
    _one_line_naming(e, "validation", "[0, 39]")
    with pytest.raises(ValueError) as e:
        load_fashion_mnist()
    _one_line_naming(e, "fashion-mnist", "data_dir")


def test_tasks_are_registered_and_fashion_uses_the_same_files(tmp_path):
    write_folder(tmp_path)
    assert TASKS["mnist"] is load_mnist and TASKS["fashion-mnist"] is load_fashion_mnist
    d = load_task("fashion-mnist", data_dir=str(tmp_path), validation=5)
    assert d.name == "fashion-mnist" and len(d.y_val) == 5
    cfg = TrainConfig(task="fashion-mnist", data_dir=str(tmp_path))
    (tmp_path / "c.toml").write_text(cfg.to_toml())
    assert TrainConfig.from_toml(tmp_path / "c.toml") == cfg


def test_dataset_validation_fields_come_in_pairs():
    z = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="x_val and y_val"):
        Dataset(z, np.zeros(2, np.int32), z, np.zeros(2, np.int32), 2, "t", x_val=z)


# ------------------------------------------------------------------ epochs
def test_epochs_arithmetic(tmp_path):
    write_folder(tmp_path, n_train=50)
    d = load_mnist(tmp_path, validation=10)  # 40 training images
    cfg = TrainConfig(task="mnist", data_dir=str(tmp_path), batch_size=6, steps=7)
    assert steps_per_epoch(cfg, d) == 6 and total_steps(cfg, d) == 7
    assert total_steps(cfg.replace(epochs=3), d) == 18
    assert total_steps(cfg.replace(epochs=1, batch_size=40), d) == 1
    with pytest.raises(ValueError, match="batch_size"):
        total_steps(cfg.replace(epochs=1, batch_size=41), d)
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(epochs=-1)
    # one epoch visits each training image once
    seen = np.concatenate([d.batch_indices(k, 8, 0) for k in range(steps_per_epoch(cfg.replace(batch_size=8), d))])
    assert sorted(seen) == list(range(40))


def test_epochs_run_trains_that_many_steps_and_resumes_exactly(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_folder(data, n_train=50, n_test=30)
    cfg = TrainConfig(task="mnist", data_dir=str(data), hidden=(8,), batch_size=10, epochs=2, eval_every=3,
                      checkpoint_every=5, T1=10, T2=4, estimator="implicit")
    d = load_mnist(data, validation=10)  # 40 training images

    def run(c, out, resume=False):
        return train(c, out, resume=resume, progress=False, parts=build_digital(c, d))

    whole = run(cfg, tmp_path / "a")
    assert whole.summary["steps"] == 8  # 2 epochs of 40 // 10
    # interrupted after 5 steps (a checkpoint), then resumed with the same command
    part = run(cfg.replace(epochs=0, steps=5), tmp_path / "b")
    assert part.summary["steps"] == 5
    resumed = run(cfg, tmp_path / "b", resume=True)
    # (the shortened run's extra step-5 evaluation stays in the resumed log; train records,
    # the final evaluations and the model are bit-identical)
    def kind(h, k):
        return [r for r in h if r["kind"] == k]

    assert kind(whole.history, "train") == kind(resumed.history, "train")
    assert kind(whole.history, "test") == kind(resumed.history, "test")
    assert kind(whole.history, "eval")[-1] == kind(resumed.history, "eval")[-1]
    for a, b in zip(jax.tree_util.tree_leaves(whole.model), jax.tree_util.tree_leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    test = [r for r in resumed.history if r["kind"] == "test"]
    assert len(test) == 1 and test[0]["test_samples"] == 30 and test[0]["step"] == 8
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["final_test_acc"] == test[0]["test_acc"] and s["test_samples"] == 30
    assert s["final_val_acc"] == [r for r in resumed.history if r["kind"] == "eval"][-1]["val_acc"]


# ------------------------------------------------------------------ chunked evaluation
def test_chunked_evaluation_equals_one_batch(tmp_path):
    write_folder(tmp_path, n_train=30, n_test=25)
    cfg = TrainConfig(task="mnist", data_dir=str(tmp_path), hidden=(8,))
    d = load_mnist(tmp_path, validation=5)
    parts = build_digital(cfg, d)
    whole = evaluate(parts.model, make_cost(cfg.cost), parts.relaxation, d.x_test, d.y_test)
    for chunk in (7, 10, 25):  # a padded last chunk, an exact split, one piece
        got = evaluate(parts.model, make_cost(cfg.cost), parts.relaxation, d.x_test, d.y_test, chunk=chunk)
        assert got.keys() == whole.keys()
        for k in whole:
            assert got[k] == pytest.approx(whole[k], rel=1e-6, abs=1e-7), (chunk, k)
    with pytest.raises(ValueError, match="chunk"):
        evaluate(parts.model, make_cost(cfg.cost), parts.relaxation, d.x_test, d.y_test, chunk=0)


def test_default_chunk_bounds_the_per_sample_weights():
    """A chip with read noise realizes its conductances per sample: the default chunk keeps
    samples x parameter elements within EVAL_ELEMENTS (784-500-10: 17 GB at 1000 samples)."""
    from analogeq.evaluation import EVAL_CHUNK, EVAL_ELEMENTS, eval_chunk

    small = build_digital(TrainConfig(hidden=(16,))).model
    assert eval_chunk(small) == EVAL_CHUNK
    big = aq.LeakyNetwork((784, 500, 10), key=jax.random.PRNGKey(0))
    n = sum(x.size for x in jax.tree_util.tree_leaves(eqx.filter(big, eqx.is_inexact_array)))
    assert 32 <= eval_chunk(big) == EVAL_ELEMENTS // n < EVAL_CHUNK


# ------------------------------------------------------------------ the real data
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason=f"no MNIST files in {MNIST_DIR}")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(MNIST_DIR)


@needs_mnist
def test_real_mnist_shapes_counts_and_md5(mnist):
    d = mnist
    assert (d.x_train.shape, d.x_val.shape, d.x_test.shape) == ((55000, 784), (5000, 784), (10000, 784))
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0
    counts = np.bincount(np.concatenate([d.y_train, d.y_val]), minlength=10)
    assert counts.tolist() == TRAIN_LABEL_COUNTS
    stem = FILES["train_images"]
    p = MNIST_DIR / f"{stem}.gz" if (MNIST_DIR / f"{stem}.gz").is_file() else MNIST_DIR / stem
    raw = p.read_bytes()
    raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    assert hashlib.md5(raw).hexdigest() == TRAIN_IMAGES_MD5
    # the loader's pixels are those bytes: image 0 of the file, wherever the split put it
    first = np.frombuffer(raw, np.uint8, count=784, offset=16) / np.float32(255)
    both = np.concatenate([d.x_train, d.x_val])
    assert (np.abs(both - first).max(axis=1) == 0).sum() >= 1


@needs_mnist
def test_short_mnist_run_beats_chance_and_scores_the_full_test_set(tmp_path):
    from analogeq.cli import main

    rc = main(["train", "--task", "mnist", "--data-dir", str(MNIST_DIR), "--hidden", "32", "--steps", "40",
               "--batch-size", "32", "--eval-every", "20", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["test_samples"] == 10000
    assert s["final_test_acc"] > 0.3 and s["final_val_acc"] > 0.3  # chance is 0.1
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [0, 20, 40]
    assert all(r["split"] == "validation" and "test_acc" not in r for r in recs if r["kind"] == "eval")
    assert recs[-1]["kind"] == "test" and recs[-1]["test_acc"] == s["final_test_acc"]


def test_a_checkpoint_written_before_the_new_fields_still_resumes(tmp_path):
    from analogeq.training import _check_resumable

    cfg = TrainConfig(steps=10)
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("data_dir", "epochs")}
    _check_resumable(cfg, {"step": 5, "config": old}, tmp_path)  # defaults then: no difference
    with pytest.raises(ValueError, match="data_dir"):
        _check_resumable(cfg.replace(data_dir="x"), {"step": 5, "config": old}, tmp_path)
    with pytest.raises(Exception, match="beyond steps = 4"):
        _check_resumable(cfg.replace(steps=4), {"step": 5, "config": old}, tmp_path)


@pytest.mark.slow  # two chip programs compile (about 50 s warm, 2 min cold on 2 cores)
def test_k_chip_run_keeps_the_split_and_epochs_of_its_single_runs(tmp_path):
    """``--chips K`` on a data set with a validation split: each chip's records (validation
    evaluations, the final test record, the epoch count) are those of its single run."""
    from analogeq.assembly import build_analog
    from analogeq.fleet import train_chips
    from analogeq.hardware.config import ChipConfig

    write_folder(tmp_path, n_train=30, n_test=12)
    d = load_mnist(tmp_path, validation=6)  # 24 training images: 3 steps per epoch at batch 8
    hw = ChipConfig.preset("ideal").replace(**{"crossbar.n_levels": 64, "crossbar.prog_noise": 0.005})
    cfg = TrainConfig(task="mnist", hidden=(8,), optimizer="sgd", lr=0.1, beta=0.2, batch_size=8, epochs=1,
                      steps=99, eval_every=2, probe_every=99, gate=False, hardware="ideal", chip_seed=5)
    fleet = train_chips(cfg, None, n_chips=2, hardware=hw, data=d, mode="vmap", progress=False)
    reduced = {"val_residual_max", "test_residual_max", "val_loss", "test_loss", "free_residual_max", "nudged_residual_max",
               "grad_cosine", "grad_rel_error", "settle_time_tau", "free_steps_mean"}
    for i, seed in enumerate((5, 6)):
        c = cfg.replace(chip_seed=seed)
        single = train(c, None, progress=False, parts=build_analog(c, hw, d)).history
        mine = fleet.runs[i].history
        assert [(r["kind"], r["step"]) for r in mine] == [(r["kind"], r["step"]) for r in single]
        assert [(r["kind"], r["step"]) for r in single if r["kind"] != "train"] == \
            [("eval", 0), ("eval", 2), ("eval", 3), ("test", 3)]
        for a, b in zip(mine, single):
            assert a.keys() == b.keys()
            for k in a:
                if k in reduced and isinstance(b[k], float):
                    assert a[k] == pytest.approx(b[k], rel=1e-5), k
                else:
                    assert a[k] == b[k], (a["kind"], a["step"], k)
        assert fleet.runs[i].summary["test_samples"] == 12
