"""K chips trained at once: one vmapped step vs sharded over host devices vs a loop of K runs.

The demo configuration (:data:`analogeq.demo.DEMO_CONFIG`: ``realistic`` chip, every
crosspoint a pulsed ``ecram-tang2018`` device written by ``mixed`` updates, digits 64-128-10,
batch 32) trained for ``--steps`` steps on ``--chips`` chip instances (chip seeds 0..K-1), three
ways in one process with ``--host-devices`` XLA host devices:

- ``vmap``: :func:`analogeq.fleet.train_chips`, one ``jax.vmap`` of the step over the chips
  (device 0);
- ``shard``: the same with the chips split over the host devices (``jax.shard_map``);
- ``loop``: K single-chip runs (:func:`analogeq.assembly.train` with ``chip_seed = i``), the
  way K runs went before, in the same process (one compiled step reused by every chip).

Every way includes the evaluations and gradient probes at step 0 and at the end (eval_every =
probe_every = steps). A first round compiles (its times are reported apart); then the ways run
alternated for ``--rounds`` rounds, rotating which goes first. The JSON holds every time, the
medians, the ratios ``loop / vmap`` and ``loop / shard``, the machine load (``os.getloadavg``)
before and after, and the largest difference between each chip's trained weights in the three
ways (0: bit-identical).

Run (idle machine):
    .venv/bin/python benchmarks/bench_train_chips.py
Smoke test:
    .venv/bin/python benchmarks/bench_train_chips.py --chips 2 --steps 2 --rounds 1 --out /tmp/tc
Writes train_chips.json into --out (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from analogeq.montecarlo import use_host_devices


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chips", type=int, default=8, help="chip instances K (default 8)")
    p.add_argument("--steps", type=int, default=24, help="training steps (default 24)")
    p.add_argument("--rounds", type=int, default=3, help="alternated timed rounds (default 3)")
    p.add_argument("--host-devices", type=int, default=2, help="XLA host devices (default 2)")
    p.add_argument("--out", default="benchmarks/results", help="output directory")
    args = p.parse_args(argv)
    use_host_devices(args.host_devices)  # before JAX starts its backend

    import equinox as eqx
    import jax
    import numpy as np

    from analogeq.assembly import load_data, train
    from analogeq.demo import DEMO_CONFIG
    from analogeq.fleet import train_chips
    from analogeq.jsonio import write_json

    cfg = DEMO_CONFIG.replace(steps=args.steps, eval_every=args.steps, probe_every=args.steps, chip_seed=0)
    data = load_data(cfg)
    seeds = list(range(args.chips))

    def weights(model):
        return [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))]

    def run(way):
        t0 = time.perf_counter()
        if way == "loop":
            models = [train(cfg.replace(chip_seed=s), None, progress=False).model for s in seeds]
        else:
            res = train_chips(cfg, None, chip_seeds=seeds, data=data, mode=way, progress=False)
            models = [r.model for r in res.runs]
        return time.perf_counter() - t0, [weights(m) for m in models]

    ways = ("vmap", "shard", "loop")
    load_before = os.getloadavg()
    first, trained = {}, {}
    for way in ways:
        first[way], trained[way] = run(way)
        print(f"first call (compiles) {way:6} {first[way]:8.1f} s", flush=True)
    times = {w: [] for w in ways}
    for r in range(args.rounds):
        order = ways[r % 3:] + ways[:r % 3]
        for way in order:
            t, _ = run(way)
            times[way].append(t)
            print(f"round {r} {way:6} {t:8.1f} s", flush=True)
    load_after = os.getloadavg()
    med = {w: statistics.median(v) for w, v in times.items()}
    diff = {w: max(float(np.max(np.abs(a - b))) for ma, mb in zip(trained[w], trained["loop"]) for a, b in zip(ma, mb))
            for w in ("vmap", "shard")}
    result = {
        "config": {"chips": args.chips, "steps": args.steps, "rounds": args.rounds,
                   "host_devices": jax.local_device_count(), "hidden": list(cfg.hidden),
                   "batch_size": cfg.batch_size, "hardware": cfg.hardware, "device": cfg.device,
                   "update": cfg.update, "eval_every": cfg.eval_every, "probe_every": cfg.probe_every},
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "jax": jax.__version__,
                    "cpus": os.cpu_count(), "loadavg_before": list(load_before), "loadavg_after": list(load_after)},
        "first_call_s": first,
        "times_s": times,
        "median_s": med,
        "ratio_loop_over_vmap": med["loop"] / med["vmap"],
        "ratio_loop_over_shard": med["loop"] / med["shard"],
        "max_weight_diff_vs_loop": diff,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "train_chips.json", result)
    print(f"median: vmap {med['vmap']:.1f} s, shard {med['shard']:.1f} s, loop {med['loop']:.1f} s; "
          f"loop/vmap {result['ratio_loop_over_vmap']:.2f}x, loop/shard {result['ratio_loop_over_shard']:.2f}x; "
          f"max |dW| vs loop: {diff}; load {load_before} -> {load_after}")
    print(f"wrote {out / 'train_chips.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
