"""IR drop on the chip (crossbar.r_segment / r_drive / r_sense): each physical tile's read is
its resistive network's (checked against a dense nodal solve), a settle solves the wires once
and reaches the fixed point of the wired field, and the update senses device voltages, which
approach the exact gradient (autodiff through the networks) as the wire resistance vanishes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import fsolve
from test_wires import nodal_reference

import analogeq as aq
from analogeq.ep.gradients import compare_gradients, force_gradient
from analogeq.hardware import ChipConfig, ChipRelaxation, realize
from analogeq.spice.netlist import check_block

F64 = jnp.float64
SIZES = (5, 7, 6, 3)
TILED = {"crossbar.tile_rows": 3, "crossbar.tile_cols": 4}


def wired(r_segment, r_drive=100.0, r_sense=50.0, **more):
    return ChipConfig.preset("realistic").replace(**TILED, **{
        "neuron.amp_pole_tau": 0.0, "crossbar.read_noise": 0.0, "crossbar.thermal_noise": False,
        "neuron.kTC_noise": False, "crossbar.r_segment": r_segment, "crossbar.r_drive": r_drive,
        "crossbar.r_sense": r_sense, **more})


@pytest.fixture(scope="module")
def model():
    return aq.LeakyNetwork(SIZES, key=jax.random.PRNGKey(0), asymmetry=0.6, gain=0.8, dtype=F64)


@pytest.fixture(scope="module")
def batch():
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, SIZES[0]), F64)
    ss = 0.5 * jax.random.normal(jax.random.PRNGKey(2), (4, sum(SIZES[1:])), F64)
    a = jax.random.normal(jax.random.PRNGKey(3), (4, sum(SIZES[1:])), F64)
    return xs, ss, a


def test_each_physical_tile_reads_as_its_nodal_network(model):
    chip = realize(model, wired(20.0), jax.random.PRNGKey(1))
    cb, t = chip.config.crossbar, chip.forward[0]  # 7 x 5 on 3 x 4 tiles: a ragged 3 x 2 grid
    u = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (5,), F64))
    gp, gn = (np.pad(np.asarray(g), ((0, 2), (0, 3))) for g in (t.g_pos, t.g_neg))  # empty cells
    up = np.pad(u, (0, 3))
    ref = np.zeros(9)
    for r in range(3):
        for c in range(2):
            blk = np.s_[3 * r:3 * r + 3, 4 * c:4 * c + 4]
            ip = nodal_reference(gp[blk], up[None, 4 * c:4 * c + 4], 20.0, 100.0, 50.0)[2][0]
            im = nodal_reference(gn[blk], up[None, 4 * c:4 * c + 4], 20.0, 100.0, 50.0)[2][0]
            ref[3 * r:3 * r + 3] += (ip - im) / cb.G_ref
    got = np.asarray(t.read(jnp.asarray(u), cb))
    np.testing.assert_allclose(got, ref[:7], rtol=1e-9, atol=1e-12)
    ideal = np.asarray(t.weights(cb)) @ u
    assert np.max(np.abs(got - ideal)) > 1e-3  # the IR drop is there
    # device voltages: the drive-node minus sense-node voltages of the same networks
    vp, _ = t.device_voltages(jnp.asarray(u), cb)
    d, s, _, _ = nodal_reference(gp[0:3, 4:8], up[None, 4:8], 20.0, 100.0, 50.0)
    np.testing.assert_allclose(np.asarray(vp)[0:3, 4:5], (d - s)[0][:, :1], rtol=1e-9, atol=1e-12)


def test_a_settle_solves_the_wires_once_and_reaches_the_wired_fixed_point(model):
    hw = wired(20.0, **{"dynamics.settle_time": 3e-6})
    chip = realize(model, hw, jax.random.PRNGKey(1))
    x = jax.random.normal(jax.random.PRNGKey(5), (SIZES[0],), F64)
    solved = chip.for_settle()
    assert all(t.wires_solved for t in solved.tiles()) and not any(t.wires_solved for t in chip.tiles())
    s = jnp.zeros(chip.state_shape, F64)
    np.testing.assert_allclose(solved.force(s + 0.3, x), chip.force(s + 0.3, x), rtol=1e-12, atol=1e-14)
    free = aq.ep.free_phase(chip, ChipRelaxation(hw), x[None])
    ref = fsolve(lambda v: np.asarray(chip.force(jnp.asarray(v), x)), np.zeros(chip.state_shape),
                 fprime=lambda v: np.asarray(jax.jacfwd(lambda q: chip.force(q, x))(jnp.asarray(v))), xtol=1e-13)
    np.testing.assert_allclose(free.state[0], ref, rtol=1e-6, atol=1e-8)


def test_the_sensed_update_is_exact_without_wires_and_first_order_close_with_them(model, batch):
    xs, ss, a = batch
    ideal = realize(model, wired(0.0, 0.0, 0.0), jax.random.PRNGKey(1))
    assert not ideal.config.crossbar.wired
    same = compare_gradients(ideal.update_gradient(xs, ss, a), force_gradient(ideal, xs, ss, a))["overall"]
    assert same["rel_error"] == 0.0
    errs = []
    for r in (5.0, 10.0):
        chip = realize(model, wired(r, r, r), jax.random.PRNGKey(1))
        got = chip.weight_gradient(chip.update_gradient(xs, ss, a))
        exact = chip.weight_gradient(force_gradient(chip, xs, ss, a))
        errs.append(compare_gradients(got, exact)["overall"]["rel_error"])
    # what the sensed rule leaves out (a device moving its neighbours' voltages) is O(G r)
    assert 0 < errs[0] < 0.01 and errs[1] / errs[0] == pytest.approx(2.0, rel=0.1), errs


def test_ep_senses_while_the_implicit_adjoint_stays_exact(model):
    """EP's update is the chip's sensed gradient of its nudged contrast; the implicit adjoint
    (the reference) is the exact gradient through the wire networks. With the ADC ideal and the
    phases settled, the two differ by the sensing approximation and EP's finite nudge only."""
    hw = wired(50.0, **{"dynamics.settle_time": 2e-6, "dynamics.nudged_time": 2e-6, "periphery.adc_bits": 0})
    chip = realize(model, hw, jax.random.PRNGKey(1))
    # a batch of 4, as in the test above: the eager sensed and force gradients below reuse the
    # operations it compiled for that shape
    xs = jax.random.normal(jax.random.PRNGKey(6), (4, SIZES[0]), F64)
    ys = jax.nn.one_hot(jnp.array([0, 1, 2, 0]), 3, dtype=F64)
    cost, relax = aq.make_cost("squared_error"), ChipRelaxation(hw)
    ep = aq.EP(beta=0.01, kind="centered", correction="asym").estimate(chip, cost, relax, xs, ys, gate=False)
    ex = aq.ImplicitAdjoint().estimate(chip, cost, relax, xs, ys, gate=False)
    leaves = lambda g: jax.tree.leaves(chip.weight_gradient(g))  # noqa: E731
    for a, b in zip(leaves(ep.grads), leaves(chip.update_gradient(xs, ep.at, ep.weighted))):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(leaves(ex.grads), leaves(force_gradient(chip, xs, ex.at, ex.weighted))):
        np.testing.assert_array_equal(a, b)
    c = compare_gradients(chip.weight_gradient(ep.grads), chip.weight_gradient(ex.grads))["overall"]
    assert 0.999 < c["cosine"] < 1 - 1e-9, c


def test_spice_export_refuses_wired_chips(model):
    with pytest.raises(ValueError, match="wire resistance"):
        check_block(realize(model, wired(2.5), jax.random.PRNGKey(1)))
