"""On-chip EP training on digits with every device preset and update scheme.

Each run trains the same model, data and seeds as the digital emulator run, on a chip
(``--hardware``, default ``ideal`` so that the device is the only non-ideality) whose every
crosspoint is the preset's pulsed device, updated by the scheme. Results go to
``results/devices.{json,csv,md}`` after every run; finished runs are skipped when the script is
started again (same settings), so an interrupted benchmark resumes.

    python benchmarks/bench_devices.py --out benchmarks/results            # the README table
    python benchmarks/bench_devices.py --steps 20 --presets ideal --schemes deterministic
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from analogeq.config import TrainConfig
from analogeq.devices.presets import available_devices
from analogeq.assembly import build_analog, train

ASYMMETRIC = ("reram-gong2018", "ecram-tang2018", "ag-asi-neurosim", "pcm")


def plan(presets, schemes):
    """(preset, scheme) pairs: deterministic and stochastic for all, mixed precision and
    Tiki-Taka for the asymmetric presets they are meant for (and the ideal device)."""
    runs = []
    for p in presets:
        for s in schemes:
            if s in ("mixed", "tiki-taka") and p not in ASYMMETRIC + ("ideal",):
                continue
            runs.append((p, s))
    return runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--hardware", default="ideal", help="chip preset the devices sit on (default ideal)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--presets", nargs="+", default=available_devices())
    ap.add_argument("--schemes", nargs="+", default=["deterministic", "stochastic", "mixed", "tiki-taka"])
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = TrainConfig(optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking", gate=False,
                       steps=args.steps, eval_every=max(args.steps // 3, 1), probe_every=10**6,
                       checkpoint_every=10**6)
    path = out / "devices.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    settings = {"hardware": args.hardware, "steps": args.steps, "base": base.to_dict()}
    if results.get("settings") != settings:
        results = {"settings": settings, "runs": {}}

    todo = [("digital", "")] + [(f"{p}/{s}", (p, s)) for p, s in plan(args.presets, args.schemes)]
    for name, spec in todo:
        if name in results["runs"]:
            continue
        t0 = time.perf_counter()
        if spec:
            cfg = base.replace(hardware=args.hardware, device=spec[0], update=spec[1])
            res = train(cfg, None, progress=False, parts=build_analog(cfg, args.hardware))
        else:
            res = train(base, None, progress=False)
        s = res.summary
        pulses = None
        if spec and isinstance(res.state, dict):
            pulses = int(sum(int(c.sum()) for c in res.state["pulses"]))
        results["runs"][name] = {"final_test_acc": s["final_test_acc"], "best_test_acc": s["best_test_acc"],
                                 "pulses_total": pulses, "wall_s": round(time.perf_counter() - t0, 1)}
        print(f"{name:36s} final {s['final_test_acc']:.4f} best {s['best_test_acc']:.4f} "
              f"pulses {pulses} ({time.perf_counter() - t0:.0f} s)", flush=True)
        path.write_text(json.dumps(results, indent=2))
        write_tables(results, out)
    return 0


def write_tables(results: dict, out: Path) -> None:
    runs = results["runs"]
    with open(out / "devices.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "final_test_acc", "best_test_acc", "pulses_total", "wall_s"])
        for name, r in runs.items():
            w.writerow([name, r["final_test_acc"], r["best_test_acc"], r["pulses_total"], r["wall_s"]])
    schemes = ["deterministic", "stochastic", "mixed", "tiki-taka"]
    presets = sorted({n.split("/")[0] for n in runs if "/" in n})
    lines = [f"Test accuracy after {results['settings']['steps']} steps on the "
             f"`{results['settings']['hardware']}` chip (final; best in parentheses). Digital "
             f"emulator: {runs['digital']['final_test_acc']:.3f} ({runs['digital']['best_test_acc']:.3f}).", "",
             "| device | " + " | ".join(schemes) + " |", "|---" * (len(schemes) + 1) + "|"]
    for p in presets:
        cells = []
        for s in schemes:
            r = runs.get(f"{p}/{s}")
            cells.append("" if r is None else f"{r['final_test_acc']:.3f} ({r['best_test_acc']:.3f})")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    (out / "devices.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
