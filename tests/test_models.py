import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.models import rho, rho_prime


def test_hopfield_force_is_minus_energy_gradient(hopfield, batch):
    xs, _ = batch
    s = jax.random.normal(jax.random.PRNGKey(3), hopfield.state_shape, jnp.float64)
    for x in xs:
        np.testing.assert_allclose(hopfield.force(s, x), -jax.grad(hopfield.energy)(s, x), atol=1e-13)


def test_hopfield_jacobian_symmetric_leaky_not(hopfield, leaky, batch):
    x = batch[0][0]
    s = 0.3 * jax.random.normal(jax.random.PRNGKey(4), hopfield.state_shape, jnp.float64)
    jh = jax.jacfwd(hopfield.force)(s, x)
    np.testing.assert_allclose(jh, jh.T, atol=1e-12)
    jl = jax.jacfwd(leaky.force)(s, x)
    assert np.linalg.norm(jl - jl.T) > 0.1 * np.linalg.norm(jl)


def test_leaky_is_nonconservative_even_with_symmetric_weights(batch):
    net = aq.LeakyNetwork((8, 12, 5), key=jax.random.PRNGKey(0), asymmetry=0.0, dtype=jnp.float64)
    s = jax.random.normal(jax.random.PRNGKey(5), net.state_shape, jnp.float64)
    j = jax.jacfwd(net.force)(s, batch[0][0])
    # J = -I + W_sym diag(rho'(s)): asymmetric because rho' differs between neurons.
    assert np.linalg.norm(j - j.T) > 1e-3


def test_leaky_force_closed_form(leaky, batch):
    x = batch[0][0]
    s = jax.random.normal(jax.random.PRNGKey(6), leaky.state_shape, jnp.float64)
    h1, out = s[:12], s[12:]
    w0, w1 = leaky.weights
    (b1,) = leaky.feedback
    f1 = -h1 + w0 @ x + b1 @ np.tanh(out) + leaky.biases[0]
    f2 = -out + w1 @ np.tanh(h1) + leaky.biases[1]
    np.testing.assert_allclose(leaky.force(s, x), np.concatenate([f1, f2]), atol=1e-13)


def test_asymmetry_parameter_mixes_feedback():
    key = jax.random.PRNGKey(0)
    sym = aq.LeakyNetwork((4, 6, 3), key=key, asymmetry=0.0, dtype=jnp.float64)
    np.testing.assert_allclose(sym.feedback[0], sym.weights[1].T)
    asym = aq.LeakyNetwork((4, 6, 3), key=key, asymmetry=1.0, dtype=jnp.float64)
    assert not np.allclose(asym.feedback[0], asym.weights[1].T)


def test_rho_smooth_bounded_and_holomorphic():
    s = jnp.linspace(-20, 20, 101)
    assert jnp.all(jnp.abs(rho(s)) < 1.0 + 1e-12)
    np.testing.assert_allclose(jax.vmap(jax.grad(rho))(s), rho_prime(s), atol=1e-12)
    z = 0.3 + 0.01j
    np.testing.assert_allclose(rho(z), np.tanh(z))


def test_readout_is_output_layer(leaky):
    s = jnp.arange(17.0)
    np.testing.assert_array_equal(leaky.readout(s), s[-5:])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"sizes": (8,)}, "sizes"), ({"sizes": (8, 0, 2)}, "sizes"), ({"asymmetry": 1.5}, "asymmetry"),
     ({"gain": -1.0}, "gain")],
)
def test_model_construction_errors(kwargs, match):
    args = {"sizes": (8, 4, 2), **kwargs}
    with pytest.raises(ValueError, match=match):
        aq.LeakyNetwork(args.pop("sizes"), key=jax.random.PRNGKey(0), **args)
