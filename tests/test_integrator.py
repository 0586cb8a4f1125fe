"""The exact-decay chip integrator (analogeq.hardware.integrators), float64.

Physics checked: the stationary node noise is kT/C with the default step; noise off, the
integrator's fixed point is the field's (equal to the adaptive Tsit5 steady state); over many
noise draws its readout has the mean and variance of a fine Euler--Maruyama run.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.ep.term import FreeTerm
from analogeq.hardware import K_B, ChipConfig, ChipRelaxation, realize
from analogeq.hardware.integrators import (
    DEFAULT_STEP,
    ExactDecay,
    stationary_covariances,
    step_covariances,
)

COST = aq.SquaredError()
TAU = 1e-8  # [s] node time constant of every chip here (C / g_leak)


def test_step_covariance_is_the_exact_ornstein_uhlenbeck_one():
    # No pole: Q = (1 - e^{-2h}) / 2 per unit white noise; stationary variance 1/2.
    for h in (0.01, 0.25, 2.0):
        np.testing.assert_allclose(step_covariances(((-1.0,),), h)[0, 0, 0], -math.expm1(-2 * h) / 2,
                                   rtol=1e-12)
    # Pole (k = tau / tau_a = 10): stationary covariance in closed form (Lyapunov equation solved
    # by hand) and Q(h) = integral of e^{At} e_j e_j^T e^{A^T t}, by quadrature.
    k = 10.0
    a = np.array([[-1.0, 1.0], [0.0, -k]])
    p = stationary_covariances(a)
    np.testing.assert_allclose(p[0], [[0.5, 0], [0, 0]], atol=1e-15)
    np.testing.assert_allclose(p[1], [[1 / (2 * k * (1 + k)), 1 / (2 * k * (1 + k))],
                                      [1 / (2 * k * (1 + k)), 1 / (2 * k)]], rtol=1e-12)
    h = 0.3
    t = np.linspace(0.0, h, 20001)
    b = (np.exp(-t) - np.exp(-k * t)) / (k - 1)
    cols = {0: np.stack([np.exp(-t), 0 * t]), 1: np.stack([b, np.exp(-k * t)])}
    q = step_covariances(a, h)
    for j, col in cols.items():
        integrand = col[:, None, :] * col[None, :, :]
        np.testing.assert_allclose(q[j], np.trapezoid(integrand, t, axis=-1), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("preset", ["ideal", "realistic"])
@pytest.mark.parametrize("c_node", [1e-15, 1e-14])
def test_kT_over_C_with_the_default_step(preset, c_node):
    """Stationary node variance of isolated RC neurons = kT/C, with the default SDE settings.

    64 neurons (zero weights) x 4096 noise draws = 262,144 samples of the node voltage at the end
    of an 8 tau settle (transient below e^-16): the standard error of the variance is
    sqrt(2 / 262144) = 0.28 %, and the tolerance 1 % is 3.6 standard errors. The step is the
    integrator's default (no ``dynamics.sde_dt``); tau = C / g_leak is kept at 10 ns. On
    ``realistic`` the crossbar's Johnson noise (through the amplifier pole) adds 0.19 % (1 fF)
    and 1.9 % (10 fF: g_leak is 10x larger) of kT/C, included in the expectation; its read noise
    is off (a per-read weight error, which would enter through the bias column as a per-draw
    offset, not node noise).
    """
    base = ChipConfig.preset(preset)
    cfg = base.replace(**{
        "neuron.C": c_node, "neuron.g_leak": c_node / TAU, "neuron.kTC_noise": True,
        "noise.temperature": 300.0, "dynamics.settle_time": 8 * TAU, "dynamics.average_window": 0.0,
        "crossbar.read_noise": 0.0,
    })
    assert cfg.dynamics.sde_dt is None and cfg.dynamics.integrator == "exact-decay"
    n = 64
    net = aq.LeakyNetwork((1, n), key=None, parameters=((jnp.zeros((n, 1)),), (), (jnp.zeros(n),)))
    chip = realize(net, cfg, jax.random.PRNGKey(0))
    relax = ChipRelaxation(cfg)
    assert relax.sde_dt() == DEFAULT_STEP
    # Independent draws for each capacitance (same tau: equal draws would give equal ratios).
    free = aq.free_phase(chip, relax, jnp.zeros((4096, 1)), key=jax.random.PRNGKey(round(c_node * 1e15)))
    v = chip.voltages(free.state.T).T * cfg.neuron.v_unit  # (draws, neurons) [V]
    var = float(jnp.mean(jnp.var(v, axis=0, ddof=1)))
    ktc = K_B * 300.0 / c_node
    # Crossbar Johnson noise on the node (no pole) or on the amplifier output (pole, k = tau/tau_a):
    # its stationary node variance is xbar^2 / 2, or q / (2 k (1 + k)) for amplitude q^(1/2) at y.
    amp = chip.noise()
    if chip.has_pole:
        k = TAU / cfg.neuron.amp_pole_tau
        extra = float(jnp.mean(amp[n:] ** 2)) / (2 * k * (1 + k))
    else:
        extra = float(jnp.mean(amp**2)) / 2 - ktc / cfg.neuron.v_unit**2
    extra *= cfg.neuron.v_unit**2
    assert abs(extra) < 0.03 * ktc
    print(f"kT/C {preset} {c_node:g} F: variance / expected - 1 = {var / (ktc + extra) - 1:+.4f}")
    assert abs(var / (ktc + extra) - 1) <= 0.01, (preset, c_node, var, ktc)


def _noise_free(preset: str, settle_tau: float | None) -> ChipConfig:
    """A preset with every noise off, an ideal ADC, and a fixed settle window of ``settle_tau``
    for the free and the nudged phases (``None``: the adaptive steady-state solve), so that
    what is measured is the integrator (the preset's shorter nudged window is
    tests/test_nudged_window.py's)."""
    return ChipConfig.preset(preset).replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, "periphery.adc_bits": 0,
        "dynamics.settle_time": None if settle_tau is None else settle_tau * TAU,
        "dynamics.average_window": 0.0, "dynamics.steady_tol": 1e-10, "dynamics.nudged_time": None,
    })


# realistic has the amplifier pole; the ideal chip's case (no pole, no mismatch) is slow: its
# Tsit5 solve to rtol 1e-12 took 53 s of CPU time (cold, 2 shared cores)
@pytest.mark.parametrize("preset", [pytest.param("ideal", marks=pytest.mark.slow), "realistic"])
def test_noise_free_fixed_point_equals_tsit5(leaky, batch, preset):
    exact_cfg, tsit_cfg = _noise_free(preset, 120.0), _noise_free(preset, None)
    chip = realize(leaky, exact_cfg, jax.random.PRNGKey(7))
    assert chip.has_pole == (preset == "realistic")
    tsit = aq.free_phase(chip, ChipRelaxation(tsit_cfg, rtol=1e-12, atol=1e-14), batch[0])
    exact = aq.free_phase(chip, ChipRelaxation(exact_cfg), batch[0])
    assert bool(jnp.all(tsit.converged)) and bool(jnp.all(exact.converged))
    rel = jnp.linalg.norm(exact.state - tsit.state, axis=-1) / jnp.linalg.norm(tsit.state, axis=-1)
    print(f"fixed point {preset}: exact-decay vs Tsit5 max relative difference {float(jnp.max(rel)):.2e}")
    assert float(jnp.max(rel)) <= 1e-6, rel
    # The fixed point of the step map is the field's, at any step: started at the Tsit5 steady
    # state (residual |F|/|s| <= 1.5e-10), a settle of large steps stays there.
    integ = ExactDecay(decay=ChipRelaxation(exact_cfg).decay_matrix(), step=0.9, settle=9.0)
    out = jax.jit(jax.vmap(lambda x, s: integ(FreeTerm(chip, x), s)))(batch[0], tsit.state)
    moved = jnp.linalg.norm(out - tsit.state, axis=-1) / jnp.linalg.norm(tsit.state, axis=-1)
    assert float(jnp.max(moved)) <= 1e-8, moved


def test_ep_on_exact_decay_matches_the_implicit_adjoint(leaky, batch):
    """Noise-free non-ideal chip (pole, mismatch, quantized levels) settled by exact-decay over
    fixed windows: physical AsymEP equals the chip's own implicit adjoint, and EP without the
    correction does not (the field of a chip with a pole is not conservative)."""
    cfg = _noise_free("realistic", 120.0)
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    assert chip.has_pole and float(jnp.std(chip.gain)) > 0
    relax = ChipRelaxation(cfg)
    ep = aq.EP(beta=1e-3).estimate(chip, COST, relax, *batch)
    own = aq.ImplicitAdjoint(tol=1e-12).estimate(chip, COST, relax, *batch)
    assert bool(jnp.all(ep.free.converged))
    cmp = aq.compare_gradients(chip.weight_gradient(ep.grads), chip.weight_gradient(own.grads))
    print(f"EP on exact-decay vs implicit adjoint: {cmp['overall']}")
    assert cmp["overall"]["cosine"] >= 0.999999, cmp["overall"]
    plain = aq.EP(beta=1e-3, correction="none").estimate(chip, COST, relax, *batch)
    assert aq.compare_gradients(chip.weight_gradient(plain.grads),
                                chip.weight_gradient(own.grads))["overall"]["rel_error"] > 1e-2


def _readout_stats(cfg, chip, x, n_draws, key):
    free = aq.free_phase(chip, ChipRelaxation(cfg), jnp.broadcast_to(x, (n_draws, x.shape[0])), key=key)
    v = chip.voltages(free.state.T).T
    return jnp.mean(v, axis=0), jnp.var(v, axis=0, ddof=1)


def _compare_with_fine_euler_maruyama(leaky, x, n_draws, window_tau):
    """Per-neuron z-scores of readout mean and variance: exact-decay (default step) against
    Euler--Maruyama at dt = 0.005 tau, ``n_draws`` independent draws each, on the realistic
    preset's 40 tau settle window (the noise-free transient is then below 1e-8; at 20 tau it is
    1e-4 and the integrators' different settling rates show in the mean) with 1 fF nodes, no
    read noise and an ideal ADC; ``window_tau``: readout window (``None``: the preset's 5 tau)."""
    cfg = ChipConfig.preset("realistic").replace(**{
        "neuron.C": 1e-15, "neuron.g_leak": 1e-15 / TAU, "crossbar.read_noise": 0.0,
        "periphery.adc_bits": 0,
    })
    if window_tau is not None:
        cfg = cfg.replace(**{"dynamics.average_window": window_tau * TAU})
    assert cfg.dynamics.settle_time == 40 * TAU
    chip = realize(leaky, cfg, jax.random.PRNGKey(3))
    fine = cfg.replace(**{"dynamics.integrator": "euler-maruyama", "dynamics.sde_dt": 0.005 * TAU})
    m1, v1 = _readout_stats(cfg, chip, x, n_draws, jax.random.PRNGKey(10))
    m2, v2 = _readout_stats(fine, chip, x, n_draws, jax.random.PRNGKey(11))
    z_mean = (m1 - m2) / jnp.sqrt((v1 + v2) / n_draws)
    # Standard error of a sample variance of (nearly) Gaussian readouts: v sqrt(2 / (N - 1)).
    z_var = (v1 - v2) / jnp.sqrt((v1**2 + v2**2) * 2 / (n_draws - 1))
    return np.asarray(z_mean), np.asarray(z_var), np.asarray(v1), np.asarray(v2)


def test_readout_statistics_equal_fine_euler_maruyama(leaky, batch):
    """500 draws per integrator on a noisy 8-12-5 chip (pole, mismatch, 1 fF nodes): readout
    mean and variance of each of the 17 neurons within 4 standard errors of the fine
    Euler--Maruyama reference (variance standard error 6.3 % per integrator), and the z-scores
    distributed like standard normals (mean square < 2)."""
    z_mean, z_var, v1, v2 = _compare_with_fine_euler_maruyama(leaky, batch[0][0], 500, window_tau=None)
    print(f"500 draws: max |z| mean {np.max(np.abs(z_mean)):.2f}, variance {np.max(np.abs(z_var)):.2f}; "
          f"mean z^2 {np.mean(z_mean**2):.2f}, {np.mean(z_var**2):.2f}; "
          f"variance ratio {np.mean(v1 / v2):.4f}")
    assert float(np.min(v1)) > 0
    for z in (z_mean, z_var):
        assert float(np.max(np.abs(z))) < 4.0, z
        assert float(np.mean(z**2)) < 2.0, z


@pytest.mark.slow
@pytest.mark.parametrize("window_tau", [None, 0.0])
def test_readout_statistics_equal_fine_euler_maruyama_many_draws(leaky, batch, window_tau):
    """As the fast test with 6000 draws (variance standard error 1.8 % per integrator), for the
    time-averaged readout and for the instantaneous state."""
    z_mean, z_var, v1, v2 = _compare_with_fine_euler_maruyama(leaky, batch[0][0], 6000, window_tau)
    print(f"6000 draws, window {window_tau} tau: max |z| mean {np.max(np.abs(z_mean)):.2f}, variance "
          f"{np.max(np.abs(z_var)):.2f}; mean z^2 {np.mean(z_mean**2):.2f}, {np.mean(z_var**2):.2f}; "
          f"variance ratio {np.mean(v1 / v2):.4f}")
    for z in (z_mean, z_var):
        assert float(np.max(np.abs(z))) < 4.0, z
        assert float(np.mean(z**2)) < 2.0, z


def test_integrator_choice_and_bad_input_are_named(leaky, batch):
    with pytest.raises(ValueError, match="dynamics.integrator"):
        ChipConfig.ideal().replace(**{"dynamics.integrator": "rk4"})
    cfg = ChipConfig.preset("realistic").replace(**{"dynamics.integrator": "tsit5"})
    chip = realize(leaky, cfg, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="dynamics.integrator = 'tsit5'.*noise-free"):
        aq.free_phase(chip, ChipRelaxation(cfg), batch[0], key=jax.random.PRNGKey(1))
    with pytest.raises(ValueError, match="stable"):
        ExactDecay(decay=((0.5,),), step=0.25, settle=10.0)
    with pytest.raises(ValueError, match="window"):
        ExactDecay(decay=((-1.0,),), step=0.25, settle=10.0, window=11.0)
    # Steps: 35 tau before a 5 tau window at h = 0.25 -> 140 + 20 steps in chunks of 10.
    assert ExactDecay(decay=((-1.0,),), step=0.25, settle=40.0, window=5.0).parts() == (140, 20, 10)
