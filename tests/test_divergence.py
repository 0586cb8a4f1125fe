"""Divergence is an outcome: a `diverged` record, a strict-JSON summary and exit status 3; failed
nudged phases are gated like free ones; no NaN/Infinity in any JSON the package writes."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.cli import main
from analogeq.costs import make_cost
from analogeq.ep import EP
from analogeq.ep.base import NUDGED_RESIDUAL_LIMIT, nudged_failures
from analogeq.jsonio import append_jsonl, dumps, loads_strict, sanitize, write_json
from analogeq.training import LOSS_LIMIT, divergence


def _strict(text):
    def refuse(name):
        raise AssertionError(f"non-finite JSON constant {name}")
    return json.loads(text, parse_constant=refuse)


# --- strict JSON -----------------------------------------------------------------------------

def test_non_finite_numbers_become_null_with_a_reason(tmp_path):
    rec = {"loss": float("nan"), "r": np.float32("inf"), "g": jnp.asarray(-np.inf), "ok": 0.5,
           "nested": {"x": [1.0, float("nan")]}, "v": np.arange(3.0), "c": complex(1.0, float("inf"))}
    out = sanitize(rec)
    assert out["loss"] is None and out["loss_reason"] == "nan"
    assert out["r"] is None and out["r_reason"] == "inf"
    assert out["g"] is None and out["g_reason"] == "-inf"
    assert out["ok"] == 0.5 and out["nested"] == {"x": [1.0, None]} and out["v"] == [0.0, 1.0, 2.0]
    assert out["c"] == [1.0, None]
    assert sanitize({"e": float("nan"), "e_reason": "no energy model"})["e_reason"] == "no energy model"
    _strict(dumps(rec))
    write_json(tmp_path / "a.json", rec)
    append_jsonl(tmp_path / "a.jsonl", rec)
    _strict((tmp_path / "a.json").read_text())
    _strict((tmp_path / "a.jsonl").read_text())
    (tmp_path / "b.json").write_text('{"x": NaN}')
    with pytest.raises(ValueError, match="b.json.*non-finite"):
        loads_strict((tmp_path / "b.json").read_text(), str(tmp_path / "b.json"))


# --- the host-side verdict -------------------------------------------------------------------

OK = {"loss": 0.5, "free_residual_max": 1e-7, "nudged_residual_max": 1e-4, "unconverged": 0,
      "nudged_failed": 0}


def _verdict(scales=(0.3, 1.0), limit=1e6, gate=True, **metrics):
    return divergence({**OK, **metrics}, np.asarray(scales), np.ones(len(scales), bool), limit, gate, 16)


def test_divergence_verdicts():
    assert _verdict() is None
    assert _verdict(free_residual_max=math.inf)["phase"] == "free"
    # gate on: samples with failed nudged phases are left out; only "none left" is fatal
    assert _verdict(nudged_failed=3, nudged_residual_max=math.inf) is None
    v = _verdict(nudged_failed=16, nudged_residual_max=math.inf)
    assert v["phase"] == "nudged" and "16 of 16" in v["reason"]
    assert _verdict(gate=False, nudged_failed=1, nudged_residual_max=math.nan)["phase"] == "nudged"
    assert _verdict(loss=math.nan)["phase"] == "loss"
    assert _verdict(loss=2 * LOSS_LIMIT)["phase"] == "loss"
    assert _verdict(loss=1e23, unconverged=16)["phase"] == "free"  # a runaway relaxation
    assert _verdict(scales=(0.3, math.nan))["phase"] == "update"
    v = _verdict(scales=(0.3, 2e6))
    assert v["phase"] == "update" and v["value"] == 2e6
    # an infinite constant that was infinite from the start is not a parameter going non-finite
    assert divergence(OK, np.array([1.0, np.inf]), np.array([True, False]), 1e6, True, 16) is None


# --- gating of nudged phases -----------------------------------------------------------------

class _FlakyNudged(aq.EulerRelaxation):
    """Euler relaxation whose nudged phase blows up (NaN state, infinite residual) for samples
    whose free state sums above ``cut``."""

    cut: float = eqx.field(static=True, default=0.0)

    def nudged(self, term, s0, key=None):
        r = super().nudged(term, s0, key)
        bad = jnp.sum(jnp.real(s0[0])) > self.cut  # s0 stacks the K phases, each from s*
        return eqx.tree_at(lambda q: (q.state, q.residual), r,
                           (jnp.where(bad, jnp.nan, r.state), jnp.where(bad, jnp.inf, r.residual)))


def test_failed_nudged_phases_are_left_out_and_counted(leaky):
    xs = jax.random.uniform(jax.random.PRNGKey(2), (8, 8), jnp.float64)
    ys = jnp.arange(8) % 5
    cost, est = make_cost("squared_error"), EP(beta=0.05)
    free = aq.free_phase(leaky, aq.EulerRelaxation(), xs)
    sums = jnp.sum(free.state, axis=1)
    cut = float(jnp.median(sums))
    bad = np.asarray(sums > cut)
    assert 0 < bad.sum() < 8
    flaky = _FlakyNudged(cut=cut)
    out = est.estimate(leaky, cost, flaky, xs, ys, gate=True)
    assert int(out.metrics["nudged_failed"]) == bad.sum()
    np.testing.assert_array_equal(np.asarray(out.used), ~bad)
    # gating = the gradient of the good samples alone, and finite despite the NaN states
    ref = est.estimate(leaky, cost, aq.EulerRelaxation(), xs[~bad], ys[~bad], gate=True)
    for g, r in zip(jax.tree_util.tree_leaves(out.grads), jax.tree_util.tree_leaves(ref.grads)):
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    # gate off: the failed samples enter and poison the update (the loop then stops the run)
    off = est.estimate(leaky, cost, flaky, xs, ys, gate=False)
    assert not all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree_util.tree_leaves(off.grads))


def test_nudged_failure_flags():
    a = jnp.ones((4, 3)).at[1, 0].set(jnp.nan)
    r = jnp.array([1e-4, 1e-4, 2 * NUDGED_RESIDUAL_LIMIT, jnp.inf])
    np.testing.assert_array_equal(np.asarray(nudged_failures(a, r)), [False, True, True, True])


def test_a_non_finite_relaxation_is_flagged_not_raised(leaky, batch):
    bad = batch[0].at[0, 0].set(jnp.nan)
    free = aq.free_phase(leaky, aq.EulerRelaxation(), bad)
    assert not bool(free.converged[0]) and bool(jnp.isinf(free.residual[0]))
    assert bool(jnp.all(free.converged[1:] == aq.free_phase(leaky, aq.EulerRelaxation(), batch[0]).converged[1:]))


# --- end to end through the CLI --------------------------------------------------------------

BASE = ["--hidden", "16", "--steps", "6", "--batch-size", "16", "--eval-every", "3",
        "--probe-every", "3", "--no-progress"]


@pytest.mark.parametrize("flags, phase", [
    (["--beta", "1e30"], "nudged"),                          # every nudged phase overflows
    (["--optimizer", "sgd", "--lr", "1e4"], ("loss", "update")),  # the update runs away
    (["--gain", "1e20"], "free"),                            # the free phase overflows
    (["--lr", "1e30"], ("free", "nudged", "loss", "update")),  # Adam's first step overflows the weights
])
def test_divergent_runs_end_with_a_record_and_exit_3(tmp_path, capsys, flags, phase):
    out = tmp_path / "run"
    rc = main(["train", *BASE, *flags, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "diverged at step" in err and len(err.strip().splitlines()) == 1
    lines = (out / "metrics.jsonl").read_text().splitlines()
    recs = [_strict(x) for x in lines]
    last = recs[-1]
    assert last["kind"] == "diverged" and last["phase"] in ((phase,) if isinstance(phase, str) else phase)
    assert "residual" in last and last["step"] == recs[-2]["step"]
    summary = _strict((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"]["phase"] == last["phase"]
    assert summary["steps"] == last["step"] - 1 and summary["diverged"]["reason"]
    assert not (out / "checkpoint.eqx").exists()  # nothing past the last good step is saved
