"""The equilibrium transformer block: field, holomorphy, causality and EP gradients (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.models.transformer import EqTransformer, causal_softmax, gelu_tanh, layer_norm

F64 = jnp.float64
COST = aq.TokenCrossEntropy()
V, T, D, H = 5, 5, 8, 2


def rel(a, b):
    return aq.compare_gradients(a.grads, b.grads)["overall"]


@pytest.fixture(scope="module")
def block():
    return EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)


@pytest.fixture(scope="module")
def seqs():
    xs = jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, V)
    ys = jax.random.randint(jax.random.PRNGKey(2), (2, T), 0, V).at[0, 0].set(-1)  # one unscored position
    return xs, ys


@pytest.fixture(scope="module")
def tight_tf():
    return aq.EulerRelaxation(eps=0.25, T1=2000, T2=2000, tol=1e-13, stop_at_tol=True)


@pytest.fixture(scope="module")
def exact(block, seqs, tight_tf):
    return aq.WithReadoutGradient(aq.ImplicitAdjoint(tol=1e-13)).estimate(block, COST, tight_tf, *seqs)


def test_force_matches_written_out_equation(block, seqs):
    x = seqs[0][0]
    z = jax.random.normal(jax.random.PRNGKey(3), (T, D), F64)
    # Attention written with explicit loops over heads and positions.
    h1 = np.asarray(layer_norm(z, block.ln1_g, block.ln1_b))
    dh = D // H
    att = np.zeros((T, D))
    for hd in range(H):
        sl = slice(hd * dh, (hd + 1) * dh)
        q, k, v = ((h1 @ np.asarray(w))[:, sl] for w in (block.W_q, block.W_k, block.W_v))
        q = q / np.sqrt(np.mean(q * q, -1, keepdims=True) + 1e-6)
        k = k / np.sqrt(np.mean(k * k, -1, keepdims=True) + 1e-6)
        for i in range(T):
            s = q[i] @ k[: i + 1].T / np.sqrt(dh)
            p = np.exp(s - s.max())
            att[i, sl] = (p / p.sum()) @ v[: i + 1]
    att = att @ np.asarray(block.W_o)
    h2 = np.asarray(layer_norm(z, block.ln2_g, block.ln2_b))
    u = h2 @ np.asarray(block.W_1) + np.asarray(block.b_1)
    ffn = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3))) @ np.asarray(block.W_2)
    x_in = np.asarray(block.tok)[np.asarray(x)] + np.asarray(block.pos)[:T]
    want = -(np.asarray(z) - x_in) + att + ffn + np.asarray(block.b_2) - block.damping * np.asarray(z)
    np.testing.assert_allclose(block.force(z, x), want, rtol=1e-10, atol=1e-12)
    assert block.readout(z).shape == (T, V)


def test_residual_branches_start_at_a_tenth(block):
    big = EqTransformer(V, T, 64, 4, key=jax.random.PRNGKey(0), dtype=F64, residual_scale=1.0)
    small = EqTransformer(V, T, 64, 4, key=jax.random.PRNGKey(0), dtype=F64)
    np.testing.assert_allclose(small.W_o, 0.1 * big.W_o)
    np.testing.assert_allclose(small.W_2, 0.1 * big.W_2)
    np.testing.assert_allclose(small.W_q, big.W_q)


def test_field_is_holomorphic(block, seqs):
    # Complex-step derivative Im F(z + i h v) / h equals the real Jacobian product J v.
    x = seqs[0][0]
    z = jax.random.normal(jax.random.PRNGKey(4), (T, D), F64)
    v = jax.random.normal(jax.random.PRNGKey(5), (T, D), F64)
    h = 1e-20
    cstep = jnp.imag(block.force(z + 1j * h * v, x)) / h
    _, jv = jax.jvp(lambda s: block.force(s, x), (z,), (v,))
    np.testing.assert_allclose(cstep, jv, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(jnp.real(block.force(z + 0j, x)), block.force(z, x), rtol=1e-12)
    assert np.allclose(gelu_tanh(jnp.array([0.0, 1.0])), [0.0, 0.8411920], atol=1e-6)
    s = causal_softmax(jnp.zeros((3, 3)))
    np.testing.assert_allclose(s, np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None])


def test_fixed_point_is_causal(block, tight_tf):
    x = jnp.array([1, 2, 3, 4, 0])
    x2 = x.at[3].set(2)  # change a later token
    a, b = aq.free_phase(block, tight_tf, jnp.stack([x, x2])).state
    np.testing.assert_allclose(a[:3], b[:3], atol=1e-12)
    assert float(jnp.max(jnp.abs(a[3:] - b[3:]))) > 1e-3
    # A shorter prefix settles to the same states as the full sequence's first positions.
    c = aq.free_phase(block, tight_tf, x[None, :3]).state[0]
    np.testing.assert_allclose(c, a[:3], atol=1e-12)


def test_bad_inputs_are_named(block):
    with pytest.raises(ValueError, match="token ids of shape"):
        block.check_input(jnp.zeros((2, T), jnp.int32))
    with pytest.raises(ValueError, match="integer token ids"):
        block.check_input(jnp.zeros((T,)))
    with pytest.raises(ValueError, match="exceeds the positional table"):
        block.check_input(jnp.zeros((T + 1,), jnp.int32))
    with pytest.raises(ValueError, match=r"\[0, vocab_size=5\)"):
        block.check_input(jnp.array([0, 1, 7, 1, 0]))
    # Inside jit nothing raises: no host callback, so the compiled step is cacheable.
    text = jax.jit(lambda x: block.init_state(x)).lower(jnp.array([0, 1, 1, 1, 0])).as_text()
    assert "callback" not in text and "stablehlo" in text
    with pytest.raises(ValueError, match="divisible"):
        EqTransformer(V, T, 10, 4, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="damping"):
        EqTransformer(V, T, 8, 2, key=jax.random.PRNGKey(0), damping=-1.0)


def test_free_phase_converges(exact):
    assert bool(jnp.all(exact.free.converged))
    assert float(jnp.max(exact.free.residual)) <= 1e-13


def test_asymep_centered_matches_implicit_and_bptt_uncorrected_is_worse(block, seqs, tight_tf, exact):
    asym = aq.WithReadoutGradient(aq.EP(beta=1e-3, kind="centered", correction="asym"))
    plain = aq.WithReadoutGradient(aq.EP(beta=1e-3, kind="centered", correction="none"))
    ga = asym.estimate(block, COST, tight_tf, *seqs)
    gp = plain.estimate(block, COST, tight_tf, *seqs)
    bptt = aq.BPTT().estimate(block, COST, aq.EulerRelaxation(eps=0.25, T1=200, T2=1), *seqs)
    vs_exact, vs_bptt = rel(ga, exact), rel(ga, bptt)
    plain_exact = rel(gp, exact)
    assert vs_exact["cosine"] >= 0.99 and vs_exact["rel_error"] <= 1e-4
    assert vs_bptt["cosine"] >= 0.99
    assert rel(bptt, exact)["rel_error"] <= 1e-6  # the long unroll converged: same gradient
    # Without the correction the force-form estimate is biased: measurably lower agreement.
    assert plain_exact["rel_error"] >= 1e-2
    assert plain_exact["cosine"] < vs_exact["cosine"] - 1e-3
    # The readout weights get the direct gradient (absent from the force form alone).
    per = aq.compare_gradients(ga.grads, bptt.grads)["per_param"][".W_h"]
    assert per["cosine"] > 0.9999


def test_holomorphic_N4_matches_implicit(block, seqs, tight_tf, exact):
    h4 = aq.WithReadoutGradient(aq.EP(beta=0.05, kind="holomorphic", n_points=4, correction="asym"))
    assert rel(h4.estimate(block, COST, tight_tf, *seqs), exact)["rel_error"] <= 1e-3


@pytest.mark.slow
def test_holomorphic_tracking_matches_implicit(block, seqs, tight_tf, exact):
    trk = aq.WithReadoutGradient(aq.EP(beta=0.05, kind="holomorphic", n_points=4, correction="asym-tracking"))
    assert rel(trk.estimate(block, COST, tight_tf, *seqs), exact)["rel_error"] <= 1e-3


@pytest.mark.slow
def test_gradient_probe_in_training_compares_like_with_like(block, seqs, tight_tf):
    from analogeq.training import gradient_probe

    est = aq.WithReadoutGradient(aq.EP(beta=1e-3, correction="asym"))
    r = gradient_probe(block, COST, tight_tf, est, *seqs)
    assert r["grad_cosine"] >= 0.9999
