import json

import jax
import numpy as np
import pytest

from analogeq.assembly import train
from analogeq.cli import main
from analogeq.config import TrainConfig
from analogeq.data import load_digits, load_task


def test_digits_split_is_fixed_and_stratified():
    d = load_digits()
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    counts = np.bincount(d.y_test, minlength=10)
    assert counts.min() >= 35  # stratified: every class ~36 in the test set
    np.testing.assert_array_equal(load_digits().y_test, d.y_test)


def test_batches_are_reproducible_per_step():
    d = load_digits()
    a = d.batch_indices(123, 32, seed=7)
    np.testing.assert_array_equal(a, d.batch_indices(123, 32, seed=7))
    assert len(set(d.batch_indices(0, 32, 0)) & set(d.batch_indices(1, 32, 0))) == 0
    with pytest.raises(ValueError, match="batch_size"):
        d.batch_indices(0, 0, 0)


def test_asymep_training_on_digits_reaches_95_percent():
    result = train(TrainConfig(steps=1500, eval_every=500, probe_every=500), progress=False)
    s = result.summary
    assert s["final_test_acc"] >= 0.95, s
    assert s["grad_cosine_min"] >= 0.999, s  # AsymEP tracks the exact gradient throughout
    assert s["unconverged_train_samples"] == 0


def test_checkpoint_resume_is_exact(tmp_path):
    cfg = TrainConfig(hidden=(16,), steps=20, eval_every=10, checkpoint_every=10)
    full = train(cfg, tmp_path / "full", progress=False)
    half = train(cfg.replace(steps=10), tmp_path / "split", progress=False)
    assert half.summary["steps"] == 10
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(full.model), jax.tree_util.tree_leaves(resumed.model)):
        np.testing.assert_array_equal(a, b)
    lines = [json.loads(x) for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if r["kind"] == "train"] == list(range(1, 21))


def test_resume_refuses_a_different_configuration(tmp_path):
    cfg = TrainConfig(hidden=(16,), steps=2, eval_every=2)
    train(cfg, tmp_path, progress=False)
    with pytest.raises(ValueError, match="beta"):
        train(cfg.replace(beta=0.1, steps=4), tmp_path, resume=True, progress=False)
    with pytest.raises(FileNotFoundError):
        train(cfg, tmp_path / "nothing", resume=True, progress=False)


def test_unconverged_steps_are_reported_and_gated(tmp_path):
    logs = []
    cfg = TrainConfig(hidden=(16,), steps=2, eval_every=2, T1=2, tol=1e-9)
    r = train(cfg, tmp_path, progress=False, log=logs.append)
    assert all(rec["unconverged"] == 32 for rec in r.history if rec["kind"] == "train")
    assert any("did not converge" in m and "left out" in m for m in logs)
    # every sample was left out, so nothing changed
    for a, b in zip(jax.tree_util.tree_leaves(r.model), jax.tree_util.tree_leaves(
            train(cfg.replace(steps=1), None, progress=False).model)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "kw, match",
    [({"model": "mlp"}, "unknown model"), ({"estimator": "bp"}, "unknown estimator"),
     ({"cost": "hinge"}, "unknown cost"), ({"eps": 0.0}, "eps"), ({"beta": 0.0}, "beta"),
     ({"ep_kind": "holomorphic", "n_points": 1}, "n_points"), ({"correction": "x"}, "unknown correction"),
     ({"hidden": (0,)}, "hidden"), ({"T1": 0}, "T1"), ({"asymmetry": 2.0}, "asymmetry"),
     ({"task": "imagenet"}, "unknown task"), ({"dtype": "float16"}, "dtype")],
)
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_config_toml_round_trip_and_unknown_keys(tmp_path):
    cfg = TrainConfig(hidden=(32, 16), beta=0.02, stop_at_tol=True, ep_kind="holomorphic", n_points=4)
    p = tmp_path / "c.toml"
    p.write_text(cfg.to_toml())
    assert TrainConfig.from_toml(p) == cfg
    p.write_text("[train]\nbeta = 0.1\nbogus = 1\n")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.from_toml(p)
    with pytest.raises(ValueError, match="unknown task"):
        load_task("imagenet")


@pytest.mark.parametrize("estimator", ["implicit", "bptt", "energy-ep"])
def test_other_estimators_train(estimator):
    model = "hopfield" if estimator == "energy-ep" else "leaky"
    r = train(TrainConfig(model=model, estimator=estimator, hidden=(16,), steps=3, eval_every=3), progress=False)
    assert np.isfinite(r.summary["final_test_acc"])


def test_cli_train_writes_outputs_and_overrides_config(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('hidden = [16]\nsteps = 4\neval_every = 2\nbeta = 0.1\n')
    rc = main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--steps", "3",
               "--no-progress"])
    assert rc == 0
    for f in ("metrics.jsonl", "summary.json", "learning_curves.png", "checkpoint.eqx", "config.toml"):
        assert (tmp_path / "run" / f).exists(), f
    assert TrainConfig.from_toml(tmp_path / "run" / "config.toml") == TrainConfig(hidden=(16,), steps=3, eval_every=2, beta=0.1)
    assert "test acc" in capsys.readouterr().out
    assert main(["train", "--out", str(tmp_path / "bad"), "--eps", "-1", "--no-progress"]) == 2
    assert "eps must be" in capsys.readouterr().err
