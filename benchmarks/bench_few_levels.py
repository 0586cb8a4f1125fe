"""Few-level chips on digits: one G_ref per chip vs per-tile gains, rounded vs mixed-precision
writes (issue 15).

The ``realistic`` preset with ``crossbar.n_levels`` set to 4 or 8 and ``crossbar.tile_gain``
``fixed`` or ``auto``, trained with the demo's chip recipe (SGD 0.1, beta 0.2 centered,
AsymEP with tracking, no gating, 500 steps of batch 32 on digits 64-128-10) and quantized
conductance writes without a device model: ``update = "deterministic"`` (each update written
with stochastic level rounding) or ``"mixed"`` (a digital accumulator writes whole levels).
Single runs (seed 0); accuracy does not depend on the machine's load.

    python benchmarks/bench_few_levels.py --out benchmarks/results

Writes ``few_levels.json`` (per configuration: final and best test accuracy over the
evaluations every 100 steps, wall-clock seconds) and prints a table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

from analogeq.assembly import build_analog, train
from analogeq.config import TrainConfig
from analogeq.hardware.config import ChipConfig

RECIPE = dict(optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking", steps=500, eval_every=100,
              probe_every=500, gate=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--levels", type=int, nargs="+", default=[4, 8])
    p.add_argument("--steps", type=int, default=RECIPE["steps"])
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    rows = []
    for levels, gain, update in itertools.product(args.levels, ("fixed", "auto"), ("deterministic", "mixed")):
        hw = ChipConfig.preset("realistic").replace(**{"crossbar.n_levels": levels, "crossbar.tile_gain": gain})
        cfg = TrainConfig(**{**RECIPE, "steps": args.steps}, update=update)
        t0 = time.perf_counter()
        run = train(cfg, parts=build_analog(cfg, hw), progress=False)
        accs = [r["test_acc"] for r in run.history if "test_acc" in r]
        rows.append({"n_levels": levels, "tile_gain": gain, "update": update,
                     "final_test_acc": run.summary["final_test_acc"], "best_test_acc": max(accs),
                     "seconds": time.perf_counter() - t0})
        print(f"{levels:>2} levels  gain {gain:<5}  {update:<13}  final {rows[-1]['final_test_acc']:.4f}  "
              f"best {rows[-1]['best_test_acc']:.4f}  ({rows[-1]['seconds']:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "few_levels.json").write_text(json.dumps({"recipe": RECIPE, "runs": rows}, indent=2) + "\n")
    print(f"wrote {out / 'few_levels.json'}")


if __name__ == "__main__":
    main()
