"""Speed of the demo's chip training step: the chip as shipped (exact-decay integrator, 10 tau
nudged windows) against the previous default (Euler-Maruyama, nudged phases as long as the free
one), in the same process, per phase and per step; the exact-decay integrator with full-length
nudged windows is timed too, to separate the two changes.

The chip is the demo's: ``realistic`` preset, every crosspoint a pulsed ``ecram-tang2018``
device written by ``mixed`` pulses, digits 64-128-10, batch 32, AsymEP centered with tracking.
For each integrator: the first call (compilation + one run) and, after it, the free phase, the
whole EP estimate (free + 2 nudged phases; the nudged time is the difference) and the whole
training step (estimate + update + energy accounting), alternated between the integrators over
``--rounds`` rounds of ``--reps`` calls each; medians are reported. The digital emulator's step
is timed alongside for scale.

    python benchmarks/bench_chip_speed.py --out benchmarks/results          # ~8 min on 2 cores
    python benchmarks/bench_chip_speed.py --quick                           # smoke test

Writes ``chip_speed.json`` into ``--out``. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.assembly import build_analog, build_digital
from analogeq.demo import DEMO_CONFIG
from analogeq.ep import free_phase
from analogeq.hardware.config import ChipConfig
from analogeq.streams import Streams
from analogeq.training import make_train_step

BASELINE = "euler-maruyama, nudged 40 tau"
"""The reference: the chip as simulated before issue 14 (the previous default)."""
VARIANTS = {
    "exact-decay (preset)": {},
    "exact-decay, nudged 40 tau": {"dynamics.nudged_time": None},
    BASELINE: {"dynamics.integrator": "euler-maruyama", "dynamics.nudged_time": None},
}


@eqx.filter_jit
def _free(model, relaxation, xs, key):
    return free_phase(model, relaxation, xs, key)


@eqx.filter_jit
def _estimate(estimator, model, cost, relaxation, xs, ys, key):
    return estimator.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)


def _block(tree):
    jax.block_until_ready(jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array)))


def _time(fn, reps: int) -> float:
    """Median seconds of ``reps`` calls of ``fn`` (each blocked until its result is ready)."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        _block(fn())
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _case(parts, cfg):
    data = parts.data
    idx = data.batch_indices(0, cfg.batch_size, cfg.seed)
    xs, ys = jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx])
    key = Streams.of(cfg).step(0)
    step = make_train_step(parts, cfg.gate)
    state = parts.updater.init(parts.model)
    calls = {
        "free": lambda: _free(parts.model, parts.relaxation, xs, key),
        "estimate": lambda: _estimate(parts.estimator, parts.model, parts.cost, parts.relaxation, xs, ys, key),
        "step": lambda: step(parts.model, state, xs, ys, key),
    }
    first = {}
    for name, fn in calls.items():
        t0 = time.perf_counter()
        _block(fn())
        first[name] = time.perf_counter() - t0
    return calls, first


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 round of 1 call (a smoke test)")
    args = p.parse_args()
    rounds, reps = (1, 1) if args.quick else (args.rounds, args.reps)
    cfg = DEMO_CONFIG
    base = ChipConfig.preset("realistic")
    variants = {name: base.replace(**over) for name, over in VARIANTS.items()}
    cases, first = {}, {}
    for name, hw in variants.items():
        cases[name], first[name] = _case(build_analog(cfg, hw), cfg)
    digital = build_digital(cfg.replace(hardware="", device=""))
    dcalls, dfirst = _case(digital, cfg.replace(hardware="", device=""))
    times = {name: {k: [] for k in ("free", "estimate", "step")} for name in variants}
    dstep = []
    for _ in range(rounds):  # alternated, so drifts of the machine hit both alike
        for v in variants:
            for name, fn in cases[v].items():
                times[v][name].append(_time(fn, reps))
        dstep.append(_time(dcalls["step"], reps))
    result = {"config": "demo chip: realistic, ecram-tang2018, mixed, digits 64-128-10, batch 32",
              "machine": {"platform": platform.platform(), "jax": jax.__version__,
                          "device": str(jax.devices()[0])},
              "rounds": rounds, "reps": reps, "digital_step_s": statistics.median(dstep),
              "digital_first_call_s": dfirst["step"]}
    result["load_average_at_end"] = os.getloadavg()
    for integ in variants:
        med = {k: statistics.median(v) for k, v in times[integ].items()}
        result[integ] = {"free_s": med["free"], "nudged_s": med["estimate"] - med["free"],
                         "estimate_s": med["estimate"], "step_s": med["step"],
                         "rounds_step_s": times[integ]["step"], "first_call_s": first[integ]}
    em = result[BASELINE]
    result["speedup_vs_" + BASELINE] = {
        name: {k: em[k] / result[name][k] for k in ("free_s", "nudged_s", "estimate_s", "step_s")}
        for name in variants if name != BASELINE}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chip_speed.json").write_text(json.dumps(result, indent=2))
    print(f"{'':28}{'free':>10}{'nudged':>10}{'step':>10}{'first call':>12}{'step speedup':>14}")
    for name in variants:
        r = result[name]
        up = em["step_s"] / r["step_s"]
        print(f"{name[:28]:28}{r['free_s'] * 1e3:>8.1f}ms{r['nudged_s'] * 1e3:>8.1f}ms{r['step_s'] * 1e3:>8.1f}ms"
              f"{r['first_call_s']['step']:>11.1f}s{up:>13.1f}x")
    print(f"digital step {result['digital_step_s'] * 1e3:.2f} ms; load average at the end {os.getloadavg()}")
    print(f"wrote {out / 'chip_speed.json'}")


if __name__ == "__main__":
    main()
