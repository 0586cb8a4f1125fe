"""The stability probe of a training run (issue 16): eigenvalues of ``dF/dz`` at the free states
the run reaches, and its verdict (stable / Euler artifact / continuous Hopf), against linear
fields with known spectra, against ``numpy.linalg.eigvals`` of ``jax.jacfwd`` at an independent
(long-Euler) fixed point of the equilibrium transformer, and in the eval records of a training run."""

import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)

from analogeq.config import TrainConfig
from analogeq.diagnostics.stability_probe import DENSE_MAX, stability_probe
from analogeq.emulator import AbstractRelaxation, EulerRelaxation, euler
from analogeq.models.base import AbstractModel
from analogeq.models.transformer import EqTransformer

F64 = jnp.float64


class Linear(AbstractModel):
    """``F(s; x) = A s + x``: its Jacobian is ``A`` at every state."""

    A: jnp.ndarray

    @property
    def state_shape(self):
        return (self.A.shape[0],)

    def force(self, s, x):
        return self.A @ s + x

    def readout(self, s):
        return s

    def check_input(self, x):
        pass


class FineSteps(AbstractRelaxation):
    """A continuous-time stand-in (not an Euler relaxation): many small Euler steps."""

    def free(self, term, s0, key=None):
        return euler(term, s0, 0.01, 200, 1e-9, False)

    def nudged(self, term, s0, key=None):
        return self.free(term, s0, key)


def rot(re, im):
    """A 2x2 block with eigenvalues ``re +- i im``."""
    return np.array([[re, -im], [im, re]])


def block(*blocks):
    n = sum(b.shape[0] for b in blocks)
    a, i = np.zeros((n, n)), 0
    for b in blocks:
        a[i:i + b.shape[0], i:i + b.shape[0]] = b
        i += b.shape[0]
    return jnp.asarray(a, F64)


# (A, max Re mu, |Im| of it, Euler verdict at eps = 1, continuous verdict, |1 + mu| max)
CASES = {
    "hopf": (block(rot(0.1, 1.0), np.array([[-1.0]])), 0.1, 1.0, "continuous-hopf", "continuous-hopf",
             abs(1 + 0.1 + 1j)),
    "euler-artifact": (block(rot(-0.2, 1.0), np.array([[-0.5]])), -0.2, 1.0, "euler-artifact", "stable",
                       abs(0.8 + 1j)),
    "real": (block(np.array([[0.3]]), rot(-1.0, 0.5)), 0.3, 0.0, "continuous-real", "continuous-real",
             1.3),
    "stable": (block(rot(-0.5, 0.2), np.array([[-0.7]])), -0.5, 0.2, "stable", "stable", abs(0.5 + 0.2j)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_linear_field_spectrum_and_verdicts(name):
    a, re, im, euler_label, cont_label, radius = CASES[name]
    model = Linear(a)
    xs = jnp.asarray(np.random.default_rng(0).standard_normal((5, a.shape[0])), F64)
    out = stability_probe(model, EulerRelaxation(eps=1.0, T1=20), xs, n=3)
    assert out["max_re_mu"] == pytest.approx(re, abs=1e-10)
    assert out["max_re_mu_im"] == pytest.approx(im, abs=1e-10)
    assert out["euler_radius"] == pytest.approx(radius, abs=1e-10)
    assert out["verdict"] == euler_label and out["nonfinite"] == 0
    cont = stability_probe(model, FineSteps(), xs, n=3)
    assert cont["max_re_mu"] == pytest.approx(re, abs=1e-10)
    assert cont["verdict"] == cont_label and "euler_radius" not in cont
    json.dumps(out, allow_nan=False)


def test_large_state_uses_arpack():  # the continuous criterion's J alone, and J with I + eps J
    # Above the dense limit: the top pair sits among stable decays.
    n = DENSE_MAX + 88
    decay = -1.0 - np.random.default_rng(1).random(n - 2)
    a = block(rot(0.05, 0.8), np.diag(decay))
    out = stability_probe(Linear(a), FineSteps(), jnp.zeros((1, n), F64), n=1, k=4)
    assert out["max_re_mu"] == pytest.approx(0.05, abs=1e-8)
    assert out["max_re_mu_im"] == pytest.approx(0.8, abs=1e-8)
    assert out["verdict"] == "continuous-hopf"
    out = stability_probe(Linear(a), EulerRelaxation(eps=1.0, T1=5), jnp.zeros((1, n), F64), n=1, k=4)
    assert out["max_re_mu"] == pytest.approx(0.05, abs=1e-8)
    assert out["euler_radius"] == pytest.approx(abs(1.05 + 0.8j), abs=1e-8)
    assert out["verdict"] == "continuous-hopf"


def test_nonfinite_state_is_counted_not_linearized():
    a = jnp.asarray([[2.0]], F64)  # Euler at eps 1 multiplies by 3 per step: overflows
    out = stability_probe(Linear(a), EulerRelaxation(eps=1.0, T1=800), jnp.ones((2, 1), F64), n=2)
    assert out["nonfinite"] == 2 and out["verdict"] is None and np.isnan(out["max_re_mu"])


@eqx.filter_jit
def jacobian_reference(model, xs):
    """Per input, the dense Jacobian at an independent fixed point: 20000 Euler steps of 0.2 tau
    (not the probe's step)."""

    def one(x):
        f = lambda z: model.force(z.reshape(T, D), x).reshape(-1)
        z = jax.lax.fori_loop(0, 20000, lambda i, z: z + 0.2 * f(z), model.init_state(x).reshape(-1))
        return jax.jacfwd(f)(z), jnp.linalg.norm(f(z))

    return jax.vmap(one)(xs)


V, T, D, H = 5, 6, 8, 2


def test_transformer_probe_matches_eigvals_at_an_independent_fixed_point():
    model = EqTransformer(V, T, D, H, key=jax.random.PRNGKey(0), dtype=F64)
    xs = jax.random.randint(jax.random.PRNGKey(1), (4, T), 0, V)
    out = stability_probe(model, EulerRelaxation(eps=0.5, T1=3000, tol=1e-13), xs, n=4)
    jacs, res = jacobian_reference(model, xs)
    assert float(jnp.max(res)) < 1e-12
    ref = max(np.max(np.linalg.eigvals(np.asarray(j)).real) for j in jacs)
    print("probe max Re mu", out["max_re_mu"], "reference", ref, "residual", out["free_residual_max"])
    assert out["free_residual_max"] < 1e-12
    assert out["max_re_mu"] == pytest.approx(ref, abs=1e-8)
    assert out["verdict"] == "stable"


def test_training_records_the_stability_probe(tmp_path):
    from analogeq.assembly import train

    cfg = TrainConfig(model="eqtransformer", task="parity", cost="token_cross_entropy", d_model=8,
                      n_heads=2, seq_len=6, steps=3, eval_every=3, probe_every=3, checkpoint_every=3,
                      dtype="float64")
    res = train(cfg, tmp_path, progress=False)
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 3]
    for r in evals:
        assert r["stab_verdict"] in ("stable", "euler-artifact", "continuous-real", "continuous-hopf")
        assert np.isfinite(r["stab_max_re_mu"]) and "stab_euler_radius" in r
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stab_max_re_mu_max"] == pytest.approx(max(r["stab_max_re_mu"] for r in evals))
    assert summary["stab_verdict_worst"] in {r["stab_verdict"] for r in evals}
    assert res.summary["stab_verdict_worst"] == summary["stab_verdict_worst"]
