"""Gradient estimators against the implicit adjoint, BPTT and a dense reference (float64)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq

COST = aq.SquaredError()


def rel(est, ref):
    return aq.compare_gradients(est.grads, ref.grads)["overall"]


@pytest.fixture(scope="module")
def exact(leaky, batch, tight):
    return aq.ImplicitAdjoint(tol=1e-13).estimate(leaky, COST, tight, *batch)


def test_implicit_adjoint_matches_dense_solve(leaky, batch, tight, exact):
    # Independent reference: the full Jacobian, a dense solve, the full dF/dtheta.
    xs, ys = batch
    grads = []
    for x, y, s in zip(xs, ys, exact.free.state):
        jac = jax.jacfwd(leaky.force)(s, x)
        dc = np.asarray(leaky.readout(s) - jax.nn.one_hot(y, 5))
        g = np.zeros(17)
        g[-5:] = dc
        lam = np.linalg.solve(np.asarray(jac).T, -g)
        grads.append(jax.grad(lambda m: jnp.dot(lam, m.force(s, x)))(leaky))
    dense = jax.tree_util.tree_map(lambda *a: sum(a) / len(a), *grads)
    np.testing.assert_allclose(exact.contrast[0], np.linalg.solve(
        np.asarray(jax.jacfwd(leaky.force)(exact.free.state[0], xs[0])).T,
        -np.concatenate([np.zeros(12), np.asarray(leaky.readout(exact.free.state[0]) - jax.nn.one_hot(ys[0], 5))])),
        rtol=1e-9, atol=1e-12)
    assert aq.compare_gradients(exact.grads, dense)["overall"]["rel_error"] < 1e-9


def test_asymep_centered_is_exact_and_uncorrected_is_biased(leaky, batch, tight, exact):
    asym = rel(aq.EP(beta=1e-3, kind="centered", correction="asym").estimate(leaky, COST, tight, *batch), exact)
    plain = rel(aq.EP(beta=1e-3, kind="centered", correction="none").estimate(leaky, COST, tight, *batch), exact)
    assert asym["rel_error"] <= 1e-4 and asym["cosine"] > 0.99999999
    assert plain["rel_error"] >= 1e-2


def test_common_mode_tracking_is_exact_too(leaky, batch, tight, exact):
    r = rel(aq.EP(beta=1e-3, correction="asym-tracking").estimate(leaky, COST, tight, *batch), exact)
    assert r["rel_error"] <= 1e-4


def test_one_sided_error_is_first_order_in_beta(leaky, batch, tight, exact):
    errs = [rel(aq.EP(beta=b, kind="one-sided").estimate(leaky, COST, tight, *batch), exact)["rel_error"]
            for b in (1e-2, 1e-3)]
    assert 5 < errs[0] / errs[1] < 20  # O(beta): ten times smaller beta, ~ten times smaller error


def test_holomorphic_error_falls_as_beta_to_the_N(leaky, batch, tight, exact):
    e4 = rel(aq.EP(beta=0.1, kind="holomorphic", n_points=4).estimate(leaky, COST, tight, *batch), exact)
    e8 = rel(aq.EP(beta=0.1, kind="holomorphic", n_points=8).estimate(leaky, COST, tight, *batch), exact)
    assert e4["rel_error"] <= 1e-3
    assert e8["rel_error"] <= 1e-6
    e4_half = rel(aq.EP(beta=0.05, kind="holomorphic", n_points=4).estimate(leaky, COST, tight, *batch), exact)
    assert 8 < e4["rel_error"] / e4_half["rel_error"] < 32  # |beta|^4: halving beta gives ~16x


def test_holomorphic_N2_equals_centered(leaky, batch, tight):
    h = aq.EP(beta=0.05, kind="holomorphic", n_points=2).estimate(leaky, COST, tight, *batch)
    c = aq.EP(beta=0.05, kind="centered").estimate(leaky, COST, tight, *batch)
    assert rel(h, c)["rel_error"] < 1e-10


def test_holomorphic_with_cross_entropy(leaky, batch, tight):
    ce = aq.CrossEntropy()
    ref = aq.ImplicitAdjoint(tol=1e-13).estimate(leaky, ce, tight, *batch)
    e = aq.EP(beta=0.1, kind="holomorphic", n_points=6).estimate(leaky, ce, tight, *batch)
    assert rel(e, ref)["rel_error"] <= 1e-4


def test_bptt_long_unroll_agrees_with_implicit_adjoint(leaky, batch, exact):
    b = aq.BPTT(steps=300).estimate(leaky, COST, aq.EulerRelaxation(eps=0.5, T1=300), *batch)
    assert rel(b, exact)["cosine"] >= 0.999


def test_energy_ep_matches_force_form_on_conservative_model(hopfield, batch, tight):
    classic = aq.EnergyEP(beta=1e-3).estimate(hopfield, COST, tight, *batch)
    force = aq.EP(beta=1e-3, correction="none").estimate(hopfield, COST, tight, *batch)
    exact = aq.ImplicitAdjoint(tol=1e-13).estimate(hopfield, COST, tight, *batch)
    assert rel(classic, force)["cosine"] >= 0.99999
    assert rel(classic, exact)["rel_error"] <= 1e-4
    assert rel(force, exact)["rel_error"] <= 1e-4


def test_gate_drops_unconverged_samples(leaky, batch):
    est = aq.EP(beta=1e-3)
    short = aq.EulerRelaxation(eps=0.5, T1=3, T2=200, tol=1e-13)  # nothing settles in 3 steps
    gated = est.estimate(leaky, COST, short, *batch, gate=True)
    assert int(jnp.sum(gated.used)) == 0 and not bool(jnp.any(gated.free.converged))
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree_util.tree_leaves(gated.grads))
    ungated = est.estimate(leaky, COST, short, *batch, gate=False)
    assert int(jnp.sum(ungated.used)) == 4
    assert any(float(jnp.max(jnp.abs(g))) > 0.0 for g in jax.tree_util.tree_leaves(ungated.grads))


def test_compare_gradients_numbers():
    a = {"w": jnp.array([1.0, 0.0]), "b": jnp.array([0.0])}
    b = {"w": jnp.array([1.0, 1.0]), "b": jnp.array([0.0])}
    r = aq.compare_gradients(a, b)
    np.testing.assert_allclose(r["overall"]["cosine"], 1 / np.sqrt(2))
    np.testing.assert_allclose(r["overall"]["rel_error"], 1 / np.sqrt(2))
    assert set(r["per_param"]) == {"['w']", "['b']"}
    with pytest.raises(ValueError, match="different parameters"):
        aq.compare_gradients(a, {"w": a["w"]})


@pytest.mark.parametrize(
    "kw, match",
    [({"beta": 0.0}, "beta"), ({"beta": -1e-3}, "beta"), ({"beta": float("nan")}, "beta"),
     ({"kind": "holomorphic", "n_points": 1}, "n_points"), ({"kind": "two-sided"}, "unknown EP kind"),
     ({"correction": "magic"}, "unknown correction")],
)
def test_estimator_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        aq.EP(**kw)


def test_unknown_cost_and_bad_target_shape():
    with pytest.raises(ValueError, match="unknown cost"):
        aq.make_cost("hinge")
    with pytest.raises(ValueError, match="target has shape"):
        aq.SquaredError()(jnp.zeros(5), jnp.zeros(4))


def test_nudged_term_is_the_nudged_field_and_relaxations_can_read_it(leaky, batch):
    """The structured term evaluates ``F(s_k) - beta_k dC/ds - 2A(s_k - s*)`` (dense check) and
    carries what it is made of; EP hands every relaxation such a term."""
    xs, ys = batch
    x, y = xs[0], ys[0]
    s_star = 0.3 * jax.random.normal(jax.random.PRNGKey(7), (17,), xs.dtype)
    jac = np.asarray(jax.jacfwd(leaky.force)(s_star, x))
    stack = jnp.stack([s_star + 0.01, s_star - 0.02])
    for correction, m in (("none", 0 * jac), ("asym", jac - jac.T)):
        term = aq.ep.NudgedTerm(leaky, x, COST, y, s_star, (0.1, -0.1), correction)
        assert term.betas == (0.1, -0.1) and term.correction == correction and term.noise is None
        dc = np.stack([np.concatenate([np.zeros(12), np.asarray(leaky.readout(s) - jax.nn.one_hot(y, 5))])
                       for s in stack])
        want = np.stack([np.asarray(leaky.force(s, x)) for s in stack]) \
            - np.array([[0.1], [-0.1]]) * dc - (np.asarray(stack) - np.asarray(s_star)) @ m.T
        np.testing.assert_allclose(term(stack), want, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(term.initial_state(), jnp.stack([s_star, s_star]))
    np.testing.assert_array_equal(aq.ep.FreeTerm(leaky, x)(s_star), leaky.force(s_star, x))

    seen = []

    class Recording(aq.EulerRelaxation):
        def nudged(self, term, s0, key=None):
            seen.append((type(term).__name__, term.betas, term.correction, term.target.shape, s0.shape))
            return super().nudged(term, s0, key)

    est = eqx.filter_jit(lambda r: aq.EP(beta=1e-2).estimate(leaky, COST, r, xs, ys))(Recording())
    assert seen == [("NudgedTerm", (1e-2, -1e-2), "asym", (), (2, 17))]
    assert bool(jnp.all(jnp.isfinite(est.contrast)))
    with pytest.raises(TypeError, match="not a bare field"):
        aq.EulerRelaxation().free(lambda s: leaky.force(s, x), s_star)
    with pytest.raises(ValueError, match="unknown correction"):
        aq.ep.NudgedTerm(leaky, x, COST, y, s_star, (0.1,), "tracking")
