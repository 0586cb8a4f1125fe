# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The equilibrium transformer on a chip
#
# The question: does the recipe that trains the equilibrium transformer on the digital emulator
# (AsymEP, centered nudges, $\beta = 0.05$, with its stability controls) survive analog
# hardware? The same block, data, seed and recipe run in three places:
#
# * **digital**: the float32 emulator, which relaxes the block's field $F(z)$ by explicit Euler
#   ($\epsilon = 0.25$, $T_1 = 60$ free and $T_2 = 12$ nudged steps);
# * **ideal-windowed**: the analog block realized on an ideal chip that settles
#   $\tau \dot z = F(z)$ in continuous time with fixed readout windows, 15 $\tau$ free and
#   3 $\tau$ per nudged phase (the emulator's $T_1 \epsilon$ and $T_2 \epsilon$);
# * **realistic**: the same block on the `realistic` preset (64 conductance levels, programming
#   noise, read and thermal noise, neuron mismatch, a 1 ns amplifier pole, 8-bit converters,
#   mismatch of the attention / normalization / GELU circuits, its own settle windows).
#
# The emulator recipe's stability controls are not all available on a chip: the parameter EMA
# (an average of past weights) and the weight cap (a rescale of all weights) act on the
# parameters as numbers, which a chip's conductances are not, so a chip run refuses them
# (`ema = 0`, `weight_cap = 0` here, on every run, digital included, so all three train with the
# same recipe). The chip's stability control is `resreg`: a penalty on the residual $|F(z)|$ left
# at the end of the fixed settle window, at the held state as the ADCs read it, which keeps the
# field settling within its readout time (`analogeq/transformer_chip.py`).
#
# The notebook trains 8-bit parity with the Python API behind `analogeq train`, plots the
# learning curves, the cosine of the chip's EP update against its own exact gradient and the
# stability probe's verdict over training, measures which non-ideality costs the gradient most,
# and the estimated energy per token.
#
# `ANALOGEQ_FAST=1` runs the short version the test suite runs: $d = 8$, 4 training steps of 8
# strings on 16 training strings, the probes every 2 steps, every chip without its noise
# (thermal, read and multiplier noise: an ODE instead of an SDE, which compiles faster) and the
# two noise groups of section 3 left out. Without it: $d = 32$ and 600 steps of 32 strings, the
# recipe of `benchmarks/bench_transformer_chip.py`, and a fourth run, `realistic-gated`.

# %%
import json
import math
import os
import time
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import numpy as np

from analogeq.assembly import build_analog, build_parts, load_data, train
from analogeq.config import TrainConfig
from analogeq.data.dataset import Dataset
from analogeq.diagnostics.verdict import LABELS
from analogeq.hardware import ChipConfig
from analogeq.training import gradient_probe

FAST = os.environ.get("ANALOGEQ_FAST", "0") == "1"
OUT = Path(os.environ.get("ANALOGEQ_NOTEBOOK_OUT", "runs/notebooks")) / "06_transformer_chip"
OUT.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()

D_MODEL = 8 if FAST else 32
STEPS = 4 if FAST else 600
EVERY = 2 if FAST else 50  # steps between evaluations and probes (the benchmark's steps // 12)
BATCH = 8 if FAST else 32
N_TRAIN = 16 if FAST else None  # training strings (None: all 192); the probes use the first 64
N_PROBE = 16 if FAST else 64  # samples of the non-ideality gradient probe (section 4)
NOISE = ("noise.temperature", "crossbar.read_noise", "circuits.mult_noise")  # zeroed in fast mode
BENCH = Path("benchmarks/results/transformer_chip/parity.json")  # relative to the repository root
print(f"FAST={FAST}: d_model {D_MODEL}, {STEPS} steps of batch {BATCH}, eval and probes every {EVERY} "
      f"steps; figures go to {OUT}")

# %% [markdown]
# ## 1. The recipe and the runs
#
# The recipe is `PARITY` of `benchmarks/bench_transformer.py` (AsymEP centered, `resreg = 1`,
# gradient clipping at 1, Adam $10^{-3}$) with `ema = 0` and `weight_cap = 0`, as
# `benchmarks/bench_transformer_chip.py` runs it. `analogeq.assembly.train` is what
# `analogeq train` calls; each run's folder gets its `metrics.jsonl`, `config.toml` and, for a
# chip, the chip's TOML, so
# `analogeq train --config <run>/config.toml --hardware <run>/chip.toml` repeats it (in full
# mode; fast mode trains on a subset of the training strings, which the config does not name).
#
# 8-bit parity is causal next-token prediction over the 256 bit strings: 192 train, 64 held
# out; validation accuracy is the accuracy of the full 8-bit parity on the held-out strings.
#
# `realistic-gated` (full mode) is `realistic` with `gate = true`: a step whose free or nudged
# phase did not settle (residual above `tol`) updates nothing. On a chip this is a comparator on
# the settle residual; it is the stability control that held `realistic` together in the
# benchmark (0.984 against 0.688 ungated, seed 0).

# %%
cfg = TrainConfig(model="eqtransformer", task="parity", cost="token_cross_entropy", bits=8, d_model=D_MODEL,
                  n_heads=2, eps=0.25, T1=60, T2=12, beta=0.05, ep_kind="centered", correction="asym", lr=1e-3,
                  batch_size=BATCH, resreg=1.0, grad_clip=1.0, ema=0.0, weight_cap=0.0, gate=False, tol=1e-3,
                  seed=0, steps=STEPS, eval_every=EVERY, probe_every=EVERY)
full = load_data(cfg)
n_train = N_TRAIN or len(full.y_train)
data = Dataset(full.x_train[:n_train], full.y_train[:n_train], full.x_test, full.y_test, full.n_classes,
               f"parity, {n_train} training strings")
TOKENS = BATCH * cfg.bits  # tokens per training step (every position of every string is scored)



def fast(chip: ChipConfig) -> ChipConfig:
    """``chip`` without its noise sources (:data:`NOISE` set to 0) in fast mode, unchanged otherwise."""
    return chip.replace(**{f: 0.0 for f in NOISE}) if FAST else chip


REFERENCE = fast(ChipConfig.preset("realistic"))
RUNS = {"digital": None, "ideal-windowed": ChipConfig.preset("ideal-windowed"), "realistic": REFERENCE}
if not FAST:  # the stability control that works on a chip: skip the update when a phase did not settle
    RUNS["realistic-gated"] = REFERENCE


def run(name: str, chip: ChipConfig | None):
    """Train the recipe on ``chip`` (None: the digital emulator) into OUT/<name>; a name ending
    in ``-gated`` trains with ``gate=True``."""
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    if chip is not None:
        chip.to_toml(folder / "chip.toml")
    run_cfg = cfg.replace(gate=name.endswith("-gated"))
    parts = build_parts(run_cfg, chip if chip is not None else "", data)
    t0 = time.perf_counter()
    res = train(run_cfg, folder, progress=False, parts=parts, label=name)
    print(f"{name:>15}: {time.perf_counter() - t0:6.1f} s, final acc {res.summary['final_test_acc']:.3f}, "
          f"cos mean {res.summary['grad_cosine_mean']:.4f}, worst verdict {res.summary.get('stab_verdict_worst')}")
    return res


results = {name: run(name, chip) for name, chip in RUNS.items()}
evals = {name: [r for r in res.history if r["kind"] == "eval"] for name, res in results.items()}

# %% [markdown]
# ## 2. Learning curves, gradient cosine and the stability probe over training
#
# At every probe step the loop records
#
# * `grad_cosine`: the cosine of the run's EP update against the exact gradient of the same
#   field on the first 64 training strings (16 in fast mode) and the same noise draw: the
#   implicit adjoint of the emulator's field for `digital`, of the chip's own analog field for a
#   chip (so it measures the estimator and the read path, not the chip's distance from the
#   digital model);
# * `stab_max_re_mu`: the largest real part of the eigenvalues $\mu$ of the Jacobian
#   $J = \partial F/\partial z$ at the free states the run actually reaches on 4 probe strings
#   (units $1/\tau$), and `stab_verdict`, the worst over the leading eigenvalues:
#   `stable`, `euler-artifact` (every $\mathrm{Re}\,\mu < 0$ but $|1 + \epsilon\mu| > 1$: only
#   the emulator's Euler step diverges), `continuous-real` or `continuous-hopf` (a real
#   eigenvalue or a complex pair with $\mathrm{Re}\,\mu > 0$: the field itself is unstable).
#
# How to read the third panel: a point above 0 with the `continuous-hopf` marker is a Hopf
# bifurcation of the block's dynamics, which every realization shares (the chip oscillates
# too). An `euler-artifact` marker, possible on the digital run only (a chip is judged by the
# continuous criterion), is an emulator problem: the chip would settle where Euler cycles. When
# every point is `stable` and below 0 but the cosine collapses, the dynamics are not the cause:
# look at the read path (the converters, the windows, the nudged contrast at the chip's
# resolution) and at the estimator.

# %%
MARKERS = dict(zip(LABELS, ("o", "x", "s", "^")))  # stable, euler-artifact, continuous-real, -hopf


def curve(name: str, key: str) -> tuple[list, list]:
    """Steps and values of ``key`` over the eval records of run ``name`` that have it (NaN for None)."""
    rows = [r for r in evals[name] if key in r]
    return [r["step"] for r in rows], [np.nan if r[key] is None else r[key] for r in rows]


fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for i, name in enumerate(results):
    color = f"C{i}"
    axes[0].plot(*curve(name, "test_acc"), marker=".", color=color, label=name)
    axes[1].plot(*curve(name, "grad_cosine"), marker=".", color=color, label=name)
    steps, mu = curve(name, "stab_max_re_mu")
    verdicts = [r["stab_verdict"] for r in evals[name] if "stab_max_re_mu" in r]
    axes[2].plot(steps, mu, color=color, alpha=0.6, label=name)
    for s, m, v in zip(steps, mu, verdicts):
        axes[2].scatter([s], [m], color=color, marker=MARKERS.get(v, "*"), s=40, zorder=3)
for label, marker in MARKERS.items():  # a legend of the verdict markers
    axes[2].scatter([], [], color="gray", marker=marker, label=label)
axes[2].axhline(0.0, color="k", lw=0.8)
axes[0].set(ylabel="validation accuracy (8-bit parity)", title="Learning curves")
axes[1].set(ylabel="cos(EP update, own exact gradient)", title="Gradient cosine")
axes[2].set(ylabel="max Re mu [1/tau]", title="Stability probe (marker: verdict)")
for ax in axes:
    ax.set_xlabel("training step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(OUT / "training.png", dpi=110)

print(f"{'run':>15}{'final acc':>11}{'best acc':>10}{'cos mean':>10}{'cos final':>11}{'max Re mu':>11}"
      f"{'worst verdict':>17}")
for name, res in results.items():
    s = res.summary
    print(f"{name:>15}{s['final_test_acc']:>11.3f}{s['best_test_acc']:>10.3f}{s['grad_cosine_mean']:>10.4f}"
          f"{s['grad_cosine_final']:>11.4f}{s.get('stab_max_re_mu_max', np.nan):>11.3f}"
          f"{s.get('stab_verdict_worst')!s:>17}")

# %% [markdown]
# ## 3. Which non-ideality costs what
#
# `benchmarks/bench_transformer_chip.py --task parity` trains the recipe on `ideal-windowed`
# with each group of non-idealities of `realistic` alone, at equal steps. When its results are
# there (full mode, run from the repository root) they are shown first; the file is rewritten
# after every run, so a benchmark still running shows the rows it has.
#
# A cheaper measurement runs here in both modes: the cosine of the EP update against the chip's
# own exact gradient at initialization (the block the runs start from, `N_PROBE` training
# strings), on `ideal-windowed` with one group of fields set to its `realistic` value: 64
# conductance levels, 1 % read noise, thermal noise at 300 K (Johnson noise of the devices and
# kT/C on the nodes), 8-bit converters, the 1 ns amplifier pole, the mismatch of the attention,
# normalization and GELU circuits (the `circuits` section), and all of `realistic`. The values
# are read from the `realistic` preset, not typed here. In fast mode the two noise groups are left
# out (each compiles its own SDE) and `realistic` and the circuits are noise-free, as in the runs
# above; the ideal-windowed and realistic probes then reuse the runs' compiled probes.

# %%
def bench_rows(path: Path) -> list[dict]:
    """The benchmark's rows (empty when the file is missing, unreadable or in fast mode)."""
    if FAST or not path.exists():
        return []
    try:
        return json.loads(path.read_text()).get("rows", [])
    except json.JSONDecodeError:  # being rewritten by a running benchmark
        return []


def fmt(v, spec: str = ".3f") -> str:
    """``v`` formatted, '-' for a missing or non-finite number."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, spec) if isinstance(v, (int, float)) else str(v)


bench = [r for r in bench_rows(BENCH) if r.get("seed", 0) == 0]  # one bar per run: seed 0
if bench:
    cols = ("run", "final_acc", "best_acc", "cos_mean", "cos_final", "verdict_worst", "max_re_mu",
            "energy_per_token_J")
    print(" | ".join(f"{c:>18}" for c in cols))
    for r in bench:
        print(" | ".join(f"{fmt(r.get(c), '.3g'):>18}" for c in cols))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    names = [r["run"] for r in bench]
    for ax, key, label in ((axes[0], "final_acc", "final validation accuracy"),
                           (axes[1], "cos_mean", "mean cos(EP update, own exact gradient)")):
        ax.bar(names, [np.nan if r.get(key) is None else r[key] for r in bench])
        ax.set(ylabel=label)
        ax.tick_params(axis="x", rotation=60)
    fig.suptitle(f"benchmark: one non-ideality at a time ({json.loads(BENCH.read_text()).get('steps')} steps)")
    fig.tight_layout()
    fig.savefig(OUT / "benchmark_costs.png", dpi=110)
else:
    print(f"no benchmark results shown ({'fast mode' if FAST else f'{BENCH} not found'})")

# %%
GROUPS = {
    "ideal-windowed": (),
    "64 levels": ("crossbar.n_levels",),
    **({} if FAST else {"read noise": ("crossbar.read_noise",),
                        "thermal noise": ("crossbar.thermal_noise", "neuron.kTC_noise", "noise.temperature")}),
    "8-bit converters": ("periphery.dac_bits", "periphery.adc_bits", "periphery.dac_range", "periphery.adc_range"),
    "amplifier pole": ("neuron.amp_pole_tau",),
    "circuits mismatch": tuple(f"circuits.{k}" for k in REFERENCE.to_dict()["circuits"]),
}


def group_chip(fields: tuple[str, ...]) -> ChipConfig:
    """``ideal-windowed`` with ``fields`` (``section.name``) set to their ``realistic`` values."""
    ref = REFERENCE.to_dict()  # noise-free in fast mode, so the circuits group is too
    return ChipConfig.preset("ideal-windowed").replace(**{f: ref[f.split(".")[0]][f.split(".")[1]] for f in fields})


xs, ys = data.x_train[:N_PROBE], data.y_train[:N_PROBE]
chips = {**{name: group_chip(fields) for name, fields in GROUPS.items()}, "realistic": REFERENCE}
costs = {}
for name, chip in chips.items():
    t0 = time.perf_counter()
    parts = build_analog(cfg, chip, data)
    probe = gradient_probe(parts.model, parts.cost, parts.relaxation, parts.probe, xs, ys, jax.random.PRNGKey(3))
    costs[name] = probe["grad_cosine"]
    print(f"{name:>18}: cos(EP update, own exact gradient) at init {costs[name]:8.4f}  "
          f"({time.perf_counter() - t0:.1f} s)")

fig, ax = plt.subplots(figsize=(8, 3.6))
ax.bar(list(costs), list(costs.values()), color=["C0"] + ["C1"] * (len(costs) - 2) + ["C2"])
ax.axhline(0.0, color="k", lw=0.8)
ax.set(ylabel="cos at initialization", title=f"One non-ideality at a time (d = {D_MODEL}, {N_PROBE} strings)")
ax.tick_params(axis="x", rotation=30)
fig.tight_layout()
fig.savefig(OUT / "nonideality_costs.png", dpi=110)

# %% [markdown]
# ## 4. Energy per token
#
# Each chip training step records `energy_J` and `latency_s`, the estimate of
# `analogeq/energy/block.py`: the crossbar reads of every tile replica over the settle and
# nudged windows, charging and leak of the nodes, the converters (inputs in, every node read
# after each phase, the nudge closed through one ADC and one DAC conversion per node during the
# nudged windows) and the programming pulses of the update. The multiplier arrays, the
# translinear softmax, the normalization and GELU circuits and static power have no figures
# in the energy model and are not costed, so these are lower bounds. Per token: the step's
# energy over the batch's `BATCH x 8` scored positions. The digital emulator has no energy
# model.

# %%
energy = {}
for name, res in results.items():
    train_recs = [r for r in res.history if r["kind"] == "train" and r.get("energy_J") is not None]
    if not train_recs:
        continue
    energy[name] = {"steps": [r["step"] for r in train_recs],
                    "per_token_J": [r["energy_J"] / TOKENS for r in train_recs],
                    "latency_s": float(np.mean([r["latency_s"] for r in train_recs]))}
    e = energy[name]
    print(f"{name:>15}: {np.mean(e['per_token_J']):.3e} J per token, {e['latency_s'] * 1e6:.2f} us per step "
          f"({TOKENS} tokens)")

fig, ax = plt.subplots(figsize=(7, 3.6))
for name, e in energy.items():
    ax.plot(e["steps"], e["per_token_J"], marker=".", label=name)
ax.set(xlabel="training step", ylabel="energy per token [J] (lower bound)", yscale="log",
       title="Estimated training energy per token")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "energy.png", dpi=110)

# %% [markdown]
# ## 5. What the numbers say
#
# The cell below reads its sentences from the numbers computed above (the fast run's numbers
# only show that each step runs: 4 steps on 16 strings do not learn parity). The questions it
# answers: did each run learn, did its gradient stay aligned with its own exact gradient, did
# the stability probe ever leave `stable`, and which single non-ideality costs the gradient most.

# %%
def describe(name: str) -> str:
    """One sentence on run ``name`` from its summary."""
    s = results[name].summary
    worst = s.get("stab_verdict_worst")
    why = ("" if worst in ("stable", None) else
           " (an Euler artifact: the emulator's step, not the field)" if worst == "euler-artifact" else
           " (the field itself is unstable there)")
    collapse = s["grad_cosine_min"] < 0.5 and worst == "stable"
    return (f"{name}: final validation accuracy {s['final_test_acc']:.3f} (best {s['best_test_acc']:.3f}); "
            f"cosine mean {s['grad_cosine_mean']:.3f}, min {s['grad_cosine_min']:.3f}; worst verdict "
            f"{worst}{why}, max Re mu {s.get('stab_max_re_mu_max', np.nan):.3f}/tau"
            + ("; the spectrum is stable while the cosine is low, so the loss is in the read path or the "
               "estimator, not in the dynamics." if collapse else "."))


for name in results:
    print(describe(name))
singles = {k: v for k, v in costs.items() if k not in ("ideal-windowed", "realistic")}
ranked = sorted(singles, key=singles.get)  # the costliest first
print(f"At initialization the ideal windowed chip's EP update has cosine {costs['ideal-windowed']:.3f} with "
      f"its exact gradient, realistic {costs['realistic']:.3f}; one non-ideality at a time, costliest first: "
      + ", ".join(f"{n} {singles[n]:.3f}" for n in ranked) + ".")
if energy:
    print("Energy per token (lower bound): "
          + ", ".join(f"{n} {np.mean(e['per_token_J']):.2e} J" for n, e in energy.items()) + ".")
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
