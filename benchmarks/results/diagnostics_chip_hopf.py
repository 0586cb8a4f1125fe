"""Is the realistic chip's training collapse a Hopf bifurcation caused by the amplifier pole?

Probes the chip's noise-free field (its programmed conductances, offsets and gain mismatch, the
1 ns amplifier pole as extra states) at checkpoints of a training run: the fixed point at test
inputs, the leading eigenvalues ``mu`` of ``J`` (largest real part, ARPACK), the verdict, and a
continuous-time relaxation from ``init_state`` checked for a limit cycle. The same conductances
with the pole removed are probed beside it.

Usage (checkpoint directories written by ``analogeq train``, e.g. runs/hopf/ckpt_0050 ...):
    python benchmarks/results/diagnostics_chip_hopf.py runs/hopf/ckpt_* --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from analogeq.costs import make_cost
from analogeq.diagnostics import continuous_check, leading_eigenvalues, settle, verdict
from analogeq.diagnostics.report import load_run, to_float64
from analogeq.ep import NudgedTerm


def without_pole(chip):
    """The same chip instance (conductances, mismatch) with an ideal, pole-free amplifier."""
    cfg = chip.config
    cfg = dataclasses.replace(cfg, neuron=dataclasses.replace(cfg.neuron, amp_pole_tau=0.0))
    return dataclasses.replace(chip, config=cfg)


def probe(chip, x, eps, k, key, t_max, nudge=None):
    """Free-phase probe; with ``nudge = (cost, target, beta, correction)`` the stacked nudged
    field started from the free fixed point instead."""
    field = partial(chip.force, x=x)
    s0 = chip.init_state(x)
    if nudge is not None:
        s_star = settle(field, s0, 2000.0, tol=1e-10)[0]
        cost, target, beta, correction = nudge
        # the stacked centered nudged field the estimator relaxes (without noise)
        field = NudgedTerm(chip, x, cost, target, s_star, (beta, -beta), correction)
        s0 = jnp.stack([s_star, s_star])
    s, res, t, ok = settle(field, s0, 2000.0, tol=1e-10)
    sp = leading_eigenvalues(field, s, eps, k)
    v = verdict(sp)
    pairs = [m for m in sp.mu if abs(m.imag) > 1e-8]
    lead_pair = max(pairs, key=lambda m: m.real) if pairs else None
    cyc = continuous_check(field, s0, t_max, 1e-6, key=key, n_samples=1000)
    return {
        "fp_residual": res, "fp_solver_ok": ok, "fp_time_tau": t,
        "max_re_mu": sp.max_real, "lead_mu": [float(sp.mu[0].real), float(sp.mu[0].imag)],
        "lead_pair": None if lead_pair is None else [float(lead_pair.real), float(abs(lead_pair.imag))],
        "verdict": v.label, "spectral_radius_M": sp.spectral_radius, "arpack_converged": sp.converged,
        "continuous": cyc.outcome, "continuous_residual_floor": cyc.residual_floor,
        "continuous_period_tau": cyc.period_tau, "continuous_amplitude": cyc.amplitude,
    }


def contrast_check(run_dir, n=64, seed=7):
    """Where the chip's EP gradient comes from: with the pole the conductances enter only the
    amplifier rows ``F_y = (d - y) / r`` (``r = tau_a / tau``), so ``g = (1/r) a_y^T dd/dtheta``.
    The exact adjoint has ``lambda_y = r lambda_v``; the amplifier-state contrast is ``r`` times
    the node contrast and is read by the same ADC. Compares the estimator's gradient and the
    gradient built from the node contrast (``a_y := r a_v``) with the chip's exact gradient on the
    probe batch (first ``n`` training samples, the run's noise model, float32 as in training)."""
    from analogeq.ep import ImplicitAdjoint, compare_gradients, force_gradient
    from analogeq.assembly import build_analog

    jax.config.update("jax_enable_x64", False)
    cfg, chip, data, step = load_run(run_dir)
    parts = build_analog(cfg, cfg.hardware)
    xs, ys = jnp.asarray(data.x_train[:n]), jnp.asarray(data.y_train[:n])
    key = jax.random.PRNGKey(seed)
    est = parts.estimator.estimate(chip, parts.cost, parts.relaxation, xs, ys, gate=False, key=key)
    ex = ImplicitAdjoint().estimate(chip, parts.cost, parts.relaxation, xs, ys, gate=False, key=key)
    m, r = chip.n_neurons, chip.config.neuron.amp_pole_tau / chip.tau
    a, lam = est.contrast, ex.contrast
    av, ay = a[:, :m], a[:, m:]
    g_node = force_gradient(chip, xs, parts.relaxation.read(est.free.state),
                            jnp.concatenate([av, r * av], axis=1) / n)
    cos = lambda g: compare_gradients(g, ex.grads)["overall"]["cosine"]
    p = chip.config.periphery
    jax.config.update("jax_enable_x64", True)
    return {"step": step, "cos_ep_vs_exact": cos(est.grads), "cos_node_contrast_vs_exact": cos(g_node),
            "lambda_y_over_lambda_v": float(jnp.linalg.norm(lam[:, m:]) / jnp.linalg.norm(lam[:, :m])),
            "a_y_over_a_v": float(jnp.linalg.norm(ay) / jnp.linalg.norm(av)),
            "median_nudge_split_v": float(jnp.median(jnp.abs(2 * cfg.beta * av))),
            "median_nudge_split_y": float(jnp.median(jnp.abs(2 * cfg.beta * ay))),
            "adc_step": 2 * p.adc_range / (2 ** p.adc_bits - 1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpts", nargs="+")
    ap.add_argument("--n-inputs", type=int, default=6)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--t-max", type=float, default=200.0)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--name", default="diagnostics_chip_hopf")
    ap.add_argument("--nudged", action="store_true", help="also probe the stacked nudged-phase field")
    ap.add_argument("--contrast", action="store_true",
                    help="only run contrast_check (EP gradient vs node-contrast gradient) per checkpoint")
    args = ap.parse_args()
    if args.contrast:
        recs = []
        for d in args.ckpts:
            recs.append(contrast_check(d))
            print(json.dumps(recs[-1]), flush=True)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.name}_contrast.json").write_text(json.dumps(recs, indent=1))
        return
    rows = []
    for d in args.ckpts:
        t0 = time.time()
        cfg, chip, data, step = load_run(d)
        chip = to_float64(chip)
        xs = jnp.asarray(np.asarray(data.x_test[: args.n_inputs]), jnp.float64)
        ys = np.asarray(data.y_test[: args.n_inputs])
        cost = make_cost(cfg.cost)
        cases = [("pole", chip, None), ("no-pole", without_pole(chip), None)]
        if args.nudged:
            cases += [("pole, nudged", chip, (cost, cfg.beta, cfg.correction)),
                      ("no-pole, nudged", without_pole(chip), (cost, cfg.beta, cfg.correction))]
        for variant, c, nud in cases:
            for i, x in enumerate(xs):
                nudge = None if nud is None else (nud[0], jnp.asarray(ys[i]), nud[1], nud[2])
                r = probe(c, x, cfg.eps, args.k, jax.random.PRNGKey(i), args.t_max, nudge)
                rows.append({"ckpt": str(d), "step": step, "variant": variant, "input": i, **r})
                print(f"step {step:4d} {variant:15s} x{i} maxRe {r['max_re_mu']:+.4f} lead {np.round(r['lead_mu'], 4)} "
                      f"pair {None if r['lead_pair'] is None else np.round(r['lead_pair'], 4)} {r['verdict']:>15s} cont {r['continuous']} "
                      f"fp_res {r['fp_residual']:.1e}", flush=True)
        print(f"  ({time.time() - t0:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / args.name}.json")


if __name__ == "__main__":
    main()
