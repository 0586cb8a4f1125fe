"""SPICE export of trained runs, transient noise in the netlist, the validation report.

Needs ngspice's shared library (as tests/test_spice.py); ``ANALOGEQ_SKIP_SPICE=1`` skips.
"""

import json
import os
import re
from pathlib import Path

import jax
import numpy as np
import pytest

import analogeq as aq
from analogeq.config import TrainConfig
from analogeq.hardware.constants import K_B
from analogeq.spice import available, run_netlist
from analogeq.spice.export import read_netlist
from analogeq.spice_report import run_chip
from analogeq.spice.noise import NoiseSpec, interpolation_factor, noise_source
from analogeq.spice.noise_check import noise_validation
from analogeq.spice.partition import layer_blocks
from analogeq.spice.run_validation import validate_run
from analogeq.spice.validate import ode_steady_state

if os.environ.get("ANALOGEQ_SKIP_SPICE"):
    pytest.skip("ANALOGEQ_SKIP_SPICE is set", allow_module_level=True)

BOUND = 50e-6  # [V] every node of every block, .op and .tran


@pytest.fixture(scope="module", autouse=True)
def ngspice():
    jax.config.update("jax_enable_x64", True)
    assert available(), "ngspice shared library missing: apt-get install -y ngspice libngspice0"


def _train(out: Path, **kw) -> Path:
    cfg = TrainConfig(hidden=(16,), steps=20, batch_size=32, eval_every=20, probe_every=1000,
                      checkpoint_every=20, lr=0.05, **kw)
    aq.train(cfg, out, progress=False)
    return out


@pytest.fixture(scope="module")
def emulator_run(tmp_path_factory):
    """A 20-step digits run (64-16-10 leaky network) on the digital emulator."""
    return _train(tmp_path_factory.mktemp("emu"))


def test_layer_blocks():
    assert layer_blocks((64, 16, 10), 256) == (tuple(range(26)),)
    assert layer_blocks((64, 16, 10), 16) == (tuple(range(16)), tuple(range(16, 26)))
    assert layer_blocks((4, 8, 8, 3), 16) == (tuple(range(16)), tuple(range(16, 19)))
    # a layer over the limit is split into equal chunks
    assert [len(b) for b in layer_blocks((4, 300, 10), 256)] == [150, 150, 10]
    with pytest.raises(ValueError, match="max_neurons"):
        layer_blocks((4, 8, 2), 0)


def test_trained_run_validates_against_the_ode(emulator_run, tmp_path):
    rc = run_chip(emulator_run)
    assert rc.kind == "emulator" and rc.chip.sizes == (64, 16, 10) and rc.step == 20
    assert rc.noise is not None and rc.noise.temperature == 300.0  # realistic hardware
    v = validate_run(rc, tmp_path, samples=8, tran_samples=1)
    s = v.summary
    print({k: s[k] for k in ("agreement", "op_error_max_uV", "tran_error_max_uV", "spice_op_seconds_per_sample")})
    assert s["blocks"] == [[0, 25]]
    assert s["agreement"] == 1.0
    assert v.op_errors.max() <= BOUND and v.tran_errors.max() <= BOUND
    assert len(s["op_error_max_per_node_uV"]) == 26 and max(s["tran_error_max_per_node_uV"]) <= 50
    # the netlist carries the trained chip's conductances
    text = (tmp_path / "netlists" / "sample_0" / "network.cir").read_text()
    r = float(re.search(r"^Rp3_5 xn5 s3 (\S+)$", text, re.M)[1])
    assert 1 / r == pytest.approx(float(rc.chip.forward[0].g_pos[3, 5]), rel=1e-15)
    v.write(tmp_path)
    assert json.loads((tmp_path / "run_validation.json").read_text())["agreement"] == 1.0
    assert (tmp_path / "node_errors.png").stat().st_size > 10_000


def test_layer_blocks_validate_against_the_ode(emulator_run, tmp_path):
    rc = run_chip(emulator_run)
    v = validate_run(rc, tmp_path, samples=8, tran_samples=1, max_neurons=16)
    s = v.summary
    print({k: s[k] for k in ("agreement", "op_error_max_uV", "tran_error_max_uV")})
    assert s["blocks"] == [[0, 15], [16, 25]]
    assert s["agreement"] == 1.0
    assert v.op_errors.max() <= BOUND and v.tran_errors.max() <= BOUND
    folder = tmp_path / "netlists" / "sample_0"
    bench = (folder / "block_1_bench.cir").read_text()
    assert ".include block_1.cir" in bench and re.search(r"^Xbd0 u0 un0 aeq_dac ", bench, re.M)
    # the top-level file (DACs + .include of both blocks) is the whole network: its .op is the ODE's
    chip = rc.chip
    x = np.asarray(rc.data.x_test[0], np.float64)
    nodes = [f"v{i}" for i in range(26)]
    res = run_netlist(read_netlist(folder / "top.cir", nodes, chip.config.neuron.v_unit, chip.tau))
    ode = ode_steady_state(chip, x)[:26] * chip.config.neuron.v_unit
    assert np.max(np.abs(np.array([res.op[m] for m in nodes]) - ode)) <= 10e-6


def test_noise_source_amplitude_and_sampling_factors():
    line = noise_source("In0", "a", "b", 1e-4, 300.0, 2e-10, "trnoise")
    na, nt = map(float, re.search(r"trnoise\((\S+) (\S+) 0 0\)", line).groups())
    # one-sided density of samples NA^2 spaced NT: 2 NA^2 NT = 4 k T G
    assert 2 * na**2 * nt == pytest.approx(4 * K_B * 300.0 * 1e-4, rel=1e-12)
    nt2, na2 = map(float, re.search(r"trrandom\(2 (\S+) 0 (\S+) 0\)", noise_source("I", "a", "b", 1e-4, 300.0, 2e-10)).groups())
    assert (na2, nt2) == (na, nt)
    # trnoise: the linear interpolation's sinc^4 filter behind an RC node, by the trapezoid rule on a fine grid
    h = 0.02
    f = np.linspace(0, 2000, 2_000_001)
    ref = 4 * np.trapezoid(np.sinc(f * h) ** 4 / (1 + (2 * np.pi * f) ** 2), f)
    assert interpolation_factor(h, "trnoise") == pytest.approx(ref, rel=2e-4)
    # trrandom: held samples u_k (variance 1/h, tau = 1) into dv/dt = -v + u; the time-averaged
    # variance in closed form over the variance 1/2 under white noise
    for h in (0.02, 0.1, 0.5):
        a = np.exp(-h)
        v_k = (1 - a) / h / (1 + a)  # stationary at the sample instants
        mean = (v_k * (1 - a**2) / 2 + (h - 2 * (1 - a) + (1 - a**2) / 2) / h) / h
        assert interpolation_factor(h, "trrandom") == pytest.approx(2 * mean, rel=1e-7)
    with pytest.raises(ValueError, match="NoiseSpec.temperature"):
        NoiseSpec(temperature=0.0)
    with pytest.raises(ValueError, match="NoiseSpec.source must be one of trrandom, trnoise; got 'white'"):
        NoiseSpec(source="white")


def test_rc_node_noise_matches_kT_over_C_and_the_sde():
    """64 RC nodes x 200 tau of ngspice ``trrandom`` (~12,000 independent samples, relative
    standard error ~1.3 %) and 64 x 200 SDE settles (12,800 samples, ~1.25 %). Seeded on both
    sides, so the numbers repeat exactly; the bounds are 4 standard errors."""
    v = noise_validation(circuit="rc", n_nodes=64, t_stop_tau=200.0, sde_draws=200)
    s = v.summary()
    print(s)
    assert s["noise_source"] == "trrandom"
    assert s["spice_rel_se"] < 0.015 and s["sde_rel_se"] < 0.015
    assert v.kTC == pytest.approx(K_B * 300.0 / 1e-12, rel=1e-12)
    assert v.expected_spice == pytest.approx(v.kTC * interpolation_factor(0.02), rel=1e-12)
    assert abs(v.spice / v.expected_spice - 1) < 4 * s["spice_rel_se"]
    assert abs(s["sde_over_closed_form"] - 1) < 4 * s["sde_rel_se"]
    assert abs(v.spice / v.expected_spice - v.sde / v.closed_form) < 4 * np.hypot(s["spice_rel_se"], s["sde_rel_se"])
    again = noise_validation(circuit="rc", n_nodes=64, t_stop_tau=200.0, sde_draws=200)
    assert again.spice == v.spice and again.sde == v.sde  # .options seed reseeds trrandom every run


_TRNOISE_RMS = """
import json, sys
import numpy as np
from analogeq.spice.netlist import Netlist
from analogeq.spice.runner import run_netlist
n, steps, nt = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
nodes = tuple(f"r{i}" for i in range(n))
res = run_netlist(Netlist(text=open(sys.argv[1]).read(), state_nodes=nodes, v_unit=1.0, tau=nt,
                          t_stop=steps * nt, analyses=("tran",)))
t = np.asarray(res.time)
grid = np.arange(1, steps) * nt  # the breakpoints, where the source takes its drawn values
v = np.stack([np.interp(grid, t, np.asarray(res.tran[m])) for m in nodes])
print(json.dumps({"rms": float(np.sqrt(np.mean(v**2))), "mean": float(np.mean(v)), "n": int(v.size)}))
"""


def test_trnoise_samples_have_the_requested_rms(tmp_path):
    """``trnoise`` into 1 Ohm: its sample values (at the breakpoints) have rms ``NA``, in a fresh
    process. ngspice seeds its Wallace generator with the process id and its power then drifts
    with use (we measured -3.0 % to +3.5 % after eight such runs in one process), so only a
    process's first draws are a fair test: 16 x 10,000 samples (standard error 0.35 %) against a
    3 % bound, with a 0.55 % spread between fresh processes measured (:mod:`analogeq.spice.noise`)."""
    import subprocess
    import sys

    n, steps, nt = 16, 10_000, 1e-6
    lines = ["* trnoise rms"] + [f"{noise_source(f'I{i}', '0', f'r{i}', 1.0, nt / (2 * K_B), nt, 'trnoise')}\n"
                                 f"R{i} r{i} 0 1" for i in range(n)]  # NA = sqrt(2 k T G / NT) = 1 A
    lines += [f".tran {nt} {steps * nt} 0 {nt}", ".end"]
    (tmp_path / "rms.cir").write_text("\n".join(lines) + "\n")
    out = subprocess.run([sys.executable, "-c", _TRNOISE_RMS, str(tmp_path / "rms.cir"), str(n), str(steps), str(nt)],
                         capture_output=True, text=True, timeout=300, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert abs(r["rms"] - 1) < 0.03
    assert abs(r["mean"]) < 4 / np.sqrt(r["n"])


@pytest.mark.slow
def test_exported_chip_noise_matches_the_closed_form_and_the_sde():
    """The exported chip with leak and device ``trrandom`` sources: 32 nodes x 320 tau (~10,000
    samples, ~1.4 %) against kT/C (1 + g_leak sum G / G_ref^2) and the SDE (32 x 400 draws)."""
    v = noise_validation("realistic", circuit="chip", devices=True, n_nodes=32, t_stop_tau=330.0, sde_draws=400)
    s = v.summary()
    print(s)
    assert v.closed_form > 1.2 * v.kTC  # the devices add noise
    assert s["spice_rel_se"] < 0.02 and s["sde_rel_se"] < 0.02
    assert abs(s["spice_over_closed_form"] - 1) < 0.05
    assert abs(s["spice_over_sde"] - 1) < 0.05
    assert abs(s["sde_over_closed_form"] - 1) < 0.05


@pytest.mark.slow
def test_pulsed_chip_run_validates(tmp_path):
    run = _train(tmp_path / "run", hardware="realistic", device="ecram-tang2018", update="mixed",
                 optimizer="sgd", beta=0.2)
    rc = run_chip(run)
    assert rc.kind == "chip" and rc.chip.forward[0].device is not None
    v = validate_run(rc, tmp_path / "v", samples=8, tran_samples=1)
    assert v.summary["agreement"] == 1.0
    assert v.op_errors.max() <= BOUND and v.tran_errors.max() <= BOUND
    with pytest.raises(ValueError, match="drop --hardware"):
        run_chip(run, "ideal")


def test_cli_export_of_a_run(emulator_run, tmp_path, capsys):
    from analogeq.cli import main

    out = tmp_path / "net"
    assert main(["spice", "export", str(emulator_run), "--out", str(out), "--max-neurons", "16", "--noise"]) == 0
    manifest = json.loads((out / "export.json").read_text())
    assert [b["file"] for b in manifest["blocks"]] == ["block_0_bench.cir", "block_1_bench.cir"]
    assert manifest["noise"]["temperature"] == 300.0 and manifest["kind"] == "emulator"
    frag = (out / "block_0.cir").read_text()
    assert re.search(r"^Inl0 y0 v0 DC 0 trrandom\(2 ", frag, re.M) and re.search(r"^Inp0_0 xn0 s0 DC 0 trrandom", frag, re.M)
    assert main(["spice", "export", str(emulator_run), "--out", str(out), "--max-neurons", "16", "--noise",
                 "--noise-source", "trnoise"]) == 0
    assert re.search(r"^Inl0 y0 v0 DC 0 trnoise\(", (out / "block_0.cir").read_text(), re.M)
    assert main(["spice", "export", str(emulator_run), "--out", str(out)]) == 0  # same folder again: replaced
    assert json.loads((out / "export.json").read_text())["blocks"][0]["file"] == "network.cir"
    assert not (out / "block_0.cir").exists()
    assert main(["spice", "export", str(emulator_run), "--sample", "100000", "--out", str(out)]) == 2
    assert "--sample 100000 is outside" in capsys.readouterr().err
    assert main(["spice", "export", str(tmp_path / "nope"), "--out", str(out)]) == 2


@pytest.mark.slow
def test_cli_report(emulator_run, tmp_path):
    from analogeq.cli import main

    fit = tmp_path / "fit.toml"
    fit.write_text('[device]\nmodel = "soft-bounds"\ndw_min = 0.001\n')
    out = tmp_path / "report"
    assert main(["spice", "report", str(emulator_run), "--out", str(out), "--samples", "8",
                 "--noise-check", "rc", "--noise-nodes", "32", "--fit", str(fit)]) == 0
    index = (out / "index.md").read_text()
    assert "100.00 %" in index and "fits/fit.toml" in index and "`device.model`" in index
    for link in re.findall(r"\]\(([^)]+)\)", index):
        assert (out / link).exists(), link
    # validate on its own: exit 0 within the bounds, 1 past an impossible one
    val = tmp_path / "val"
    assert main(["spice", "validate", str(emulator_run), "--samples", "4", "--tran-samples", "0",
                 "--out", str(val)]) == 0
    assert json.loads((val / "run_validation.json").read_text())["agreement"] == 1.0
    assert main(["spice", "validate", str(emulator_run), "--samples", "4", "--tran-samples", "0",
                 "--out", str(val), "--max-op-uv", "1e-12"]) == 1
