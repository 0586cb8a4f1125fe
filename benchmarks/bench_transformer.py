#!/usr/bin/env python
"""Equilibrium transformer benchmarks on CPU: 8-bit parity with EP, and a char-level LM on tiny
Shakespeare with EP vs BPTT on the same block vs a small backprop (BP) transformer.

Every run uses the ``analogeq`` training step (``analogeq.training.make_train_step`` or the
stabilized step of ``analogeq.stability``) and the same deterministic batches
(``Dataset.batch_indices``); steps/s count training steps only (evaluation is timed apart),
after a compile step that is not counted.

* ``parity``: ``analogeq train --model eqtransformer --task parity`` with AsymEP (centered,
  ``-2A(s - s*)`` correction) and ``resreg``; validation accuracy is the full 8-bit parity on the
  64 strings never seen in training (see ``analogeq.data.parity``). Trains until the validation
  accuracy is >= 0.95 at an evaluation or the step budget is spent.
* ``charlm``: the same block (``d_model``, heads, FFN x4, damping 1, q/k RMS norm) on
  ``../shared/data/tinyshakespeare.txt`` (90/10 contiguous split, 128 fixed validation windows):
  (1) EP = AsymEP centered + resreg, (2) BPTT through the ``T1``-step Euler unroll of the same
  block with the same controls, (3) BP = a standard pre-norm transformer block
  ``h = x + Attn(LN1 x); h = h + FFN(LN2 h); logits = h W_h`` with the same parameterization,
  trained with backprop. Validation CE (nats/char) is recorded every ``--eval-every`` steps.

Writes ``transformer_{parity,charlm}.{json,csv,png}`` and ``transformer_tables.md`` into --out.

Usage::

    python benchmarks/bench_transformer.py --task all --out benchmarks/results
    python benchmarks/bench_transformer.py --task all --quick --out /tmp/bench-tf   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analogeq import stability  # noqa: E402
from analogeq.config import TrainConfig  # noqa: E402
from analogeq.models.transformer import layer_norm  # noqa: E402
from analogeq.assembly import build_digital  # noqa: E402
from analogeq.evaluation import evaluate  # noqa: E402
from analogeq.training import make_train_step  # noqa: E402

PARITY = dict(model="eqtransformer", task="parity", cost="token_cross_entropy", bits=8, d_model=32, n_heads=2,
              eps=0.25, T1=60, T2=12, beta=0.05, ep_kind="centered", correction="asym", lr=1e-3, batch_size=32,
              resreg=1.0, grad_clip=1.0, ema=0.99, gate=False, tol=1e-3, seed=0)
CHARLM = dict(model="eqtransformer", task="charlm", cost="token_cross_entropy", seq_len=32, d_model=32, n_heads=4,
              eps=0.25, T1=40, T2=10, beta=0.05, ep_kind="centered", correction="asym", lr=1e-3, batch_size=16,
              resreg=1.0, warmup=100, grad_clip=1.0, weight_cap=2.0, gate=False, tol=1e-3, seed=0)


def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "jax": jax.__version__,
            "cpus": os.cpu_count(), "device": str(jax.devices()[0]),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def run_emulator(cfg: TrainConfig, eval_every: int, max_seconds: float, stop_acc: float | None = None,
                 label: str = "") -> dict:
    """Train with the analogeq step for ``cfg.steps`` steps (or until ``max_seconds`` of training
    time, or until validation accuracy >= ``stop_acc``); returns the curve and timings."""
    parts = build_digital(cfg)
    data = parts.data
    step = make_train_step(parts, cfg.gate)
    model, state = parts.model, parts.updater.init(parts.model)
    key = jax.random.PRNGKey(cfg.seed + 1)

    def ev(m, st):
        return evaluate(stability.ema_model(m, st), parts.cost, parts.relaxation, data.x_test, data.y_test)

    curve = [{"step": 0, **ev(model, state)}]
    train_time, k, t_compile = 0.0, 0, None
    while k < cfg.steps:
        idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
        t0 = time.perf_counter()
        model, state, m = step(model, state, jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx]),
                               jax.random.fold_in(key, k))
        jax.block_until_ready(m["loss"])
        dt = time.perf_counter() - t0
        if t_compile is None:
            t_compile = dt  # first step includes compilation
        else:
            train_time += dt
        k += 1
        if k % eval_every == 0 or k == cfg.steps or train_time > max_seconds:
            rec = {"step": k, "train_loss": float(m["loss"]),
                   "step_residual": float(m.get("step_residual", float("nan"))), **ev(model, state)}
            curve.append(rec)
            print(f"[{label}] step {k}: val loss {rec['test_loss']:.4f} acc {rec['test_acc']:.4f} "
                  f"unconverged {rec['test_unconverged']} train_time {train_time:.0f}s", flush=True)
            if stop_acc is not None and rec["test_acc"] >= stop_acc:
                break
            if train_time > max_seconds:
                break
    return {"label": label, "config": cfg.to_dict(), "curve": curve, "steps": k,
            "train_seconds": train_time, "compile_seconds": t_compile,
            "steps_per_second": (k - 1) / train_time if train_time > 0 else float("nan"),
            "final_val_loss": curve[-1]["test_loss"], "final_val_acc": curve[-1]["test_acc"],
            "best_val_acc": max(r["test_acc"] for r in curve),
            "best_val_loss": min(r["test_loss"] for r in curve)}


def bp_forward(m, x):
    """Standard (non-equilibrium) pre-norm block on the same parameters: logits ``(T, V)``."""
    h = m.tok[x] + m.pos[: x.shape[0]]
    h = h + m.attention(layer_norm(h, m.ln1_g, m.ln1_b))
    h = h + m.ffn(layer_norm(h, m.ln2_g, m.ln2_b))
    return h @ m.W_h


def run_bp(cfg: TrainConfig, eval_every: int, max_seconds: float, label: str = "BP transformer") -> dict:
    """Backprop training of :func:`bp_forward` with the same optimizer, batches and init."""
    parts = build_digital(cfg)
    data, cost = parts.data, parts.cost
    model = parts.model
    opt = stability.build_optimizer(cfg)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    def loss(m, xb, yb):
        return jnp.mean(jax.vmap(lambda x, y: cost(bp_forward(m, x), y))(xb, yb))

    @eqx.filter_jit
    def step(m, s, xb, yb):
        val, g = eqx.filter_value_and_grad(loss)(m, xb, yb)
        upd, s = opt.update(g, s, eqx.filter(m, eqx.is_inexact_array))
        m = eqx.apply_updates(m, upd)
        if cfg.weight_cap > 0:  # the same weight-norm cap as the equilibrium runs
            m = stability.cap_weights(m, cfg.weight_cap)
        return m, s, val

    @eqx.filter_jit
    def val_loss(m):
        return loss(m, jnp.asarray(data.x_test), jnp.asarray(data.y_test))

    curve = [{"step": 0, "test_loss": float(val_loss(model))}]
    train_time, k, t_compile = 0.0, 0, None
    while k < cfg.steps:
        idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
        t0 = time.perf_counter()
        model, state, v = step(model, state, jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx]))
        jax.block_until_ready(v)
        dt = time.perf_counter() - t0
        if t_compile is None:
            t_compile = dt
        else:
            train_time += dt
        k += 1
        if k % eval_every == 0 or k == cfg.steps or train_time > max_seconds:
            curve.append({"step": k, "train_loss": float(v), "test_loss": float(val_loss(model))})
            print(f"[{label}] step {k}: val loss {curve[-1]['test_loss']:.4f}", flush=True)
            if train_time > max_seconds:
                break
    return {"label": label, "curve": curve, "steps": k, "train_seconds": train_time, "compile_seconds": t_compile,
            "steps_per_second": (k - 1) / train_time if train_time > 0 else float("nan"),
            "final_val_loss": curve[-1]["test_loss"], "best_val_loss": min(r["test_loss"] for r in curve)}


def _plot(runs: list[dict], key: str, ylabel: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        ax.plot([c["step"] for c in r["curve"]], [c[key] for c in r["curve"]], marker="o", ms=3, label=r["label"])
    ax.set(xlabel="training step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _csv(runs: list[dict], path: Path) -> None:
    keys = ["run", "step", "test_loss", "test_acc", "train_loss", "step_residual", "test_unconverged",
            "test_residual_max"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in runs:
            for c in r["curve"]:
                w.writerow([r["label"]] + [c.get(k, "") for k in keys[1:]])


def bench_parity(out: Path, quick: bool, budget_s: float) -> dict:
    cfg = TrainConfig(**{**PARITY, "steps": 40 if quick else 1500})
    run = run_emulator(cfg, eval_every=20 if quick else 100, max_seconds=budget_s,
                       label="EP (AsymEP centered + resreg)")
    hit = [c["step"] for c in run["curve"] if c["test_acc"] >= 0.95]
    run["first_step_at_95"] = hit[0] if hit else None
    res = {"machine": machine(), "runs": [run]}
    (out / "transformer_parity.json").write_text(json.dumps(res, indent=2))
    _csv([run], out / "transformer_parity.csv")
    _plot([run], "test_acc", "validation 8-bit parity accuracy", out / "transformer_parity.png",
          "8-bit parity, equilibrium transformer trained with EP")
    return res


def bench_charlm(out: Path, quick: bool, steps: int, budget_s: float, text: str) -> dict:
    base = {**CHARLM, "text_path": text, "steps": 6 if quick else steps}
    every = 3 if quick else max(steps // 12, 1)
    runs = [
        run_emulator(TrainConfig(**base, estimator="ep"), every, budget_s, label="EP (AsymEP + resreg)"),
        run_emulator(TrainConfig(**base, estimator="bptt"), every, budget_s, label="BPTT (same block)"),
        run_bp(TrainConfig(**base), every, budget_s, label="BP transformer"),
    ]
    res = {"machine": machine(), "runs": runs}
    (out / "transformer_charlm.json").write_text(json.dumps(res, indent=2))
    _csv(runs, out / "transformer_charlm.csv")
    _plot(runs, "test_loss", "validation CE (nats/char)", out / "transformer_charlm.png",
          "char-LM, tiny Shakespeare (ln 65 = 4.17 at random)")
    return res


def bench_gradients(out: Path) -> dict:
    """Gradient agreement on a small block at a converged free phase (float64): AsymEP (centered,
    holomorphic N=4, tracking) and uncorrected EP against the implicit adjoint and BPTT."""
    jax.config.update("jax_enable_x64", True)
    import analogeq as aq

    rows = []
    for (v, t, d, h) in ((5, 5, 8, 2), (16, 12, 32, 4)):
        block = aq.EqTransformer(v, t, d, h, key=jax.random.PRNGKey(0), dtype=jnp.float64)
        xs = jax.random.randint(jax.random.PRNGKey(1), (4, t), 0, v)
        ys = jax.random.randint(jax.random.PRNGKey(2), (4, t), 0, v)
        cost = aq.TokenCrossEntropy()
        tight = aq.EulerRelaxation(eps=0.25, T1=4000, T2=4000, tol=1e-13, stop_at_tol=True)
        exact = aq.WithReadoutGradient(aq.ImplicitAdjoint(tol=1e-13)).estimate(block, cost, tight, xs, ys)
        bptt = aq.BPTT().estimate(block, cost, aq.EulerRelaxation(eps=0.25, T1=300, T2=1), xs, ys)
        ests = {
            "AsymEP centered beta=1e-3": aq.EP(beta=1e-3, kind="centered", correction="asym"),
            "EP centered, no correction, beta=1e-3": aq.EP(beta=1e-3, kind="centered", correction="none"),
            "AsymEP holomorphic N=4 radius 0.05": aq.EP(beta=0.05, kind="holomorphic", n_points=4),
            "AsymEP holomorphic N=4 + tracking": aq.EP(beta=0.05, kind="holomorphic", n_points=4,
                                                       correction="asym-tracking"),
            "AsymEP holomorphic N=2 radius 0.02 (recipe)": aq.EP(beta=0.02, kind="holomorphic", n_points=2),
        }
        for name, est in ests.items():
            g = aq.WithReadoutGradient(est).estimate(block, cost, tight, xs, ys)
            ce = aq.compare_gradients(g.grads, exact.grads)["overall"]
            cb = aq.compare_gradients(g.grads, bptt.grads)["overall"]
            rows.append({"block": f"V={v} T={t} d={d} H={h}", "estimator": name,
                         "cos_vs_implicit": ce["cosine"], "rel_err_vs_implicit": ce["rel_error"],
                         "cos_vs_bptt": cb["cosine"], "rel_err_vs_bptt": cb["rel_error"],
                         "free_residual_max": float(jnp.max(exact.free.residual))})
            print(rows[-1], flush=True)
    res = {"machine": machine(), "rows": rows}
    (out / "transformer_gradients.json").write_text(json.dumps(res, indent=2))
    return res


def tables(parity: dict | None, charlm: dict | None, grads: dict | None = None) -> str:
    lines = []
    if grads:
        lines += ["### Gradient agreement (converged free phase, float64, batch of 4 sequences)", "",
                  "| block | estimator | cos vs implicit | rel. err vs implicit | cos vs BPTT (300 steps) |",
                  "|---|---|---|---|---|"]
        for r in grads["rows"]:
            lines.append(f"| {r['block']} | {r['estimator']} | {r['cos_vs_implicit']:.6f} | "
                         f"{r['rel_err_vs_implicit']:.2e} | {r['cos_vs_bptt']:.6f} |")
        lines.append("")
    if parity:
        r = parity["runs"][0]
        c = r["config"]
        lines += ["### 8-bit parity (EP)", "",
                  f"Block d={c['d_model']}, H={c['n_heads']}, eps={c['eps']}, T1={c['T1']}, T2={c['T2']}, "
                  f"beta={c['beta']}, lr={c['lr']}, batch {c['batch_size']}, resreg {c['resreg']}, grad clip "
                  f"{c['grad_clip']}, parameter EMA {c['ema']} (used for evaluation).", "",
                  "| run | steps | first step with val acc >= 0.95 | best val acc | final val acc | final val CE "
                  "| steps/s | train time (s) |",
                  "|---|---|---|---|---|---|---|---|",
                  f"| {r['label']} | {r['steps']} | {r.get('first_step_at_95')} | {r['best_val_acc']:.4f} | "
                  f"{r['final_val_acc']:.4f} | {r['final_val_loss']:.4f} | {r['steps_per_second']:.2f} | "
                  f"{r['train_seconds']:.0f} |", "",
                  "Validation accuracy by step: " + ", ".join(f"{c['step']}: {c['test_acc']:.3f}" for c in r["curve"]),
                  ""]
    if charlm:
        c = charlm["runs"][0]["config"]
        lines += ["### Char-LM, tiny Shakespeare", "",
                  f"Block d={c['d_model']}, H={c['n_heads']}, T={c['seq_len']}, batch {c['batch_size']}, "
                  f"eps={c['eps']}, T1={c['T1']}, T2={c['T2']}, beta={c['beta']}, lr={c['lr']} "
                  f"(warmup {c['warmup']}), grad clip {c['grad_clip']}, weight cap {c['weight_cap']}, resreg {c['resreg']} "
                  "(equilibrium runs); 128 fixed validation windows.", "",
                  "| run | steps | val CE at end (nats/char) | best val CE | steps/s | train time (s) |",
                  "|---|---|---|---|---|---|"]
        for r in charlm["runs"]:
            lines.append(f"| {r['label']} | {r['steps']} | {r['final_val_loss']:.4f} | {r['best_val_loss']:.4f} | "
                         f"{r['steps_per_second']:.2f} | {r['train_seconds']:.0f} |")
        lines += ["", "Validation CE by step:", "",
                  "| step | " + " | ".join(r["label"] for r in charlm["runs"]) + " |",
                  "|---" * (1 + len(charlm["runs"])) + "|"]
        steps = [p["step"] for p in charlm["runs"][0]["curve"]]
        for s in steps:
            row = []
            for r in charlm["runs"]:
                v = [p["test_loss"] for p in r["curve"] if p["step"] == s]
                row.append(f"{v[0]:.4f}" if v else "")
            lines.append(f"| {s} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=["gradients", "parity", "charlm", "all"], default="all")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--quick", action="store_true", help="a few steps of each run (smoke test)")
    p.add_argument("--charlm-steps", type=int, default=2000, help="training steps of each char-LM run")
    p.add_argument("--budget", type=float, default=600.0, help="training seconds at most per run")
    p.add_argument("--text", default="../shared/data/tinyshakespeare.txt")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    parity = charlm = grads = None
    if args.task in ("parity", "all"):
        parity = bench_parity(args.out, args.quick, args.budget)
    if args.task in ("charlm", "all"):
        charlm = bench_charlm(args.out, args.quick, args.charlm_steps, args.budget, args.text)
    if parity is None and (args.out / "transformer_parity.json").exists():
        parity = json.loads((args.out / "transformer_parity.json").read_text())
    if charlm is None and (args.out / "transformer_charlm.json").exists():
        charlm = json.loads((args.out / "transformer_charlm.json").read_text())
    if args.task in ("gradients", "all"):  # last: it switches JAX to float64
        grads = bench_gradients(args.out)
    if grads is None and (args.out / "transformer_gradients.json").exists():
        grads = json.loads((args.out / "transformer_gradients.json").read_text())
    md = tables(parity, charlm, grads)
    (args.out / "transformer_tables.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
