"""Stability controls and the recipe's estimator extensions (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq import stability as st

COST = aq.SquaredError()


def test_resreg_weight_dead_band_and_ramp():
    w = [float(st.resreg_weight(jnp.asarray(r), 0.2, 2e-2, 1e-3)) for r in (5e-4, 1e-3, 1e-2, 2e-2, 1.0)]
    np.testing.assert_allclose(w, [0.0, 0.0, 0.1, 0.2, 0.2])


def test_residual_penalty_value_and_descent(leaky, batch, tight):
    xs, _ = batch
    z = aq.free_phase(leaky, aq.EulerRelaxation(eps=0.5, T1=3), xs).state  # far from equilibrium
    eps = 0.5
    f = jax.vmap(leaky.force)(z, xs)
    want = np.mean([eps ** 2 * np.sum(np.asarray(fi) ** 2) / np.sum(np.asarray(zi) ** 2) for fi, zi in zip(f, z)])
    np.testing.assert_allclose(st.residual_penalty(leaky, xs, z, eps), want, rtol=1e-12)
    np.testing.assert_allclose(st.step_residual(leaky, xs, z, eps) ** 2,
                               [eps ** 2 * np.sum(np.asarray(fi) ** 2) / np.sum(np.asarray(zi) ** 2)
                                for fi, zi in zip(f, z)], rtol=1e-12)
    # A small step against the gradient (states held fixed) lowers the penalty.
    import equinox as eqx
    pen, g = eqx.filter_value_and_grad(lambda m: st.residual_penalty(m, xs, z, eps))(leaky)
    moved = jax.tree_util.tree_map(lambda p, d: p - 1e-3 * d, leaky, g)
    assert float(st.residual_penalty(moved, xs, z, eps)) < float(pen)


def test_jacobian_penalty_is_hutchinson_of_the_antisymmetric_part(leaky, hopfield, batch, tight):
    xs, _ = batch
    z = aq.free_phase(leaky, tight, xs).state
    # Dense |A|_F^2 / n per sample, A = (J - J^T) / 2.
    dense = []
    for s, x in zip(z, xs):
        j = np.asarray(jax.jacfwd(leaky.force)(s, x))
        a = 0.5 * (j - j.T)
        dense.append(np.sum(a * a) / j.shape[0])
    keys = jax.random.split(jax.random.PRNGKey(0), 300)
    est = float(jnp.mean(jax.jit(jax.vmap(lambda k: st.jacobian_penalty(leaky, xs, z, k)))(keys)))
    np.testing.assert_allclose(est, np.mean(dense), rtol=0.1)
    # A conservative field has a symmetric Jacobian: no penalty.
    zh = aq.free_phase(hopfield, tight, xs).state
    assert float(st.jacobian_penalty(hopfield, xs, zh, jax.random.PRNGKey(0))) < 1e-20


def test_controller_follows_the_residual_and_clips():
    kw = dict(target=1e-3, floor=0.1, maximum=10.0, momentum=0.0)
    lam, r = st.controller_update(jnp.asarray(1.0), jnp.asarray(1e-3), jnp.asarray(8e-3), **kw)
    np.testing.assert_allclose(lam, 8.0 ** 0.3)
    lam, _ = st.controller_update(jnp.asarray(1.0), jnp.asarray(1e-3), jnp.asarray(1e-4), **kw)
    np.testing.assert_allclose(lam, 0.1 ** 0.3)
    lam, _ = st.controller_update(jnp.asarray(9.0), jnp.asarray(1e-3), jnp.asarray(1.0), **kw)
    assert float(lam) == 10.0
    lam, _ = st.controller_update(jnp.asarray(0.11), jnp.asarray(1e-3), jnp.asarray(1e-9), **kw)
    assert float(lam) == 0.1
    lam, r = st.controller_update(jnp.asarray(1.0), jnp.asarray(1e-3), jnp.asarray(3e-3), **{**kw, "momentum": 0.5})
    np.testing.assert_allclose(r, 2e-3)
    np.testing.assert_allclose(lam, 2.0 ** 0.3)


def test_weight_cap_and_ema():
    from analogeq.models.transformer import MATRICES, EqTransformer

    m = EqTransformer(5, 4, 8, 2, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    big = jax.tree_util.tree_map(lambda a: 10 * a, m)
    capped = st.cap_weights(big, 0.5)
    for name in MATRICES:
        w = getattr(capped, name)
        assert float(jnp.linalg.norm(w)) <= 0.5 * np.sqrt(min(w.shape)) * (1 + 1e-12)
    np.testing.assert_allclose(capped.tok, big.tok)  # embeddings are not capped
    ema = st.ema_update(jax.tree_util.tree_map(jnp.zeros_like, m), m, 0.9)
    np.testing.assert_allclose(ema.W_q, 0.1 * m.W_q)


def test_warmup_schedule():
    from analogeq.config import TrainConfig

    opt = st.build_optimizer(TrainConfig(optimizer="sgd", lr=1.0, warmup=4))
    params = {"w": jnp.asarray(0.0)}
    state = opt.init(params)
    steps = []
    for _ in range(6):
        upd, state = opt.update({"w": jnp.asarray(1.0)}, state, params)
        steps.append(-float(upd["w"]))
    np.testing.assert_allclose(steps, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0])


def test_adaptive_ep_picks_the_steadiest_chunk(leaky, batch, tight, exact_leaky):
    xs, ys = batch
    est = aq.AdaptiveEP(beta=1e-3, kind="centered", correction="asym", chunks=5)
    relax = aq.EulerRelaxation(eps=0.5, T1=5000, T2=100, tol=1e-13, stop_at_tol=True)
    free = aq.free_phase(leaky, tight, xs)
    a, res = est.contrast_trajectory(leaky, COST, relax, xs[0], ys[0], free.state[0])
    assert a.shape == (5, 17) and res.shape == (5,)
    change = [float(jnp.linalg.norm(a[c] - a[c - 1])) for c in range(1, 5)]
    pick, _ = est.contrast(leaky, COST, relax, xs[0], ys[0], free.state[0])
    np.testing.assert_allclose(pick, a[1 + int(np.argmin(change))])
    g = est.estimate(leaky, COST, relax, xs, ys)
    assert aq.compare_gradients(g.grads, exact_leaky.grads)["overall"]["rel_error"] <= 1e-3
    with pytest.raises(ValueError, match="t2_chunks"):
        est.contrast(leaky, COST, aq.EulerRelaxation(T2=3), xs[0], ys[0], free.state[0])
    with pytest.raises(ValueError, match="chunks"):
        aq.AdaptiveEP(chunks=1)


def test_refined_relaxation_reaches_tol_after_T1(leaky, batch):
    xs, _ = batch
    plain = aq.free_phase(leaky, aq.EulerRelaxation(eps=0.5, T1=5, tol=1e-10), xs)
    refined = aq.free_phase(leaky, aq.RefinedEulerRelaxation(eps=0.5, T1=5, tol=1e-10, refine_steps=2000), xs)
    assert not bool(jnp.any(plain.converged)) and bool(jnp.all(refined.converged))
    assert int(jnp.min(refined.steps)) > 5
    with pytest.raises(ValueError, match="refine_steps"):
        aq.RefinedEulerRelaxation(refine_steps=-1)


@pytest.fixture(scope="module")
def exact_leaky(leaky, batch, tight):
    return aq.ImplicitAdjoint(tol=1e-13).estimate(leaky, COST, tight, *batch)
