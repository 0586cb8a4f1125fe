"""Explicit Jacobian products of a model's field (float64): ``jvp_force`` = ``J v`` and
``vjp_force`` = ``J^T v`` (the AsymEP correction's ``(J - J^T) v``) equal autodiff of ``force``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.ep.linear import linearization, products
from analogeq.ep.term import NudgedTerm
from analogeq.hardware import ChipConfig, realize
from analogeq.models.base import AbstractModel

F64 = jnp.float64
COST = aq.SquaredError()


def _autodiff(model, s, x, v):
    f = lambda z: model.force(z, x)
    return jax.jvp(f, (s,), (v,))[1], jax.vjp(f, s)[1](v)[0]


def _check(model, x, key, n=3):
    """Explicit products against ``jax.jvp`` / ``jax.vjp`` at random states and directions,
    relative to the products' scale; returns the largest relative difference."""
    worst = 0.0
    for k in jax.random.split(key, n):
        ks, kv = jax.random.split(k)
        s = 0.8 * jax.random.normal(ks, model.state_shape, F64)
        v = jax.random.normal(kv, model.state_shape, F64)
        jv, jtv = _autodiff(model, s, x, v)
        ejv, ejtv = model.jvp_force(s, x, v), model.vjp_force(s, x, v)
        for got, want in ((ejv, jv), (ejtv, jtv)):
            worst = max(worst, float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want))))
    return worst


def _chip_cfg(**over):
    """The realistic preset with its noise switched off (quantized, mismatched, rails, pole)."""
    return ChipConfig.preset("realistic").replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, **over})


def test_leaky_network_products_equal_autodiff(leaky, batch):
    assert leaky.explicit_jacobian
    deep = aq.LeakyNetwork((8, 12, 7, 5), key=jax.random.PRNGKey(3), asymmetry=0.6, gain=0.9, dtype=F64)
    for model in (leaky, deep):
        assert _check(model, batch[0][0], jax.random.PRNGKey(11)) <= 1e-12


@pytest.mark.parametrize("pole", [True, False])
def test_chip_products_equal_autodiff(leaky, batch, pole):
    cfg = _chip_cfg(**({} if pole else {"neuron.amp_pole_tau": 0.0}))
    chip = realize(leaky, cfg, jax.random.PRNGKey(7))
    assert chip.has_pole == pole and chip.explicit_jacobian
    assert float(jnp.std(chip.gain)) > 0 and float(jnp.std(chip.offset)) > 0
    assert _check(chip, batch[0][0], jax.random.PRNGKey(12)) <= 1e-12


def test_chip_products_read_the_realized_tiles(leaky, batch):
    # With read noise the phase's realized conductances are what both reads see.
    cfg = _chip_cfg(**{"crossbar.read_noise": 0.05})
    chip = realize(leaky, cfg, jax.random.PRNGKey(7)).sample_phase(jax.random.PRNGKey(8))
    assert _check(chip, batch[0][0], jax.random.PRNGKey(13)) <= 1e-12


def test_complex_directions_and_autodiff_default(leaky, hopfield, batch):
    x = batch[0][0]
    s = 0.5 * jax.random.normal(jax.random.PRNGKey(4), leaky.state_shape, F64)
    a, b = jax.random.normal(jax.random.PRNGKey(5), (2, *leaky.state_shape), F64)
    for model in (leaky, hopfield):
        jv, jtv = _autodiff(model, s, x, a)
        jvb, jtvb = _autodiff(model, s, x, b)
        np.testing.assert_allclose(model.jvp_force(s, x, a + 1j * b), jv + 1j * jvb, rtol=0, atol=1e-12)
        np.testing.assert_allclose(model.vjp_force(s, x, a + 1j * b), jtv + 1j * jtvb, rtol=0, atol=1e-12)
    # The Hopfield network keeps the autodiff default (its J is symmetric: J v = J^T v).
    assert not hopfield.explicit_jacobian
    assert type(hopfield).jvp_force is AbstractModel.jvp_force
    np.testing.assert_allclose(hopfield.jvp_force(s, x, a), hopfield.vjp_force(s, x, a), atol=1e-12)


def test_correction_field_equals_the_stored_linearization(leaky, batch):
    x, y = batch[0][0], batch[1][0]
    chip = realize(leaky, _chip_cfg(), jax.random.PRNGKey(7))
    s_star = 0.3 * jax.random.normal(jax.random.PRNGKey(9), chip.state_shape, F64)
    stack = s_star + 0.01 * jax.random.normal(jax.random.PRNGKey(10), (2, *chip.state_shape), F64)
    term = NudgedTerm(chip, x, COST, y, s_star, (0.1, -0.1), correction="asym")
    assert term.jacobian is None  # the chip's own reads, nothing linearized
    jv, jtv = products(*linearization(lambda z: chip.force(z, x), s_star))
    want = jax.vmap(lambda u: jv(u) - jtv(u))(stack - s_star)
    np.testing.assert_allclose(term.correction_field(stack), want, rtol=0,
                               atol=1e-12 * float(jnp.max(jnp.abs(want))))
    tracking = NudgedTerm(chip, x, COST, y, s_star, (0.1, -0.1), correction="asym-tracking")
    mid = jnp.mean(stack, axis=0)
    jv, jtv = products(*linearization(lambda z: chip.force(z, x), mid))
    want = jax.vmap(lambda u: jv(u) - jtv(u))(stack - s_star)
    np.testing.assert_allclose(tracking.correction_field(stack), want, rtol=0,
                               atol=1e-12 * float(jnp.max(jnp.abs(want))))
