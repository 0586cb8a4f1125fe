"""Why the chip's EP gradient drifts from the chip's own exact gradient late in training.

One realistic chip run is trained (the demo's configuration, or the README's chip run with
``--config readme``: no pulsed devices, quantized conductance writes). Every ``--probe-every``
steps the chip is kept, and afterwards each kept chip is measured on the same probe batch (the
first 64 training samples, the run's probe key) with the same weights under each *variant* of
the hardware: all non-idealities on, then one switched off at a time, then combinations. Per
variant and step (:func:`analogeq.diagnostics.contrast.contrast_report`):

* the cosine and relative error of the EP gradient against the chip's own exact gradient (the
  implicit adjoint at the same free state: the run's gradient probe), and of the gradient built
  from the contrast as settled, before the ADC;
* per layer, the nudged contrast ``s_+ - s_-`` (settled, and as the exact adjoint predicts it,
  ``2 beta lambda``) against the ADC step and two noise floors (two free settles with
  independent noise keys; two contrasts with independent nudged-phase keys), the fraction of
  contrasts below one ADC step, the fraction of node voltages clipped by the ADC;
* the fraction of devices within 2% of their conductance bounds (:func:`bound_fraction`), the
  largest weight per tile and the free/nudged residuals.

Measuring the variants on the *same* weights separates what each non-ideality does to the
estimator from what it does to the trajectory. ``--train-variants`` also trains chosen variants
from scratch (their own trajectory), probed with their own hardware.

Variants that only change what was written at realization (levels, programming noise, bound
spread) do not enter a comparison on fixed conductances: EP and the exact gradient see the same
conductances. They act through the trajectory and are covered by ``--train-variants``.

    .venv/bin/python benchmarks/bench_cosine_over_training.py --out benchmarks/results   # ~15-25 min, 2 idle cores
    .venv/bin/python benchmarks/bench_cosine_over_training.py --quick                    # smoke test, ~3 min

Writes ``cosine_over_training.json``, ``.csv`` (one row per run, variant, step) and ``.png``
into ``--out`` (``--tag`` adds a suffix to the names).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq import compile_cache
from analogeq.assembly import build_parts
from analogeq.demo import DEMO_CONFIG
from analogeq.diagnostics.contrast import bound_fraction, contrast_report
from analogeq.evaluation import evaluate
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.streams import Streams
from analogeq.training import make_train_step

# The README's chip run ("Training on digits"): analogeq train --hardware realistic --optimizer
# sgd --lr 0.1 --beta 0.2 --correction asym-tracking --steps 500 (gate on, no pulsed devices).
README_CONFIG = DEMO_CONFIG.replace(device="", gate=True)
CONFIGS = {"demo": DEMO_CONFIG, "readme": README_CONFIG}

# Each variant: chip-config changes on the trained chip (``ChipConfig.replace`` keys);
# ``"mismatch": False`` zeroes the chip's drawn offsets and gain errors; ``"repeats": R`` averages
# R nudged settles per sample (each with its own noise draws) into the read contrast.
OFF = {
    "thermal": {"noise.temperature": 0.0},
    "read": {"crossbar.read_noise": 0.0},
    "adc": {"periphery.adc_bits": 0},
    "dac": {"periphery.dac_bits": 0},
    "pole": {"neuron.amp_pole_tau": 0.0},
}
VARIANTS = {
    "realistic": {},
    "no thermal noise": OFF["thermal"],
    "no read noise": OFF["read"],
    "ideal ADC": OFF["adc"],
    "ideal DAC": OFF["dac"],
    "no offsets/gain mismatch": {"mismatch": False},
    "no amplifier pole": OFF["pole"],
    "no noise (read, thermal)": {**OFF["thermal"], **OFF["read"]},
    "no noise, ideal ADC": {**OFF["thermal"], **OFF["read"], **OFF["adc"]},
    "read noise alone": {**OFF["thermal"], **OFF["adc"], **OFF["dac"], **OFF["pole"], "mismatch": False},
    "thermal noise alone": {**OFF["read"], **OFF["adc"], **OFF["dac"], **OFF["pole"], "mismatch": False},
    "ADC alone": {**OFF["thermal"], **OFF["read"], **OFF["dac"], **OFF["pole"], "mismatch": False},
    # How the error scales with the read noise, and what averaging repeated nudged reads buys.
    "read noise 0.5%": {"crossbar.read_noise": 0.005},
    "read noise 0.25%": {"crossbar.read_noise": 0.0025},
    "realistic, 4 nudged reads averaged": {"repeats": 4},
    "realistic, 16 nudged reads averaged": {"repeats": 16},
}
QUICK_VARIANTS = ("realistic", "no read noise", "ideal ADC")


def variant_chip(chip, changes: dict):
    """``chip`` (same conductances) with its hardware changed as ``changes`` says."""
    changes = dict(changes)
    mismatch = changes.pop("mismatch", True)
    changes.pop("repeats", None)
    cfg = chip.config.replace(**changes) if changes else chip.config
    out = eqx.tree_at(lambda c: c.config, chip, cfg)
    if not mismatch:
        out = eqx.tree_at(lambda c: (c.offset, c.gain), out,
                          (jnp.zeros_like(chip.offset), jnp.ones_like(chip.gain)))
    return out


def weight_stats(chip) -> dict:
    """Largest ``|W|`` per tile (weight units) in :meth:`tiles` order."""
    cb = chip.config.crossbar
    return {"w_max_per_tile": [float(jnp.max(jnp.abs(t.weights(cb)))) for t in chip.tiles()]}


def train_keep(cfg, hardware, steps: int, probe_every: int, label: str, log) -> dict:
    """Train ``cfg`` on ``hardware`` (``None``: ``cfg.hardware``) for ``steps`` steps; keep the
    chip every ``probe_every`` steps (and at 0 and the end) with its loss and test accuracy."""
    parts = build_parts(cfg, hardware)
    step_fn = make_train_step(parts, cfg.gate)
    streams, data = Streams.of(cfg), parts.data
    model, state = parts.model, parts.updater.init(parts.model)
    kept, losses, t0 = [], [], time.perf_counter()

    def keep(k):
        ev = evaluate(model, parts.cost, parts.relaxation, data.x_test, data.y_test, streams.eval)
        loss = float(np.mean(losses[-probe_every:])) if losses else float("nan")
        kept.append({"step": k, "chip": model, "test_acc": float(ev["test_acc"]), "train_loss": loss})
        log(f"  [{label}] step {k}: test acc {ev['test_acc']:.3f}, train loss {loss:.3f} "
            f"({time.perf_counter() - t0:.0f} s)")

    keep(0)
    for k in range(steps):
        idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
        model, state, m = step_fn(model, state, jnp.asarray(data.x_train[idx]),
                                  jnp.asarray(data.y_train[idx]), streams.step(k))
        losses.append(float(m["loss"]))
        if (k + 1) % probe_every == 0 or k + 1 == steps:
            keep(k + 1)
    return {"parts": parts, "kept": kept, "train_seconds": time.perf_counter() - t0}


def measure(run: dict, variants: dict, n_probe: int, log, done=lambda rows: None) -> list[dict]:
    """Per variant (outer loop: one compilation each) and kept chip: the contrast report, the
    bound fractions and the weight maxima, as flat rows; ``done(rows)`` after each variant."""
    parts = run["parts"]
    data = parts.data
    xs, ys = jnp.asarray(data.x_train[:n_probe]), jnp.asarray(data.y_train[:n_probe])
    estimator = parts.probe[0]
    rows = []
    for name, changes in variants.items():
        t0 = time.perf_counter()
        for kept in run["kept"]:
            chip = variant_chip(kept["chip"], changes)
            rep = contrast_report(chip, parts.cost, ChipRelaxation(chip.config), estimator, xs, ys, run["key"],
                                  repeats=changes.get("repeats", 1))
            bounds = bound_fraction(kept["chip"])
            row = {"variant": name, "step": kept["step"], "test_acc": kept["test_acc"],
                   "train_loss": kept["train_loss"], "lsb": rep["lsb"], **rep["overall"],
                   "bounds_frac": bounds["overall"], "bounds_lower": bounds["at_lower"],
                   "bounds_upper": bounds["at_upper"], **weight_stats(kept["chip"])}
            for i, layer in enumerate(rep["layers"]):
                row.update({f"L{i + 1}_{k}": v for k, v in layer.items()})
            rows.append(row)
        done(rows)
        last = rows[-1]
        log(f"  {name:28s} cos at step {last['step']}: {last['grad_cos_read']:.3f} "
            f"(settled {last['grad_cos_settled']:.3f}) [{time.perf_counter() - t0:.0f} s]")
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, ax = plt.subplots(2, 3, figsize=(19, 9))
    base = result["base_run"]
    by = {}
    for r in rows:
        by.setdefault((r["run"], r["variant"]), []).append(r)
    a = ax[0, 0]
    for (run, var), rs in by.items():
        if run != base:
            continue
        a.plot([r["step"] for r in rs], [r["grad_cos_read"] for r in rs], marker="o", ms=3, label=var)
    a.set(title=f"cos(EP, chip exact) on the {base} run's chips, per variant", xlabel="step",
          ylabel="cosine", ylim=(None, 1.01))
    a.legend(fontsize=7, ncol=2)
    a = ax[0, 1]
    rs = by[(base, "realistic")]
    steps = [r["step"] for r in rs]
    for i, c in ((1, "C0"), (2, "C1")):
        a.semilogy(steps, [r[f"L{i}_rms_contrast_exact"] for r in rs], c + "-", label=f"layer {i}: 2 beta |lambda| (exact)")
        a.semilogy(steps, [r[f"L{i}_rms_contrast"] for r in rs], c + "--", label=f"layer {i}: settled contrast")
        a.semilogy(steps, [r[f"L{i}_noise_contrast"] for r in rs], c + ":", label=f"layer {i}: contrast noise")
    if np.isfinite(rs[0]["lsb"]):
        a.axhline(rs[0]["lsb"], color="k", lw=1, label="ADC step")
    a.set(title="realistic: rms contrast s+ - s- per layer [V]", xlabel="step")
    a.legend(fontsize=7)
    a = ax[1, 0]
    a.plot(steps, [r["bounds_frac"] for r in rs], label="devices within 2% of a bound")
    a.plot(steps, [r["L1_adc_clip_free"] for r in rs], label="hidden v clipped by ADC (free)")
    a.plot(steps, [r["L2_adc_clip_free"] for r in rs], label="output v clipped by ADC (free)")
    a.plot(steps, [r["test_acc"] for r in rs], "k-", label="test accuracy")
    a.plot(steps, [r["train_loss"] for r in rs], "k:", label="train loss (last interval)")
    a.set(title="realistic run: bounds, ADC clipping, accuracy", xlabel="step")
    a.legend(fontsize=7)
    a = ax[1, 1]
    for (run, var), rs2 in by.items():
        if run == base or var != "own":
            continue
        a.plot([r["step"] for r in rs2], [r["grad_cos_read"] for r in rs2], marker="o", ms=3, label=run)
    a.plot(steps, [r["grad_cos_read"] for r in rs], "k-", lw=2, label=f"{base} (realistic)")
    a.set(title="trained variants: cos(EP, own exact) on their own trajectory", xlabel="step",
          ylabel="cosine", ylim=(None, 1.01))
    a.legend(fontsize=7)
    a = ax[0, 2]
    a.plot(steps, [r["coherence"] for r in rs], label="coherence |mean g_b| / rms |g_b| (exact)")
    a.plot(steps, [r["sample_rel_error"] for r in rs], label="per-sample error rms |e_b| / rms |g_b|")
    a.plot(steps, [r["error_mean_vs_independent"] for r in rs], label="|mean e_b| / (rms |e_b| / sqrt B)")
    a.axhline(1 / np.sqrt(result["n_probe"]), color="gray", lw=0.8, ls=":", label="1/sqrt(B)")
    a.set(title=f"realistic: per-sample gradients (B = {result['n_probe']})", xlabel="step")
    a.legend(fontsize=7)
    a = ax[1, 2]
    for (run, var), rs2 in by.items():
        if run != base or var not in ("realistic", "read noise alone", "no read noise"):
            continue
        line, = a.plot([r["step"] for r in rs2], [r["grad_cos_read"] for r in rs2], marker="o", ms=3,
                       label=f"{var}: measured")
        a.plot([r["step"] for r in rs2], [r["grad_cos_predicted_independent"] for r in rs2], "--",
               color=line.get_color(), label=f"{var}: independent-error prediction")
    a.set(title="measured batch cosine vs the independent per-sample-error prediction", xlabel="step",
          ylabel="cosine", ylim=(None, 1.01))
    a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_train_variant(spec: str) -> tuple[str, dict]:
    """``name:key=value,key=value`` (``ChipConfig`` keys; the TrainConfig's ``beta`` with
    ``beta=``) -> (name, changes)."""
    name, _, body = spec.partition(":")
    changes = {}
    for item in filter(None, body.split(",")):
        k, _, v = item.partition("=")
        changes[k.strip()] = float(v) if any(c in v for c in ".e") else int(v)
    return name, changes


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", choices=tuple(CONFIGS), default="demo")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--probe-every", type=int, default=25)
    ap.add_argument("--n-probe", type=int, default=64, help="probe batch (first training samples)")
    ap.add_argument("--variants", nargs="*", default=None, help=f"names from {list(VARIANTS)}")
    ap.add_argument("--train-variants", nargs="*", default=[],
                    help="variants trained from scratch: name:section.field=value,... "
                         "(beta=..., nudged_time=... also accepted)")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--tag", default="")
    ap.add_argument("--quick", action="store_true", help="smoke test: 20 steps, 3 variants")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.probe_every, args.n_probe = 20, 10, 16
        args.variants = args.variants or list(QUICK_VARIANTS)
    names = args.variants if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    compile_cache.enable()
    log = lambda msg: print(msg, flush=True)
    cfg = CONFIGS[args.config].replace(steps=args.steps)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    log(f"training the {args.config} run ({cfg.steps} steps), load {load_start}")
    base = train_keep(cfg, None, cfg.steps, args.probe_every, args.config, log)
    base["key"] = Streams.of(cfg).eval
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "cosine_over_training" + (f"_{args.tag}" if args.tag else "")

    def partial(rs):  # what is measured so far survives an interrupted run
        (out / f"{stem}.partial.json").write_text(json.dumps({"config": args.config, "rows": rs}, default=float))

    rows = [{"run": args.config, **r}
            for r in measure(base, {n: VARIANTS[n] for n in names}, args.n_probe, log, partial)]
    trained = {}
    for spec in args.train_variants:
        name, changes = parse_train_variant(spec)
        tcfg = cfg.replace(**{k: v for k, v in changes.items() if "." not in k})
        hw_changes = {k: v for k, v in changes.items() if "." in k}
        hw = ChipConfig.load(cfg.hardware).replace(**hw_changes)
        log(f"training variant {name}: {changes}")
        run = train_keep(tcfg, hw, tcfg.steps, args.probe_every, name, log)
        run["key"] = base["key"]
        trained[name] = {"changes": changes, "train_seconds": run["train_seconds"]}
        rows += [{"run": name, **r} for r in measure(run, {"own": {}}, args.n_probe, log)]
    result = {
        "config": args.config, "train_config": cfg.to_dict(), "base_run": args.config,
        "steps": args.steps, "probe_every": args.probe_every, "n_probe": args.n_probe,
        "variants": {n: VARIANTS[n] for n in names}, "trained_variants": trained,
        "train_seconds": base["train_seconds"], "total_seconds": time.perf_counter() - t_start,
        "load_start": load_start, "load_end": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "jax": jax.__version__},
        "rows": rows,
    }
    (out / f"{stem}.partial.json").unlink(missing_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1, default=float))
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(out / f"{stem}.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})
    plot(result, out / f"{stem}.png")
    log(f"wrote {out}/{stem}.json, .csv, .png in {result['total_seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
