
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import analogeq as aq


def test_fixed_point_matches_independent_root_solve(leaky, batch, tight):
    xs, _ = batch
    free = aq.free_phase(leaky, tight, xs)
    assert bool(jnp.all(free.converged))
    for x, s in zip(xs, free.state):
        f = lambda v: np.asarray(leaky.force(jnp.asarray(v), x))  # noqa: E731
        root = scipy.optimize.root(f, np.zeros(leaky.state_shape), tol=1e-14).x
        np.testing.assert_allclose(s, root, rtol=1e-10, atol=1e-12)


def test_stop_at_tol_reports_steps_and_residual(leaky, batch):
    x = batch[0][0]
    r = aq.EulerRelaxation(eps=0.5, T1=2000, tol=1e-8, stop_at_tol=True).free(aq.ep.FreeTerm(leaky, x), jnp.zeros(17))
    assert bool(r.converged) and 0 < int(r.steps) < 2000
    assert float(r.residual) <= 1e-8
    np.testing.assert_allclose(r.residual, aq.residual(r.state, leaky.force(r.state, x)))


def test_fixed_step_count_runs_exactly_T1(leaky, batch):
    x = batch[0][0]
    r = aq.EulerRelaxation(eps=0.5, T1=7, tol=1e-3).free(aq.ep.FreeTerm(leaky, x), jnp.zeros(17))
    assert int(r.steps) == 7
    s = jnp.zeros(17)
    for _ in range(7):
        s = s + 0.5 * leaky.force(s, x)
    np.testing.assert_allclose(r.state, s, atol=1e-14)


def test_nonconvergence_is_reported(batch):
    # Strong weights: the relaxation does not settle in 10 steps; the result says so.
    net = aq.LeakyNetwork((8, 12, 5), key=jax.random.PRNGKey(0), gain=4.0, dtype=jnp.float64)
    free = aq.free_phase(net, aq.EulerRelaxation(eps=0.5, T1=10, tol=1e-6), batch[0])
    assert not bool(jnp.any(free.converged))
    assert bool(jnp.all(free.residual > 1e-6))


def test_nan_state_is_flagged(batch):
    """A non-finite relaxation is flagged, not raised inside jit (check_finite): residual +inf,
    not converged, so gating leaves the sample out; the other samples are untouched."""
    net = aq.LeakyNetwork((8, 12, 5), key=jax.random.PRNGKey(0), dtype=jnp.float64)
    bad = batch[0].at[0, 0].set(jnp.nan)
    r = aq.free_phase(net, aq.EulerRelaxation(), bad)
    clean = aq.free_phase(net, aq.EulerRelaxation(), batch[0])
    assert not bool(jnp.all(jnp.isfinite(r.state[0])))
    assert float(r.residual[0]) == float("inf") and not bool(r.converged[0])
    np.testing.assert_array_equal(r.state[1:], clean.state[1:])
    np.testing.assert_array_equal(r.residual[1:], clean.residual[1:])


@pytest.mark.parametrize("kw, match", [({"eps": 0.0}, "eps"), ({"eps": -0.1}, "eps"),
                                       ({"T1": 0}, "T1"), ({"T2": 0}, "T2"), ({"tol": 0.0}, "tol")])
def test_relaxation_rejects_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        aq.EulerRelaxation(**kw)


def test_wrong_input_shape_is_rejected(leaky):
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        aq.free_phase(leaky, aq.EulerRelaxation(), jnp.zeros((4, 7)))
