"""The analog chip: realization, continuous-time dynamics, noise and programming (float64)."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.hardware import K_B, ChipConfig, ChipRelaxation, program, quantize, realize

COST = aq.SquaredError()


@pytest.fixture(scope="module")
def ideal_cfg():
    return ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-11})


@pytest.fixture(scope="module")
def nonideal_cfg():
    """The realistic preset with its noise switched off (quantized, mismatched, rails, pole)."""
    return ChipConfig.preset("realistic").replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, "dynamics.settle_time": None,
        "dynamics.average_window": 0.0, "dynamics.steady_tol": 1e-10, "periphery.adc_bits": 0,
    })


def test_ideal_chip_equals_the_model(leaky, batch, ideal_cfg, tight):
    chip = realize(leaky, ideal_cfg, jax.random.PRNGKey(5))
    s = jax.random.normal(jax.random.PRNGKey(2), leaky.state_shape, jnp.float64)
    np.testing.assert_allclose(chip.force(s, batch[0][0]), leaky.force(s, batch[0][0]), atol=1e-12)
    relax = ChipRelaxation(ideal_cfg, rtol=1e-12, atol=1e-14)
    fc, fd = aq.free_phase(chip, relax, batch[0]), aq.free_phase(leaky, tight, batch[0])
    assert bool(jnp.all(fc.converged))
    assert float(jnp.linalg.norm(fc.state - fd.state) / jnp.linalg.norm(fd.state)) <= 1e-5
    ep = aq.EP(beta=1e-3)
    gc = ep.estimate(chip, COST, relax, *batch)
    gd = ep.estimate(leaky, COST, tight, *batch)
    assert aq.compare_gradients(chip.weight_gradient(gc.grads), gd.grads)["overall"]["cosine"] >= 0.9999


@pytest.mark.slow  # the adaptive Tsit5 path; the default exact-decay path has the same two checks
# (cosine >= 0.999999, plain EP biased) in test_integrator::test_ep_on_exact_decay_matches_the_implicit_adjoint
def test_physical_asymep_is_exact_for_the_nonideal_chip(leaky, batch, nonideal_cfg):
    chip = realize(leaky, nonideal_cfg, jax.random.PRNGKey(7))
    assert chip.has_pole and float(jnp.std(chip.gain)) > 0
    relax = ChipRelaxation(nonideal_cfg, rtol=1e-11, atol=1e-13)
    ep = aq.EP(beta=1e-3).estimate(chip, COST, relax, *batch)
    own = aq.ImplicitAdjoint(tol=1e-12).estimate(chip, COST, relax, *batch)
    assert bool(jnp.all(ep.free.converged))
    cmp = aq.compare_gradients(chip.weight_gradient(ep.grads), chip.weight_gradient(own.grads))
    assert cmp["overall"]["cosine"] >= 0.99
    plain = aq.EP(beta=1e-3, correction="none").estimate(chip, COST, relax, *batch)
    assert aq.compare_gradients(chip.weight_gradient(plain.grads),
                                chip.weight_gradient(own.grads))["overall"]["rel_error"] > 1e-2


def test_rc_neuron_noise_matches_kT_over_C():
    # One isolated RC neuron (no devices' thermal noise), C = 1 fF at 300 K: sqrt(kT/C) = 2.03 mV.
    cfg = ChipConfig.ideal().replace(**{
        "neuron.C": 1e-15, "neuron.g_leak": 1e-7, "neuron.kTC_noise": True, "noise.temperature": 300.0,
        "dynamics.settle_time": 8e-8, "dynamics.sde_dt": 1e-10, "dynamics.steady_tol": 0.5,
    })
    net = aq.LeakyNetwork((1, 1), key=None, parameters=((jnp.zeros((1, 1)),), (), (jnp.zeros(1),)))
    chip = realize(net, cfg, jax.random.PRNGKey(0))
    free = aq.free_phase(chip, ChipRelaxation(cfg), jnp.zeros((4000, 1)), key=jax.random.PRNGKey(1))
    v_rms = float(jnp.std(free.state)) * cfg.neuron.v_unit
    expected = math.sqrt(K_B * 300.0 / 1e-15)
    assert abs(expected - 2.03e-3) < 1e-5
    assert abs(v_rms / expected - 1) <= 0.05, (v_rms, expected)


def test_time_averaged_readout_reduces_noise(leaky, batch):
    base = ChipConfig.preset("realistic").replace(**{"crossbar.read_noise": 0.0, "neuron.C": 1e-15})
    spread = []
    for window in (0.0, 5e-8):
        cfg = base.replace(**{"dynamics.average_window": window, "dynamics.settle_time": 1.5e-7})
        chip = realize(leaky, cfg, jax.random.PRNGKey(3))
        xs = jnp.broadcast_to(batch[0][0], (100, 8))
        free = aq.free_phase(chip, ChipRelaxation(cfg), xs, key=jax.random.PRNGKey(4))
        spread.append(float(jnp.mean(jnp.std(free.state, axis=0))))
    assert spread[1] < 0.6 * spread[0]


def test_converters_quantize_and_clip():
    v = jnp.array([-2.0, -1.0, 0.0, 0.3, 1.0, 2.0])
    q = quantize(v, 2, 1.0)  # levels -1, -1/3, 1/3, 1
    np.testing.assert_allclose(q, [-1, -1, 1 / 3, 1 / 3, 1, 1], atol=1e-12)
    np.testing.assert_array_equal(quantize(v, 0, 1.0), v)
    fine = quantize(jnp.linspace(-1, 1, 1001), 8, 1.0)
    assert float(jnp.max(jnp.abs(fine - jnp.linspace(-1, 1, 1001)))) <= 1.0 / 255 + 1e-12


def test_programming_levels_noise_and_bounds():
    cb = ChipConfig.ideal().replace(**{"crossbar.n_levels": 5, "crossbar.G_min": 0.0, "crossbar.G_max": 4e-6}).crossbar
    lo, hi = jnp.zeros(3), jnp.full(3, 4e-6)
    g = program(jnp.array([0.4e-6, 2.6e-6, 9e-6]), lo, hi, cb, jax.random.PRNGKey(0))
    np.testing.assert_allclose(g, [0.0, 3e-6, 4e-6], atol=1e-18)
    # stochastic rounding is unbiased
    many = jax.vmap(lambda k: program(jnp.full(1, 1.25e-6), lo[:1], hi[:1], cb, k, "stochastic"))(
        jax.random.split(jax.random.PRNGKey(1), 4000))
    assert abs(float(jnp.mean(many)) - 1.25e-6) < 0.03e-6
    noisy_cb = ChipConfig.ideal().replace(**{"crossbar.prog_noise": 0.5}).crossbar
    g = program(jnp.full(1000, 5e-5), jnp.zeros(1000), jnp.full(1000, 1e-4), noisy_cb, jax.random.PRNGKey(2))
    assert float(jnp.min(g)) >= 0.0 and float(jnp.max(g)) <= 1e-4 and float(jnp.std(g)) > 1e-5


def test_realization_is_keyed_and_samples_mismatch(leaky):
    cfg = ChipConfig.preset("realistic")
    a, b = realize(leaky, cfg, jax.random.PRNGKey(0)), realize(leaky, cfg, jax.random.PRNGKey(0))
    c = realize(leaky, cfg, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a.forward[0].g_pos, b.forward[0].g_pos)
    assert not np.array_equal(a.forward[0].g_pos, c.forward[0].g_pos)
    assert not np.array_equal(a.offset, c.offset)
    for t in a.tiles():
        assert bool(jnp.all((t.g_pos >= t.lo[0]) & (t.g_pos <= t.hi[0])))
    # weights are reproduced to within a level and the programming noise
    err = float(jnp.max(jnp.abs(a.as_model().weights[0] - leaky.weights[0])))
    assert err < 0.2


def test_realize_rejects_what_it_cannot_build(leaky, hopfield):
    with pytest.raises(TypeError, match="LeakyNetwork"):
        realize(hopfield, ChipConfig.ideal(), jax.random.PRNGKey(0))
    big = aq.LeakyNetwork(leaky.sizes, key=None, parameters=(
        tuple(3 * w for w in leaky.weights), leaky.feedback, leaky.biases))
    with pytest.raises(ValueError, match="crossbar range"):
        realize(big, ChipConfig.ideal(), jax.random.PRNGKey(0))


def test_chip_relaxation_errors(leaky, batch):
    cfg = ChipConfig.preset("realistic")
    chip = realize(leaky, cfg, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="PRNG key"):
        aq.free_phase(chip, ChipRelaxation(cfg), batch[0])
    with pytest.raises(ValueError, match="holomorphic"):
        aq.EP(beta=0.1, kind="holomorphic", n_points=4).estimate(
            realize(leaky, ChipConfig.ideal(), jax.random.PRNGKey(0)), COST, ChipRelaxation(ChipConfig.ideal()), *batch)
    with pytest.raises(ValueError, match="noiseless"):
        aq.free_phase(chip, aq.EulerRelaxation(), batch[0], key=jax.random.PRNGKey(0))


# The default exact-decay integrator over a fixed 120 tau window, and the adaptive Tsit5
# steady-state solve (its chip training step compiles several times longer).
@pytest.mark.parametrize("settle_time", [1.2e-6, pytest.param(None, marks=pytest.mark.slow)])
def test_ideal_chip_trains_like_the_emulator(settle_time):
    from analogeq.config import TrainConfig
    from analogeq.assembly import build_analog, train

    # SGD: Adam's per-parameter normalization would amplify the ODE-vs-Euler differences of
    # near-zero gradients.
    cfg = TrainConfig(hidden=(16,), steps=5, eval_every=5, dtype="float64", T1=400, T2=400, tol=1e-10,
                      stop_at_tol=True, optimizer="sgd", lr=0.3)
    hw = ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-10, "dynamics.settle_time": settle_time})
    digital = train(cfg, None, progress=False)
    chip = train(cfg, None, progress=False, parts=build_analog(cfg, hw))
    for a, b in zip(jax.tree_util.tree_leaves(chip.model.as_model()), jax.tree_util.tree_leaves(digital.model)):
        np.testing.assert_allclose(a, b, atol=1e-8)
    assert chip.summary["final_test_acc"] == digital.summary["final_test_acc"]


def test_update_writes_quantized_levels_within_bounds(leaky):
    import optax

    from analogeq.hardware import ConductanceUpdater

    cfg = ChipConfig.ideal().replace(**{"crossbar.n_levels": 16, "crossbar.d2d_bounds": 0.2})
    chip = realize(leaky, cfg, jax.random.PRNGKey(0))
    grads = jax.tree_util.tree_map(lambda x: jnp.ones_like(x) * 1e3, chip)
    upd = ConductanceUpdater(optax.sgd(1.0), rounding="nearest")
    new, _ = upd.update(chip, grads, upd.init(chip), jax.random.PRNGKey(1))
    for t in new.tiles():
        step = (t.hi[0] - t.lo[0]) / 15
        frac = (t.g_pos - t.lo[0]) / step
        np.testing.assert_allclose(frac, np.round(frac), atol=1e-6)
        assert bool(jnp.all((t.g_pos >= t.lo[0]) & (t.g_pos <= t.hi[0])))
    # A positive gradient lowers every weight.
    assert bool(jnp.all(new.as_model().weights[0] <= chip.as_model().weights[0] + 1e-12))


def test_mixed_precision_writes_whole_levels_and_keeps_the_remainder(leaky):
    """Updates below a level accumulate digitally: nothing is written until the accumulator
    holds a level, then exactly that many levels move and the accumulator keeps the rest."""
    import optax

    from analogeq.hardware import ConductanceUpdater

    cfg = ChipConfig.ideal().replace(**{"crossbar.n_levels": 8, "crossbar.tile_gain": "auto"})
    chip = realize(leaky, cfg, jax.random.PRNGKey(0))
    cb = chip.config.crossbar
    level = cb.w_max / (cb.n_levels - 1)
    upd = ConductanceUpdater(optax.sgd(1.0), accumulate=True)
    state = upd.init(chip)
    t0 = chip.forward[0]
    # a gradient worth 0.4 of a level of device-pair weight on every pair of the first tile
    # dL/dG+ = -dL/dG- = G: dL/dW = G_ref G / s (Tile.weight_gradient), so SGD at rate 1 moves
    # the device-pair weight by G_ref G / s^2 (Tile.device_step)
    g = -0.4 * level * t0.stage_gain(cb) ** 2 / cb.G_ref

    def grads_of(c):
        zero = jax.tree_util.tree_map(jnp.zeros_like, c)
        fwd = eqx.tree_at(lambda t: (t.g_pos, t.g_neg), zero.forward[0], (g, -g))
        return eqx.tree_at(lambda z: z.forward, zero, (fwd,) + zero.forward[1:])

    weights = [chip.forward[0].weight(cb.G_ref)]
    for k in range(3):
        chip, state = upd.update(chip, grads_of(chip), state, jax.random.PRNGKey(k))
        weights.append(chip.forward[0].weight(cb.G_ref))
    moved = [np.asarray((b - a) / level) for a, b in zip(weights, weights[1:])]
    np.testing.assert_allclose(moved[0], 0, atol=1e-9)  # 0.4: below a level
    np.testing.assert_allclose(moved[1] % 1, 0, atol=1e-6)  # 0.8: still below
    assert np.allclose(moved[1], 0, atol=1e-9)
    np.testing.assert_allclose(moved[2], 1, atol=1e-6)  # 1.2: one level, 0.2 kept
    np.testing.assert_allclose(state["chi"][0], 0.2 * level, rtol=1e-9)
