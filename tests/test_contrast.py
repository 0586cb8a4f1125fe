"""The contrast diagnostics (analogeq.diagnostics.contrast), float64, against closed forms and
the estimators' own pipeline."""

import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.diagnostics.contrast import bound_fraction, contrast_report
from analogeq.hardware import K_B, ChipConfig, ChipRelaxation, realize

COST = aq.SquaredError()
# Fixed 40 tau window, noise-free, read at the end of it: the exact-decay integrator.
WINDOW = {"dynamics.settle_time": 4e-7, "dynamics.steady_tol": 1e-9}


def _ideal(**changes):
    return ChipConfig.ideal().replace(**{**WINDOW, **changes})


def test_noise_free_contrast_is_two_beta_lambda(leaky, batch):
    # EP's theorem on the chip's own field: s_+ - s_- = -2 beta lambda + O(beta^3), so at
    # beta = 1e-3 the settled contrast equals the implicit adjoint's prediction to ~1e-6, and the
    # gradient's cosine with the exact one is 1. Both noise floors are exactly 0.
    cfg = _ideal()
    chip = realize(leaky, cfg, jax.random.PRNGKey(5))
    rep = contrast_report(chip, COST, ChipRelaxation(cfg), aq.EP(beta=1e-3), *batch, jax.random.PRNGKey(0))
    assert rep["centered"] and rep["beta"] == 1e-3 and math.isnan(rep["lsb"])
    for layer in rep["layers"]:
        assert abs(layer["rms_contrast"] / layer["rms_contrast_exact"] - 1) < 1e-5
        assert layer["noise_free_settle"] == 0.0 and layer["noise_contrast"] == 0.0
        assert layer["cos_settled"] > 1 - 1e-9
    assert rep["overall"]["grad_cos_read"] > 1 - 1e-9
    # The same numbers the run's gradient probe computes.
    ref = aq.ImplicitAdjoint(tol=1e-12).estimate(chip, COST, ChipRelaxation(cfg), *batch, gate=False)
    ep = aq.EP(beta=1e-3).estimate(chip, COST, ChipRelaxation(cfg), *batch, gate=False)
    cmp = aq.compare_gradients(ep.grads, ref.grads)["overall"]
    assert abs(cmp["rel_error"] - rep["overall"]["grad_rel_error_read"]) < 1e-6


@pytest.mark.slow
def test_coherence_from_single_sample_gradients(leaky, batch):
    # The per-sample statistics against per-sample exact gradients from the estimator itself,
    # one batch of one sample at a time.
    cfg = _ideal()
    chip = realize(leaky, cfg, jax.random.PRNGKey(5))
    relax = ChipRelaxation(cfg)
    rep = contrast_report(chip, COST, relax, aq.EP(beta=1e-3), *batch, jax.random.PRNGKey(0))
    xs, ys = batch
    flat = []
    for b in range(xs.shape[0]):
        g = aq.ImplicitAdjoint(tol=1e-12).estimate(chip, COST, relax, xs[b:b + 1], ys[b:b + 1], gate=False).grads
        leaves = jax.tree_util.tree_leaves(eqx.filter(g, eqx.is_inexact_array))
        flat.append(np.concatenate([np.ravel(x) for x in leaves]))
    g = np.stack(flat)
    coherence = np.linalg.norm(g.mean(0)) / np.sqrt(np.mean(np.sum(g**2, 1)))
    assert abs(rep["overall"]["coherence"] / coherence - 1) < 1e-6
    assert rep["overall"]["sample_rel_error"] < 1e-5


def test_coarse_adc_costs_the_gradient(leaky, batch):
    # A 3-bit ADC (step 2/7 V) reads most contrasts at beta 0.05 as 0: the read adjoint loses
    # what the settled one keeps, and the step is the closed form 2 range / (2^bits - 1).
    cfg = _ideal(**{"periphery.adc_bits": 3})
    chip = realize(leaky, cfg, jax.random.PRNGKey(5))
    rep = contrast_report(chip, COST, ChipRelaxation(cfg), aq.EP(beta=0.05), *batch, jax.random.PRNGKey(0))
    assert rep["lsb"] == pytest.approx(2 / 7)
    assert rep["layers"][0]["frac_below_lsb"] > 0.9
    assert rep["overall"]["grad_cos_settled"] > 0.999
    assert rep["overall"]["grad_cos_read"] < 0.9


def test_difference_amplifier_recovers_the_contrast(leaky, batch):
    # The same 3-bit ADC behind a x16 difference amplifier against the held free state
    # (periphery.contrast_gain): the contrast's step is 2/7/16 V, so the read gradient keeps the
    # settled one's direction (cosine 0.54 without it); the amplified read clips at
    # adc_range / 16 (at x64 clipping costs more than the finer step gains: cosine 0.92).
    cfg = _ideal(**{"periphery.adc_bits": 3, "periphery.contrast_gain": 16.0})
    chip = realize(leaky, cfg, jax.random.PRNGKey(5))
    relax = ChipRelaxation(cfg)
    rep = contrast_report(chip, COST, relax, aq.EP(beta=0.05), *batch, jax.random.PRNGKey(0))
    assert rep["lsb"] == pytest.approx(2 / 7 / 16)
    assert rep["overall"]["grad_cos_read"] > 0.98
    held = jnp.array([0.3, -0.2])
    step = 2 / 7 / 16
    got = relax.read_difference(held + jnp.array([0.4 * step, 100.0]), held)
    # an even level count has no zero level: the nearest is half a step; the rest clips
    np.testing.assert_allclose(got, [step / 2, 1 / 16], atol=1e-12)
    plain = ChipRelaxation(_ideal(**{"periphery.adc_bits": 3}))
    np.testing.assert_allclose(plain.read_difference(held + 0.01, held), plain.read(held + 0.01) - plain.read(held))


@pytest.mark.parametrize("scope", ["phase", "sample"])
def test_read_noise_scope(leaky, batch, scope):
    # Read noise alone (2 %). Drawn once per sample ("sample"), the free and nudged phases see
    # one conductance realization, so centered EP measures that realization's own adjoint
    # (the implicit adjoint of the sample's realized chip) to O(beta^2). Drawn per phase, each
    # nudged phase sees other conductances and the contrast carries their difference divided
    # by beta. The free phase is the same draw either way.
    from analogeq.ep.base import phase_keys

    cfg = _ideal(**{"crossbar.read_noise": 0.02, "crossbar.read_noise_scope": scope})
    chip = realize(leaky, cfg, jax.random.PRNGKey(5))
    relax, key = ChipRelaxation(cfg), jax.random.PRNGKey(0)
    est = aq.EP(beta=1e-3).estimate(chip, COST, relax, *batch, gate=False, key=key)
    free_keys, _ = phase_keys(realize(leaky, cfg.replace(**{"crossbar.read_noise_scope": "sample"}),
                                      jax.random.PRNGKey(5)), key, batch[0].shape[0])
    errs = []
    for b, (x, y) in enumerate(zip(*batch)):
        realized = chip.sample_phase(free_keys[b, 0])  # the read-noise draw of sample b's free phase
        lam, _ = aq.ImplicitAdjoint(tol=1e-12).contrast(realized, COST, relax, x, y, est.free.state[b])
        errs.append(float(jnp.linalg.norm(est.contrast[b] - lam) / jnp.linalg.norm(lam)))
    print(scope, errs)
    if scope == "sample":
        assert max(errs) < 1e-5
    else:
        assert min(errs) > 1e-2
    other = "phase" if scope == "sample" else "sample"
    chip2 = realize(leaky, cfg.replace(**{"crossbar.read_noise_scope": other}), jax.random.PRNGKey(5))
    free2 = aq.EP(beta=1e-3).estimate(chip2, COST, relax, *batch, gate=False, key=key).free.state
    np.testing.assert_array_equal(free2, est.free.state)


@pytest.mark.slow
def test_free_settle_noise_floor_is_kT_over_C():
    # Isolated RC nodes (zero weights), kT/C only, read at one instant: two settles with
    # independent keys differ by sqrt(2 kT/C) rms. 256 samples x 16 nodes: standard error of the
    # std ~1.6%; 5% tolerance.
    cfg = ChipConfig.ideal().replace(**{
        "neuron.C": 1e-15, "neuron.g_leak": 1e-7, "neuron.kTC_noise": True, "noise.temperature": 300.0,
        "dynamics.settle_time": 2e-7, "dynamics.steady_tol": 0.5,
    })
    sizes = (4, 12, 4)
    net = aq.LeakyNetwork(sizes, key=None, parameters=(
        tuple(jnp.zeros((b, a)) for a, b in itertools.pairwise(sizes)),
        (jnp.zeros((12, 4)),), tuple(jnp.zeros(b) for b in sizes[1:])))
    chip = realize(net, cfg, jax.random.PRNGKey(0))
    xs, ys = jnp.zeros((256, 4)), jnp.zeros(256, jnp.int32)
    rep = contrast_report(chip, COST, ChipRelaxation(cfg), aq.EP(beta=0.1), xs, ys, jax.random.PRNGKey(1))
    expected = math.sqrt(2 * K_B * 300.0 / 1e-15)
    for layer in rep["layers"]:
        assert abs(layer["noise_free_settle"] / expected - 1) < 0.05, (layer["noise_free_settle"], expected)


def test_bound_fraction_counts_devices_at_their_bounds(leaky):
    cfg = ChipConfig.ideal().replace(**{"crossbar.G_min": 1e-6, "crossbar.d2d_bounds": 0.1})
    chip = realize(leaky, cfg, jax.random.PRNGKey(2))
    assert bound_fraction(chip)["overall"] == 0.0  # weights of gain 0.8 sit inside the window
    t = chip.forward[0]
    g_pos = t.g_pos.at[0, :].set(t.hi[0, 0, :]).at[1, :3].set(t.lo[0, 1, :3] + 0.01 * (t.hi[0, 1, :3] - t.lo[0, 1, :3]))
    chip = eqx.tree_at(lambda c: c.forward[0].g_pos, chip, g_pos)
    n_devices = sum(2 * x.g_pos.size for x in chip.tiles())
    out = bound_fraction(chip, tol=0.02)
    assert out["at_upper"] == pytest.approx(8 / n_devices)
    assert out["at_lower"] == pytest.approx(3 / n_devices)
    assert out["per_tile"][0] == pytest.approx(11 / (2 * t.g_pos.size))
    assert bound_fraction(chip, tol=0.005)["at_lower"] == 0.0
    with pytest.raises(ValueError, match="repeats must be"):
        contrast_report(chip, COST, ChipRelaxation(cfg), aq.EP(beta=0.1), jnp.zeros((2, 8)),
                        jnp.zeros(2, jnp.int32), jax.random.PRNGKey(0), repeats=0)
    with pytest.raises(ValueError, match="tol must be in"):
        bound_fraction(chip, tol=0.7)
