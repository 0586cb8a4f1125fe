"""Energy and latency estimates (analogeq.energy) against hand calculations from the circuit
parameters."""

from __future__ import annotations

import dataclasses
import json
import math
import re

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.assembly import train
from analogeq.config import TrainConfig
from analogeq.emulator import RelaxResult
from analogeq.energy import (
    ENERGY_KEYS,
    LATENCY_KEYS,
    adc_rounds,
    level_changes,
    programming_rounds,
    real_nudges,
    settle_breakdown,
    step_pulses,
    train_step_breakdown,
)
from analogeq.ep import Estimate
from analogeq.hardware import ChipConfig, ChipRelaxation, ConfigError, Tile, realize

F64 = jnp.float64

# Every number differs from the presets' so a formula that picks the wrong field shows.
HAND = ChipConfig.ideal().replace(**{
    "neuron.C": 2e-12, "neuron.g_leak": 5e-5, "neuron.v_unit": 0.5, "neuron.rail": 0.5,
    "periphery.dac_bits": 0, "periphery.adc_bits": 6,
    "dynamics.settle_time": 3e-7, "dynamics.steady_tol": 1e-3,
    "energy.adc_fom": 7e-15, "energy.adc_time": 9e-10, "energy.adc_share": 16,
    "energy.dac_fom": 3e-15, "energy.dac_time": 2e-9,
    "energy.pulse_energy": 5e-12, "energy.pulse_width": 2e-8,
})


def _map_tiles(chip, f):
    """``chip`` with each tile replaced by ``f(tile)``."""
    group = lambda ts: tuple(f(t) for t in ts)
    return eqx.tree_at(lambda c: (c.forward, c.feedback, c.biases), chip,
                       (group(chip.forward), group(chip.feedback), group(chip.biases)))


def _with_conductances(chip, fn):
    """``chip`` with each tile's conductances replaced by ``fn(shape) -> (G+, G-)``."""
    def put(t):
        gp, gn = fn(t.g_pos.shape)
        return eqx.tree_at(lambda u: (u.g_pos, u.g_neg), t, (jnp.asarray(gp, F64), jnp.asarray(gn, F64)))
    return _map_tiles(chip, put)


def _tile_64(shape):
    if len(shape) == 2:  # the 64x64 forward tile: G+ on five levels, G- fixed
        i, j = np.indices(shape)
        return 1e-6 + 2e-5 * ((i + 2 * j) % 5), np.full(shape, 3e-5)
    return np.full(shape, 4e-5), np.full(shape, 1e-5)  # bias column


@pytest.fixture(scope="module")
def tile64():
    model = aq.LeakyNetwork((64, 64), key=jax.random.PRNGKey(3), gain=0.3, dtype=F64)
    chip = _with_conductances(realize(model, HAND, jax.random.PRNGKey(4)), _tile_64)
    x = jnp.linspace(0.0, 1.0, 64, dtype=F64)
    return chip, x


def test_64x64_tile_settle_equals_hand_calculation(tile64):
    """One settle of a 64x64 tile over a fixed window: C v^2, sum G V^2 T, g_leak v^2 T,
    conversions and latency written out from the parameters."""
    chip, x = tile64
    relax = ChipRelaxation(HAND)
    res = relax.free(aq.ep.FreeTerm(chip, x), chip.init_state(x))
    T = res.time * chip.tau
    assert float(T) == pytest.approx(3e-7, rel=1e-12)  # the fixed settle window
    got = settle_breakdown(chip, x, res.state, T)

    vu, C, g_leak = 0.5, 2e-12, 5e-5
    v = np.asarray(res.state) * vu
    gp, gn = _tile_64((64, 64))
    bp, bn = _tile_64((64,))
    xv = np.asarray(x) * vu  # dac_bits = 0: the DAC passes x v_unit through
    xbar = 0.0
    for i in range(64):
        for j in range(64):
            xbar += (gp[i, j] + gn[i, j]) * xv[j] ** 2 * 3e-7
        xbar += (bp[i] + bn[i]) * vu**2 * 3e-7  # bias column driven at v_unit
    hand = {
        "neuron_charging_J": sum(C * vi**2 for vi in v),
        "crossbar_read_J": xbar,
        "leak_J": sum(g_leak * vi**2 * 3e-7 for vi in v),
        "dac_J": 64 * 3e-15 * 2**8,  # an ideal DAC is charged as 8 bits
        "adc_J": 64 * 7e-15 * 2**6,  # the 64 outputs at 6 bits
        "programming_J": 0.0,
        "settle_s": 3e-7,
        "dac_s": 2e-9,
        "adc_s": 16 * 9e-10,  # 64 lines on 4 ADCs: 16 conversions each
        "programming_s": 0.0,
    }
    for k, want in hand.items():
        assert float(got[k]) == pytest.approx(want, rel=1e-12, abs=1e-30), k
    assert float(got["energy_J"]) == pytest.approx(sum(hand[k] for k in ENERGY_KEYS), rel=1e-12)
    assert float(got["latency_s"]) == pytest.approx(sum(hand[k] for k in LATENCY_KEYS), rel=1e-12)
    assert (got["dac_conversions"], got["adc_conversions"]) == (64, 64)
    # the state matters: the tile settled away from reset, so charging and leak are not zero
    assert float(got["neuron_charging_J"]) > 1e-15


def test_crossbar_energy_is_independent_of_weight_sign(tile64):
    """Both devices of a pair carry V_j: swapping G+ and G- (negating W) dissipates the same."""
    chip, x = tile64
    swapped = _map_tiles(chip, lambda t: eqx.tree_at(lambda u: (u.g_pos, u.g_neg), t, (t.g_neg, t.g_pos)))
    s = jnp.full((64,), 0.3, F64)
    a = settle_breakdown(chip, x, s, 1e-7)["crossbar_read_J"]
    b = settle_breakdown(swapped, x, s, 1e-7)["crossbar_read_J"]
    assert float(a) == pytest.approx(float(b), rel=1e-14)


def test_adc_rounds():
    assert adc_rounds([64], 16) == 16
    assert adc_rounds([128, 10], 128) == 128  # layers in parallel, one ADC each
    assert adc_rounds([138], 128) == 69  # two ADCs share 138 lines
    assert adc_rounds([5], 128) == 5


@pytest.fixture(scope="module")
def small_chip():
    model = aq.LeakyNetwork((6, 5, 3), key=jax.random.PRNGKey(0), asymmetry=0.5, gain=0.6, dtype=F64)
    return realize(model, HAND, jax.random.PRNGKey(1))


def _estimate(chip, batch, t_tau):
    n = chip.n_neurons
    s = 0.2 * jnp.sin(jnp.arange(batch * n, dtype=F64)).reshape(batch, n)
    a = 0.7 * jnp.cos(jnp.arange(batch * n, dtype=F64)).reshape(batch, n)
    xs = jnp.linspace(0, 1, batch * 6, dtype=F64).reshape(batch, 6)
    free = RelaxResult(state=s, steps=jnp.zeros(batch, jnp.int32), residual=jnp.zeros(batch, F64),
                       converged=jnp.ones(batch, bool), time=jnp.full((batch,), t_tau, F64))
    return Estimate(grads=None, free=free, contrast=a, nudged_residual=jnp.zeros(batch, F64),
                    used=jnp.ones(batch, bool), inputs=xs, at=s, weighted=a)


@pytest.mark.parametrize("sample_hold", [True, False])
def test_training_step_with_known_pulse_counts(small_chip, sample_hold):
    chip = dataclasses.replace(small_chip, config=HAND.replace(**{"periphery.sample_hold": sample_hold}))
    batch, beta = 3, 0.05
    est = _estimate(chip, batch, t_tau=30.0)  # the free phase's own time: 30 tau
    estimator = aq.EP(beta=beta, kind="centered")
    # tiles: W0 (5,6), W1 (3,5), B0 (5,3), b0 (5,), b1 (3,); pulses on the G+ device only
    pulses = tuple(jnp.zeros((1, *t.g_pos.shape), jnp.int32) for t in chip.tiles())
    pulses = list(pulses)
    pulses[0] = pulses[0].at[0, 0, :].set(jnp.array([1, 4, 0, 2, 0, 0], jnp.int32)).at[0, 3, 5].set(3)
    pulses[1] = pulses[1].at[0, 2, 1].set(7)
    pulses[3] = pulses[3].at[0, :].set(jnp.array([1, 1, 0, 2, 0], jnp.int32))
    got = train_step_breakdown(chip, real_nudges(estimator), est, tuple(pulses))

    k, n_in, n_out, n = 2, 6, 3, 8
    tau, T_fixed = chip.tau, 3e-7
    t_free = 30.0 * tau
    assert float(got["settle_s"]) == pytest.approx(batch * (t_free + k * T_fixed), rel=1e-12)
    n_pulses = 1 + 4 + 2 + 3 + 7 + 1 + 1 + 2
    assert int(got["pulses"]) == n_pulses
    assert float(got["programming_J"]) == pytest.approx(n_pulses * 5e-12, rel=1e-12)
    # rows in series per tile, tiles in parallel: W0 rows max 4 + 3 = 7, W1 7, b0 1 + 1 + 2 = 4
    assert int(got["pulse_rounds"]) == 7
    assert float(got["programming_s"]) == pytest.approx(7 * 2e-8, rel=1e-12)
    n_dac = batch * (n_in + n_out + (0 if sample_hold else k * n))
    n_adc = batch * (1 + k) * n
    assert (int(got["dac_conversions"]), int(got["adc_conversions"])) == (n_dac, n_adc)
    assert float(got["dac_J"]) == pytest.approx(n_dac * 3e-15 * 2**8, rel=1e-12)
    assert float(got["adc_J"]) == pytest.approx(n_adc * 7e-15 * 2**6, rel=1e-12)
    dac_rounds = 2 + (0 if sample_hold else k)
    assert float(got["dac_s"]) == pytest.approx(batch * dac_rounds * 2e-9, rel=1e-12)
    # each phase reads all 8 neurons: layers of 5 and 3 on one ADC each -> 5 conversions
    assert float(got["adc_s"]) == pytest.approx(batch * (1 + k) * 5 * 9e-10, rel=1e-12)

    vu, C, g_leak = 0.5, 2e-12, 5e-5
    v = np.asarray(est.free.state) * vu
    dv = np.asarray(est.contrast) * vu
    charge = np.sum(C * v**2) + sum(np.sum(C * np.abs(b * dv) * np.abs(v - b * dv)) for b in (beta, -beta))
    assert float(got["neuron_charging_J"]) == pytest.approx(charge, rel=1e-12)
    on = t_free + k * T_fixed
    assert float(got["leak_J"]) == pytest.approx(np.sum(g_leak * v**2) * on, rel=1e-12)
    per_settle = sum(float(settle_breakdown(chip, x, s, on)["crossbar_read_J"])
                     for x, s in zip(est.inputs, est.free.state))
    assert float(got["crossbar_read_J"]) == pytest.approx(per_settle, rel=1e-12)
    assert float(got["energy_J"]) == pytest.approx(sum(float(got[key]) for key in ENERGY_KEYS), rel=1e-12)


def test_adaptive_nudged_window_is_the_free_time(small_chip):
    chip = dataclasses.replace(small_chip, config=HAND.replace(**{"dynamics.settle_time": None}))
    est = _estimate(chip, 2, t_tau=25.0)
    one = train_step_breakdown(chip, real_nudges(aq.EP(beta=0.1, kind="one-sided")), est, (jnp.zeros((1, 5, 6), jnp.int32),))
    assert float(one["settle_s"]) == pytest.approx(2 * 2 * 25.0 * chip.tau, rel=1e-12)
    none = train_step_breakdown(chip, real_nudges(aq.ImplicitAdjoint()), est, (jnp.zeros((1, 5, 6), jnp.int32),))
    assert float(none["settle_s"]) == pytest.approx(2 * 25.0 * chip.tau, rel=1e-12)
    assert int(none["adc_conversions"]) == 2 * chip.n_neurons


def test_pulses_of_pulsed_devices_are_the_counter_increase(small_chip):
    tiles = small_chip.tiles()
    old = {"pulses": tuple(jnp.full(t.g_pos.shape, 5, jnp.int32) for t in tiles)}
    new = {"pulses": tuple(c + (k + 1) for k, c in enumerate(old["pulses"]))}
    got = step_pulses(small_chip, small_chip, old, new)
    assert [int(jnp.sum(p)) for p in got] == [(k + 1) * t.g_pos.size for k, t in enumerate(tiles)]
    assert all(p.shape == (1, *t.g_pos.shape) for p, t in zip(got, tiles))


def test_quantized_write_pulses_are_level_changes():
    cb = ChipConfig.ideal().replace(**{"crossbar.n_levels": 5}).crossbar
    lo, hi = jnp.zeros((2, 4), F64), jnp.full((2, 4), 4e-5, F64)  # levels 1e-5 apart
    old = Tile(g_pos=jnp.array([0.0, 1e-5, 2e-5, 3e-5]), g_neg=jnp.array([4e-5, 4e-5, 0.0, 1e-5]), lo=lo, hi=hi)
    # +2 levels, unchanged, rewritten on its own level (programming noise), -3 levels; G- -1 level
    new = eqx.tree_at(lambda t: (t.g_pos, t.g_neg), old,
                      (jnp.array([2e-5, 1e-5, 2.2e-5, 0.0]), jnp.array([3e-5, 4e-5, 0.0, 1e-5])))
    counts = level_changes(old, new, cb)
    np.testing.assert_array_equal(np.asarray(counts), [[2, 0, 1, 3], [1, 0, 0, 0]])
    assert int(programming_rounds((counts,))) == 2 + 0 + 1 + 3  # each bias entry is a row
    continuous = ChipConfig.ideal().crossbar
    np.testing.assert_array_equal(np.asarray(level_changes(old, new, continuous)), [[1, 0, 1, 1], [1, 0, 0, 0]])


@pytest.mark.parametrize(("path", "bad"), [
    ("energy.adc_fom", -1e-15), ("energy.dac_fom", -1.0), ("energy.pulse_energy", -2e-12),
    ("energy.adc_time", 0.0), ("energy.dac_time", 0.0), ("energy.pulse_width", 0.0),
    ("energy.adc_share", 0),
])
def test_bad_energy_fields_are_named(path, bad):
    with pytest.raises(ConfigError, match=re.escape(path)):
        ChipConfig.preset("realistic").replace(**{path: bad})
    d = ChipConfig.ideal().to_dict()
    d["energy"][path.split(".")[1]] = bad
    with pytest.raises(ConfigError, match=re.escape(path)):
        ChipConfig.from_dict(d)


def test_summary_energy_keys_chip_and_digital(tmp_path):
    base = TrainConfig(hidden=(8,), batch_size=4, steps=2, eval_every=2, probe_every=1000,
                       checkpoint_every=1000)
    chip = train(base.replace(hardware="ideal"), tmp_path / "chip", progress=False)
    for key in ("energy_per_step_J", "latency_per_step_s"):
        assert math.isfinite(chip.summary[key]) and chip.summary[key] > 0, key
    records = [json.loads(line) for line in (tmp_path / "chip" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == 2 and all(r["energy_J"] > 0 and r["latency_s"] > 0 for r in steps)
    assert chip.summary["energy_per_step_J"] == pytest.approx(np.mean([r["energy_J"] for r in steps]))
    digital = train(base.replace(steps=1, eval_every=1), None, progress=False)
    assert math.isnan(digital.summary["energy_per_step_J"])
    assert math.isnan(digital.summary["latency_per_step_s"])
