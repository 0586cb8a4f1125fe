"""The notebooks in ``notebooks/`` execute in their fast mode and compute what their text claims.

Each jupytext script is converted to a notebook in memory and run by nbclient in a fresh
``python3`` kernel (this interpreter) with ``ANALOGEQ_FAST=1`` and the Agg backend, in a
temporary working directory that also receives the notebook's figures. A last cell, appended
here, prints a few numbers from the notebook's namespace as JSON; the checks below are on those
numbers, so a notebook that runs but computes nonsense fails.
"""

import json
import math
import os
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT = 600  # a hung kernel fails the test instead of blocking the suite


def run_notebook(name: str, probe: str, tmp_path: Path, monkeypatch) -> dict:
    """Execute ``notebooks/<name>`` and return ``eval(probe)`` in its namespace (JSON-decoded)."""
    assert KernelSpecManager().get_kernel_spec("python3"), "no 'python3' kernel (pip install ipykernel)"
    nb = jupytext.read(NOTEBOOKS / name)
    # The suite's persistent compilation cache (ANALOGEQ_COMPILE_CACHE, set by conftest), turned on
    # after the notebook's imports (which set its dtype): a second run of a notebook reads its
    # programs back instead of compiling them again.
    first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
    nb.cells.insert(first + 1, nbformat.v4.new_code_cell(
        "from analogeq import compile_cache\ncompile_cache.enable(min_compile_seconds=0.0)"))
    nb.cells.append(nbformat.v4.new_code_cell(f"import json as _json\nprint(_json.dumps({probe}, default=float))"))
    monkeypatch.setenv("ANALOGEQ_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("ANALOGEQ_NOTEBOOK_OUT", str(tmp_path / "runs"))
    NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT,
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    figures = sorted(p.name for p in (tmp_path / "runs").rglob("*.png"))
    return {**json.loads(text.strip().splitlines()[-1]), "_figures": figures}


@pytest.mark.slow  # ~60 s cold: three trainings and a Monte Carlo
def test_digital_vs_analog(tmp_path, monkeypatch):
    r = run_notebook("01_digital_vs_analog.py", """{
        "summary": summary, "same_class": same_class, "grad": grad,
        "chip_acc": [e["test_acc"] for e in on_chip.history if e["kind"] == "eval"],
        "chip_cos": [e["grad_cosine"] for e in on_chip.history if "grad_cosine" in e]}""",
                     tmp_path, monkeypatch)
    s = r["summary"]
    assert s["emulator final test accuracy (AsymEP)"] > 0.8
    assert s["emulator cos(update, exact), AsymEP"] > 0.999
    # uncorrected EP on a non-conservative field is visibly biased
    assert s["emulator cos(update, exact), no correction"] < 0.95
    assert s["ideal chip vs emulator fixed-point error"] < 1e-4 and r["same_class"] == 1.0
    assert s["realistic chips: accuracy of the trained network"] > 0.7
    assert r["grad"]["cos_digital_ep_vs_digital_exact"] > 0.999
    assert 0.9 < r["grad"]["cos_analog_ep_vs_chip_exact"] <= 1.0 + 1e-9
    assert 0.01 < r["grad"]["fixed_point_error"] < 0.5
    assert min(r["chip_cos"]) > 0.95
    assert r["chip_acc"][-1] > r["chip_acc"][0] + 0.1 and math.isfinite(s["chip training final loss"])
    assert r["_figures"] == ["chip_curves.png", "emulator_curves.png"]


@pytest.mark.slow  # ~35 s cold: a chip training per device
def test_device_explorer(tmp_path, monkeypatch):
    r = run_notebook("02_device_explorer.py", """{
        "table": {d["preset"]: d["up/down"] for d in device_table}, "base": base_acc,
        "storage": storage, "asym": asym,
        "training": {str(a): [res.summary["final_test_acc"], sum(int(c.sum()) for c in res.state["pulses"])]
                     for a, res in training_asymmetry.items()}}""", tmp_path, monkeypatch)
    table, storage, asym = r["table"], r["storage"], r["asym"]
    assert 0.9 < table["ecram-tang2018"] < 1.1  # symmetric at w = 0 (Tang 2018 fit)
    assert table["ag-asi-neurosim"] < 0.8  # NeuroSim Ag:a-Si: LTD steps larger than LTP
    assert r["base"] > 0.85
    levels = {v: m for v, m, _ in storage["crossbar.n_levels"]}
    assert levels[64] > r["base"] - 0.03 and levels[4] < levels[64] - 0.1
    noise = {v: m for v, m, _ in storage["crossbar.prog_noise"]}
    assert noise[0.005] > noise[0.1] + 0.2
    written = [a["acc"][0] for a in asym.values()]
    assert max(abs(w - r["base"]) for w in written) < 0.02  # the devices store the trained weights
    sym, mild, strong = (asym[f"constant step, up_down {a}"] for a in ("0", "0.1", "0.3"))
    # drift ~ pulses dw_min up_down / 2: 200 x 0.002 x 0.1 / 2 = 0.02
    assert abs(sym["drift"][-1]) < 0.005 and 0.015 < mild["drift"][-1] < 0.025 < 0.05 < strong["drift"][-1]
    assert strong["acc"][-1] < sym["acc"][-1] - 0.2
    assert set(r["training"]) == {"0.0", "0.5"}
    assert all(0.0 <= acc <= 1.0 and pulses > 0 for acc, pulses in r["training"].values())
    assert len(r["_figures"]) == 4


@pytest.mark.skipif(bool(os.environ.get("ANALOGEQ_SKIP_SPICE")), reason="ANALOGEQ_SKIP_SPICE is set")
def test_spice_validation(tmp_path, monkeypatch):
    r = run_notebook("03_spice_validation.py", """{
        "op": op_error_uV, "tran": tran_error_uV, "tight": tightest_tran_uV,
        "coarse": tolerance_rows[0][1]["tran_error_max_uV"], "bjt_op_V": bjt.op_error_max,
        "blocks": {n: [v["op_error_max_uV"], v["tran_error_max_uV"]] for n, v in block_rows},
        "cosine": spice_ep_cosine, "free_error_V": loop["free_error_V"]}""", tmp_path, monkeypatch)
    assert r["op"] < 10 and r["tran"] < 50
    # the transient error is ngspice's integration error: it follows the step and tolerance
    assert r["tight"] < r["tran"] / 5 and r["coarse"] > r["tran"]
    assert r["bjt_op_V"] > 1e-3  # a transistor-level pair is not the model's tanh
    assert all(op < 10 and tran < 50 for op, tran in r["blocks"].values())
    assert r["cosine"] > 0.9999 and r["free_error_V"] < 1e-5
    assert "n8_overlay.png" in r["_figures"]


def test_transformer_stability(tmp_path, monkeypatch):
    r = run_notebook("04_transformer_stability.py", """{
        "eps_c": eps_critical, "rows": rows, "ideal": ideal_fp_error,
        "chips": [[c["max Re mu"], c["shift"]] for c in chip_rows],
        "verdict": {k: answer[k] for k in ("euler_cycles", "continuous_converges", "answer")}}""",
                     tmp_path, monkeypatch)
    assert 0.085 < r["eps_c"] < 0.1  # mu = -0.155 +- 1.83i leaves the Euler disk at 0.092
    out = {(row["block"], row["eps"]): row for row in r["rows"]}
    assert all(row["continuous"] == "converged" for row in r["rows"])
    assert out[("branches x0.1 (init)", 0.25)]["euler"] == "converged"
    assert out[("branches x0.1 (init)", 1.05)]["euler"] == "diverged"
    cycle = out[("branches x2", 0.25)]
    assert cycle["euler"] == "limit-cycle" and cycle["sustained"] and 1.0 < cycle["max|lambda(M)|"] < 1.1
    assert not out[("branches x2", 0.05)]["sustained"] and out[("branches x2", 0.05)]["label"] == "stable"
    assert r["ideal"] < 1e-8
    assert all(mu < 0 and 1e-3 < shift < 1.0 for mu, shift in r["chips"])
    v = r["verdict"]
    assert v["euler_cycles"] and v["continuous_converges"] and "artifact" in v["answer"]
    assert r["_figures"] == ["relaxations.png", "spectra.png"]


@pytest.mark.skipif(not (NOTEBOOKS.parent.parent / "shared/data/mnist").is_dir(),
                    reason="no MNIST IDX files in ../shared/data/mnist")
def test_mnist_tiles(tmp_path, monkeypatch):
    r = run_notebook("05_mnist_tiles.py", """{
        "emulator": emulator_acc, "ideal": ideal_acc, "ideal_map_error": ideal_map_error,
        "maps": {str(k): [float(m.min()), float(m.mean()), float(m.max())] for k, m in maps.items()},
        "rows": [[row["r_segment"], row["test_acc"]] for row in rows]}""", tmp_path, monkeypatch)
    assert r["emulator"] > 0.8
    assert abs(r["ideal"] - r["emulator"]) <= 0.01  # tiles with ideal wires: the model
    assert r["ideal_map_error"] == 0.0  # ideal wires: every device sees its drive exactly
    lo = [r["maps"][k][0] for k in ("1.0", "2.5", "5.0")]
    assert all(m[2] <= 1.0 + 1e-6 for m in r["maps"].values()) and lo[0] > lo[1] > lo[2]
    # 64 devices of ~50 uS per line: ~g r n^2 / 2 = 0.1 of the drive lost per Ohm at the far end
    assert 0.75 < lo[0] < 0.95 and lo[2] < 0.6
    acc = {str(k): a for k, a in r["rows"]}
    assert acc["0.0"] > 0.8
    # measured in fast mode: 0.913 at 0 Ohm, 0.887 at 10 Ohm -- the drop costs accuracy, mildly at 64 x 64
    assert 0.5 < acc["10.0"] <= acc["0.0"]
    assert r["_figures"] == ["accuracy_vs_wires.png", "ir_drop_maps.png"]


@pytest.mark.slow  # ~120 s cold: four chip trainings of the block
def test_transformer_chip(tmp_path, monkeypatch):
    r = run_notebook("06_transformer_chip.py", """{
        "curves": {n: [[e["step"], e.get("grad_cosine"), e.get("stab_max_re_mu"), e.get("stab_verdict")]
                       for e in v] for n, v in evals.items()},
        "summary": {n: res.summary for n, res in results.items()}, "costs": costs,
        "energy": {n: e["per_token_J"] for n, e in energy.items()}}""", tmp_path, monkeypatch)
    curves, summary, costs, energy = r["curves"], r["summary"], r["costs"], r["energy"]
    assert set(curves) == {"digital", "ideal-windowed", "realistic"}
    assert all([c[0] for c in v] == [0, 2, 4] for v in curves.values())  # eval and probe every 2 steps
    # the ideal chip's field is the model's: the same EP estimate and the same spectrum at init
    for name in ("digital", "ideal-windowed"):
        assert min(c[1] for c in curves[name]) > 0.999
    assert abs(curves["digital"][0][2] - curves["ideal-windowed"][0][2]) < 1e-3
    # a damped (c = 1) block at init: every leading eigenvalue in the left half plane
    assert all(c[3] == "stable" and c[2] < 0 for v in curves.values() for c in v)
    assert all(-1.0 <= c[1] <= 1.0 for c in curves["realistic"])
    assert summary["realistic"]["grad_cosine_mean"] < summary["ideal-windowed"]["grad_cosine_mean"]
    assert summary["digital"]["stab_verdict_worst"] == "stable"
    # section 3: the same chip, block and strings as the realistic run's step-0 probe (noise-free)
    assert abs(costs["realistic"] - curves["realistic"][0][1]) < 1e-4
    assert costs["ideal-windowed"] > 0.999 and costs["64 levels"] > 0.99
    assert set(costs) == {"ideal-windowed", "64 levels", "8-bit converters", "amplifier pole",
                          "circuits mismatch", "realistic"}
    assert set(energy) == {"ideal-windowed", "realistic"}
    assert all(1e-12 < e < 1e-5 for v in energy.values() for e in v)  # J per token, a lower bound
    assert r["_figures"] == ["energy.png", "nonideality_costs.png", "training.png"]
