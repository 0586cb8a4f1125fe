"""SPICE export and validation: ngspice and the chip's ODE describe the same circuit.

Needs ngspice's shared library (``make test`` installs it on Debian); set
``ANALOGEQ_SKIP_SPICE=1`` to skip these tests on a machine without it.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.ep import EP, FreeTerm, NudgedTerm, compare_gradients
from analogeq.hardware import Chip, ChipConfig, Tile
from analogeq.spice import (
    SUBCIRCUITS,
    Netlist,
    SpiceConvergenceError,
    SpiceError,
    SpiceOptions,
    SpiceRelaxation,
    available,
    build_block,
    chip_netlist,
    compare_with_ode,
    library_text,
    reference_netlist,
    reference_relaxation,
    run_netlist,
    spice_config,
    sweep_nonlinearity,
    validate,
)
from analogeq.spice.loop import ode_ep

ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("ANALOGEQ_SKIP_SPICE"):
    pytest.skip("ANALOGEQ_SKIP_SPICE is set", allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def ngspice():
    """Fail (not skip) when ngspice is missing: `make test` installs it."""
    assert available(), "ngspice shared library missing: apt-get install -y ngspice libngspice0"


@pytest.fixture(scope="module")
def n8():
    return build_block("n8")


# ---- export --------------------------------------------------------------------------------


def test_library_defines_the_subcircuits():
    names = re.findall(r"^\.subckt\s+(\S+)", library_text(), re.M)
    assert tuple(names) == SUBCIRCUITS
    assert len(re.findall(r"^\.ends", library_text(), re.M)) == len(SUBCIRCUITS)


def test_netlist_carries_the_sampled_chip(n8):
    chip, x = n8
    text = chip_netlist(chip, x, t_stop=1e-7).text
    res = {m[0]: float(m[1]) for m in re.findall(r"^(R[pn]\d+_\d+) \S+ \S+ (\S+)$", text, re.M)}
    g = chip.forward[0]
    # neuron 3, input 2: G+ from the negated input row, G- from the row
    assert re.search(r"^Rp3_2 xn2 s3 ", text, re.M) and re.search(r"^Rn3_2 x2 s3 ", text, re.M)
    np.testing.assert_allclose(1 / res["Rp3_2"], float(g.g_pos[3, 2]), rtol=1e-15)
    np.testing.assert_allclose(1 / res["Rn3_2"], float(g.g_neg[3, 2]), rtol=1e-15)
    # every device of every tile is in the netlist (realistic chip: no device at 0 S)
    assert len(res) == 2 * sum(t.g_pos.size for t in chip.tiles())
    off = float(re.search(r"^Xnl5 v5 u5 un5 aeq_tanh_b .*offset=(\S+)", text, re.M)[1])
    gain = float(re.search(r"^Xnl5 .*gain=(\S+)", text, re.M)[1])
    assert off == pytest.approx(float(chip.offset[5]) * chip.config.neuron.v_unit, rel=1e-15) and off != 0
    assert gain == pytest.approx(float(chip.gain[5]), rel=1e-15) and gain != 1
    dac = float(re.search(r"^Xdac1 x1 xn1 aeq_dac v=(\S+)", text, re.M)[1])
    assert dac == pytest.approx(float(chip.dac(x)[1]), rel=1e-15)


def test_export_refuses_what_it_cannot_write(leaky, hopfield):
    with pytest.raises(TypeError, match="realize"):
        chip_netlist(leaky, jnp.zeros(8), t_stop=1e-7)
    with pytest.raises(TypeError, match="HopfieldNetwork"):
        chip_netlist(hopfield, jnp.zeros(8), t_stop=1e-7)
    tile = lambda *shape: Tile(g_pos=np.full(shape, 5e-5), g_neg=np.full(shape, 5e-5),  # noqa: E731
                               lo=np.zeros((2, *shape)), hi=np.full((2, *shape), 1e-4))
    big = Chip(sizes=(1, 257), forward=(tile(257, 1),), feedback=(), biases=(tile(257),),
               offset=np.zeros(257), gain=np.ones(257), config=ChipConfig.ideal())
    with pytest.raises(ValueError, match="at most 256 neurons.*257"):
        chip_netlist(big, np.zeros(1), t_stop=1e-7)
    with pytest.raises(ValueError, match="SpiceOptions.method"):
        SpiceOptions(method="euler")


# ---- ODE vs ngspice ------------------------------------------------------------------------


@pytest.mark.parametrize("block,hardware", [
    ("n8", "realistic"), ("n64", "realistic"),
    pytest.param("xor", "ideal", marks=pytest.mark.slow),  # no pole, devices at 0 S left out
])
def test_ngspice_matches_the_ode(block, hardware, tmp_path):
    chip, x = build_block(block, hardware)
    v = validate(chip, x, path=tmp_path / "block.cir")
    print(f"{block}/{hardware}: .op {v.op_error_max * 1e6:.3g} uV, .tran max {v.tran_error_max * 1e6:.3g} uV "
          f"rms {v.tran_error_rms * 1e6:.3g} uV, settle ODE {v.settle_ode * 1e9:.1f} ns "
          f"ngspice {v.settle_spice * 1e9:.1f} ns")
    assert v.op_error_max <= 10e-6
    assert v.tran_error_max <= 50e-6
    assert v.settle_ode == pytest.approx(v.settle_spice, rel=0.05)
    assert float(np.max(np.abs(v.ode_steady))) > 0.05  # a non-trivial operating point
    assert len(v.time) > 100 and v.time[-1] == pytest.approx(20 * chip.tau)
    if block == "n8":
        v.write(tmp_path)
        assert json.loads((tmp_path / "validation.json").read_text())["tran_error_max_uV"] <= 50
        assert (tmp_path / "overlay.png").stat().st_size > 10_000


def test_transient_from_a_given_state_and_the_pole(n8):
    chip, x = n8
    assert chip.has_pole
    s0 = 0.3 * jnp.sin(jnp.arange(chip.state_shape[0], dtype=jnp.float64))
    v = validate(chip, x, s0=s0, t_stop=5 * chip.tau)
    # ngspice reports from its first step (~2 ps = 2e-4 tau); the ODE is compared at its times
    assert v.time[0] <= 1e-3 * chip.tau
    np.testing.assert_allclose(v.spice[0], np.asarray(s0) * chip.config.neuron.v_unit, atol=5e-3)
    assert v.tran_error_max <= 50e-6


# ---- transistor-level nonlinearity ---------------------------------------------------------


def test_bjt_pair_matches_the_behavioral_tanh():
    """Tolerance: |bjt - behavioral| <= 1 % of the rail over +-3 rail (Gummel-Poon pair with
    rb = 100 Ohm, re = 2 Ohm, vaf = 50 V, ikf = 10 mA; measured about 0.42 %)."""
    for rail, gain, offset in ((1.0, 1.0, 0.0), (0.5, 1.03, 2e-3), (2.0, 0.97, -1e-3)):
        s = sweep_nonlinearity(rail=rail, gain=gain, offset=offset)
        assert s.v_in[0] == pytest.approx(-3 * rail) and s.v_in[-1] == pytest.approx(3 * rail)
        np.testing.assert_allclose(s.behavioral, s.model, atol=1e-6 * rail)
        assert s.max_error <= 1e-2 * rail, (rail, s.max_error)
        assert s.max_error > 1e-4 * rail  # a real transistor circuit, not the behavioral source


# ---- SPICE-in-the-loop EP ------------------------------------------------------------------


def test_spice_in_the_loop_ep_matches_ode_ep(n8, tmp_path):
    chip, _ = n8
    xs = jax.random.uniform(jax.random.PRNGKey(5), (2, 4), jnp.float64, -1, 1)
    r = compare_with_ode(chip, xs, jnp.array([0, 1]), beta=1e-3, workdir=tmp_path)
    print(f"SPICE EP vs ODE EP: cosine {r['cosine']:.8f}, rel error {r['rel_error']:.3g}, "
          f"free-state error {r['free_error_V'] * 1e6:.3g} uV")
    assert r["cosine"] >= 0.99
    assert r["rel_error"] <= 1e-2
    assert len(list(tmp_path.glob("nudged_*.cir"))) == 4
    assert float(aq.ep.gradients.global_norm(r["spice"].grads)) > 0
    # the nudged phases moved the states by about beta: |s_+beta - s*| ~ beta |a| (a = the
    # centered contrast -(s_+beta - s_-beta) / (2 beta) of the ngspice states)
    assert 1e-6 < float(np.max(np.abs(1e-3 * r["spice"].contrast))) < 1e-2


def test_ep_with_spice_relaxation_reproduces_ode_ep(n8, tmp_path):
    """The must-show of SPICE as a relaxation: the same EP estimator on ngspice and on the
    chip's ODE gives the same update (the hand-written SPICE loop it replaces measured cosine
    1.00000000 and relative error 2.2e-7 on this block and batch)."""
    chip, _ = n8
    xs = jax.random.uniform(jax.random.PRNGKey(5), (2, 4), jnp.float64, -1, 1)
    ys = jnp.array([0, 1])
    estimator = EP(beta=1e-3, kind="centered", correction="none")
    spice = estimator.estimate(chip, aq.SquaredError(), SpiceRelaxation(chip.config, workdir=tmp_path),
                               xs, ys, gate=False)
    ode = ode_ep(estimator, chip, reference_relaxation(chip), xs, ys)
    cmp = compare_gradients(chip.weight_gradient(spice.grads), chip.weight_gradient(ode.grads))["overall"]
    print(f"EP on SpiceRelaxation vs EP on the ODE: cosine {cmp['cosine']:.10f}, "
          f"rel error {cmp['rel_error']:.3g}")
    assert cmp["cosine"] >= 0.99999
    assert cmp["rel_error"] <= 1e-5
    # the free states agree to well under a microvolt (v_unit = 1 V on this block)
    np.testing.assert_allclose(spice.free.state, ode.free.state, atol=1e-7)
    np.testing.assert_allclose(spice.contrast, ode.contrast, rtol=1e-4, atol=1e-6)
    assert bool(jnp.all(spice.free.converged)) and float(jnp.max(spice.free.residual)) < 1e-10
    assert float(jnp.max(spice.nudged_residual)) < 1e-10
    assert bool(jnp.all(jnp.isinf(spice.free.time)))  # .op: the t -> infinity limit
    # one netlist per phase, numbered in the order they ran
    assert sorted(p.name for p in tmp_path.glob("*.cir")) == [
        "free_0.cir", "free_1.cir", "nudged_0_0.cir", "nudged_0_1.cir", "nudged_1_0.cir", "nudged_1_1.cir"]
    assert "aeq_nudge" in (tmp_path / "nudged_1_1.cir").read_text()


def test_spice_relaxation_refuses_what_it_cannot_build(n8):
    chip, _ = n8
    relax = SpiceRelaxation(chip.config)
    x = jnp.array([0.3, -0.2, 0.5, 0.1])
    s, y = chip.init_state(x), jnp.asarray(1)

    def nudged(**kw):
        args = dict(cost=aq.SquaredError(), betas=(1e-3, -1e-3), correction="none")
        args.update(kw)
        term = NudgedTerm(chip, x, args["cost"], y, s, args["betas"], args["correction"],
                          noise=kw.get("noise"))
        return relax.nudged(term, term.initial_state())

    with pytest.raises(ValueError, match="holomorphic"):
        nudged(betas=(1e-3, 1e-3j))
    with pytest.raises(ValueError, match="squared-error cost only"):
        nudged(cost=aq.CrossEntropy())
    with pytest.raises(ValueError, match="common-mode tracking"):
        nudged(correction="asym-tracking")
    with pytest.raises(ValueError, match="noiseless"):
        nudged(noise=jnp.ones_like(s))
    with pytest.raises(TypeError, match="NudgedTerm"):
        relax.nudged(FreeTerm(chip, x), s[None])
    with pytest.raises(TypeError, match="not a bare field"):
        relax.free(lambda v: chip.force(v, x), s)
    with pytest.raises(TypeError, match="outside jax.jit"):
        jax.jit(lambda x: relax.free(FreeTerm(chip, x), chip.init_state(x)).state)(x)
    with pytest.raises(ValueError, match="mode must be one of"):
        SpiceRelaxation(chip.config, mode="ac")
    with pytest.raises(ValueError, match="t_settle"):
        SpiceRelaxation(chip.config, mode="tran", t_settle=-1.0)


@pytest.mark.slow
def test_spice_in_the_loop_asymep_circuit(tmp_path):
    cfg = spice_config("realistic").replace(**{"neuron.amp_pole_tau": 0.0})
    chip, _ = build_block("xor", cfg)
    xs = jnp.array([[0.0, 1.0], [1.0, 1.0]])
    r = compare_with_ode(chip, xs, jnp.array([[0.8], [-0.8]]), beta=1e-3, correction="asym",
                         workdir=tmp_path)
    print(f"SPICE AsymEP vs ODE AsymEP: cosine {r['cosine']:.8f}, rel error {r['rel_error']:.3g}")
    assert r["cosine"] >= 0.99
    assert "aeq_asym" in (tmp_path / "nudged_0_0.cir").read_text().split(".end")[-2]


@pytest.mark.slow
def test_spice_in_the_loop_ep_with_transient_phases(n8, tmp_path):
    chip, _ = n8
    xs = jax.random.uniform(jax.random.PRNGKey(5), (2, 4), jnp.float64, -1, 1)
    r = compare_with_ode(chip, xs, jnp.array([0, 1]), beta=1e-2, mode="tran", workdir=tmp_path)
    print(f"SPICE EP (.tran phases) vs ODE EP: cosine {r['cosine']:.8f}, rel error {r['rel_error']:.3g}")
    assert r["cosine"] >= 0.99


# ---- command line --------------------------------------------------------------------------


def test_cli_export_and_its_errors(tmp_path, capsys):
    from analogeq.cli import main

    out = tmp_path / "xor.cir"
    assert main(["spice", "export", "--block", "xor", "--out", str(out)]) == 0
    body = lambda text: text.split("\n", 1)[1]  # noqa: E731  (the title line differs)
    assert _same_netlist(body(out.read_text()), body(reference_netlist("xor").text))
    assert main(["spice", "export", "--block", "xor", "--input", "0.1", "--out", str(out)]) == 2
    assert "--input needs 2 values" in capsys.readouterr().err
    assert main(["spice", "export", "--block", "xor", "--t-stop", "-1", "--out", str(out)]) == 2
    assert "--t-stop must be > 0 seconds" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_validate(tmp_path, capsys):
    from analogeq.cli import main

    assert main(["spice", "validate", "--block", "xor", "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "validation.json").read_text())
    assert summary["tran_error_max_uV"] <= 50 and (tmp_path / "overlay.png").exists()
    # an impossible bound fails the command
    assert main(["spice", "validate", "--block", "xor", "--out", str(tmp_path), "--max-tran-uv", "1e-6"]) == 1


# ---- runner robustness ---------------------------------------------------------------------


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_repeated_runs_do_not_grow_memory(n8, tmp_path):
    chip, x = n8
    nl = chip_netlist(chip, x, t_stop=10 * chip.tau)
    for _ in range(5):
        run_netlist(nl, tmp_path / "warm.cir")
    before = _rss_mb()
    ops = [run_netlist(nl, tmp_path / "rep.cir").op["v7"] for _ in range(100)]
    growth = _rss_mb() - before
    print(f"100 runs: RSS growth {growth:.2f} MB")
    assert growth <= 50
    assert len(set(ops)) == 1


def test_errors_name_the_netlist(tmp_path):
    bad = Netlist(text="t\nV1 a 0 1\nV2 a 0 2\n.op\n.end\n", state_nodes=("a",), v_unit=1.0, tau=1.0,
                  t_stop=None, analyses=("op",))
    with pytest.raises(SpiceConvergenceError, match=re.escape(str(tmp_path / "short.cir"))):
        run_netlist(bad, tmp_path / "short.cir")
    with pytest.raises(SpiceConvergenceError) as info:  # no path: the failing netlist is kept
        run_netlist(bad)
    kept = Path(re.search(r"netlist (\S+analogeq_failed_\S+\.cir)", str(info.value))[1])
    assert kept.read_text() == bad.text
    kept.unlink()
    typo = Netlist(text="t\nV1 a 0 1\nXq a b nosuch\n.op\n.end\n", state_nodes=("a",), v_unit=1.0,
                   tau=1.0, t_stop=None, analyses=("op",))
    with pytest.raises(SpiceError, match="typo.cir.*unknown subckt"):
        run_netlist(typo, tmp_path / "typo.cir")
    ok = Netlist(text="t\nV1 a 0 1\nR1 a b 1k\nR2 b 0 3k\n.op\n.end\n", state_nodes=("b",), v_unit=1.0,
                 tau=1.0, t_stop=None, analyses=("op",))
    res = run_netlist(ok, tmp_path / "ok.cir")
    assert res.op["b"] == pytest.approx(0.75, rel=1e-12)
    # a floating node makes ngspice step gmin and say so on stderr ("Note: ..."), which PySpice
    # 1.5 raises on; here the run succeeds
    floating = Netlist(text="t\nV1 a 0 1\nR1 a b 1k\nR2 b 0 3k\nC1 b c 1p\n.op\n.end\n", state_nodes=("b",),
                       v_unit=1.0, tau=1.0, t_stop=None, analyses=("op",))
    res = run_netlist(floating, tmp_path / "floating.cir")
    assert res.op["b"] == pytest.approx(0.75, rel=1e-6)  # gmin left on the floating node
    assert any(not line.startswith("Warning:") for line in res.stderr), res.stderr


def test_missing_ngspice_says_how_to_install():
    code = ("import analogeq.spice.runner as r\n"
            "r.find_libngspice = lambda: None\n"
            "try:\n    r.session()\nexcept r.NgspiceNotFound as e:\n    print('MISSING:', e)\n")
    env = {k: v for k, v in os.environ.items() if k != "NGSPICE_LIBRARY_PATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "MISSING:" in out.stdout and "apt-get install -y ngspice libngspice0" in out.stdout, out.stderr


# ---- reference netlists --------------------------------------------------------------------


def _tokens(text):
    return [t for line in text.splitlines() if not line.startswith("*") for t in re.split(r"[\s=]+", line) if t]


def _same_netlist(a: str, b: str) -> bool:
    ta, tb = _tokens(a), _tokens(b)
    if len(ta) != len(tb):
        return False
    for x, y in zip(ta, tb):
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            if x != y:
                return False
            continue
        if not np.isclose(fx, fy, rtol=1e-12, atol=0):
            return False
    return True


@pytest.mark.parametrize("block", ["xor", "n8", "n64"])
def test_reference_netlists_are_reproduced(block, tmp_path):
    stored = (ROOT / "netlists" / f"{block}.cir").read_text()
    fresh = reference_netlist(block)
    assert _same_netlist(fresh.text, stored), f"netlists/{block}.cir is stale: run netlists/regenerate.py"
    ref = json.loads((ROOT / "netlists" / f"{block}.json").read_text())
    assert ref["validation"]["tran_error_max_uV"] <= 50 and ref["validation"]["op_error_max_uV"] <= 10
    op_only = Netlist(text=re.sub(r"^\.tran .*$", "", stored, flags=re.M), state_nodes=fresh.state_nodes,
                      v_unit=fresh.v_unit, tau=fresh.tau, t_stop=None, analyses=("op",))
    op = run_netlist(op_only, tmp_path / f"{block}.cir").op
    for node, volts in ref["op_volts"].items():
        assert op[node] == pytest.approx(volts, abs=1e-6), node
