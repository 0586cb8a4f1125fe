"""The demo's chip accuracy over seeds, before and after the fast chip (issue 14).

"Before" is the chip as it was simulated before the exact-decay integrator: Euler--Maruyama
(``dynamics.integrator = "euler-maruyama"``) with each nudged phase as long as the free one
(``dynamics.nudged_time = None``); the refactored code reproduces the old demo table exactly
on that path (docs/results.md). "After" is the ``realistic`` preset as shipped. Each seed
trains the demo's chip run (:data:`analogeq.demo.DEMO_CONFIG`: 500 steps, evaluation and
gradient probe every 50) with ``seed = chip_seed = s``; accuracy does not depend on the
machine's load.

    python benchmarks/bench_demo_seeds.py --which after --seeds 0 1 2 --out benchmarks/results
    python benchmarks/bench_demo_seeds.py --which before --seeds 0 1 2 --out benchmarks/results

Writes ``demo_seeds_<which>.json`` (per seed: final and best test accuracy, mean and final
cosine of the chip's EP gradient against its own exact gradient, wall-clock seconds).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from analogeq.assembly import build_analog, train
from analogeq.demo import DEMO_CONFIG, DEMO_HARDWARE
from analogeq.hardware.config import ChipConfig

VARIANTS = {
    "before": {"dynamics.integrator": "euler-maruyama", "dynamics.nudged_time": None},
    "after": {},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--which", choices=tuple(VARIANTS), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=DEMO_CONFIG.steps)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    hw = ChipConfig.preset(DEMO_HARDWARE).replace(**VARIANTS[args.which])
    rows = []
    for seed in args.seeds:
        cfg = DEMO_CONFIG.replace(seed=seed, chip_seed=seed, steps=args.steps)
        t0 = time.perf_counter()
        result = train(cfg, parts=build_analog(cfg, hw), progress=False, label=f"{args.which} seed {seed}")
        s = result.summary
        rows.append({"seed": seed, "wall_s": time.perf_counter() - t0,
                     **{k: s[k] for k in ("final_test_acc", "best_test_acc", "grad_cosine_mean", "grad_cosine_final", "grad_cosine_min")
                        if k in s}})
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"demo_seeds_{args.which}.json").write_text(json.dumps(
        {"which": args.which, "changes": VARIANTS[args.which], "steps": args.steps, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
