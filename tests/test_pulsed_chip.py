"""On-chip learning with pulsed devices: the weight <-> conductance mapping, the per-sample local
signals, and each update scheme against its closed form (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import analogeq as aq
from analogeq.config import TrainConfig
from analogeq.ep.gradients import global_norm
from analogeq.devices.presets import load_device
from analogeq.hardware import ChipConfig, ChipRelaxation, realize
from analogeq.hardware.pulsed import PulsedUpdater, attach_devices, device_hardware

COST = aq.SquaredError()


@pytest.fixture(scope="module")
def quiet_cfg():
    """The realistic chip with its noise off, so the update is the only randomness; settled by
    the default exact-decay integrator over a fixed 120 tau window (the update schemes do not
    depend on the integrator; the adaptive Tsit5 reference compiles several times slower)."""
    return ChipConfig.preset("realistic").replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, "dynamics.settle_time": 1.2e-6,
        "dynamics.nudged_time": None, "dynamics.average_window": 0.0, "dynamics.steady_tol": 1e-8,
        "periphery.adc_bits": 0, "crossbar.prog_noise": 0.0, "crossbar.n_levels": 0,
    })


def _pulsed_chip(leaky, cfg, name, seed=0):
    device = load_device(name).device
    hw = device_hardware(cfg, device)
    chip = attach_devices(realize(leaky, hw, jax.random.PRNGKey(seed)), device, jax.random.PRNGKey(seed + 1))
    return chip, device, hw


def test_mapping_weight_units_to_conductances(leaky, quiet_cfg):
    chip, device, hw = _pulsed_chip(leaky, quiet_cfg, "gokmen-vlasov")
    cb = hw.crossbar
    kappa = (cb.G_max - cb.G_min) / (device.w_max - device.w_min)
    assert cb.G_ref == pytest.approx(kappa)
    g0 = cb.G_min - device.w_min * kappa
    for t, w in zip(chip.tiles(), jax.tree_util.tree_leaves((leaky.weights, leaky.feedback, leaky.biases))):
        np.testing.assert_allclose(t.g_neg, g0, rtol=1e-12)
        # W = (G+ - G-)/G_ref is the device weight: the model's weight clipped to the device bounds.
        np.testing.assert_allclose(t.weight(cb.G_ref), jnp.clip(w, t.device.b_min, t.device.b_max), atol=1e-12)
        np.testing.assert_allclose(t.lo[0], g0 + t.device.b_min * kappa, rtol=1e-12)
        np.testing.assert_allclose(t.hi[0], g0 + t.device.b_max * kappa, rtol=1e-12)
    # The nominal device range spans the crossbar's conductance window exactly.
    assert g0 + device.w_min * kappa == pytest.approx(cb.G_min)
    assert g0 + device.w_max * kappa == pytest.approx(cb.G_max)


def test_device_parameters_belong_to_the_chip_key(leaky, quiet_cfg):
    a, _, _ = _pulsed_chip(leaky, quiet_cfg, "reram-gong2018", seed=0)
    b, _, _ = _pulsed_chip(leaky, quiet_cfg, "reram-gong2018", seed=0)
    c, _, _ = _pulsed_chip(leaky, quiet_cfg, "reram-gong2018", seed=5)
    np.testing.assert_array_equal(a.forward[0].device.d_up, b.forward[0].device.d_up)
    assert not np.allclose(a.forward[0].device.d_up, c.forward[0].device.d_up)


def test_local_signals_factor_the_batch_gradient(leaky, batch, quiet_cfg):
    chip, _, hw = _pulsed_chip(leaky, quiet_cfg, "ideal")
    assert chip.has_pole
    est = aq.EP(beta=1e-3).estimate(chip, COST, ChipRelaxation(hw, rtol=1e-10, atol=1e-12), *batch)
    assert bool(jnp.all(est.used))
    signals = jax.vmap(chip.local_signals)(est.inputs, est.at, est.weighted)
    g = chip.weight_gradient(est.grads)
    assert float(global_norm(g)) > 1e-3
    for (xs, ds), ref in zip(signals, jax.tree_util.tree_leaves((g.weights, g.feedback, g.biases))):
        outer = jnp.einsum("bi,bj->ij", ds, xs).reshape(ref.shape)
        np.testing.assert_allclose(outer, ref, rtol=1e-9, atol=1e-14)


def test_deterministic_update_is_rounded_pulse_count(leaky, quiet_cfg):
    chip, device, hw = _pulsed_chip(leaky, quiet_cfg, "ideal")
    lr = 0.01
    upd = PulsedUpdater(device=device, update_scheme="deterministic", optimizer=optax.sgd(lr), lr=lr,
                        key=jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(eqx.filter(chip, eqx.is_inexact_array))
    grads = jax.tree_util.tree_unflatten(tree, [
        jax.random.normal(jax.random.PRNGKey(i), x.shape, x.dtype) * 1e-2 / hw.crossbar.G_ref
        for i, x in enumerate(leaves)])
    new, state = upd.update(chip, grads, upd.init(chip), jax.random.PRNGKey(1))
    g = chip.weight_gradient(grads)
    for t0, t1, gw in zip(chip.tiles(), new.tiles(), jax.tree_util.tree_leaves((g.weights, g.feedback, g.biases))):
        n = np.clip(np.round(-lr * np.asarray(gw) / device.dw_min), -31, 31)
        np.testing.assert_allclose(t1.weight(hw.crossbar.G_ref) - t0.weight(hw.crossbar.G_ref),
                                   n * device.dw_min, atol=1e-12)
    assert sum(int(jnp.sum(c)) for c in state["pulses"]) > 0


def test_stochastic_update_is_unbiased(leaky, batch, quiet_cfg):
    chip, device, hw = _pulsed_chip(leaky, quiet_cfg, "ideal")
    est = aq.EP(beta=1e-3).estimate(chip, COST, ChipRelaxation(hw, rtol=1e-10, atol=1e-12), *batch)
    lr = 0.02  # a few pulses per sample and device, below the bit-length cap
    upd = PulsedUpdater(device=device, update_scheme="stochastic", optimizer=optax.sgd(lr), lr=lr,
                        key=jax.random.PRNGKey(0))
    assert bool(jnp.all(est.used))
    state = upd.init(chip)
    w0 = chip.forward[0].weight(hw.crossbar.G_ref)

    def one(k):
        new, _ = upd.update(chip, est.grads, state, k, estimate=est)
        return new.forward[0].weight(hw.crossbar.G_ref) - w0

    dws = jax.lax.map(one, jax.random.split(jax.random.PRNGKey(9), 400))
    expected = -lr * chip.weight_gradient(est.grads).weights[0]
    mean = jnp.mean(dws, axis=0)
    assert float(jnp.linalg.norm(mean - expected) / jnp.linalg.norm(expected)) < 0.1
    assert float(jnp.sum(mean * expected) / (jnp.linalg.norm(mean) * jnp.linalg.norm(expected))) > 0.99


@pytest.mark.parametrize("scheme", ["deterministic", "mixed", "stochastic", "tiki-taka"])
def test_weights_never_leave_device_bounds(leaky, batch, quiet_cfg, scheme):
    chip, device, hw = _pulsed_chip(leaky, quiet_cfg, "reram-gong2018")
    est = aq.EP(beta=1e-3).estimate(chip, COST, ChipRelaxation(hw), *batch)
    big = jax.tree_util.tree_map(lambda x: x * 1e4, est.grads)
    est = type(est)(grads=big, free=est.free, contrast=est.contrast, nudged_residual=est.nudged_residual,
                    used=est.used, inputs=est.inputs, at=est.at, weighted=est.weighted * 1e4)
    upd = PulsedUpdater(device=device, update_scheme=scheme, optimizer=optax.sgd(1.0), lr=1.0,
                        key=jax.random.PRNGKey(0))
    state = upd.init(chip)
    for i in range(3):
        chip, state = upd.update(chip, big, state, jax.random.PRNGKey(i), estimate=est)
    for t in chip.tiles():
        w = t.weight(hw.crossbar.G_ref)
        assert bool(jnp.all((w >= t.device.b_min - 1e-12) & (w <= t.device.b_max + 1e-12)))
        assert bool(jnp.all((t.g_pos >= t.lo[0] - 1e-18) & (t.g_pos <= t.hi[0] + 1e-18)))
    assert sum(int(jnp.sum(c)) for c in state["pulses"]) > 0


def test_rank_one_schemes_need_sgd_and_hardware():
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        TrainConfig(hardware="realistic", device="ideal", update="stochastic", optimizer="adam")
    with pytest.raises(ValueError, match="needs hardware"):
        TrainConfig(device="ideal")
    with pytest.raises(ValueError, match="unknown device preset"):
        load_device("nope")


@pytest.mark.slow
def test_pulsed_training_resumes_exactly(tmp_path):
    from analogeq.assembly import build_analog, train

    cfg = TrainConfig(hidden=(8,), steps=4, eval_every=2, checkpoint_every=2, probe_every=100,
                      hardware="ideal", device="ecram-tang2018", update="mixed", optimizer="sgd",
                      lr=0.1, beta=0.2, gate=False)
    full = train(cfg, tmp_path / "full", progress=False, parts=build_analog(cfg, "ideal"))
    train(cfg.replace(steps=2), tmp_path / "split", progress=False, parts=build_analog(cfg, "ideal"))
    resumed = train(cfg, tmp_path / "split", resume=True, progress=False, parts=build_analog(cfg, "ideal"))
    for a, b in zip(jax.tree_util.tree_leaves((full.model, full.state)),
                    jax.tree_util.tree_leaves((resumed.model, resumed.state))):
        np.testing.assert_array_equal(a, b)
    assert sum(int(jnp.sum(c)) for c in full.state["pulses"]) > 0
