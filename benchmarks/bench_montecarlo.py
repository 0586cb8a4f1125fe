"""Monte Carlo over chip instances: one vmap vs sharded over host devices vs a Python loop.

The demo configuration (``realistic`` chip, every crosspoint a pulsed ``ecram-tang2018``
device, digits 64-128-10): the initial model realized on ``--n-chips`` chip instances and
evaluated on the test set (:func:`analogeq.montecarlo.evaluate_chips`), three ways in one
process with ``--host-devices`` XLA host devices:

- ``vmap``: one ``jax.vmap`` over the chip keys (runs on device 0);
- ``shard``: the keys split over the host devices (``jax.shard_map``), each vmapping its share;
- ``loop``: one compiled per-chip program called once per key.

Each mode is compiled (and timed) once, then the modes run alternated for ``--rounds`` rounds,
rotating which goes first; the JSON has every time, the medians, the ratios and the largest
per-chip difference between modes per metric (0: the same chips, bit for bit; in float32 a mean
over samples can differ in its last bit, as a batched reduction may sum in another order).
``--batch-size B`` vmaps B chips at a time (the rest scanned): a settle draws its noise in bulk,
so one vmap over every chip holds chips x samples x steps of noise in memory.

Run (idle machine; about 2 x loop time x rounds):
    .venv/bin/python benchmarks/bench_montecarlo.py --out benchmarks/results
Smoke test:
    .venv/bin/python benchmarks/bench_montecarlo.py --n-chips 16 --n-test 32 --rounds 1 --out /tmp/mc
Writes montecarlo_<n>chips[_batch<B>].json into --out.
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
    p.add_argument("--n-chips", type=int, default=64, help="chip instances (default 64)")
    p.add_argument("--n-test", type=int, default=0, help="test samples per chip (default 0: all 360)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (default 3)")
    p.add_argument("--host-devices", type=int, default=2, help="XLA host devices (default 2)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="chips vmapped together in vmap and shard (default: all at once)")
    p.add_argument("--out", default="benchmarks/results", help="output directory")
    args = p.parse_args(argv)
    use_host_devices(args.host_devices)  # before JAX starts its backend

    import jax
    import numpy as np

    from analogeq.assembly import build_digital, load_hardware
    from analogeq.compare import chip_keys
    from analogeq.costs import make_cost
    from analogeq.demo import DEMO_CONFIG, DEMO_HARDWARE
    from analogeq.devices.presets import load_device
    from analogeq.jsonio import write_json
    from analogeq.montecarlo import evaluate_chips

    cfg = DEMO_CONFIG
    digital = build_digital(cfg)
    d = digital.data
    n_test = args.n_test or len(d.y_test)
    xs, ys = d.x_test[:n_test], d.y_test[:n_test]
    hw, device = load_hardware(DEMO_HARDWARE), load_device(cfg.device).device
    keys = chip_keys(cfg, args.n_chips)
    cost = make_cost(cfg.cost)
    modes = ("vmap", "shard", "loop")

    def run(mode):
        t0 = time.perf_counter()
        out = jax.block_until_ready(evaluate_chips(digital.model, hw, keys, xs, ys, cost, device=device, mode=mode,
                                                    batch_size=args.batch_size))
        return time.perf_counter() - t0, out

    first, results = {}, {}
    for mode in modes:  # the first call compiles (the loop's program is per chip, compiled once)
        first[mode], results[mode] = run(mode)
        print(f"{mode}: first call {first[mode]:.1f} s", flush=True)
    times = {m: [] for m in modes}
    for r in range(args.rounds):
        for mode in modes[r % len(modes):] + modes[: r % len(modes)]:
            t, _ = run(mode)
            times[mode].append(t)
            print(f"round {r + 1} {mode}: {t:.2f} s", flush=True)
    med = {m: statistics.median(v) for m, v in times.items()}
    diff = {m: {k: float(np.max(np.abs(results[m][k] - results["vmap"][k]))) for k in results["vmap"]}
            for m in modes}
    report = {
        "what": f"Monte Carlo of the demo configuration: initial model on {args.n_chips} chip "
                f"instances ({DEMO_HARDWARE}, {cfg.device}), free phase on {n_test} test samples each",
        "n_chips": args.n_chips, "n_test": n_test, "rounds": args.rounds, "batch_size": args.batch_size,
        "host_devices": len(jax.devices()), "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(), "machine": platform.platform(),
        "first_call_s": first, "times_s": times, "median_s": med,
        "ratio_loop_over_vmap": med["loop"] / med["vmap"],
        "ratio_loop_over_shard": med["loop"] / med["shard"],
        "ratio_vmap_over_shard": med["vmap"] / med["shard"],
        "max_per_chip_difference_vs_vmap": diff,
        "test_acc_mean": float(np.mean(results["vmap"]["test_acc"])),
        "test_acc_std": float(np.std(results["vmap"]["test_acc"])),
        "command": "python benchmarks/bench_montecarlo.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"montecarlo_{args.n_chips}chips" + (f"_batch{args.batch_size}" if args.batch_size else "")
    write_json(out / f"{name}.json", report)
    print(f"medians {', '.join(f'{m} {v:.2f} s' for m, v in med.items())}; loop/vmap "
          f"{report['ratio_loop_over_vmap']:.2f}x, loop/shard {report['ratio_loop_over_shard']:.2f}x, "
          f"vmap/shard {report['ratio_vmap_over_shard']:.2f}x; wrote {out}/{name}.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
