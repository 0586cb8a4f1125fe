"""The one crossbar read (analogeq.hardware.Tile): it equals a float64 numpy reference of
``(G+ - G-) / G_ref @ u``, and the chip, the analog transformer, the energy model, the drift
calibration and the netlist writer all form their crossbar products from it."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.energy import chip_read_energy, tile_read_energy
from analogeq.hardware import ChipConfig, Tile, realize
from analogeq.hardware.drift import _calibration
from analogeq.hardware.transformer import realize_transformer
from analogeq.models.transformer import EqTransformer
from analogeq.spice.netlist import _columns

F64 = jnp.float64
CB = ChipConfig.preset("realistic").crossbar


def _tile(key, shape, scale=1.0) -> Tile:
    kp, kn = jax.random.split(key)
    gp = jax.random.uniform(kp, shape, F64, CB.G_min, CB.G_max)
    gn = jax.random.uniform(kn, shape, F64, CB.G_min, CB.G_max)
    lo, hi = jnp.full((2, *shape), CB.G_min, F64), jnp.full((2, *shape), CB.G_max, F64)
    return Tile(g_pos=gp, g_neg=gn, lo=lo, hi=hi, scale=scale)


def _ref(tile: Tile, scale: float = 1.0) -> np.ndarray:
    """The numpy reference weights ``scale (G+ - G-) / G_ref`` (float64)."""
    return scale * (np.asarray(tile.g_pos, np.float64) - np.asarray(tile.g_neg, np.float64)) / CB.G_ref


@pytest.fixture(scope="module")
def chip():
    """A two-hidden-layer chip with mismatch (float64): forward, feedback and bias tiles."""
    model = aq.LeakyNetwork((5, 7, 6, 3), key=jax.random.PRNGKey(0), asymmetry=0.6, gain=0.8, dtype=F64)
    hw = ChipConfig.preset("realistic").replace(**{"neuron.amp_pole_tau": 0.0})
    return realize(model, hw, jax.random.PRNGKey(1))


def _state(chip, seed=3):
    x = jax.random.normal(jax.random.PRNGKey(seed), (chip.sizes[0],), F64)
    s = 0.7 * jax.random.normal(jax.random.PRNGKey(seed + 1), chip.state_shape, F64)
    return x, s


def test_read_equals_numpy_reference():
    t = _tile(jax.random.PRNGKey(0), (6, 4))
    u = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (4,), F64))
    np.testing.assert_allclose(t.read(jnp.asarray(u), CB), _ref(t) @ u, rtol=1e-13, atol=1e-15)
    # transposed read: rows driven, columns sensed, batched over leading axes
    v = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (3, 6), F64))
    np.testing.assert_allclose(t.read_t(jnp.asarray(v), CB), v @ _ref(t), rtol=1e-13, atol=1e-15)
    # a single drive line (bias) at u: each entry is its own sense line
    b = _tile(jax.random.PRNGKey(3), (6,))
    np.testing.assert_allclose(b.read(jnp.array([0.5], F64), CB), 0.5 * _ref(b), rtol=1e-13)
    np.testing.assert_array_equal(b.read(jnp.ones(1, F64), CB), b.weight(CB.G_ref))
    # the stage gain scales the read and nothing else
    s = _tile(jax.random.PRNGKey(0), (6, 4), scale=2.5)
    np.testing.assert_allclose(s.read(jnp.asarray(u), CB), _ref(s, 2.5) @ u, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(s.weight(CB.G_ref), t.weight(CB.G_ref))


def test_transposed_read_is_the_transpose_autodiff_takes():
    """The AsymEP correction's ``J^T v`` on a chip is a transposed read: the vjp of a forward
    read is exactly :meth:`Tile.read_t`."""
    t = _tile(jax.random.PRNGKey(4), (5, 7))
    u = jax.random.normal(jax.random.PRNGKey(5), (7,), F64)
    a = jax.random.normal(jax.random.PRNGKey(6), (5,), F64)
    _, vjp = jax.vjp(lambda w: t.read(w, CB), u)
    np.testing.assert_allclose(vjp(a)[0], t.read_t(a, CB), rtol=1e-14, atol=1e-16)


def test_read_noise_is_one_draw_per_read():
    cb = ChipConfig.preset("realistic").replace(**{"crossbar.read_noise": 0.1}).crossbar
    t = _tile(jax.random.PRNGKey(7), (40, 30))
    u = jnp.ones(30, F64)
    key = jax.random.PRNGKey(8)
    noisy = t.read(u, cb, key)
    # the same key gives the same read; it is the read of the tile as that draw sees it
    np.testing.assert_array_equal(noisy, t.read(u, cb, key))
    np.testing.assert_array_equal(noisy, t.with_read_noise(key, 0.1).read(u, cb))
    # each device scaled by 1 + sigma xi: G+ and G- fluctuate independently
    kp, kn = jax.random.split(key)
    xp, xn = (np.asarray(jax.random.normal(k, (40, 30), F64)) for k in (kp, kn))
    gp, gn = np.asarray(t.g_pos) * (1 + 0.1 * xp), np.asarray(t.g_neg) * (1 + 0.1 * xn)
    np.testing.assert_allclose(noisy, (gp - gn) @ np.ones(30) / CB.G_ref, rtol=1e-12)
    assert not np.allclose(noisy, t.read(u, cb), rtol=1e-3)


def test_chip_drive_is_the_tile_reads(chip):
    x, s = _state(chip)
    v = chip.voltages(s)
    drive = np.asarray(chip.drive(v, x))
    # numpy reference from the conductances and the signals driving each tile's columns
    u = [np.asarray(a) for a in chip.layers(chip.rho(v))]
    below = [np.asarray(chip.dac(x))] + u[:-1]
    want = []
    for l in range(len(u)):
        d = _ref(chip.forward[l]) @ below[l] + _ref(chip.biases[l])
        if l < len(chip.feedback):
            d = d + _ref(chip.feedback[l]) @ u[l + 1]
        want.append(d)
    np.testing.assert_allclose(drive, np.concatenate(want), rtol=1e-12, atol=1e-14)
    # and it is the sum of the tiles' reads over Chip.tile_inputs, bitwise
    reads = [t.read(i, chip.config.crossbar) for t, i in zip(chip.tiles(), chip.tile_inputs(x, v))]
    nf, nb = len(chip.forward), len(chip.feedback)
    fwd, fb, bias = reads[:nf], reads[nf:nf + nb], reads[nf + nb:]
    sums = [fwd[l] + bias[l] + (fb[l] if l < nb else 0) for l in range(nf)]
    np.testing.assert_array_equal(drive, np.concatenate(sums))
    # a read-noise phase is the tiles' reads with per-tile keys (Chip.sample_phase)
    cb = chip.config.crossbar
    assert cb.read_noise > 0
    key = jax.random.PRNGKey(9)
    keys = jax.random.split(key, len(chip.tiles()))
    phase = chip.sample_phase(key)
    for k, (t, i) in enumerate(zip(chip.tiles(), chip.tile_inputs(x, v))):
        np.testing.assert_array_equal(phase.tiles()[k].read(i, cb), t.read(i, cb, keys[k]))


def test_energy_is_the_tile_read_power(chip):
    x, s = _state(chip, seed=11)
    vu, window = chip.config.neuron.v_unit, 3e-7
    got = float(chip_read_energy(chip, x, s, window))
    want = 0.0
    for t, i in zip(chip.tiles(), chip.tile_inputs(x, chip.voltages(s))):
        g = np.asarray(t.g_pos, np.float64) + np.asarray(t.g_neg, np.float64)
        want += float(np.sum(g * (np.asarray(i) * vu) ** 2)) * window
        np.testing.assert_array_equal(tile_read_energy(t, i * vu, window), t.read_power(i * vu) * window)
    assert got == pytest.approx(want, rel=1e-13)
    assert got > 0


def test_netlist_columns_carry_the_tile_read(chip):
    """Each neuron's column in the netlist holds exactly the pairs whose currents the chip's
    drive sums: ``sum (G+ - G-) V_line / G_ref`` over them equals :meth:`Chip.drive`."""
    x, s = _state(chip, seed=21)
    v = chip.voltages(s)
    x_volts = np.asarray(chip.dac(x), np.float64)
    u = np.asarray(chip.rho(v), np.float64)
    line = {f"x{j}": x_volts[j] for j in range(chip.sizes[0])} | {f"u{k}": u[k] for k in range(chip.n_neurons)}
    line["b"] = 1.0
    cols = _columns(chip, x_volts)
    assert len(cols) == chip.n_neurons
    got = np.array([sum((gp - gn) * line[name] for name, gp, gn in pairs) / CB.G_ref for pairs in cols])
    np.testing.assert_allclose(got, np.asarray(chip.drive(v, x)), rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="one line per column"):
        chip.forward[0].row_pairs(["x0"])


def test_drift_calibration_reads_every_row(chip):
    cal = np.asarray(_calibration(chip))
    want = np.concatenate([_ref(t).reshape(t.g_pos.shape[0], -1).sum(axis=1) for t in chip.tiles()])
    np.testing.assert_allclose(cal, want, rtol=1e-12, atol=1e-14)


def test_transformer_products_are_transposed_tile_reads():
    block = EqTransformer(5, 4, 8, 2, key=jax.random.PRNGKey(0), dtype=F64)
    hw = ChipConfig.preset("realistic").replace(**{"crossbar.read_noise": 0.0})
    big = eqx.tree_at(lambda b: b.W_1, block, 40.0 * block.W_1)  # needs a stage gain > 1
    chip = realize_transformer(big, hw, jax.random.PRNGKey(2))
    assert chip.tiles["W_1"].scale > 1 and chip.tile_scale[4] == chip.tiles["W_1"].scale
    h = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (4, 8), F64))
    w = {n: _ref(t, t.scale) for n, t in chip.tiles.items()}
    pre = h @ w["W_1"] + w["b_1"]
    want = np.asarray(chip.gelu(jnp.asarray(pre))) @ w["W_2"] + w["b_2"]
    np.testing.assert_allclose(chip.ffn(jnp.asarray(h)), want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(chip.read("W_q", jnp.asarray(h)), h @ w["W_q"], rtol=1e-12, atol=1e-14)
    # the thermal-noise sense-line conductance of the node-driving tiles is per column there
    np.testing.assert_allclose(chip.tiles["W_o"].line_conductance(transposed=True),
                               np.sum(np.asarray(chip.tiles["W_o"].g_pos) + np.asarray(chip.tiles["W_o"].g_neg), 0))


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_weight_gradient_is_the_chain_rule_of_the_read(scale):
    """A conductance gradient of a loss through the read, mapped by
    :meth:`Tile.weight_gradient`, equals the gradient w.r.t. the weights the read applies."""
    t = _tile(jax.random.PRNGKey(12), (4, 3), scale=scale)
    u = jax.random.normal(jax.random.PRNGKey(13), (3,), F64)
    y = jax.random.normal(jax.random.PRNGKey(14), (4,), F64)
    loss_g = lambda tile: jnp.sum((tile.read(u, CB) - y) ** 2)
    dw = jax.grad(lambda w: jnp.sum((w @ u - y) ** 2))(t.weights(CB))
    np.testing.assert_allclose(t.weight_gradient(jax.grad(loss_g)(t), CB), dw, rtol=1e-12, atol=1e-14)
