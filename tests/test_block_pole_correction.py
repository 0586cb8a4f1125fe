"""The AsymEP correction on the analog block with an amplifier pole acts on the nodes.

With a pole the block's state is (nodes z, stage outputs y), the stage ten times faster than the
node (``tau_a = tau / 10`` in ``realistic``). The correction ``-2 A (s - s*)`` of the full field
has couplings of size ``|dBranches/dz| tau / tau_a``, integrated explicitly by the exact-decay
step: at the default step the nudged phases diverged. The block corrects the reduced node field
(``AnalogEqTransformer.correction_force``) instead: the node part of the adjoint is the reduced
field's adjoint, so EP stays exact, and the nudged settle is stable at the default step.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import analogeq as aq
from analogeq.costs import cost_grad_s
from analogeq.ep import EP, ImplicitAdjoint, compare_gradients
from analogeq.hardware import ChipConfig, ChipRelaxation
from analogeq.hardware.transformer import CircuitConfig, realize_transformer
from analogeq.hardware.transformer_updates import TRAIN_HEADROOM, InWeightUnits
from analogeq.models.transformer import EqTransformer

F64 = jnp.float64
V, T, D, H, B = 5, 6, 8, 2, 3
COST = aq.make_cost("token_cross_entropy")
CIRCUITS = CircuitConfig(mult_gain_sigma=0.02, mult_offset_sigma=2e-3, softmax_gain_sigma=0.05,
                         norm_gain_sigma=0.02)
TAU = 1e-8
# realistic without noise or ADC, read at fixed windows by the exact-decay integrator at its
# default step: 60 tau free, 20 tau nudged, amplifier pole tau / 10
WINDOWED = ChipConfig.preset("realistic").replace(**{
    "crossbar.read_noise": 0.0, "crossbar.thermal_noise": False, "neuron.kTC_noise": False,
    "noise.temperature": 0.0, "periphery.adc_bits": 0, "dynamics.settle_time": 60 * TAU,
    "dynamics.nudged_time": 20 * TAU, "dynamics.average_window": 0.0, "dynamics.steady_tol": 1e-6,
    "dynamics.integrator": "exact-decay", "dynamics.sde_dt": None})


@pytest.fixture(scope="module")
def setup():
    block = EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)
    chip = realize_transformer(block, WINDOWED, jax.random.PRNGKey(3), circuits=CIRCUITS,
                               headroom=TRAIN_HEADROOM)
    xs = jax.random.randint(jax.random.PRNGKey(1), (B, T), 0, V)
    ys = jax.random.randint(jax.random.PRNGKey(2), (B, T), 0, V)
    assert chip.has_pole and chip.config.neuron.amp_pole_tau / chip.tau == pytest.approx(0.1)
    return chip, xs, ys


def estimate(est, chip, xs, ys):
    return eqx.filter_jit(lambda m: est.estimate(m, COST, ChipRelaxation(WINDOWED), xs, ys, gate=False))(chip)


def test_the_node_adjoint_is_the_reduced_fields_adjoint(setup):
    """Independent check of the reduction: at the free state, the node part of the full
    field's exact adjoint solves the reduced node field's adjoint equation
    ``J_red^T lambda_z = -dC/dz`` (dense Jacobian of ``correction_force``) to 1e-8."""
    chip, xs, ys = setup
    ref = estimate(ImplicitAdjoint(tol=1e-13), chip, xs, ys)
    for b in range(B):
        s, lam = ref.free.state[b], ref.contrast[b]
        node = lambda z: chip.correction_force(jnp.stack([z, s[1]]), xs[b])[0]  # noqa: E731
        j_red = jax.jacfwd(node)(s[0]).reshape(T * D, T * D)
        g = cost_grad_s(chip, COST, s, ys[b])[0].ravel()
        lhs = j_red.T @ lam[0].ravel()
        assert float(jnp.linalg.norm(lhs + g) / jnp.linalg.norm(g)) <= 1e-8
        # the reduced field has no stage rows
        assert float(jnp.max(jnp.abs(chip.correction_force(s, xs[b])[1]))) == 0.0


def test_windowed_asym_ep_with_a_pole_settles_and_matches_the_implicit_adjoint(setup):
    """At the exact-decay default step the nudged phases settle (residual <= 1e-4) and AsymEP
    with the reduced correction matches the chip's own implicit adjoint: cosine >= 0.9999.
    (On the d = 32 parity block of ``realistic``, with read noise and the ADC, the full
    field's correction left 16 of 32 nudged phases at residuals 5.8-16 at initialization; the
    reduced one leaves none: ``benchmarks/bench_transformer_chip.py``, docs/results.md.)"""
    chip, xs, ys = setup
    ep = InWeightUnits(EP(beta=1e-3, kind="centered", correction="asym"))
    got = estimate(ep, chip, xs, ys)
    ref = estimate(InWeightUnits(ImplicitAdjoint(tol=1e-13)), chip, xs, ys)
    print("nudged residual", got.nudged_residual, "free", got.free.residual)
    assert float(jnp.max(got.free.residual)) <= 1e-4
    assert float(jnp.max(got.nudged_residual)) <= 1e-4
    out = compare_gradients(got.grads, ref.grads)
    print("reduced correction vs implicit:", out["overall"])
    assert out["overall"]["cosine"] >= 0.9999


def test_a_block_with_a_pole_settles_at_the_pole_step_unless_the_chip_sets_one():
    """``relaxation_for``: the block's settles step at ``POLE_STEP`` tau with a pole and no
    ``dynamics.sde_dt``; a chip's own step, and chips without a pole, are left as they are."""
    from analogeq.config import TrainConfig
    from analogeq.hardware.integrators import DEFAULT_STEP
    from analogeq.transformer_chip import POLE_STEP, relaxation_for

    cfg = TrainConfig(model="eqtransformer", task="parity", cost="token_cross_entropy", bits=4,
                      d_model=8, n_heads=2)
    real = ChipConfig.preset("realistic")
    assert real.dynamics.sde_dt is None and real.neuron.amp_pole_tau > 0
    assert relaxation_for(cfg, real).sde_dt() == pytest.approx(POLE_STEP)
    assert relaxation_for(cfg, real).pre_step() == pytest.approx(POLE_STEP)
    own = real.replace(**{"dynamics.sde_dt": 0.3 * TAU})
    assert relaxation_for(cfg, own).sde_dt() == pytest.approx(0.3)
    no_pole = real.replace(**{"neuron.amp_pole_tau": 0.0})
    assert relaxation_for(cfg, no_pole).sde_dt() == pytest.approx(DEFAULT_STEP)
