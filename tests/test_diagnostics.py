"""Stability diagnostics: eigenvalues of M = I + eps J, verdicts, limit cycles, the CLI."""

import json
from functools import partial

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.cli import main
from analogeq.config import TrainConfig
from analogeq.diagnostics import (
    DiagnoseOptions,
    Trace,
    bptt_probe,
    classify,
    continuous_check,
    dense_jacobian,
    detect,
    diagnose_input,
    euler_trace,
    leading_eigenvalues,
    settle,
    verdict,
)
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.realize import realize
from analogeq.assembly import train

F64 = jnp.float64
EPS = 0.5
TOL = 1e-6


class Oscillator(aq.AbstractModel):
    """``F(s) = -(s - c) + W tanh(s - c)``: fixed point ``c`` with Jacobian ``W - I`` there.

    ``W = Q blockdiag([[1 + a, -b], [b, 1 + a]], D) Q^T`` with ``Q`` a random rotation, so the
    Jacobian at ``c`` has the pair ``mu = a +- i b`` plus ``n - 2`` real eigenvalues
    ``D - 1`` in ``[-0.9, -0.5]``; tanh keeps every trajectory bounded.
    """

    W: jax.Array
    c: jax.Array
    s_init: jax.Array

    def __init__(self, a: float, b: float, n: int = 10, seed: int = 0):
        rng = np.random.default_rng(seed)
        w = np.zeros((n, n))
        w[:2, :2] = [[1 + a, -b], [b, 1 + a]]
        if n > 2:
            w[2:, 2:] = np.diag(rng.uniform(0.1, 0.5, n - 2))
        q, _ = np.linalg.qr(rng.standard_normal((n, n)))
        self.W = jnp.asarray(q @ w @ q.T, F64)
        self.c = jnp.asarray(rng.uniform(0.5, 1.0, n), F64)
        self.s_init = self.c + 0.1 * jnp.asarray(q[:, 0], F64)

    @property
    def state_shape(self):
        return self.c.shape

    def force(self, s, x):
        return -(s - self.c) + self.W @ jnp.tanh(s - self.c) + 0.0 * jnp.sum(x)

    def readout(self, s):
        return s[:1]

    def init_state(self, x):
        return self.s_init


X = jnp.zeros((1,), F64)
ARTIFACT = (-0.2, 2.0)   # Re mu < 0, |1 + 0.5 mu| = 1.345 > 1
HOPF = (0.3, 1.0)        # Re mu > 0
STABLE = (-0.3, 0.5)     # |1 + 0.5 mu| = 0.886


@pytest.mark.parametrize("n", [10, 2])
@pytest.mark.parametrize("ab, label", [(ARTIFACT, "euler-artifact"), (HOPF, "continuous-hopf"),
                                       (STABLE, "stable")])
def test_probe_recovers_mu_and_classifies(n, ab, label):
    model = Oscillator(*ab, n=n)
    field = partial(model.force, x=X)
    sp = leading_eigenvalues(field, model.c, EPS, k=4)
    assert sp.method == ("arpack" if n == 10 else "dense")  # ARPACK needs k < n - 1
    true = complex(ab[0], ab[1])
    # the pair leads both lists: J by real part, M by magnitude (all other |1 + eps mu| <= 0.75)
    for found in (sp.mu[:2], sp.mu_euler[:2]):
        top = found[np.argmax(found.imag)]
        assert abs(top - true) / abs(true) < 0.01, (top, true)
        assert abs(top - true) < 1e-8
    assert sp.spectral_radius == pytest.approx(abs(1 + EPS * true), rel=1e-10)
    v = verdict(sp)
    assert v.label == label
    assert v.period_tau == pytest.approx(2 * np.pi / ab[1], rel=1e-8)


def test_classify_boundaries():
    assert classify(-0.2 + 2j, 0.5) == "euler-artifact"
    assert classify(-0.2 + 2j, 0.05) == "stable"        # |1 + 0.05 mu| = 0.995
    assert classify(0.3 + 1j, 0.5) == "continuous-hopf"
    assert classify(0.3, 0.5) == "continuous-real"
    assert classify(-5.0, 0.5) == "euler-artifact"      # period-2 flip: 1 + eps mu = -1.5
    assert classify(-3.9, 0.5) == "stable"
    with pytest.raises(ValueError, match="eps"):
        classify(-1.0, 0.0)


def test_euler_artifact_cycles_under_euler_but_converges_in_continuous_time():
    model = Oscillator(*ARTIFACT)
    field, s0 = partial(model.force, x=X), model.s_init
    key = jax.random.PRNGKey(0)
    eul = detect(euler_trace(field, s0, EPS, 3000, key=key), TOL)
    assert eul.outcome == "limit-cycle"
    assert eul.residual_floor > 0.1 and eul.amplitude > 0.5
    assert eul.autocorrelation > 0.9 and 5 < eul.period_samples < 20
    cont = continuous_check(field, s0, 300.0, TOL, key=key, n_samples=1500)
    assert cont.outcome == "converged" and cont.residual_floor < TOL
    # the same field under Euler with a step inside the stability disk converges too
    small = detect(euler_trace(field, s0, 0.05, 6000, key=key), TOL)
    assert small.outcome == "converged"


def test_continuous_hopf_cycles_under_both():
    model = Oscillator(*HOPF)
    field, s0 = partial(model.force, x=X), model.s_init
    key = jax.random.PRNGKey(1)
    eul = detect(euler_trace(field, s0, EPS, 3000, key=key), TOL)
    cont = continuous_check(field, s0, 300.0, TOL, key=key, n_samples=1500)
    for r in (eul, cont):
        assert r.outcome == "limit-cycle", r
        assert r.residual_floor > 0.1 and r.amplitude > 0.5 and r.autocorrelation > 0.9
    # near onset the cycle's period is the linear one, 2 pi / b; saturation slows it
    assert 2 * np.pi < cont.period_tau < 4 * 2 * np.pi


def test_detector_period_on_a_known_signal():
    t = np.arange(4000)
    period = 12.5
    proj = np.stack([np.sin(2 * np.pi * t / period), 0.1 * np.cos(2 * np.pi * t / period)], axis=1)
    tr = Trace(dt=0.2, residual=np.full(t.size, 0.3), proj=proj, norm=np.ones(t.size), final_state=None)
    r = detect(tr, TOL)
    assert r.outcome == "limit-cycle"
    assert r.period_samples == pytest.approx(period, rel=1e-2)
    assert r.period_tau == pytest.approx(period * 0.2, rel=1e-2)
    assert r.amplitude == pytest.approx(1.0, rel=1e-2)  # sampled peaks fall short by < 1%
    decay = Trace(dt=0.2, residual=np.exp(-t / 100.0), proj=proj * 0, norm=np.ones(t.size), final_state=None)
    assert detect(decay, TOL).outcome == "converged"
    blown = Trace(dt=0.2, residual=np.r_[np.ones(10), np.full(t.size - 10, np.nan)], proj=proj,
                  norm=np.ones(t.size), final_state=None)
    assert detect(blown, TOL).outcome == "diverged"


def test_leaky_network_arpack_matches_dense(leaky, batch):
    x = batch[0][0]
    field = partial(leaky.force, x=x)
    s_star, res, _, ok = settle(field, leaky.init_state(x))
    assert ok and res < 1e-8
    jac = dense_jacobian(field, s_star)
    assert jac.shape == (17, 17)
    mu_all = np.linalg.eigvals(jac)
    lam_all = 1 + EPS * mu_all
    sp = leading_eigenvalues(field, s_star, EPS, k=4, method="arpack")
    assert sp.method == "arpack" and sp.converged
    want_mu = mu_all[np.argsort(-mu_all.real)][:4]
    want_lam = lam_all[np.argsort(-np.abs(lam_all))][:4]
    np.testing.assert_allclose(np.sort_complex(sp.mu), np.sort_complex(want_mu), atol=1e-9)
    np.testing.assert_allclose(np.sort(np.abs(sp.lam)), np.sort(np.abs(want_lam)), atol=1e-9)
    np.testing.assert_allclose(np.sort(sp.mu_euler.real), np.sort(((want_lam - 1) / EPS).real), atol=1e-9)
    with pytest.raises(ValueError, match="k < n - 1"):
        leading_eigenvalues(field, s_star, EPS, k=16, method="arpack")


def test_chip_amplifier_pole_is_an_euler_artifact_at_eps_half():
    net = aq.LeakyNetwork((4, 6, 3), key=jax.random.PRNGKey(0), asymmetry=0.7, gain=0.5, dtype=F64)
    chip = realize(net, ChipConfig.from_dict({"neuron": {"amp_pole_tau": 1e-9}}), jax.random.PRNGKey(3))
    assert chip.state_shape == (18,)  # node voltages and amplifier outputs
    x = jax.random.uniform(jax.random.PRNGKey(1), (4,), F64)
    opts = DiagnoseOptions(k=4, euler_steps=300, t_max=60.0, n_samples=300, settle_t_max=300.0, tol=TOL)
    r = diagnose_input(chip, x, EPS, opts, key=jax.random.PRNGKey(0))
    assert r["fixed_point"]["reached"]
    assert r["verdict"]["label"] == "euler-artifact"
    # the pole mode, mu ~ -tau / tau_a = -10 per tau, leads |lambda(M)|: |1 - 0.5 * 10| ~ 4
    mu_pole = complex(*r["spectrum"]["mu_euler"][0])
    assert -11.5 < mu_pole.real < -9.0 and r["verdict"]["spectral_radius_M"] > 3.0
    assert r["verdict"]["max_re_mu"] < 0
    assert r["euler"]["outcome"] == "diverged" and r["continuous"]["outcome"] == "converged"


def test_bptt_probe_follows_the_unroll_length(leaky, batch):
    xs, ys = batch
    cost = aq.SquaredError()
    long = aq.EulerRelaxation(eps=0.5, T1=120, T2=120, tol=1e-12)
    exact = aq.ImplicitAdjoint().estimate(leaky, cost, long, xs, ys, gate=False).grads
    assert bptt_probe(exact, leaky, cost, long, xs, ys)["grad_cosine_bptt"] > 0.99999
    short = aq.EulerRelaxation(eps=0.5, T1=2, T2=2, tol=1e-12)
    assert bptt_probe(exact, leaky, cost, short, xs, ys)["grad_cosine_bptt"] < 0.99


def test_cli_diagnose_and_bptt_probe_in_training(tmp_path, capsys):
    run = tmp_path / "run"
    cfg = TrainConfig(hidden=(16,), steps=2, eval_every=2, checkpoint_every=2)
    train(cfg, run, progress=False)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in evals if r["kind"] == "eval"]
    assert all(0.999 < r["grad_cosine_bptt"] <= 1.0 + 1e-9 for r in evals), evals
    assert main(["diagnose", str(run), "--n-inputs", "1", "--euler-steps", "300", "--t-max", "60"]) == 0
    out = capsys.readouterr().out
    assert "overall: stable" in out
    rep = json.loads((run / "diagnose.json").read_text())
    assert rep["step"] == 2 and rep["state_shape"] == [26] and len(rep["inputs"]) == 1
    assert rep["overall"]["label"] == "stable"
    assert rep["overall"]["max_re_mu"] < 0 and rep["overall"]["spectral_radius_M"] < 1
    assert rep["overall"]["euler_outcomes"] == ["converged"]
    assert rep["overall"]["continuous_outcomes"] == ["converged"]
    assert (run / "diagnose.png").stat().st_size > 1000

    assert main(["diagnose", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.toml").write_text(cfg.to_toml())
    assert main(["diagnose", str(tmp_path / "empty")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_non_finite_fixed_point_is_an_error():
    class Undefined(Oscillator):
        def force(self, s, x):
            return s * jnp.nan

    opts = DiagnoseOptions(euler_steps=50, n_samples=50, settle_t_max=10.0, settle_max_steps=200)
    with pytest.raises(ValueError, match="non-finite"):
        diagnose_input(Undefined(*STABLE, n=4), X, EPS, opts, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="n_samples"):
        DiagnoseOptions(n_samples=3)


def test_token_state_spectrum_matches_dense():
    """A (T, d) state (equilibrium transformer block) is flattened for the probe."""
    from analogeq.models.transformer import EqTransformer

    block = EqTransformer(7, 4, 8, 2, key=jax.random.PRNGKey(0), dtype=F64)
    x = jnp.array([1, 3, 0, 6])
    field = eqx.Partial(block.force, x=x)
    s = block.init_state(x) + 0.1
    assert block.state_shape == (4, 8)
    sp = leading_eigenvalues(field, s, 0.1, k=4, method="arpack")
    mu_all = np.linalg.eigvals(dense_jacobian(field, s))
    assert mu_all.size == 32
    np.testing.assert_allclose(sp.max_real, mu_all.real.max(), atol=1e-9)
    lam_all = np.abs(1 + 0.1 * mu_all)
    np.testing.assert_allclose(sp.spectral_radius, lam_all.max(), atol=1e-9)
