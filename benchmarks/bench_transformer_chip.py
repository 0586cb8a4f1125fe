"""The equilibrium transformer trained on the analog chip (issue 16): digital emulator vs the
ideal analog block vs the block with each non-ideality alone vs ``realistic``, at equal steps.

Every run is ``analogeq train --model eqtransformer`` with the same block, data, seed and
recipe (the benchmark recipe of ``bench_transformer.py`` without the parameter EMA and the
weight cap, which a chip cannot apply; ``resreg`` is the chip's stability control, see
``analogeq/transformer_chip.py``). The analog block settles in continuous time with fixed
readout windows: ``ideal-windowed`` (15 tau free, 3 tau nudged: the emulator's ``T1 eps`` and
``T2 eps``) and, for each non-ideality, ``ideal-windowed`` with that group of fields set to its
``realistic`` value (:data:`GROUPS`; the groups cover every field where the two presets differ,
checked at start). Each run's chip TOML is written into its folder, so the same command line
with ``--hardware <run>/chip.toml`` reproduces it.

Per run: final and best validation accuracy (parity; the 64 held-out strings) or validation
cross-entropy in nats/char (char-LM), the step where parity first reaches 99 %, the gradient
probe's cosine against the chip's own exact gradient (implicit adjoint of the analog field, same
free states), the stability probe's verdict when the run records one, unconverged samples,
steps/s, energy per training step and per token. ``--timing`` times one compiled training step
per chip (digital, ideal-windowed, realistic; the free phase, the whole estimate and the step,
alternated over rounds) to show where the time goes.

    python benchmarks/bench_transformer_chip.py --task parity --steps 600 --out benchmarks/results/transformer_chip
    python benchmarks/bench_transformer_chip.py --task charlm --steps 2000 --only digital,ideal-windowed,realistic
    python benchmarks/bench_transformer_chip.py --timing --out benchmarks/results/transformer_chip
    python benchmarks/bench_transformer_chip.py --task parity --steps 20 --quick       # smoke test

Writes ``<task>.json``, ``<task>.csv``, ``<task>.md``, ``<task>.png`` (and ``timing.json``)
into ``--out``; each run's own folder is ``<out>/<task>/<run>``. Single runs, seed 0, unless
``--seeds`` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from analogeq.assembly import build_parts, train  # noqa: E402
from analogeq.config import TrainConfig  # noqa: E402
from analogeq.hardware.config import ChipConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_chip_speed import _case, _time  # noqa: E402
from bench_transformer import CHARLM, PARITY, machine  # noqa: E402

CHIP_RECIPE = {"ema": 0.0, "weight_cap": 0.0}
"""What the chip runs drop from the emulator recipe (conductances cannot be averaged or
rescaled); the digital run drops them too, so the comparison is at the same recipe."""

BASE = "ideal-windowed"
REFERENCE = "realistic"
GROUPS: dict[str, tuple[str, ...]] = {
    "levels": ("crossbar.n_levels",),
    "programming": ("crossbar.G_min", "crossbar.prog_noise", "crossbar.d2d_bounds"),
    "read-noise": ("crossbar.read_noise",),
    "thermal-noise": ("crossbar.thermal_noise", "neuron.kTC_noise", "noise.temperature"),
    "neuron-mismatch": ("neuron.offset_sigma", "neuron.gain_sigma"),
    "amp-pole": ("neuron.amp_pole_tau",),
    "converters": ("periphery.dac_bits", "periphery.adc_bits", "periphery.dac_range", "periphery.adc_range"),
    "circuits": ("circuits.*",),
    "windows": ("dynamics.settle_time", "dynamics.nudged_time", "dynamics.average_window",
                "dynamics.steady_tol"),
}
"""Each non-ideality group: the fields set to their :data:`REFERENCE` value on :data:`BASE`
(``section.*``: every field of the section)."""
NO_EFFECT = ("crossbar.tile_rows", "crossbar.tile_cols")
"""Fields that differ between the presets but do not act on the block studied here (every tile
of a d <= 256 block fits one 256 x 256 physical tile)."""


def _fields(cfg: ChipConfig, pattern: str) -> list[str]:
    section, _, name = pattern.partition(".")
    return [f"{section}.{k}" for k in cfg.to_dict().get(section, {})] if name == "*" else [pattern]


def _value(cfg: ChipConfig, dotted: str):
    section, _, name = dotted.partition(".")
    return cfg.to_dict()[section][name]


def chips() -> dict[str, ChipConfig | str]:
    """Run name -> chip: ``digital`` (``""``), the base, one variant per group, the reference."""
    base, ref = ChipConfig.preset(BASE), ChipConfig.preset(REFERENCE)
    differ = {f"{s}.{k}" for s, fields in ref.to_dict().items() for k, v in fields.items()
              if base.to_dict().get(s, {}).get(k) != v}
    covered = {f for pats in GROUPS.values() for p in pats for f in _fields(ref, p)} | set(NO_EFFECT)
    if differ - covered:
        raise SystemExit(f"fields that differ between {BASE} and {REFERENCE} in no group: {sorted(differ - covered)}")
    out: dict[str, ChipConfig | str] = {"digital": "", BASE: base}
    for name, pats in GROUPS.items():
        changes = {f: _value(ref, f) for p in pats for f in _fields(ref, p) if f in differ}
        if changes:
            out[name] = base.replace(**changes)
    out[REFERENCE] = ref
    return out


def recipe(task: str, steps: int, seed: int) -> dict:
    base = {**(PARITY if task == "parity" else CHARLM), **CHIP_RECIPE, "steps": steps, "seed": seed}
    every = max(1, steps // 12)
    return {**base, "eval_every": every, "probe_every": every}


def run_name(name: str, gate: bool) -> str:
    """The name of a run of ``name`` in the tables and folders: ``<name>-gated`` with the gate."""
    return f"{name}-gated" if gate else name


def run_one(task: str, name: str, chip, steps: int, seed: int, out: Path, gate: bool = False) -> dict:
    """Train one run into ``out/<task>/<name>[-gated][-s<seed>]`` and return its row (``gate``:
    samples whose free or nudged phase failed are left out of the update; the recipe's
    default is off)."""
    name = run_name(name, gate)
    folder = out / task / (name if seed == 0 else f"{name}-s{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    hardware = ""
    if isinstance(chip, ChipConfig):
        chip.to_toml(folder / "chip.toml")
        hardware = str(folder / "chip.toml")
    cfg = TrainConfig.from_dict({**recipe(task, steps, seed), "hardware": hardware, **({"gate": True} if gate else {})})
    # an interrupted run continues from its checkpoint (resume is exact)
    res = train(cfg, folder, progress=False, label=name, resume=(folder / "checkpoint.eqx").exists())
    return row(task, name, seed, res.history, res.summary, cfg)


def row(task: str, name: str, seed: int, history: list[dict], summary: dict, cfg: TrainConfig) -> dict:
    evals = [r for r in history if r["kind"] == "eval"]
    acc_at = [(r["step"], r.get("test_acc")) for r in evals]
    reach = next((s for s, a in acc_at if a is not None and a >= 0.99), None)
    stab = [r for r in evals if "stab_verdict" in r]
    per_token = None
    if summary.get("energy_per_step_J") is not None:
        tokens = cfg.batch_size * (cfg.bits if task == "parity" else cfg.seq_len)
        per_token = summary["energy_per_step_J"] / tokens
    return {
        "task": task, "run": name, "seed": seed, "status": summary.get("status"),
        "diverged_step": next((r["step"] for r in history if r["kind"] == "diverged"), None),
        "final_acc": summary.get("final_test_acc"), "best_acc": summary.get("best_test_acc"),
        "final_loss": evals[-1].get("test_loss") if evals else None,
        "best_loss": min((r["test_loss"] for r in evals if r.get("test_loss") is not None), default=None),
        "step_to_99": reach,
        "cos_mean": summary.get("grad_cosine_mean"), "cos_final": summary.get("grad_cosine_final"),
        "cos_min": summary.get("grad_cosine_min"),
        "verdict_worst": summary.get("stab_verdict_worst"),
        "verdict_final": stab[-1]["stab_verdict"] if stab else None,
        "max_re_mu": summary.get("stab_max_re_mu_max"),
        "unconverged": summary.get("unconverged_train_samples"),
        "steps_per_s": summary.get("steps_per_second"),
        "energy_per_step_J": summary.get("energy_per_step_J"), "energy_per_token_J": per_token,
        "latency_per_step_s": summary.get("latency_per_step_s"),
        "curve": [(r["step"], r.get("test_acc"), r.get("test_loss"), r.get("grad_cosine"),
                   r.get("stab_max_re_mu"), r.get("stab_verdict")) for r in evals],
    }


def _fmt(v, spec=".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


def _name(r: dict) -> str:
    return r["run"] if r.get("diverged_step") is None else f"{r['run']} (diverged at step {r['diverged_step']})"


def table(task: str, rows: list[dict], steps: int) -> str:
    if task == "parity":
        head = ["run", "final acc", "best acc", "step >= 99 %", "cos mean", "cos final", "verdict (worst / final)",
                "max Re mu [1/tau]", "unconverged", "steps/s", "energy / step", "energy / token"]
        body = [[_name(r), _fmt(r["final_acc"]), _fmt(r["best_acc"]), _fmt(r["step_to_99"]),
                 _fmt(r["cos_mean"], ".3f"), _fmt(r["cos_final"], ".3f"),
                 f"{_fmt(r['verdict_worst'])} / {_fmt(r['verdict_final'])}", _fmt(r["max_re_mu"], ".3g"),
                 _fmt(r["unconverged"]), _fmt(r["steps_per_s"], ".3g"), _fmt(r["energy_per_step_J"], ".3g"),
                 _fmt(r["energy_per_token_J"], ".3g")] for r in rows]
    else:
        head = ["run", "val CE final [nats/char]", "best", "cos mean", "cos final", "verdict (worst / final)",
                "unconverged", "steps/s", "energy / step", "energy / token"]
        body = [[_name(r), _fmt(r["final_loss"], ".4f"), _fmt(r["best_loss"], ".4f"), _fmt(r["cos_mean"], ".3f"),
                 _fmt(r["cos_final"], ".3f"), f"{_fmt(r['verdict_worst'])} / {_fmt(r['verdict_final'])}",
                 _fmt(r["unconverged"]), _fmt(r["steps_per_s"], ".3g"), _fmt(r["energy_per_step_J"], ".3g"),
                 _fmt(r["energy_per_token_J"], ".3g")] for r in rows]
    lines = [f"{task}, {steps} steps (single runs unless a seed is named)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body]) + "\n"


def plot(task: str, rows: list[dict], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    col = 1 if task == "parity" else 2
    for r in rows:
        steps = [c[0] for c in r["curve"]]
        axes[0].plot(steps, [c[col] if c[col] is not None else float("nan") for c in r["curve"]], label=r["run"])
        axes[1].plot(steps, [c[3] if c[3] is not None else float("nan") for c in r["curve"]], label=r["run"])
    axes[0].set_ylabel("validation accuracy" if task == "parity" else "validation CE [nats/char]")
    axes[1].set_ylabel("cos(estimate, own exact gradient)")
    for ax in axes:
        ax.set_xlabel("training step")
    axes[1].legend(fontsize=7)
    fig.suptitle(f"equilibrium transformer on the chip: {task}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def timing(out: Path, rounds: int, reps: int, groups: bool = False) -> dict:
    """Median seconds of the compiled free phase, estimate and step per chip (parity recipe,
    alternated over rounds) and the first call of each. With ``groups`` the chips are the base,
    each non-ideality group alone and the reference (where a realistic step's time goes)."""
    runs = chips() if groups else {"digital": "", BASE: BASE, REFERENCE: REFERENCE}
    cases = {}
    for name, chip in runs.items():
        named = chip if isinstance(chip, str) else BASE  # a group's chip is passed as a ChipConfig
        cfg = TrainConfig.from_dict({**recipe("parity", 1, 0), "hardware": named})
        cases[name] = _case(build_parts(cfg, chip if isinstance(chip, ChipConfig) else None), cfg)
    med = {n: {k: [] for k in calls} for n, (calls, _) in cases.items()}
    for _ in range(rounds):
        for name, (calls, _) in cases.items():
            for k, fn in calls.items():
                med[name][k].append(_time(fn, reps))
    res = {n: {"first_call_s": first, **{f"{k}_s": statistics.median(v) for k, v in med[n].items()},
               **{f"{k}_rounds_s": v for k, v in med[n].items()}} for n, (_, first) in cases.items()}
    res = {"machine": machine(), "rounds": rounds, "reps": reps, "cases": res}
    (out / ("timing_groups.json" if groups else "timing.json")).write_text(json.dumps(res, indent=2))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["parity", "charlm"], default="parity")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--only", default="", help="comma-separated run names (default: all)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds")
    p.add_argument("--timing", action="store_true", help="time the compiled step instead of training")
    p.add_argument("--gate", action="store_true", help="gate the update on converged phases (runs named <run>-gated)")
    p.add_argument("--groups", action="store_true", help="with --timing: time each non-ideality group alone")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="smoke test: 2 runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/transformer_chip"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.timing:
        print(json.dumps(timing(args.out, args.rounds, args.reps, args.groups)["cases"], indent=2))
        return 0
    runs = chips()
    names = [n for n in args.only.split(",") if n] or list(runs)
    if args.quick:
        names = names[:2]
    unknown = [n for n in names if n not in runs]
    if unknown:
        raise SystemExit(f"--only: unknown run(s) {unknown}; choose from {list(runs)}")
    store = args.out / f"{args.task}.json"
    done = json.loads(store.read_text())["rows"] if store.exists() else []
    ran = {(run_name(n, args.gate), int(s)) for n in names for s in args.seeds.split(",")}
    rows = [r for r in done if (r["run"], r["seed"]) not in ran]
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in names:
            rows.append(run_one(args.task, name, runs[name], args.steps, seed, args.out, args.gate))
            print(table(args.task, rows[-1:], args.steps).splitlines()[-1], flush=True)
            store.write_text(json.dumps({"machine": machine(), "steps": args.steps, "rows": rows}, indent=2))
    order = list(runs)
    rows.sort(key=lambda r: (order.index(r["run"]) if r["run"] in order else len(order), r["seed"]))
    store.write_text(json.dumps({"machine": machine(), "steps": args.steps, "rows": rows}, indent=2))
    md = table(args.task, rows, args.steps)
    (args.out / f"{args.task}.md").write_text(md)
    with open(args.out / f"{args.task}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[k for k in rows[0] if k != "curve"])
        w.writeheader()
        w.writerows({k: v for k, v in r.items() if k != "curve"} for r in rows)
    plot(args.task, rows, args.out / f"{args.task}.png")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
