"""The analog (behavioral-circuit) equilibrium transformer block (float64).

Must show (issue 6, item 5): the ideal analog block's fixed point, relaxed in continuous time
with diffrax, equals the digital block's to <= 1e-5 relative.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.diagnostics import DiagnoseOptions, settle
from analogeq.hardware import ChipConfig, ChipRelaxation, ConfigError
from analogeq.hardware.transformer import AnalogEqTransformer, CircuitConfig, realize_transformer
from analogeq.hardware.verdict import continuous_verdict
from analogeq.models.transformer import EqTransformer

F64 = jnp.float64
V, T, D, H = 5, 6, 8, 2
# Every circuit non-ideality on at a plausible size (no time-varying noise: a static field).
CIRCUITS = CircuitConfig(mult_gain_sigma=0.02, mult_offset_sigma=2e-3, softmax_gain_sigma=0.05,
                         norm_gain_sigma=0.02)
CHIP = ChipConfig.preset("realistic").replace(**{
    "crossbar.read_noise": 0.0, "crossbar.thermal_noise": False, "neuron.kTC_noise": False,
    "noise.temperature": 0.0, "neuron.amp_pole_tau": 0.0, "periphery.dac_bits": 0,
    "periphery.adc_bits": 0})


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.fixture(scope="module")
def block():
    return EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)


@pytest.fixture(scope="module")
def seqs():
    return jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, V)


@pytest.fixture(scope="module")
def ideal(block):
    return realize_transformer(block, ChipConfig.ideal(), jax.random.PRNGKey(7))


def digital_fixed_point(block, x):
    relax = aq.EulerRelaxation(eps=0.25, T1=4000, T2=10, tol=1e-13, stop_at_tol=True)
    r = relax.free(aq.ep.FreeTerm(block, x), block.init_state(x))
    assert float(r.residual) <= 1e-13
    return r.state


def analog_fixed_point(chip, x, tol=1e-10):
    s, res, _, ok = settle(eqx.Partial(chip.force, x=x), chip.init_state(x), tol=tol)
    assert ok and res <= 10 * tol
    return chip.nodes(s)


def test_ideal_force_equals_digital_at_random_states(block, ideal, seqs):
    for i, x in enumerate(seqs):
        for t in (T, 3):  # the full sequence and a shorter one
            z = 2.0 * jax.random.normal(jax.random.PRNGKey(10 + i + t), (t, D), F64)
            fd, fa = block.force(z, x[:t]), ideal.force(z, x[:t])
            assert rel(fa, fd) <= 1e-12
    assert ideal.tile_scale == (1.0,) * 8
    np.testing.assert_array_equal(ideal.readout(z), block.readout(z))


def test_ideal_fixed_point_equals_digital(block, ideal, seqs):
    """The must-show: diffrax (Tsit5 to steady state) on the ideal analog block vs the digital
    Euler fixed point at residual 1e-13, <= 1e-5 relative."""
    cfg = ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-10})
    relax = ChipRelaxation(cfg, max_steps=20_000)
    chip = realize_transformer(block, cfg, jax.random.PRNGKey(7))
    errs = []
    for x in seqs:
        r = relax.free(aq.ep.FreeTerm(chip, x), chip.init_state(x))
        assert bool(r.converged)
        errs.append(rel(r.state, digital_fixed_point(block, x)))
    print("ideal analog vs digital fixed point, relative:", errs)
    assert max(errs) <= 1e-5


def test_amplifier_pole_keeps_the_fixed_point(block, seqs):
    cfg = ChipConfig.ideal().replace(**{"neuron.amp_pole_tau": 1e-9})
    chip = realize_transformer(block, cfg, jax.random.PRNGKey(7))
    x = seqs[0]
    assert chip.state_shape == (2, T, D) and chip.init_state(x).shape == (2, T, D)
    assert rel(analog_fixed_point(chip, x), digital_fixed_point(block, x)) <= 1e-7


def test_nonidealities_move_the_fixed_point_measurably_and_boundedly(block, seqs):
    x = seqs[0]
    zd = digital_fixed_point(block, x)
    a = realize_transformer(block, CHIP, jax.random.PRNGKey(3), circuits=CIRCUITS)
    a_same = realize_transformer(block, CHIP, jax.random.PRNGKey(3), circuits=CIRCUITS)
    a_other = realize_transformer(block, CHIP, jax.random.PRNGKey(4), circuits=CIRCUITS)
    za, zo = analog_fixed_point(a, x), analog_fixed_point(a_other, x)
    z_same = analog_fixed_point(a_same, x)
    d_a, d_o = rel(za, zd), rel(zo, zd)
    print("fixed-point shift, chip key 3 / key 4:", d_a, d_o, " between chips:", rel(za, zo))
    assert 1e-4 < d_a < 0.2 and 1e-4 < d_o < 0.2
    np.testing.assert_array_equal(za, z_same)  # same key, same chip
    assert rel(za, zo) > 1e-4  # another key, another chip


@pytest.mark.slow
def test_circuits_alone_and_crossbar_alone_both_act(block, seqs):
    x = seqs[0]
    zd = digital_fixed_point(block, x)
    only_c = realize_transformer(block, ChipConfig.ideal(), jax.random.PRNGKey(3), circuits=CIRCUITS)
    only_x = realize_transformer(block, CHIP, jax.random.PRNGKey(3))
    for chip in (only_c, only_x):
        assert 1e-4 < rel(analog_fixed_point(chip, x), zd) < 0.2


def test_read_and_multiplier_noise_are_per_settle(block, seqs):
    cfg = ChipConfig.ideal().replace(**{"crossbar.read_noise": 0.01})
    chip = realize_transformer(block, cfg, jax.random.PRNGKey(0), circuits=CircuitConfig(mult_noise=1e-3))
    x = seqs[0]
    z = jax.random.normal(jax.random.PRNGKey(9), (T, D), F64)
    f1 = chip.sample_phase(jax.random.PRNGKey(1)).force(z, x)
    f1b = chip.sample_phase(jax.random.PRNGKey(1)).force(z, x)
    f2 = chip.sample_phase(jax.random.PRNGKey(2)).force(z, x)
    f0 = chip.force(z, x)
    np.testing.assert_array_equal(f1, f1b)
    assert 1e-5 < rel(f1, f0) < 0.05 and 1e-5 < rel(f2, f1) < 0.05
    assert chip.noise() is None
    noisy = realize_transformer(block, ChipConfig.preset("realistic"), jax.random.PRNGKey(0))
    n = noisy.noise()
    assert n.shape == noisy.state_shape == (2, T, D)
    # 1 pF at 300 K: sqrt(2 k T / C) = 9.1e-5 V per sqrt(tau)
    np.testing.assert_allclose(float(n[0, 0, 0]), np.sqrt(2 * 1.380649e-23 * 300 / 1e-12), rtol=1e-9)


def test_bad_values_name_the_field(block):
    for name in ("mult_gain_sigma", "mult_offset_sigma", "mult_noise", "softmax_gain_sigma",
                 "norm_gain_sigma"):
        with pytest.raises(ConfigError, match=f"circuits.{name}"):
            CircuitConfig(**{name: -0.1})
        with pytest.raises(ConfigError, match=f"circuits.{name}"):
            CircuitConfig(**{name: float("nan")})
    with pytest.raises(ConfigError, match="circuits.gelu_rails"):
        CircuitConfig(gelu_rails=1)
    with pytest.raises(TypeError, match="EqTransformer"):
        realize_transformer(aq.LeakyNetwork((4, 3, 2), key=jax.random.PRNGKey(0)), ChipConfig.ideal(),
                            jax.random.PRNGKey(0))
    chip = realize_transformer(block, ChipConfig.ideal(), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="state must have shape"):
        chip.force(jnp.zeros((T, D + 1)), jnp.zeros((T,), jnp.int32))
    with pytest.raises(ValueError, match="eps"):
        continuous_verdict(block, jnp.zeros((1, T), jnp.int32))


def test_large_weights_use_a_tile_gain_and_rails_saturate_gelu(block, seqs):
    big = eqx.tree_at(lambda b: b.W_1, block, 3.0 * block.W_1)  # beyond w_max = 1
    chip = realize_transformer(big, ChipConfig.ideal(), jax.random.PRNGKey(0))
    assert chip.tile_scale[4] == pytest.approx(float(jnp.max(jnp.abs(big.W_1))))
    z = jax.random.normal(jax.random.PRNGKey(5), (T, D), F64)
    assert rel(chip.force(z, seqs[0]), big.force(z, seqs[0])) <= 1e-12
    railed = realize_transformer(big, ChipConfig.ideal(), jax.random.PRNGKey(0),
                                 circuits=CircuitConfig(gelu_rails=True))
    u = jnp.linspace(-4, 4, 9)[:, None] * jnp.ones((1, 4 * D))
    g = railed.gelu(jnp.tile(u, (1, 1))[:T] if T <= 9 else u)
    assert float(jnp.max(g)) < 1.0  # rails at +-1 V = state +-1
    assert 1e-6 < rel(railed.force(z, seqs[0]), big.force(z, seqs[0]))


def test_euler_cycle_is_an_artifact_in_continuous_time():
    """A block with residual branches x2 (seed 0) has a weakly damped complex mode at its fixed
    point, mu = -0.155 +- 1.83i / tau: stable in continuous time, but |1 + eps mu| = 1.064 at
    eps = 0.25, so Euler settles on a limit cycle (the linear leak keeps it bounded) while the
    analog block, relaxed by diffrax, converges."""
    b = EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64, residual_scale=2.0)
    xs = jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, V)[:1]
    opts = DiagnoseOptions(k=4, method="dense", euler_steps=2000, t_max=200.0, n_samples=1000, tol=1e-6)
    out = continuous_verdict(b, xs, "ideal", eps=0.25, options=opts)
    r = out["inputs"][0]
    cyc = out["digital"]["inputs"][0]["euler"]
    print("verdict eps=0.25:", r, cyc, out["answer"])
    assert out["euler_cycles"] and r["euler_outcome"] == "limit-cycle"
    assert 1.0 < r["euler_spectral_radius_M"] < 1.1
    assert cyc["autocorrelation"] > 0.9 and cyc["amplitude"] > 0.05
    assert out["continuous_converges"] and -0.2 < r["analog_max_re_mu"] < -0.1
    assert r["analog_vs_digital_fixed_point"] <= 1e-6
    assert "artifact" in out["answer"]


@pytest.mark.slow
def test_divergence_small_eps_and_realistic_chip(block, seqs):
    """eps = 1.05: the damped leak -(1 + c) = -2 gives |1 - 2 eps| = 1.1 > 1, so Euler diverges;
    the analog block converges. eps = 0.5 converges both ways. A realistic chip answers too."""
    opts = DiagnoseOptions(k=4, method="dense", euler_steps=400, t_max=60.0, n_samples=400, tol=1e-6)
    out = continuous_verdict(block, seqs[:1], "ideal", eps=1.05, options=opts)
    r = out["inputs"][0]
    assert out["euler_fails"] and not out["euler_cycles"] and r["euler_outcome"] == "diverged"
    assert out["continuous_converges"] and "diverges" in out["answer"] and "artifact" in out["answer"]
    ok = continuous_verdict(block, seqs[:1], "ideal", eps=0.5, options=opts)
    assert not ok["euler_fails"] and ok["continuous_converges"]
    assert ok["answer"].startswith("Euler converges")
    real = continuous_verdict(block, seqs[:1], CHIP, eps=1.05, options=opts, circuits=CIRCUITS)
    assert real["continuous_converges"] and 1e-4 < real["inputs"][0]["analog_vs_digital_fixed_point"] < 0.2
    assert isinstance(realize_transformer(block, CHIP, jax.random.PRNGKey(0)), AnalogEqTransformer)


@pytest.mark.slow
def test_cli_diagnose_analog_on_a_trained_run_and_noisy_chip_settles(tmp_path, capsys):
    import json

    from analogeq.cli import main
    from analogeq.config import TrainConfig
    from analogeq.assembly import train

    run = tmp_path / "run"
    cfg = TrainConfig(model="eqtransformer", task="parity", cost="token_cross_entropy", d_model=8,
                      n_heads=2, seq_len=6, steps=2, eval_every=2, checkpoint_every=2)
    train(cfg, run, progress=False)
    assert main(["diagnose", str(run), "--analog", "ideal", "--n-inputs", "1", "--euler-steps", "300",
                 "--t-max", "60"]) == 0
    out = capsys.readouterr().out
    assert "hardware ideal" in out
    rep = json.loads((run / "analog_verdict.json").read_text())
    assert rep["eps"] == cfg.eps and len(rep["inputs"]) == 1
    assert rep["inputs"][0]["analog_vs_digital_fixed_point"] <= 1e-6
    assert rep["continuous_converges"]
    leaky = tmp_path / "leaky"
    train(TrainConfig(hidden=(8,), steps=2, eval_every=2, checkpoint_every=2), leaky, progress=False)
    assert main(["diagnose", str(leaky), "--analog", "ideal"]) == 2
    assert "EqTransformer" in capsys.readouterr().err

    # the realistic chip (noise on, amplifier pole): an SDE over the settle window, read by the ADC
    block = EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)
    chip = realize_transformer(block, ChipConfig.preset("realistic"), jax.random.PRNGKey(1), circuits=CIRCUITS)
    x = jax.random.randint(jax.random.PRNGKey(1), (T,), 0, V)
    relax = ChipRelaxation(chip.config)
    r = relax.free(aq.ep.FreeTerm(chip.sample_phase(jax.random.PRNGKey(2)), x, chip.noise()), chip.init_state(x),
                   key=jax.random.PRNGKey(3))
    assert r.state.shape == (2, T, D) and bool(jnp.all(jnp.isfinite(r.state)))
    quiet = analog_fixed_point(realize_transformer(block, CHIP, jax.random.PRNGKey(1), circuits=CIRCUITS), x)
    # DAC (8 bit, +-1 V) clips x_in, so compare the noisy settle with the same chip without noise
    still = chip.nodes(settle(eqx.Partial(chip.force, x=x), chip.init_state(x), tol=1e-10)[0])
    print("noisy SDE vs noiseless analog fixed point:", rel(chip.nodes(r.state), still), "no-DAC:", rel(still, quiet))
    assert rel(chip.nodes(r.state), still) < 0.05
