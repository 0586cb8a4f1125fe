"""On-chip training under one non-ideality at a time, and Monte Carlo over chips.

1. Digits test accuracy after on-chip AsymEP training vs (a) conductance levels, (b) read
   noise, (c) device-to-device bound variation -- each on an otherwise ideal chip, over several
   chip instances (mean and spread).
2. Monte Carlo of 64 chip instances in one vectorized call vs a Python loop over the same chips.

Run: python benchmarks/bench_chip.py --out benchmarks/results   (add --quick for a smoke test)
Writes chip_sweeps.{json,csv,png}, monte_carlo_timing.json and chip_tables.md into --out.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analogeq.compare import chip_metrics  # noqa: E402
from analogeq.config import TrainConfig  # noqa: E402
from analogeq.ep import ImplicitAdjoint, free_phase  # noqa: E402
from analogeq.hardware import ChipConfig, ChipRelaxation  # noqa: E402
from analogeq.assembly import build_analog, build_digital, train  # noqa: E402

SWEEPS = {
    "crossbar.n_levels": [2, 4, 8, 16, 64, 256],
    "crossbar.read_noise": [0.0, 0.01, 0.03, 0.1],
    "crossbar.d2d_bounds": [0.0, 0.1, 0.3],
}
LABELS = {"crossbar.n_levels": "conductance levels", "crossbar.read_noise": "read noise (relative)",
          "crossbar.d2d_bounds": "device-to-device bound variation"}


def sweep(cfg: TrainConfig, chips: int, sweeps: dict) -> list[dict]:
    # Otherwise ideal chips read after a fixed 40 tau settle window (as the realistic preset);
    # a chip that has not settled to a 1e-3 residual by then is reported and gated.
    base = ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-3, "dynamics.settle_time": 4e-7})
    rows = []
    for field, values in sweeps.items():
        for v in values:
            accs = []
            t0 = time.perf_counter()
            for c in range(chips):
                run = cfg.replace(chip_seed=c)
                hw = base.replace(**{field: v})
                # A chip that cannot settle (e.g. 2 levels: every weight at +-1) is cut off after
                # 512 solver steps, reported unconverged and gated, instead of burning the budget.
                parts = dataclasses.replace(build_analog(run, hw), relaxation=ChipRelaxation(hw, max_steps=512))
                result = train(run, None, progress=False, parts=parts)
                accs.append(result.summary["final_test_acc"])
            rows.append({"parameter": field, "value": v, "acc_mean": float(np.mean(accs)),
                         "acc_std": float(np.std(accs)), "acc_min": float(np.min(accs)),
                         "chips": chips, "seconds": time.perf_counter() - t0, "accs": accs})
            print(f"{field} = {v}: test acc {np.mean(accs):.4f} +- {np.std(accs):.4f} over {chips} chips "
                  f"({rows[-1]['seconds']:.0f} s)", flush=True)
    return rows


def plot_sweeps(rows, digital_acc, path):
    fields = list(dict.fromkeys(r["parameter"] for r in rows))
    fig, axes = plt.subplots(1, len(fields), figsize=(4.5 * len(fields), 3.6))
    for ax, f in zip(np.atleast_1d(axes), fields):
        rs = [r for r in rows if r["parameter"] == f]
        x = [r["value"] for r in rs]
        ax.errorbar(x, [r["acc_mean"] for r in rs], yerr=[r["acc_std"] for r in rs], marker="o", capsize=3,
                    label="chip (mean +- std over chips)")
        for r in rs:
            ax.plot([r["value"]] * len(r["accs"]), r["accs"], ".", color="gray", ms=4)
        ax.axhline(digital_acc, color="k", ls="--", lw=1, label="digital emulator")
        if f == "crossbar.n_levels":
            ax.set_xscale("log", base=2)
        ax.set(xlabel=LABELS[f], ylabel="digits test accuracy", ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def monte_carlo_timing(cfg: TrainConfig, n_chips: int, n_probe: int, n_test: int) -> dict:
    hw = ChipConfig.preset("realistic")
    digital = build_digital(cfg)
    d, model = digital.data, digital.model
    xs, ys = jnp.asarray(d.x_train[:n_probe]), jnp.asarray(d.y_train[:n_probe])
    tx, ty = jnp.asarray(d.x_test[:n_test]), jnp.asarray(d.y_test[:n_test])
    dfree = free_phase(model, digital.relaxation, xs)
    dexact = ImplicitAdjoint().estimate(model, digital.cost, digital.relaxation, xs, ys, gate=False)
    keys = jax.random.split(jax.random.PRNGKey(0), n_chips)
    args = (digital.estimator, digital.cost, hw, model)
    rest = (xs, ys, tx, ty, dfree.state, dexact.grads)

    def run(k):
        out = chip_metrics(*args, k, *rest)
        return jax.block_until_ready(out)

    t0 = time.perf_counter(); run(keys); compile_vec = time.perf_counter() - t0
    t0 = time.perf_counter(); vec = run(keys); t_vec = time.perf_counter() - t0
    t0 = time.perf_counter(); run(keys[:1]); compile_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    loop = [run(keys[i:i + 1]) for i in range(n_chips)]
    t_loop = time.perf_counter() - t0
    same = max(float(np.max(np.abs(np.asarray(vec["test_acc"])[i] - np.asarray(loop[i]["test_acc"][0]))))
               for i in range(n_chips))
    return {"n_chips": n_chips, "probe_batch": n_probe, "test_samples": n_test,
            "vectorized_s": t_vec, "loop_s": t_loop, "speedup": t_loop / t_vec,
            "compile_vectorized_s": compile_vec, "compile_single_s": compile_one,
            "max_test_acc_difference_loop_vs_vectorized": same,
            "test_acc_mean": float(np.mean(vec["test_acc"])), "test_acc_std": float(np.std(vec["test_acc"]))}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--steps", type=int, default=150, help="training steps per chip")
    p.add_argument("--chips", type=int, default=2, help="chip instances per sweep point")
    p.add_argument("--mc-chips", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="smoke test: 2 points per sweep, 10 steps")
    p.add_argument("--skip-sweeps", action="store_true")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig(optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking",
                      steps=10 if args.quick else args.steps,
                      eval_every=10_000, probe_every=10_000)
    sweeps = {k: v[:2] for k, v in SWEEPS.items()} if args.quick else SWEEPS
    info = {"machine": f"{platform.processor() or platform.machine()}, {jax.device_count()} JAX device(s) "
            f"({jax.devices()[0].platform}), jax {jax.__version__}", "date": time.strftime("%Y-%m-%d"),
            "train_config": cfg.to_dict()}
    tables = [f"Machine: {info['machine']}; {info['date']}", ""]
    if not args.skip_sweeps:
        digital_acc = train(cfg, None, progress=False).summary["final_test_acc"]
        rows = sweep(cfg, 1 if args.quick else args.chips, sweeps)
        (out / "chip_sweeps.json").write_text(json.dumps({"info": info, "digital_acc": digital_acc, "rows": rows}, indent=2))
        with open(out / "chip_sweeps.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "accs"])
            w.writeheader()
            w.writerows([{k: v for k, v in r.items() if k != "accs"} for r in rows])
        plot_sweeps(rows, digital_acc, out / "chip_sweeps.png")
        tables += [f"On-chip AsymEP training, {cfg.steps} steps, SGD lr {cfg.lr}, beta {cfg.beta}; digital emulator: "
                   f"{digital_acc:.4f}", "", "| parameter | value | test acc (mean +- std) | min | chips |",
                   "|---|---|---|---|---|"]
        tables += [f"| {r['parameter']} | {r['value']} | {r['acc_mean']:.4f} +- {r['acc_std']:.4f} | "
                   f"{r['acc_min']:.4f} | {r['chips']} |" for r in rows]
    mc = monte_carlo_timing(cfg, 4 if args.quick else args.mc_chips, 16, 32 if args.quick else 100)
    (out / "monte_carlo_timing.json").write_text(json.dumps({"info": info, **mc}, indent=2))
    tables += ["", f"Monte Carlo over {mc['n_chips']} realistic chips (probe batch {mc['probe_batch']}, "
               f"{mc['test_samples']} test samples, SDE): vectorized {mc['vectorized_s']:.2f} s, Python loop "
               f"{mc['loop_s']:.2f} s, speedup {mc['speedup']:.1f}x (compile: {mc['compile_vectorized_s']:.1f} s "
               f"vectorized, {mc['compile_single_s']:.1f} s single)"]
    (out / "chip_tables.md").write_text("\n".join(tables) + "\n")
    print("\n".join(tables))


if __name__ == "__main__":
    main()
