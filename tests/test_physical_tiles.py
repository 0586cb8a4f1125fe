"""Physical tiles (crossbar.tile_rows x tile_cols): a layer split over tiles with analog summation
is the untiled layer exactly, per-tile gains change nothing without non-idealities and map small
weights onto the conductance window, digital summation digitizes each tile's partial output."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.devices.presets import load_device
from analogeq.hardware import ChipConfig, realize
from analogeq.hardware.converters import quantize
from analogeq.hardware.programming import write_tile
from analogeq.hardware.pulsed import PulsedUpdater, attach_devices, device_hardware
from analogeq.hardware.tile import auto_gains, expand_tiles, reduce_tiles, tile_blocks, tile_grid

F64 = jnp.float64
SIZES = (5, 7, 6, 3)
TILED = {"crossbar.tile_rows": 3, "crossbar.tile_cols": 4}


@pytest.fixture(scope="module")
def model():
    return aq.LeakyNetwork(SIZES, key=jax.random.PRNGKey(0), asymmetry=0.6, gain=0.8, dtype=F64)


def _point(seed=1):
    x = jax.random.normal(jax.random.PRNGKey(seed), (SIZES[0],), F64)
    s = 0.5 * jax.random.normal(jax.random.PRNGKey(seed + 1), (sum(SIZES[1:]),), F64)
    return x, s


def test_grid_geometry_on_ragged_edges():
    cb = ChipConfig().replace(**TILED).crossbar
    assert tile_blocks((7, 5), cb) == (3, 4) and tile_grid((7, 5), cb) == (3, 2)
    assert tile_blocks((2, 3), cb) == (2, 3) and tile_grid((2, 3), cb) == (1, 1)
    assert tile_grid((7,), cb) == (3,)  # a bias line: sense lines only
    assert tile_grid((7, 5), ChipConfig().crossbar) == (1, 1)  # 0: a layer is one tile
    per = jnp.arange(6.0).reshape(3, 2)
    full = np.asarray(expand_tiles(per, (7, 5), cb))
    assert full.shape == (7, 5)
    assert full[0, 0] == 0 and full[2, 3] == 0 and full[2, 4] == 1 and full[3, 0] == 2 and full[6, 4] == 5
    x = jax.random.normal(jax.random.PRNGKey(0), (7, 5))
    m = np.asarray(reduce_tiles(jnp.abs(x), cb))
    ref = [[np.abs(np.asarray(x)[r:r + 3, c:c + 4]).max() for c in (0, 4)] for r in (0, 3, 6)]
    np.testing.assert_array_equal(m, ref)


def test_tiles_with_analog_summation_are_the_untiled_chip_exactly(model):
    x, s = _point()
    hw = ChipConfig.preset("realistic").replace(**{"neuron.amp_pole_tau": 0.0})
    whole = realize(model, hw, jax.random.PRNGKey(1))
    tiled = realize(model, hw.replace(**TILED), jax.random.PRNGKey(1))
    np.testing.assert_array_equal(tiled.force(s, x), whole.force(s, x))
    np.testing.assert_array_equal(tiled.noise(), whole.noise())


def test_per_tile_gains_change_nothing_without_non_idealities(model):
    x, s = _point()
    chip = realize(model, ChipConfig().replace(**TILED, **{"crossbar.tile_gain": "auto"}), jax.random.PRNGKey(1))
    assert chip.forward[0].gain.shape == (3, 2)
    np.testing.assert_allclose(chip.force(s, x), model.force(s, x), rtol=1e-13, atol=1e-14)
    # each tile's largest weight sits at w_max / headroom in device units
    cb = chip.config.crossbar
    held = reduce_tiles(jnp.abs(chip.forward[0].weight(cb.G_ref)), cb)
    np.testing.assert_allclose(held, cb.w_max / cb.gain_headroom, rtol=1e-12)


def test_per_tile_gains_resolve_small_weights_on_few_levels(model):
    """At 8 levels a fixed gain rounds weights of ~0.06 to 0 or one pair level, w_max / 7 = 0.14
    (the issue's failure); auto gains spend the levels on the tile's own range, so every weight
    is within one pair level of its tile, ``gain_t w_max / (n_levels - 1)``."""
    small = jax.tree.map(lambda w: 0.1 * w, model)
    hw = ChipConfig().replace(**TILED, **{"crossbar.n_levels": 8})
    err = {}
    for gain in ("fixed", "auto"):
        chip = realize(small, hw.replace(**{"crossbar.tile_gain": gain}), jax.random.PRNGKey(1))
        cb, t = chip.config.crossbar, chip.forward[0]
        e = jnp.abs(chip.as_model().weights[0] - small.weights[0])
        step = cb.w_max / (cb.n_levels - 1) * (1.0 if t.gain is None else expand_tiles(t.gain, e.shape, cb))
        assert bool(jnp.all(e <= step * (1 + 1e-9)))
        err[gain] = float(jnp.linalg.norm(e) / jnp.linalg.norm(small.weights[0]))
    assert err["fixed"] > 1.0 and err["auto"] < err["fixed"] / 5, err


def test_weight_gradient_and_writes_follow_the_tile_gain(model):
    cb = ChipConfig().replace(**TILED, **{"crossbar.tile_gain": "auto"}).crossbar
    chip = realize(model, ChipConfig().replace(**TILED, **{"crossbar.tile_gain": "auto"}), jax.random.PRNGKey(1))
    t = chip.forward[0]
    c = jax.random.normal(jax.random.PRNGKey(5), t.g_pos.shape, F64)
    grad = jax.grad(lambda tt: jnp.sum(c * tt.weights(cb)))(t)
    np.testing.assert_allclose(t.weight_gradient(grad, cb), c, rtol=1e-12)
    dw = 1e-3 * c
    after = write_tile(t, dw, cb, jax.random.PRNGKey(2), "nearest")  # continuous levels: exact
    np.testing.assert_allclose(after.weights(cb) - t.weights(cb), dw, rtol=1e-9, atol=1e-15)


def test_noise_counts_each_tile_through_its_own_gain(model):
    hw = ChipConfig.preset("realistic").replace(**TILED, **{"crossbar.tile_gain": "auto"})
    chip = realize(model, hw, jax.random.PRNGKey(1))
    t, cb = chip.forward[0], chip.config.crossbar
    g = np.asarray(t.g_pos + t.g_neg)
    gain = np.asarray(t.gain)
    ref = [sum(gain[i // 3, j // 4] ** 2 * g[i, j] for j in range(5)) for i in range(7)]
    np.testing.assert_allclose(t.noise_conductance(cb), ref, rtol=1e-12)


def test_digital_summation_digitizes_each_tile(model):
    x, s = _point()
    hw = ChipConfig().replace(**TILED, **{"crossbar.tile_sum": "digital", "crossbar.tile_adc_bits": 6,
                                          "crossbar.tile_adc_range": 2.0})
    chip = realize(model, hw, jax.random.PRNGKey(1))
    cb = chip.config.crossbar
    t, u = chip.forward[1], jnp.tanh(s[:7])
    w = np.asarray(t.weights(cb))
    ref = sum(np.asarray(quantize(jnp.asarray(w[:, c:c + 4] @ np.asarray(u)[c:c + 4]), 6, 2.0)) for c in (0, 4))
    np.testing.assert_allclose(t.read(u, cb, v_unit=1.0), ref, rtol=1e-12, atol=1e-14)
    assert float(jnp.max(jnp.abs(t.read(u, cb, v_unit=1.0) - w @ u))) > 1e-4  # it does quantize
    # transposed: the row blocks' partial outputs are digitized
    v = jnp.tanh(s[7:13])
    ref_t = sum(np.asarray(quantize(jnp.asarray(np.asarray(v)[r:r + 3] @ w[r:r + 3]), 6, 2.0)) for r in (0, 3))
    np.testing.assert_allclose(t.read_t(v, cb, v_unit=1.0), ref_t, rtol=1e-12, atol=1e-14)
    # straight-through: the derivative is the linear read's, and Jacobian products use it
    jac = jax.jacfwd(lambda uu: t.read(uu, cb, v_unit=1.0))(u)
    np.testing.assert_allclose(jac, w, rtol=1e-12)
    np.testing.assert_allclose(chip.jvp_force(s, x, s), jax.jvp(lambda q: chip.force(q, x), (s,), (s,))[1],
                               rtol=1e-12, atol=1e-13)


def test_pulsed_devices_take_per_tile_gains_from_their_own_range(model):
    device = load_device("ecram-tang2018").device
    hw = device_hardware(ChipConfig().replace(**TILED, **{"crossbar.tile_gain": "auto"}), device)
    chip = attach_devices(realize(model, hw, jax.random.PRNGKey(1)), device, jax.random.PRNGKey(2))
    cb = chip.config.crossbar
    w_dev = chip.forward[0].weight(cb.G_ref)
    limit = min(-float(device.w_min), float(device.w_max))
    np.testing.assert_allclose(reduce_tiles(jnp.abs(w_dev), cb), limit / cb.gain_headroom, rtol=1e-9)
    np.testing.assert_allclose(chip.as_model().weights[0], model.weights[0], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(chip.forward[0].gain, auto_gains(model.weights[0], cb, limit), rtol=1e-12)
    up = PulsedUpdater(device=device, update_scheme="stochastic", optimizer=None, lr=0.01, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="per-tile gains"):
        up._rank_one(chip, up.init(chip), jax.random.split(jax.random.PRNGKey(0), len(chip.tiles())), None)


def test_digital_summation_charges_its_partial_sum_adcs(model):
    from analogeq.energy.settle import settle_breakdown

    x, s = _point()
    hw = ChipConfig().replace(**TILED)
    analog = realize(model, hw, jax.random.PRNGKey(1))
    digital = realize(model, hw.replace(**{"crossbar.tile_sum": "digital"}), jax.random.PRNGKey(1))
    window = 1e-7
    a, d = settle_breakdown(analog, x, s, window), settle_breakdown(digital, x, s, window)
    # partial-sum lines: forward 7x2 + 6x2 + 3x2 tile columns, feedback 7x2 + 6x1, biases 7 + 6 + 3
    lines = 14 + 12 + 6 + 14 + 6 + 16
    per_line = np.ceil(window / hw.energy.adc_time)
    assert a["adc_conversions"] == SIZES[-1]
    assert float(d["adc_conversions"]) == SIZES[-1] + lines * per_line
    np.testing.assert_allclose(float(d["adc_J"]) - float(a["adc_J"]),
                               lines * per_line * hw.energy.adc_energy(hw.crossbar.tile_adc_bits), rtol=1e-12)


def test_spice_export_refuses_what_its_circuit_does_not_model(model):
    from analogeq.spice.netlist import check_block

    chip = realize(model, ChipConfig().replace(**{"crossbar.tile_gain": "auto"}), jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="per-tile gains or digital tile summation"):
        check_block(chip)
    assert check_block(realize(model, ChipConfig().replace(**TILED), jax.random.PRNGKey(1))) is not None


FEW_LEVEL_BUDGET = dict(optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking", steps=500, eval_every=500,
                        probe_every=500, gate=False)
"""The few-level budget: the demo's chip recipe and its 500 steps (digits 64-128-10, batch 32)."""


@pytest.mark.slow  # two 500-step chip runs (~2 min each on 2 cores)
@pytest.mark.parametrize("levels", [4, 8])
def test_few_level_chips_learn_digits_with_per_tile_gains(levels):
    """The issue's failure: at <= 8 levels one G_ref per chip rounds the ~0.06 weights to 0 or a
    level and nothing is learned. Per-tile gains and mixed-precision writes learn digits."""
    hw = ChipConfig.preset("realistic").replace(**{"crossbar.n_levels": levels, "crossbar.tile_gain": "auto"})
    run = aq.train(aq.TrainConfig(**FEW_LEVEL_BUDGET, update="mixed"), parts=aq.build_parts(
        aq.TrainConfig(**FEW_LEVEL_BUDGET, update="mixed"), hw), progress=False)
    assert run.summary["final_test_acc"] >= 0.85, run.summary["final_test_acc"]
