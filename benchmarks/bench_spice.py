"""ODE (diffrax, float64) vs ngspice wall time on the same 64-neuron block at equal accuracy.

    .venv/bin/python benchmarks/bench_spice.py --out benchmarks/results

Block: ``analogeq.spice.build_block("n64")`` (sizes 16-48-16, realistic preset without noise:
quantized and mismatched conductances, offsets, gain errors, 1 ns amplifier pole).

* ``.tran``: 20 tau (200 ns) from rest. Each solver runs at several tolerances; its error is the
  max |dV| over every state against a reference ODE solve (rtol 1e-12) at the solver's own output
  times. ODE times are compiled calls (compilation excluded, reported separately); ngspice times
  are whole runs through the shared library (netlist load + analysis + result copy).
* steady state: the ODE integrated adaptively to its steady-state event vs ngspice ``.op``;
  error against the reference ODE (rtol 1e-12) integrated for 400 tau.

Timings are the minimum over ``--repeats`` runs (the machine is shared). Writes
``spice_timing.json`` and ``spice_timing.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from analogeq.spice import SpiceOptions, build_block, chip_netlist, reference_relaxation, run_netlist  # noqa: E402
from analogeq.spice.validate import _steady, _trajectory  # noqa: E402


def _best(f, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return min(times), out


def bench(repeats: int = 3, t_tau: float = 20.0) -> dict:
    chip, x = build_block("n64")
    vu, tau = chip.config.neuron.v_unit, chip.tau
    s0 = chip.init_state(x)
    ref = reference_relaxation(chip, rtol=1e-12)
    grid = jnp.linspace(0.0, t_tau, 2001)

    def ode_traj(relax, ts):
        return np.asarray(jax.block_until_ready(_trajectory(relax, chip, x, s0, ts)))

    ref_grid = ode_traj(ref, grid)
    rows_tran = []
    for rtol in (1e-5, 1e-6, 1e-7, 1e-8, 1e-9):
        relax = reference_relaxation(chip, rtol=rtol)
        t0 = time.perf_counter()
        ode_traj(relax, grid)
        compile_s = time.perf_counter() - t0
        wall, ys = _best(lambda: ode_traj(relax, grid), repeats)
        rows_tran.append({"solver": "ODE (diffrax Tsit5)", "setting": f"rtol={rtol:g}, atol={rtol / 100:g}",
                          "seconds": wall, "compile_seconds": compile_s,
                          "max_error_uV": float(np.max(np.abs(ys - ref_grid))) * vu * 1e6})
    for reltol in (1e-5, 1e-6, 1e-7, 1e-8):
        opts = SpiceOptions(reltol=reltol)
        nl = chip_netlist(chip, x, t_stop=t_tau * tau, options=opts, analyses=("tran",))
        res = None
        walls = []
        for _ in range(repeats):
            res = run_netlist(nl)
            walls.append(res.wall_time)
        t = res.time
        keep = np.concatenate([[True], np.diff(t) > 0])
        ts = np.concatenate([t[keep] / tau, np.full(-keep.sum() % 1024, t[keep][-1] / tau)])
        ref_sp = ode_traj(ref, jnp.asarray(ts))[: keep.sum()]
        err = np.max(np.abs(nl.states(res.tran)[keep] - ref_sp)) * vu
        rows_tran.append({"solver": "ngspice (.tran, trap)", "setting": f"reltol={reltol:g}, max step 0.02 tau",
                          "seconds": min(walls), "compile_seconds": 0.0, "max_error_uV": float(err) * 1e6,
                          "points": int(keep.sum())})

    # reference steady state: the tight ODE integrated for 400 tau (no steady-state event involved)
    steady_ref = ode_traj(ref, jnp.linspace(0.0, 400.0, 1024))[-1]
    rows_op = []
    for tol in (1e-4, 1e-6, 1e-8, 1e-10):
        relax = reference_relaxation(chip, rtol=min(1e-6, tol / 100), steady_tol=tol)
        t0 = time.perf_counter()
        jax.block_until_ready(_steady(relax, chip, x))
        compile_s = time.perf_counter() - t0
        wall, res = _best(lambda: jax.block_until_ready(_steady(relax, chip, x)), repeats)
        rows_op.append({"solver": "ODE to steady state", "setting": f"steady_tol={tol:g}",
                        "seconds": wall, "compile_seconds": compile_s,
                        "settle_tau": float(res.time),
                        "max_error_uV": float(np.max(np.abs(np.asarray(res.state) - steady_ref))) * vu * 1e6})
    for reltol in (1e-3, 1e-6, 1e-9):
        nl = chip_netlist(chip, x, options=SpiceOptions(reltol=reltol), analyses=("op",))
        walls, res = [], None
        for _ in range(repeats):
            res = run_netlist(nl)
            walls.append(res.wall_time)
        rows_op.append({"solver": "ngspice .op", "setting": f"reltol={reltol:g}", "seconds": min(walls),
                        "compile_seconds": 0.0,
                        "max_error_uV": float(np.max(np.abs(nl.states(res.op) - steady_ref))) * vu * 1e6})
    return {
        "block": {"name": "n64", "sizes": list(chip.sizes), "neurons": chip.n_neurons,
                  "devices": int(2 * sum(t.g_pos.size for t in chip.tiles())), "tau_s": tau,
                  "tran_length_tau": t_tau},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "load_average": os.getloadavg(), "python": platform.python_version(),
                    "jax": jax.__version__, "jax_backend": jax.default_backend()},
        "repeats": repeats, "tran": rows_tran, "steady_state": rows_op,
    }


def _equal_accuracy(rows, target_uv):
    out = {}
    for r in rows:
        if r["max_error_uV"] <= target_uv:
            best = out.get(r["solver"])
            if best is None or r["seconds"] < best["seconds"]:
                out[r["solver"]] = r
    return out


def to_markdown(res: dict) -> str:
    b, m = res["block"], res["machine"]
    lines = [f"Block n64: sizes {tuple(b['sizes'])}, {b['neurons']} neurons, {b['devices']} conductances, "
             f"tau = {b['tau_s'] * 1e9:g} ns; machine: {m['cores']}-core CPU ({m['cpu']}), "
             f"load average {m['load_average'][0]:.1f} during the run, JAX {m['jax']} on {m['jax_backend']}; "
             f"times are the minimum of {res['repeats']} runs, ODE compilation excluded.", ""]
    for key, title in (("tran", f".tran, {b['tran_length_tau']:g} tau from rest"), ("steady_state", "steady state")):
        lines += [f"**{title}** (error: max |dV| over every state vs a reference ODE solve, rtol 1e-12)", "",
                  "| solver | setting | wall time [s] | max error [uV] | ODE compile [s] |",
                  "|---|---|---:|---:|---:|"]
        for r in res[key]:
            lines.append(f"| {r['solver']} | {r['setting']} | {r['seconds']:.4f} | {r['max_error_uV']:.3g} | "
                         f"{r['compile_seconds']:.1f} |")
        lines += ["", "At equal accuracy (fastest setting of each solver within the error bound):", "",
                  "| error bound [uV] | ODE [s] | ngspice [s] | ngspice / ODE |", "|---:|---:|---:|---:|"]
        for target in (50.0, 5.0, 0.5):
            best = _equal_accuracy(res[key], target)
            ode = next((r for s, r in best.items() if s.startswith("ODE")), None)
            sp = next((r for s, r in best.items() if s.startswith("ngspice")), None)
            fmt = lambda r: f"{r['seconds']:.4f}" if r else "not reached"  # noqa: E731
            ratio = f"{sp['seconds'] / ode['seconds']:.0f}x" if ode and sp else "-"
            lines.append(f"| {target:g} | {fmt(ode)} | {fmt(sp)} | {ratio} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description="ODE vs ngspice wall time on the 64-neuron block")
    p.add_argument("--out", default="benchmarks/results", help="output directory")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per setting (minimum reported)")
    args = p.parse_args()
    res = bench(args.repeats)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spice_timing.json").write_text(json.dumps(res, indent=2) + "\n")
    md = to_markdown(res)
    (out / "spice_timing.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
