"""The nudged phase's own settle window (``dynamics.nudged_time``), float64: same numbers when it
equals the free window, an accurate EP gradient from a short window started at the held free
state, and the step's time and energy that follow."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.energy.step import real_nudges, train_step_breakdown
from analogeq.ep.term import NudgedTerm
from analogeq.hardware import ChipConfig, ChipRelaxation, realize

F64 = jnp.float64
COST = aq.SquaredError()
TAU = 1e-8  # the realistic preset's C / g_leak [s]


def _quiet(**over):
    """The realistic preset, noise off, ADC ideal, a fixed 40 tau window (free and nudged)
    read at its end."""
    return ChipConfig.preset("realistic").replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, "periphery.adc_bits": 0,
        "dynamics.average_window": 0.0, "dynamics.nudged_time": None, **over})


def _cosine(chip, a, b):
    return aq.compare_gradients(chip.weight_gradient(a.grads), chip.weight_gradient(b.grads))["overall"]["cosine"]


def test_nudged_time_is_validated_and_defaults_to_the_free_window():
    assert ChipConfig.preset("realistic").dynamics.nudged_window == 1e-7  # the preset's 10 tau
    cfg = ChipConfig.preset("realistic").replace(**{"dynamics.nudged_time": None})
    assert cfg.dynamics.nudged_time is None and cfg.dynamics.nudged_window == cfg.dynamics.settle_time
    short = cfg.replace(**{"dynamics.nudged_time": 1e-7})
    assert short.dynamics.nudged_window == 1e-7
    assert ChipConfig.from_dict(short.to_dict()) == short
    # Never longer than the free window: a shorter settle_time set over a preset caps it, and
    # adaptive settles run every phase to its steady state.
    assert cfg.replace(**{"dynamics.nudged_time": 5e-7}).dynamics.nudged_window == 4e-7
    assert ChipConfig.preset("realistic").replace(**{"dynamics.settle_time": 8e-8}).dynamics.nudged_window == 8e-8
    assert ChipConfig.ideal().replace(**{"dynamics.nudged_time": 1e-7}).dynamics.nudged_window is None
    assert ChipRelaxation(cfg.replace(**{"dynamics.nudged_time": 5e-7})).window(nudged=True) == (4e-7, 5e-8)
    with pytest.raises(ValueError, match=r"dynamics\.nudged_time"):
        cfg.replace(**{"dynamics.nudged_time": 0.0})
    # The readout average is clipped to a nudged window shorter than it (5 tau -> 3 tau).
    relax = ChipRelaxation(cfg.replace(**{"dynamics.nudged_time": 3e-8}))
    assert relax.window() == (4e-7, 5e-8)
    assert relax.window(nudged=True) == (3e-8, 3e-8)
    assert relax.exact_decay(nudged=True).window == pytest.approx(3.0)


@pytest.mark.parametrize("noisy", [True, False])
def test_equal_window_gives_the_same_numbers_bitwise(leaky, batch, noisy):
    # Noisy: the exact-decay integrator with every noise source; noise-free: the Tsit5 window.
    cfg = ChipConfig.preset("realistic") if noisy else _quiet(**{"dynamics.integrator": "tsit5"})
    cfg = cfg.replace(**{"dynamics.nudged_time": None})
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    same = cfg.replace(**{"dynamics.nudged_time": cfg.dynamics.settle_time})
    ep = aq.EP(beta=0.05, kind="centered")
    key = jax.random.PRNGKey(3) if noisy else None
    a = ep.estimate(chip, COST, ChipRelaxation(cfg), *batch, key=key)
    b = ep.estimate(dataclasses.replace(chip, config=same), COST, ChipRelaxation(same), *batch, key=key)
    for x, y in zip(jax.tree_util.tree_leaves(a.grads), jax.tree_util.tree_leaves(b.grads)):
        assert np.array_equal(np.asarray(x), np.asarray(y))
    assert np.array_equal(np.asarray(a.contrast), np.asarray(b.contrast))


def test_short_nudged_window_keeps_the_gradient(leaky, batch):
    """From the held free state the nudged phase needs a fraction of the free window: EP with a
    10 or 20 tau nudged window on the noise-free non-ideal chip (quantized levels, mismatch,
    rails, amplifier pole) against the chip's own implicit adjoint; 1 tau is not enough."""
    cfg = _quiet(**{"dynamics.steady_tol": 1e-6})
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    own = aq.ImplicitAdjoint(tol=1e-12).estimate(chip, COST, ChipRelaxation(cfg), *batch)
    ep = aq.EP(beta=1e-3)
    cos = {}
    for n_tau in (1, 10, 20):
        c = cfg.replace(**{"dynamics.nudged_time": n_tau * TAU})
        est = ep.estimate(dataclasses.replace(chip, config=c), COST, ChipRelaxation(c), *batch)
        cos[n_tau] = float(_cosine(chip, est, own))
    full = float(_cosine(chip, ep.estimate(chip, COST, ChipRelaxation(cfg), *batch), own))
    print(f"cosine vs implicit adjoint: nudged 1 tau {cos[1]:.6f}, 10 tau {cos[10]:.6f}, "
          f"20 tau {cos[20]:.6f}, 40 tau (= settle) {full:.6f}")
    assert cos[10] >= 0.999 and cos[20] >= 0.999 and full >= 0.999
    assert cos[1] < 0.99


def test_nudged_settle_runs_its_own_window(leaky, batch):
    cfg = _quiet(**{"dynamics.nudged_time": 15 * TAU})
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    relax = ChipRelaxation(cfg)
    x, y = batch[0][0], batch[1][0]
    free = relax.free(aq.FreeTerm(chip, x), chip.init_state(x))
    term = NudgedTerm(chip, x, COST, y, relax.hold(free.state), (0.1,), correction="asym")
    out = relax.nudged(term, term.initial_state())
    # 15 tau in steps of 0.25 tau, read at the end; the free phase took 40 tau in 160.
    assert int(free.steps) == 160 and float(free.time) == pytest.approx(40.0, rel=1e-12)
    assert int(out.steps) == 60 and float(out.time) == pytest.approx(15.0, rel=1e-12)


def test_step_time_and_energy_follow_the_nudged_window(leaky, batch):
    cfg = _quiet()
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    estimator = aq.EP(beta=0.05, kind="centered")
    est = estimator.estimate(chip, COST, ChipRelaxation(cfg), *batch)
    pulses = tuple(jnp.zeros((1, *t.g_pos.shape), jnp.int32) for t in chip.tiles())
    betas = real_nudges(estimator)
    full = train_step_breakdown(chip, betas, est, pulses)
    short = train_step_breakdown(
        dataclasses.replace(chip, config=cfg.replace(**{"dynamics.nudged_time": 10 * TAU})), betas, est, pulses)
    n, k, t_free = batch[0].shape[0], 2, 40 * TAU
    assert float(full["settle_s"]) == pytest.approx(n * (t_free + k * 40 * TAU), rel=1e-12)
    assert float(short["settle_s"]) == pytest.approx(n * (t_free + k * 10 * TAU), rel=1e-12)
    # The leak dissipates over the whole on-time (static power x time): 120 tau -> 60 tau.
    assert float(short["leak_J"]) == pytest.approx(float(full["leak_J"]) * 60 / 120, rel=1e-12)
    assert float(short["crossbar_read_J"]) == pytest.approx(float(full["crossbar_read_J"]) * 60 / 120, rel=1e-12)
    for key in ("neuron_charging_J", "dac_J", "adc_J", "adc_s", "dac_s"):
        assert float(short[key]) == float(full[key])
    assert float(short["energy_J"]) < float(full["energy_J"])
