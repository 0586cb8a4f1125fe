"""Energy and latency of a training step of the analog transformer block (analogeq.energy.block).

The tile drives are checked against the digital block's own functions (on the ideal chip the
analog circuits compute them exactly), the read power against the untransposed
``Tile.read_power`` of the transposed conductances position by position, and the breakdown's
counts and totals against their definitions.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analogeq.energy import StepEnergy
from analogeq.energy.block import block_pulses, block_read_power, block_step_breakdown
from analogeq.energy.breakdown import ENERGY_KEYS, LATENCY_KEYS
from analogeq.ep import EP
from analogeq.ep.recipe import WithReadoutGradient
from analogeq.hardware import ChipConfig, ChipRelaxation
from analogeq.hardware.tile import Tile
from analogeq.hardware.transformer import TILES, realize_transformer
from analogeq.hardware.transformer_updates import TRAIN_HEADROOM
from analogeq.models.transformer import EqTransformer, gelu_tanh, layer_norm
from analogeq.costs import make_cost

jax.config.update("jax_enable_x64", True)
V, T, D, H, B = 5, 6, 8, 2, 3
WINDOWED = ChipConfig.preset("ideal-windowed")


@pytest.fixture(scope="module")
def setup():
    block = EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    chip = realize_transformer(block, WINDOWED, jax.random.PRNGKey(3), headroom=TRAIN_HEADROOM)
    xs = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, V)
    ys = jax.random.randint(jax.random.PRNGKey(2), (B, T), 0, V)
    z = 0.5 * jax.random.normal(jax.random.PRNGKey(4), (T, D), jnp.float64)
    return block, chip, xs, ys, z


def test_tile_drives_are_the_digital_blocks_signals(setup):
    block, chip, _, _, z = setup
    d = chip.tile_drives(z)
    h1 = layer_norm(z, block.ln1_g, block.ln1_b)
    h2 = layer_norm(z, block.ln2_g, block.ln2_b)
    for name in ("W_q", "W_k", "W_v"):
        np.testing.assert_allclose(d[name], h1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["W_1"], h2, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d["W_2"], gelu_tanh(h2 @ block.W_1 + block.b_1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d["W_o"] @ block.W_o, block.attention(h1), rtol=1e-10, atol=1e-12)
    assert d["b_1"].shape == (T, 1) and float(jnp.min(d["b_1"])) == 1.0


def test_read_power_is_every_replica_of_every_tile(setup):
    """One replica per position: the sum over positions and tiles of Tile.read_power with the
    conductances transposed (rows driven)."""
    _, chip, _, _, z = setup
    vu = chip.config.neuron.v_unit
    drives = chip.tile_drives(z)
    want = 0.0
    for name in TILES:
        tile = chip.tiles[name]
        gp, gn = (tile.g_pos[:, None], tile.g_neg[:, None]) if tile.g_pos.ndim == 1 else (tile.g_pos, tile.g_neg)
        flipped = Tile(g_pos=gp.T, g_neg=gn.T, lo=tile.lo, hi=tile.hi)
        want += sum(float(flipped.read_power(drives[name][t] * vu)) for t in range(T))
    assert float(block_read_power(chip, z)) == pytest.approx(want, rel=1e-12)
    assert want > 0


def test_step_breakdown_counts_and_totals(setup):
    _, chip, xs, ys, _ = setup
    est = WithReadoutGradient(EP(beta=0.05, kind="centered", correction="asym")).estimate(
        chip, make_cost("token_cross_entropy"), ChipRelaxation(WINDOWED), xs, ys, gate=False,
        key=jax.random.PRNGKey(5))
    # one device of tile W_q written on a continuous-conductance chip: 1 pulse per replica
    moved = eqx.tree_at(lambda c: c.tiles["W_q"].g_pos, chip, chip.tiles["W_q"].g_pos.at[0, 0].add(1e-6))
    pulses = block_pulses(chip, moved)
    out = block_step_breakdown(chip, (0.05, -0.05), est, pulses)
    en, nc, dyn = WINDOWED.energy, WINDOWED.neuron, WINDOWED.dynamics
    nodes = T * D
    assert out["pulses"] == T  # one device, one pulse, T replicas
    assert out["pulse_rounds"] == 1
    t_free = float(est.free.time[0]) * nc.tau
    assert t_free == pytest.approx(dyn.settle_time, rel=1e-9)
    assert float(out["settle_s"]) == pytest.approx(B * (dyn.settle_time + 2 * dyn.nudged_window), rel=1e-9)
    loop = 2 * B * np.ceil(dyn.nudged_window / en.adc_time)
    assert float(out["adc_conversions"]) == pytest.approx(B * 3 * nodes + nodes * loop)
    assert float(out["dac_conversions"]) == pytest.approx(B * nodes + nodes * loop)
    assert float(out["energy_J"]) == pytest.approx(sum(float(out[k]) for k in ENERGY_KEYS), rel=1e-12)
    assert float(out["latency_s"]) == pytest.approx(sum(float(out[k]) for k in LATENCY_KEYS), rel=1e-12)
    # the hook reports the same totals for the block
    hook = StepEnergy((0.05, -0.05))(chip, moved, None, None, est)
    assert float(hook["energy_J"]) == pytest.approx(float(out["energy_J"]), rel=1e-12)
