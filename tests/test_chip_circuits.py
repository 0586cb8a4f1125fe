"""The chip's ``[circuits]`` section (issue 16): the equilibrium-transformer block's circuit
mismatch comes from the chip description, so ``analogeq train --model eqtransformer --hardware
chip.toml`` realizes it; a layered chip, which has none of these circuits, ignores the section."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analogeq.assembly import build_parts
from analogeq.config import TrainConfig
from analogeq.hardware import ChipConfig, CircuitConfig
from analogeq.training import make_train_step

# Percent-level mismatch large enough that a 2 x 8 x 8 x 4 multiplier array measures it well.
CIRCUITS_TOML = """\
[circuits]
mult_gain_sigma = 0.05
mult_offset_sigma = 2e-3
softmax_gain_sigma = 0.1
norm_gain_sigma = 0.02
"""
SIGMA_GAIN, SIGMA_OFFSET, SIGMA_LOG_EXP = 0.05, 2e-3, 0.1


def _cfg(**changes) -> TrainConfig:
    base = dict(model="eqtransformer", task="parity", bits=8, cost="token_cross_entropy", d_model=8,
                n_heads=2, ffn_mult=2, batch_size=4, steps=1, eval_every=1, probe_every=1)
    return TrainConfig(**{**base, **changes})


@pytest.fixture(scope="module")
def chip_toml(tmp_path_factory):
    path = tmp_path_factory.mktemp("chip") / "chip.toml"
    path.write_text(CIRCUITS_TOML)
    return path


def _std_within(values, sigma: float, what: str) -> None:
    """The sample std of ``values`` (n draws of N(0, sigma^2)) is sigma within 5 standard errors
    of a std (``sigma / sqrt(2 (n - 1))``) and their mean 0 within 5 ``sigma / sqrt(n)``."""
    v = np.asarray(values, np.float64).ravel()
    n = v.size
    std, mean = float(np.std(v, ddof=1)), float(np.mean(v))
    print(f"{what}: n = {n}, std {std:.5g} (configured {sigma:g}), mean {mean:+.3g}")
    assert abs(std - sigma) <= 5 * sigma / math.sqrt(2 * (n - 1)), (what, std, sigma)
    assert abs(mean) <= 5 * sigma / math.sqrt(n), (what, mean)


def test_chip_toml_circuits_realize_the_configured_mismatch_and_train(chip_toml):
    parts = build_parts(_cfg(), chip_toml)
    chip = parts.model
    assert chip.config.circuits == ChipConfig.from_toml(chip_toml).circuits == chip.circuits
    # 2 x (H, L, L, d_h) = 2 x 2 x 8 x 8 x 4 = 1024 multipliers: the std to ~2.2 % (1 s.e.)
    _std_within(np.concatenate([np.ravel(chip.qk_gain - 1), np.ravel(chip.pv_gain - 1)]), SIGMA_GAIN,
                "multiplier gain - 1")
    vu = chip.config.neuron.v_unit
    _std_within(np.concatenate([np.ravel(chip.qk_offset), np.ravel(chip.pv_offset)]) * vu, SIGMA_OFFSET,
                "multiplier offset [V]")
    _std_within(np.log(np.asarray(chip.sm_gain)), SIGMA_LOG_EXP, "exponentiator log gain")
    assert float(jnp.max(jnp.abs(chip.qk_noise))) == 0.0  # mult_noise = 0: no per-settle draw

    step = make_train_step(parts, gate=False)
    xs, ys = jnp.asarray(parts.data.x_train[:4]), jnp.asarray(parts.data.y_train[:4])
    new, _, metrics = step(chip, parts.updater.init(chip), xs, ys, jax.random.PRNGKey(0))
    assert math.isfinite(float(metrics["loss"]))
    assert float(jnp.max(jnp.abs(new.tok - chip.tok))) > 0  # the step wrote an update
    np.testing.assert_array_equal(new.qk_gain, chip.qk_gain)  # mismatch is the chip's, not trained
    assert new.circuits == chip.circuits


def test_ideal_chip_has_exact_circuits():
    chip = build_parts(_cfg(), "ideal").model
    assert chip.circuits == CircuitConfig()
    for gain in (chip.qk_gain, chip.pv_gain, chip.sm_gain, chip.ln1_gain, chip.q_gain):
        np.testing.assert_array_equal(gain, 1.0)
    np.testing.assert_array_equal(chip.qk_offset, 0.0)
    np.testing.assert_array_equal(chip.pv_offset, 0.0)


def test_layered_chip_ignores_the_section(chip_toml):
    """A leaky network on a chip with [circuits] is the same chip instance (every array) as on
    the ideal chip: the section describes circuits a layered chip does not have."""
    cfg = TrainConfig(hidden=(6,), steps=1, batch_size=4)
    with_section, without = build_parts(cfg, chip_toml).model, build_parts(cfg, "ideal").model
    assert with_section.config.circuits != without.config.circuits
    arrays = lambda m: jax.tree_util.tree_leaves(eqx.filter(m, eqx.is_array))
    for a, b in zip(arrays(with_section), arrays(without), strict=True):
        np.testing.assert_array_equal(a, b)
