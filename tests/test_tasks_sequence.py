"""Sequence tasks (parity, char-LM), the token cost, the eqtransformer config, CLI training,
checkpoint rebuild and text sampling."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.config import TrainConfig
from analogeq.data import load_charlm, load_parity, load_task
from analogeq.data.parity import parity_sequences

TEXT = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 12)


@pytest.fixture()
def text_file(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT)
    return p


def test_parity_sequences_and_split():
    x, y = parity_sequences(4)
    assert x.shape == (16, 4) and set(np.unique(x)) == {0, 1}
    for t in range(4):  # running parity: the next token of b1 p1 b2 p2 ...
        np.testing.assert_array_equal(y[:, t], x[:, :t + 1].sum(1) % 2)
    d = load_parity(8)
    assert d.x_train.shape == (192, 8) and d.x_test.shape == (64, 8) and d.n_classes == 2
    np.testing.assert_array_equal(d.y_train, np.cumsum(d.x_train, 1) % 2)  # every position scored
    assert np.all(d.y_test[:, :-1] == -1)  # validation scores the full parity only
    np.testing.assert_array_equal(d.y_test[:, -1], d.x_test.sum(1) % 2)
    codes = lambda a: {tuple(r) for r in a}  # noqa: E731
    assert not codes(d.x_train) & codes(d.x_test)
    assert len(codes(d.x_train) | codes(d.x_test)) == 256
    with pytest.raises(ValueError, match="bits"):
        load_parity(1)


def test_charlm_windows_and_split(text_file):
    d = load_charlm(text_file, seq_len=8, val_fraction=0.2, n_val=5)
    chars = sorted(set(TEXT))
    assert d.n_classes == len(chars) and d.n_features == 8
    ids = np.asarray([chars.index(c) for c in TEXT])
    cut = int(len(ids) * 0.8)
    np.testing.assert_array_equal(d.x_train[3], ids[3:11])
    np.testing.assert_array_equal(d.y_train[3], ids[4:12])
    assert len(d.x_train) == cut - 8
    assert d.x_test.shape == (5, 8)
    val = ids[cut:]
    for xv, yv in zip(d.x_test, d.y_test):  # every validation window comes from the tail
        s = next(i for i in range(len(val) - 8) if np.array_equal(val[i:i + 8], xv))
        np.testing.assert_array_equal(yv, val[s + 1:s + 9])
    with pytest.raises(ValueError, match="seq_len"):
        load_charlm(text_file, seq_len=10_000)
    with pytest.raises(FileNotFoundError, match="text file"):
        load_charlm(text_file.parent / "missing.txt")


def test_token_cross_entropy_masks_and_is_holomorphic():
    ce = aq.TokenCrossEntropy()
    y = jax.random.normal(jax.random.PRNGKey(0), (4, 6), jnp.float64)
    t = jnp.array([1, -1, 5, 0])
    want = -np.mean([jax.nn.log_softmax(y[i])[t[i]] for i in (0, 2, 3)])
    np.testing.assert_allclose(ce(y, t), want, rtol=1e-12)
    np.testing.assert_allclose(ce.grad_y(y, t), jax.grad(ce)(y, t), rtol=1e-10, atol=1e-14)
    assert float(jnp.max(jnp.abs(ce.grad_y(y, t)[1]))) == 0.0
    v = jax.random.normal(jax.random.PRNGKey(1), (4, 6), jnp.float64)
    h = 1e-20
    cstep = jnp.imag(ce.grad_y(y + 1j * h * v, t)) / h
    np.testing.assert_allclose(cstep, jax.jvp(lambda u: ce.grad_y(u, t), (y,), (v,))[1], rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="integer token targets"):
        ce(y, jnp.zeros((4,)))
    with pytest.raises(ValueError, match="one token id per position"):
        ce(y, jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("kw, match", [
    ({"model": "eqtransformer", "task": "digits", "cost": "token_cross_entropy"}, "sequence task"),
    ({"model": "eqtransformer", "task": "parity"}, "token_cross_entropy"),
    ({"model": "leaky", "task": "parity"}, "needs model 'eqtransformer'"),
    ({"model": "eqtransformer", "task": "parity", "cost": "token_cross_entropy", "d_model": 30,
      "n_heads": 4}, "divisible"),
    ({"resreg": -1.0}, "resreg"), ({"ema": 1.0}, "ema"), ({"jacreg_floor": 20.0}, "jacreg_floor"),
    ({"t2_chunks": 30, "T2": 20}, "t2_chunks"), ({"bits": 40}, "bits"),
])
def test_config_rejects(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def _train_args(out, text_file):
    return ["train", "--out", str(out), "--no-progress", "--model", "eqtransformer", "--task", "charlm",
            "--cost", "token_cross_entropy", "--text-path", str(text_file), "--seq-len", "8",
            "--d-model", "8", "--n-heads", "2", "--eps", "0.5", "--T1", "12", "--T2", "4",
            "--batch-size", "4", "--checkpoint-every", "2", "--probe-every", "100", "--no-gate"]


def test_cli_train_rebuild_and_sample(text_file, tmp_path, capsys):
    from analogeq.checkpoint import load_checkpoint
    from analogeq.cli import main
    from analogeq.stability import StabilizedUpdater
    from analogeq.textgen import sample_text
    from analogeq.assembly import build_digital

    out = tmp_path / "run"
    assert main(_train_args(out, text_file) + ["--steps", "2", "--eval-every", "2", "--resreg", "0.2",
                                               "--ema", "0.5"]) == 0
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2]
    assert all(np.isfinite(r["loss"]) and r["resreg_weight"] > 0 for r in train)
    evals = [r for r in recs if r["kind"] == "eval"]
    assert 0 < evals[-1]["test_loss"] < 2 * np.log(len(set(TEXT)))
    assert evals[0]["grad_cosine"] > 0.99  # AsymEP vs the implicit adjoint of the block
    # The run directory alone rebuilds the trained block (config.toml + checkpoint).
    cfg = TrainConfig.from_toml(out / "config.toml")
    parts = build_digital(cfg)
    assert isinstance(parts.updater, StabilizedUpdater)
    (model, _), meta = load_checkpoint(out, (parts.model, parts.updater.init(parts.model)))
    assert meta["step"] == 2 and isinstance(model, aq.EqTransformer)
    assert not np.allclose(model.W_q, parts.model.W_q)
    text = sample_text(out, "Speak", 6, seed=1)
    assert text.startswith("Speak") and len(text) == 11 and set(text) <= set(TEXT)
    assert main(["sample", str(out), "--prompt", "All", "--n", "3"]) == 0
    printed = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    assert printed.startswith("All")


@pytest.mark.slow
def test_cli_every_control_and_exact_resume(text_file, tmp_path):
    from analogeq.checkpoint import load_checkpoint
    from analogeq.cli import main
    from analogeq.assembly import build_digital

    extra = ["--eval-every", "3", "--resreg", "0.2", "--jacreg", "0.5", "--ema", "0.5", "--warmup", "2",
             "--weight-cap", "5.0", "--grad-clip", "1.0", "--t2-chunks", "2", "--refine-steps", "10",
             "--ep-kind", "holomorphic", "--n-points", "2"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(_train_args(a, text_file) + extra + ["--steps", "3"]) == 0
    assert main(_train_args(b, text_file) + extra + ["--steps", "2"]) == 0
    assert main(_train_args(b, text_file) + extra + ["--steps", "3", "--resume"]) == 0
    cfg = TrainConfig.from_toml(a / "config.toml")
    parts = build_digital(cfg)
    like = (parts.model, parts.updater.init(parts.model))
    (ma, sa), _ = load_checkpoint(a, like)
    (mb, sb), _ = load_checkpoint(b, like)
    np.testing.assert_array_equal(ma.W_q, mb.W_q)
    assert float(sa[1].jac_lambda) == float(sb[1].jac_lambda) != 0.5  # controller state resumed exactly
    recs = [json.loads(line) for line in (b / "metrics.jsonl").read_text().splitlines()]
    assert all("jacreg_lambda" in r for r in recs if r["kind"] == "train")


@pytest.mark.slow
def test_sampling_matches_full_window_relaxation():
    from analogeq.models.transformer import EqTransformer
    from analogeq.textgen import _next_logits

    m = EqTransformer(6, 5, 8, 2, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    relax = aq.EulerRelaxation(eps=0.25, T1=300, T2=1)
    a, _ = _next_logits(m, relax, jnp.array([1, 2, 3, 3, 3], jnp.int32), jnp.asarray(2))
    b, _ = _next_logits(m, relax, jnp.array([1, 2, 3, 0, 5], jnp.int32), jnp.asarray(2))
    np.testing.assert_allclose(a, b, atol=1e-10)  # padding after the context is invisible


def test_load_task_passes_sizes():
    d = load_task("parity", bits=3)
    assert d.x_train.shape[1] == 3
