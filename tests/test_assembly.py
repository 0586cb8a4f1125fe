"""The assembly layer: one place builds every run; chip runs honour or refuse each option."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from analogeq import stability
from analogeq.assembly import build_analog, build_digital, build_parts
from analogeq.config import TrainConfig
from analogeq.energy import StepEnergy
from analogeq.streams import Streams
from analogeq.training import make_train_step

SMALL = dict(hidden=(8,), batch_size=4, steps=2, eval_every=2, probe_every=2, gate=False)


def _first_step(parts, cfg):
    idx = parts.data.batch_indices(0, cfg.batch_size, cfg.seed)
    step = make_train_step(parts, cfg.gate)
    return step(parts.model, parts.updater.init(parts.model), jnp.asarray(parts.data.x_train[idx]),
                jnp.asarray(parts.data.y_train[idx]), Streams.of(cfg).step(0))


def _conductances(chip):
    return np.concatenate([np.ravel(leaf) for leaf in jax.tree_util.tree_leaves(
        [(t.g_pos, t.g_neg) for t in (*chip.forward, *chip.feedback, *chip.biases)])])


def test_chip_and_emulator_share_model_data_and_seed():
    cfg = TrainConfig(**SMALL)
    digital = build_digital(cfg)
    chip = build_parts(cfg, "ideal")
    assert chip.data is not digital.data and np.array_equal(chip.data.x_train, digital.data.x_train)
    assert tuple(chip.model.sizes) == tuple(digital.model.sizes)
    assert isinstance(chip.hooks[0], StepEnergy) and digital.hooks == ()
    assert digital.probe is not None and build_digital(cfg.replace(estimator="implicit")).probe is None


def test_chip_run_applies_warmup():
    """Warmup: the learning rate starts at 0, so the first chip update writes nothing."""
    cfg = TrainConfig(**SMALL, hardware="ideal", optimizer="sgd", lr=0.5, beta=0.2)
    plain, warm = build_analog(cfg, "ideal"), build_analog(cfg.replace(warmup=10), "ideal")
    before = _conductances(plain.model)
    after_plain = _conductances(_first_step(plain, cfg)[0])
    after_warm = _conductances(_first_step(warm, cfg.replace(warmup=10))[0])
    assert np.max(np.abs(after_plain - before)) > 0
    np.testing.assert_array_equal(after_warm, before)


def test_chip_run_applies_gradient_clipping():
    """The optimizer a chip's updater applies is the run's, clipping included: a gradient of
    norm 100 becomes an SGD step of norm lr * clip."""
    cfg = TrainConfig(**SMALL, hardware="ideal", optimizer="sgd", lr=0.5, grad_clip=0.25)
    opt = build_analog(cfg, "ideal").updater.optimizer
    g = {"w": jnp.full((4, 4), 25.0)}  # norm 100
    updates, _ = opt.update(g, opt.init(g))
    assert float(optax.global_norm(updates)) == pytest.approx(0.5 * 0.25, rel=1e-6)


@pytest.mark.parametrize("option", ["weight_cap", "ema", "jacreg"])
def test_chip_run_refuses_what_conductances_cannot_follow(option):
    cfg = TrainConfig(**SMALL, hardware="ideal", **{option: 0.5})
    with pytest.raises(ValueError, match=f"cannot honour {option}"):
        build_parts(cfg)


def test_stability_controls_are_an_estimator_wrapper_and_an_updater():
    """resreg and jacreg ride in the one training step: the penalized estimator measures them,
    the updater's controller weights jacreg, and the step logs both."""
    cfg = TrainConfig(**SMALL, resreg=0.3, jacreg=0.5, ema=0.5)
    parts = build_digital(cfg)
    assert isinstance(parts.estimator, stability.Penalized)
    assert isinstance(parts.updater, stability.StabilizedUpdater)
    model, state, metrics = _first_step(parts, cfg)
    for name in ("step_residual", "resreg_weight", "resreg_penalty", "jacreg_penalty", "jacreg_lambda", "res_ema"):
        assert np.isfinite(float(metrics[name])), name
    # The controller moved lambda by (res_ema / target)^0.3 from its initial value, within the clip.
    lam = float(metrics["jacreg_lambda"])
    assert cfg.jacreg_floor <= lam <= cfg.jacreg_max
    expected = np.clip(0.5 * (float(metrics["res_ema"]) / cfg.jacreg_target) ** stability.CONTROLLER_POWER,
                       cfg.jacreg_floor, cfg.jacreg_max)
    assert lam == pytest.approx(expected, rel=1e-5)
    # Without penalties the same step has no penalty metrics and the plain estimator.
    plain = build_digital(cfg.replace(resreg=0.0, jacreg=0.0))
    assert not isinstance(plain.estimator, stability.Penalized)
    assert "resreg_weight" not in _first_step(plain, cfg)[2]


@pytest.mark.parametrize("hardware", ["", "ideal"], ids=["digital", "chip"])
def test_penalized_gradient_adds_the_weighted_residual_penalty(hardware):
    """On the emulator and on a chip (which honours resreg: the residual at the held state), the
    estimate is the inner one plus the weighted gradient of the residual penalty."""
    cfg = TrainConfig(**SMALL, resreg=0.3, hardware=hardware)
    parts = build_parts(cfg)
    inner = dataclasses.replace(parts, estimator=parts.estimator.inner)
    idx = parts.data.batch_indices(0, cfg.batch_size, cfg.seed)
    xb, yb = jnp.asarray(parts.data.x_train[idx]), jnp.asarray(parts.data.y_train[idx])
    key = jax.random.PRNGKey(0)
    est = parts.estimator.estimate(parts.model, parts.cost, parts.relaxation, xb, yb, gate=False, key=key)
    plain = inner.estimator.estimate(parts.model, parts.cost, parts.relaxation, xb, yb, gate=False,
                                     key=jax.random.split(key)[0])
    z = parts.relaxation.read(est.free.state)
    g_pen = eqx.filter_grad(lambda m: stability.residual_penalty(m, xb, z, cfg.eps))(parts.model)
    w = float(est.metrics["resreg_weight"])
    for a, b, p in zip(jax.tree_util.tree_leaves(est.grads), jax.tree_util.tree_leaves(plain.grads),
                       jax.tree_util.tree_leaves(g_pen)):
        np.testing.assert_allclose(a, b + w * p, rtol=1e-5, atol=1e-7)
