"""PCM inference physics on a chip: drift power law, programming noise, read noise and global
drift compensation (float64)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.devices.inference import PCMInference
from analogeq.devices.presets import load_device
from analogeq.hardware import ChipConfig, realize
from analogeq.hardware.drift import chip_at, program_pcm


@pytest.fixture(scope="module")
def big_chip():
    net = aq.LeakyNetwork((64, 64, 10), key=jax.random.PRNGKey(0), gain=1.0, dtype=jnp.float64)
    hw = ChipConfig.ideal()
    return realize(net, hw, jax.random.PRNGKey(1))


def _quiet():
    """The PCM model with every random term off: drift exponent = its mean ``mu(gh)``."""
    return PCMInference(prog_coeff=(0.0, 0.0, 0.0), nu_sigma=(0.0, 0.0), nu_sigma_clip=(0.0, 0.0),
                        read_q=(0.0, 0.65))


def test_noise_free_drift_follows_the_power_law(big_chip):
    model = _quiet()
    prog = program_pcm(big_chip, model, jax.random.PRNGKey(0))
    g_max = big_chip.config.crossbar.G_max
    g_ref = big_chip.config.crossbar.G_ref
    for tile0, tile in zip(big_chip.tiles(), prog.chip.tiles()):
        # Each weight sits on one device of its pair; the weights are unchanged.
        np.testing.assert_allclose(tile.weight(g_ref), tile0.weight(g_ref), rtol=1e-12, atol=1e-15)
        assert bool(jnp.all(jnp.minimum(tile.g_pos, tile.g_neg) == 0))
    g0 = prog.chip.forward[0].g_pos
    for t in (1.0, 20.0):  # no drift before t0 = 20 s
        early, _ = chip_at(prog, t, jax.random.PRNGKey(1), compensate=False)
        np.testing.assert_allclose(early.forward[0].g_pos, g0, rtol=1e-14)
    t = 86400.0 * 30
    later, alpha = chip_at(prog, t, jax.random.PRNGKey(1), compensate=False)
    assert float(alpha) == 1.0
    on = np.asarray(g0) > 0
    gh = np.asarray(g0)[on] / g_max
    mu = np.clip(-0.0155 * np.log(gh) + 0.0244, 0.049, 0.1)
    np.testing.assert_allclose(np.asarray(later.forward[0].g_pos)[on] / gh / g_max, (t / 20.0) ** (-mu), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(prog.nu[0][0])[on], mu, rtol=1e-12)


def test_drift_exponents_vary_per_device_and_programming_noise_follows_sigma():
    model = PCMInference()
    gh = jnp.full((20000,), 0.5)
    nu = model.drift_exponents(gh, jax.random.PRNGKey(0))
    mu = np.clip(-0.0155 * np.log(0.5) + 0.0244, 0.049, 0.1)
    sd = np.clip(-0.0125 * np.log(0.5) - 0.0059, 0.008, 0.045)
    assert float(jnp.mean(nu)) == pytest.approx(mu, rel=0.02)
    assert float(jnp.std(nu)) == pytest.approx(sd, rel=0.05)
    err = model.program(gh, jax.random.PRNGKey(1)) - gh
    sigma_us = 0.26348 + 1.9650 * 0.5 - 1.1731 * 0.25
    assert float(jnp.std(err)) * 25.0 == pytest.approx(sigma_us, rel=0.03)


def test_read_noise_grows_with_log_time():
    model = PCMInference()
    gh = jnp.full((20000,), 0.5)
    qs = min(0.0088 / 0.5**0.65, 0.2)
    for t in (1.0, 1e5):
        noisy = model.read_noise(gh, t, jax.random.PRNGKey(2))
        expected = 0.5 * qs * np.sqrt(np.log((t + 250e-9) / (2 * 250e-9)))
        assert float(jnp.std(noisy - gh)) == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("read_noise", [False, True])
def test_drift_compensation_restores_the_mean_output(big_chip, read_noise):
    # Programming noise and the per-device spread of drift exponents on; 1/f read noise on or
    # off. Without read noise the global gain restores the mean output within 1 %; a month's
    # 1/f read noise (~20 % of a small device's conductance) leaves a few percent.
    model = load_device("pcm").inference
    if not read_noise:
        model = dataclasses.replace(model, read_q=(0.0, 0.65))
    prog = program_pcm(big_chip, model, jax.random.PRNGKey(0))
    x = jax.random.uniform(jax.random.PRNGKey(3), (256, 64), jnp.float64)
    g_ref = big_chip.config.crossbar.G_ref

    def mean_output(chip):
        return float(jnp.mean(jnp.abs(x @ chip.forward[0].weight(g_ref).T)))

    ref = mean_output(prog.chip)
    month = 86400.0 * 30
    raw, _ = chip_at(prog, month, jax.random.PRNGKey(4), compensate=False)
    comp, alpha = chip_at(prog, month, jax.random.PRNGKey(4), compensate=True)
    assert mean_output(raw) / ref < 0.7          # a month of drift loses > 30 % of the signal
    assert float(alpha) > 1.4
    assert mean_output(comp) / ref == pytest.approx(1.0, abs=0.03 if read_noise else 0.01)
