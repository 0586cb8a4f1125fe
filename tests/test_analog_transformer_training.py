"""Training the analog equilibrium transformer on its chip (issue 16, float64, noise off).

Must show: physical AsymEP on the analog block (ideal, and non-ideal without noise: crossbar
levels, programming error and bounds, multiplier / softmax / normalization mismatch, neuron
mismatch, input DAC, amplifier pole) against the block's own exact gradient (the implicit
adjoint of the analog field): cosine >= 0.9999; the ideal analog block's EP gradient equals the
digital block's to 1e-6 relative in weight units; ``analogeq train --model eqtransformer
--hardware ideal`` writes metrics and a checkpoint and resumes exactly.
"""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import analogeq as aq
from analogeq.ep import EP, ImplicitAdjoint, compare_gradients
from analogeq.ep.base import free_phase
from analogeq.ep.recipe import WithReadoutGradient
from analogeq.hardware import ChipConfig, ChipRelaxation, ConfigError
from analogeq.hardware.transformer import TILES, CircuitConfig, realize_transformer
from analogeq.hardware.transformer_updates import (
    DIGITAL,
    TRAIN_HEADROOM,
    BlockUpdater,
    InWeightUnits,
    block_gradient,
    block_parameters,
)
from analogeq.models.transformer import PARAMETER_NAMES, EqTransformer

F64 = jnp.float64
V, T, D, H, B = 5, 6, 8, 2, 3
BETA = 1e-3
CIRCUITS = CircuitConfig(mult_gain_sigma=0.02, mult_offset_sigma=2e-3, softmax_gain_sigma=0.05,
                         norm_gain_sigma=0.02)
# realistic without anything time-varying (read, thermal, kT/C noise) and without the ADC (it
# quantizes the contrast itself); levels, programming noise, bounds, neuron mismatch, the 8-bit
# DAC and the amplifier pole stay on. Settles run to a steady state (no fixed window).
NONIDEAL = ChipConfig.preset("realistic").replace(**{
    "crossbar.read_noise": 0.0, "crossbar.thermal_noise": False, "neuron.kTC_noise": False,
    "noise.temperature": 0.0, "periphery.adc_bits": 0, "dynamics.settle_time": None,
    "dynamics.nudged_time": None, "dynamics.average_window": 0.0, "dynamics.steady_tol": 1e-11})
IDEAL = ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-11})


def rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.fixture(scope="module")
def block():
    return EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)


@pytest.fixture(scope="module")
def batch():
    xs = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, V)
    ys = jax.random.randint(jax.random.PRNGKey(2), (B, T), 0, V)
    return xs, ys


def grads(est, model, relaxation, xs, ys):
    return eqx.filter_jit(lambda m, r: est.estimate(m, aq.make_cost("token_cross_entropy"), r, xs, ys).grads)(
        model, relaxation)


# the ideal block's AsymEP is also checked against the digital block's (test below)
@pytest.mark.parametrize("hw, circuits", [pytest.param(IDEAL, CircuitConfig(), marks=pytest.mark.slow),
                                          (NONIDEAL, CIRCUITS)], ids=["ideal", "nonideal"])
def test_asym_ep_matches_the_blocks_own_implicit_adjoint(block, batch, hw, circuits):
    """The must-show: AsymEP (centered, beta = 1e-3) settled on the analog block vs the implicit
    adjoint of the same analog field at the same free states, cosine >= 0.9999 (the force-form
    parts; the readout's direct term is the same in both and left out)."""
    chip = realize_transformer(block, hw, jax.random.PRNGKey(3), circuits=circuits, headroom=TRAIN_HEADROOM)
    assert chip.has_pole == (hw is NONIDEAL)
    relax = ChipRelaxation(hw, max_steps=20_000)
    ep = grads(InWeightUnits(EP(beta=BETA, kind="centered", correction="asym")), chip, relax, *batch)
    ref = grads(InWeightUnits(ImplicitAdjoint(tol=1e-12)), chip, relax, *batch)
    out = compare_gradients(ep, ref)
    print(hw is IDEAL and "ideal" or "nonideal", out["overall"],
          {k: round(v["cosine"], 8) for k, v in out["per_param"].items()})
    assert set(ep) == set(PARAMETER_NAMES)
    assert out["overall"]["cosine"] >= 0.9999
    assert out["overall"]["rel_error"] <= 1e-3
    # every trained part receives a gradient, the embeddings through the DAC included
    for name in PARAMETER_NAMES:
        if name != "W_h":  # the force does not depend on the readout
            assert float(jnp.linalg.norm(ep[name])) > 0, name
    if hw is NONIDEAL:
        return
    # without the correction the block's asymmetric Jacobian biases EP measurably
    plain = grads(InWeightUnits(EP(beta=BETA, kind="centered", correction="none")), chip, relax, *batch)
    assert compare_gradients(plain, ref)["overall"]["cosine"] < 0.999


def test_update_adjoint_is_exact_at_the_fixed_point_with_a_pole(block, batch):
    """With an amplifier pole the exact adjoint's stage part is ``tau_a / tau`` times its node
    part, so rebuilding it from the node contrast (which the ADC reads ten times larger) changes
    nothing at the fixed point."""
    chip = realize_transformer(block, NONIDEAL, jax.random.PRNGKey(3), circuits=CIRCUITS, headroom=TRAIN_HEADROOM)
    relax = ChipRelaxation(NONIDEAL, max_steps=20_000)
    est = eqx.filter_jit(lambda m, r: ImplicitAdjoint(tol=1e-12).estimate(
        m, aq.make_cost("token_cross_entropy"), r, *batch))(chip, relax)
    lam = est.contrast
    assert lam.shape[1] == 2  # (nodes, stage outputs)
    rebuilt = jax.vmap(chip.update_adjoint)(lam)
    assert rel(rebuilt, lam) <= 1e-8
    assert rel(lam[:, 1], 0 * lam[:, 1]) > 0  # the stage part is not trivially zero


def test_ideal_analog_ep_equals_the_digital_blocks(block, batch):
    """The must-show: the ideal chip (tiles at stage gains from the training headroom), settled
    by the continuous-time solver, gives the digital block's AsymEP gradient (tight Euler) in
    weight units to 1e-6 relative, readout term included."""
    est = WithReadoutGradient(EP(beta=BETA, kind="centered", correction="asym"))
    chip = realize_transformer(block, IDEAL, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    assert max(chip.tile_scale) > 1  # the conversion to weight units is exercised
    analog = grads(InWeightUnits(est), chip, ChipRelaxation(IDEAL, max_steps=20_000), *batch)
    euler = aq.EulerRelaxation(eps=0.25, T1=4000, T2=4000, tol=1e-13, stop_at_tol=True)
    digital = grads(est, block, euler, *batch)
    digital = {n: getattr(digital, n) for n in PARAMETER_NAMES}
    out = compare_gradients(analog, digital)
    print("ideal analog vs digital EP:", out["overall"])
    assert out["overall"]["rel_error"] <= 1e-6
    for name in PARAMETER_NAMES:
        assert out["per_param"][f"[{name!r}]"]["rel_error"] <= 1e-5, name


def test_chip_residual_penalty_equals_the_digital_blocks(block, batch):
    """``resreg`` on the chip: the residual penalty's gradient at held (unsettled) states, in
    weight units, equals the digital block's at the same states to 1e-6 relative (the ideal
    analog field is the digital one in units of ``v_unit`` and ``tau``)."""
    from analogeq.stability import residual_penalty

    chip = realize_transformer(block, IDEAL, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    xs = batch[0]
    # held states away from the fixed point (a settle window far too short), so |F| is large
    z_star = free_phase(block, aq.EulerRelaxation(eps=0.25, T1=60, T2=1), xs).state
    z = z_star + 0.3 * jax.random.normal(jax.random.PRNGKey(4), z_star.shape, F64)
    pen = lambda m: residual_penalty(m, xs, z, 0.25)  # noqa: E731
    assert float(pen(chip)) == pytest.approx(float(pen(block)), rel=1e-9)
    assert float(pen(block)) > 1e-4
    analog = block_gradient(chip, eqx.filter_grad(pen)(chip))
    digital = eqx.filter_grad(pen)(block)
    digital = {n: getattr(digital, n) for n in PARAMETER_NAMES}
    out = compare_gradients(analog, digital)
    print("ideal analog vs digital resreg gradient:", out["overall"])
    assert out["overall"]["rel_error"] <= 1e-6


def test_block_parameters_and_gradient_units(block):
    """block_parameters reads the tiles back as the digital weights; block_gradient of a
    conductance gradient is the chain rule ``dL/dW = (G_ref / s) dL/dG+``, checked against
    autodiff of a loss through the read weights."""
    chip = realize_transformer(block, IDEAL, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    p = block_parameters(chip)
    assert tuple(p) == PARAMETER_NAMES
    for n in PARAMETER_NAMES:
        np.testing.assert_allclose(p[n], getattr(block, n), rtol=1e-12, atol=1e-14)
    c = {n: jax.random.normal(jax.random.PRNGKey(i), p[n].shape, F64) for i, n in enumerate(PARAMETER_NAMES)}
    loss = lambda m: sum(jnp.sum(c[n] * block_parameters(m)[n]) for n in PARAMETER_NAMES)
    g = block_gradient(chip, eqx.filter_grad(loss)(chip))
    for n in PARAMETER_NAMES:
        np.testing.assert_allclose(g[n], c[n], rtol=1e-10, atol=1e-12)
    with pytest.raises(TypeError, match="AnalogEqTransformer"):
        block_parameters(block)


def test_block_updater_writes_tiles_and_digital_parts(block):
    """One SGD update: on the ideal chip every parameter moves by exactly -lr g (tiles via
    conductance writes); on a 64-level chip the tiles move by whole levels (stochastic rounding,
    unbiased: the mean written change over many keys approaches -lr g)."""
    lr = 1e-3
    chip = realize_transformer(block, IDEAL, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    g = {n: jax.random.normal(jax.random.PRNGKey(i), v.shape, F64)
         for i, (n, v) in enumerate(block_parameters(chip).items())}
    up = BlockUpdater(optax.sgd(lr))
    new, _ = up.update(chip, g, up.init(chip), jax.random.PRNGKey(0))
    before, after = block_parameters(chip), block_parameters(new)
    for n in PARAMETER_NAMES:
        np.testing.assert_allclose(after[n] - before[n], -lr * g[n], rtol=1e-9, atol=1e-13)
    levels = ChipConfig.ideal().replace(**{"crossbar.n_levels": 64})
    chip = realize_transformer(block, levels, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    before = block_parameters(chip)["W_1"]
    step = chip.tiles["W_1"].scale * levels.crossbar.w_max / 63 / 2  # one level of either device
    write = jax.vmap(lambda k: block_parameters(up.update(chip, g, up.init(chip), k)[0])["W_1"] - before)
    moves = np.asarray(eqx.filter_jit(write)(jax.random.split(jax.random.PRNGKey(0), 400)))
    q = np.asarray(moves[0]) / step
    np.testing.assert_allclose(q, np.round(q), atol=1e-6)  # whole levels
    np.testing.assert_allclose(np.mean(moves, axis=0), -lr * g["W_1"], atol=0.25 * step)
    for n in DIGITAL:  # digital parts are numbers: exact
        np.testing.assert_allclose(block_parameters(new)[n] - getattr(block, n), -lr * g[n], rtol=1e-9, atol=1e-13)
    assert set(TILES) | set(DIGITAL) == set(PARAMETER_NAMES)


def _cli(run, *extra):
    from analogeq.cli import main

    return main(["train", "--model", "eqtransformer", "--task", "parity", "--bits", "8", "--cost",
                 "token_cross_entropy", "--d-model", "8", "--n-heads", "2", "--ffn-mult", "2",
                 "--hardware", "ideal", "--batch-size", "8", "--eval-every", "2", "--checkpoint-every",
                 "2", "--probe-every", "2", "--out", str(run), "--no-progress", *extra])


def test_mixed_precision_writes_keep_the_remainder_in_the_accumulator(block):
    """update 'mixed': changes below a level add up digitally; after three SGD steps of at most
    half a level each, W_1 has moved by whole levels (where ``|g| > 2/3``) and the written change
    plus the accumulator's remainder is exactly the requested ``-3 lr g``."""
    levels = ChipConfig.ideal().replace(**{"crossbar.n_levels": 64})
    chip = realize_transformer(block, levels, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    s = chip.tiles["W_1"].scale
    level = s * levels.crossbar.w_max / 63  # one level of the pair's weight, in weight units
    g = {n: jnp.zeros_like(v) for n, v in block_parameters(chip).items()}
    g["W_1"] = jax.random.uniform(jax.random.PRNGKey(1), g["W_1"].shape, F64, -1.0, 1.0)
    up = BlockUpdater(optax.sgd(level / 2), accumulate=True)
    state, new = up.init(chip), chip
    for k in range(3):
        new, state = up.update(new, g, state, jax.random.PRNGKey(k))
    moved = block_parameters(new)["W_1"] - block_parameters(chip)["W_1"]
    np.testing.assert_allclose(moved / level, np.round(moved / level), atol=1e-6)
    assert 0 < float(jnp.mean(moved != 0)) < 1  # some pairs crossed a level, some not yet
    np.testing.assert_allclose(moved + s * state["chi"]["W_1"], -1.5 * level * g["W_1"], atol=1e-9 * level)
    np.testing.assert_array_equal(block_parameters(new)["W_q"], block_parameters(chip)["W_q"])


def test_checkpoint_round_trips_the_trained_chip_and_optimizer_state(block, tmp_path):
    """A chip after one Adam write (64 levels, tiles at stage gains, per-physical-tile gains)
    and the optimizer state come back from a checkpoint bit for bit into a fresh realization."""
    from analogeq.checkpoint import load_checkpoint, save_checkpoint

    hw = NONIDEAL.replace(**{"crossbar.tile_rows": 4, "crossbar.tile_cols": 4, "crossbar.tile_gain": "auto"})
    chip = realize_transformer(block, hw, jax.random.PRNGKey(3), circuits=CIRCUITS, headroom=TRAIN_HEADROOM)
    up = BlockUpdater(optax.adam(1e-2))
    g = {n: jnp.ones_like(v) for n, v in block_parameters(chip).items()}
    trained, state = up.update(chip, g, up.init(chip), jax.random.PRNGKey(0))
    save_checkpoint(tmp_path, (trained, state), {"step": 1})
    fresh = realize_transformer(block, hw, jax.random.PRNGKey(3), circuits=CIRCUITS, headroom=TRAIN_HEADROOM)
    (back, back_state), meta = load_checkpoint(tmp_path, (fresh, up.init(fresh)), legacy=False)
    assert meta["step"] == 1
    for a, b in zip(jax.tree_util.tree_leaves((trained, state)), jax.tree_util.tree_leaves((back, back_state))):
        np.testing.assert_array_equal(a, b)
    assert back.tile_scale == trained.tile_scale and back.tiles["W_1"].gain is not None
    assert rel(block_parameters(back)["W_1"], block_parameters(chip)["W_1"]) > 1e-4  # it was trained


@pytest.mark.slow
def test_cli_trains_on_the_ideal_chip_and_resumes_exactly(tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _cli(full, "--steps", "4") == 0
    assert "chip (ideal)" in capsys.readouterr().out
    assert _cli(part, "--steps", "2") == 0
    assert _cli(part, "--steps", "4", "--resume") == 0
    a = [json.loads(line) for line in (full / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a if r["kind"] == "train"] == [1, 2, 3, 4]
    assert a == b  # the resumed run is the uninterrupted one, record for record
    probes = [r["grad_cosine"] for r in a if "grad_cosine" in r]
    print("probe cosines (EP vs the block's own implicit adjoint):", probes)
    assert len(probes) == 3 and min(probes) >= 0.9999
    assert (full / "checkpoint.eqx").exists() and json.loads((full / "summary.json").read_text())["steps"] == 4


def test_chip_options_of_the_block_are_refused_with_a_reason(tmp_path):
    from analogeq.assembly import build_analog, check_chip_options
    from analogeq.config import TrainConfig

    base = {"model": "eqtransformer", "task": "parity", "cost": "token_cross_entropy", "d_model": 8,
            "n_heads": 2, "hardware": "ideal"}
    # pulsed devices and every pulse scheme are honoured (tests/test_pulsed_block.py)
    check_chip_options(TrainConfig(**base, device="ideal", update="tiki-taka", optimizer="sgd"))
    check_chip_options(TrainConfig(**base, update="mixed"))
    with pytest.raises(ConfigError, match="'bptt' differentiates the Euler unroll"):
        check_chip_options(TrainConfig(**base, estimator="bptt"))
    for name in ("weight_cap", "ema", "jacreg"):
        with pytest.raises(ValueError, match=f"cannot honour {name}"):
            build_analog(TrainConfig(**base, **{name: 0.5}), "ideal")
    from analogeq.fleet import build_chips
    from analogeq.transformer_chip import FLOAT32_RTOL, relaxation_for

    # float32: a solver tolerance the dtype resolves; float64: the chip's own derived one
    assert relaxation_for(TrainConfig(**base), ChipConfig.ideal()).rtol == FLOAT32_RTOL
    assert relaxation_for(TrainConfig(**base, dtype="float64"), ChipConfig.ideal()).rtol is None

    with pytest.raises(ValueError, match="one run each"):
        build_chips(TrainConfig(**base), [0, 1])
    with pytest.raises(ConfigError, match="'leaky' model only, or the 'eqtransformer' block"):
        TrainConfig(hardware="ideal", model="hopfield")
