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
# # Device non-idealities explorer
#
# A weight on the chip is a differential pair of conductances, $W = (G^+ - G^-)/G_\mathrm{ref}$.
# How well the network computes and learns depends on how those conductances can be written
# and read:
#
# * **Pulse response.** On-chip learning changes a conductance by programming pulses. Real
#   devices step by different amounts up and down, by amounts that depend on the present state
#   (soft bounds, nonlinear curves), differ from device to device, and are noisy from pulse to
#   pulse. The presets in `device_models/devices/` (`analogeq devices list`) carry published
#   numbers in aihwkit / NeuroSim semantics.
# * **Storage.** Programming a trained network onto the chip quantizes each conductance to
#   `n_levels`, adds programming error and device-to-device variation of the bounds; every read
#   perturbs the conductances (read noise).
# * **Asymmetry.** When an up pulse and a down pulse do not cancel, zero-mean update traffic
#   (the gradient noise of SGD near a minimum) becomes a drift.
#
# What to look at: how many distinct states each device offers and how symmetric it is; which
# storage non-ideality costs accuracy first; how fast asymmetric devices drift under
# zero-mean pulses.
#
# `ANALOGEQ_FAST=1` runs a short version (fewer presets, devices, chips and steps).

# %%
import dataclasses
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import analogeq as aq
from analogeq.config import TrainConfig
from analogeq.data import load_digits
from analogeq.devices import ConstantStep, SoftBounds
from analogeq.devices.presets import available_devices, load_device
from analogeq.devices.response import pulse_response
from analogeq.hardware import ChipConfig, ChipRelaxation, realize
from analogeq.hardware.pulsed import PulsedUpdater, attach_devices, device_hardware
from analogeq.assembly import build_model, train
from analogeq.evaluation import evaluate
from analogeq.training import RunParts

FAST = os.environ.get("ANALOGEQ_FAST", "0") == "1"
OUT = Path(os.environ.get("ANALOGEQ_NOTEBOOK_OUT", "runs/notebooks")) / "02_device_explorer"
OUT.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()

PRESETS = ["ecram-tang2018", "reram-gong2018", "pcm", "ag-asi-neurosim"] if FAST else available_devices()
N_DEVICES = 16 if FAST else 64
MAX_PULSES = 1500 if FAST else 4000
N_CHIPS = 2 if FAST else 8
DIGITAL_STEPS = 150 if FAST else 1000
TRAFFIC_PULSES = 200 if FAST else 800
TRAFFIC_SEGMENTS = 4 if FAST else 8
print(f"FAST={FAST}; presets {PRESETS}; figures go to {OUT}")

# %% [markdown]
# ## 1. Pulse responses of the device presets
#
# `pulse_response` draws `N_DEVICES` devices of a preset (device-to-device variation), starts
# each at its lower bound, applies enough up pulses to cross the nominal range, then as many
# down pulses. A symmetric linear device gives a triangle; soft bounds give a saturating
# curve; an asymmetric device comes back down faster or slower than it went up.

# %%
responses = {}
for name in PRESETS:
    preset = load_device(name)
    responses[name] = (preset, pulse_response(preset, n_devices=N_DEVICES, seed=0, max_pulses=MAX_PULSES))

cols = 2 if len(PRESETS) <= 4 else 4
rows_ = -(-len(PRESETS) // cols)
fig, axes = plt.subplots(rows_, cols, figsize=(5.2 * cols, 3.3 * rows_), squeeze=False)
for ax, (name, (preset, r)) in zip(axes.flat, responses.items()):
    p, w = r["pulse"], r["w"]
    lo, hi = np.percentile(w, [5, 95], axis=1)
    ax.fill_between(p, lo, hi, alpha=0.25, label="5-95 % of devices")
    for k in range(min(3, w.shape[1])):
        ax.plot(p, w[:, k], lw=0.5, color="0.4")
    ax.plot(p, w.mean(axis=1), lw=2, label="mean")
    ax.axvline(r["n_up"], color="k", ls=":", lw=1)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("pulse (up, then down)")
    ax.set_ylabel("weight")
for ax in list(axes.flat)[len(PRESETS):]:
    ax.axis("off")
axes.flat[0].legend(fontsize=8)
fig.tight_layout()
fig.savefig(OUT / "pulse_responses.png", dpi=110)


# %% [markdown]
# The table reads the devices as a designer would: the up and down step at $w = 0$ (mean over
# devices, weight units), their ratio (1 for a symmetric device), the device-to-device spread
# of the up step, the number of nominal steps across the weight range ("states",
# $(w_\max - w_\min) / \Delta w_\mathrm{min}$), and the **symmetry point**, the weight where
# an up and a down step are equal. Zero-mean pulse traffic pulls a device towards its
# symmetry point; a device without one (a constant step with $D^+ \ne D^-$) is pulled to a
# bound.

# %%
def symmetry_point(device, st, grid):
    """Per device, the weight on ``grid`` where ``step_up - step_down`` changes sign (NaN if none)."""
    diff = np.stack([np.asarray(device.step_up(jnp.full(st.shape, g), st) - device.step_down(jnp.full(st.shape, g), st))
                     for g in grid])
    idx = np.argmax(np.diff(np.sign(diff), axis=0) != 0, axis=0)
    found = np.any(np.diff(np.sign(diff), axis=0) != 0, axis=0)
    return np.where(found, grid[idx], np.nan)


device_table = []
for name, (preset, r) in responses.items():
    dev = preset.device
    st = dev.sample(jax.random.PRNGKey(0), (N_DEVICES,))
    zero = jnp.zeros((N_DEVICES,))
    up, down = np.asarray(dev.step_up(zero, st)), np.asarray(dev.step_down(zero, st))
    grid = np.linspace(float(dev.w_min), float(dev.w_max), 401)
    sym = symmetry_point(dev, st, grid)
    device_table.append({
        "preset": name, "model": type(dev).__name__, "up@0": up.mean(), "down@0": down.mean(),
        "up/down": up.mean() / down.mean(), "d2d up": up.std() / up.mean(),
        "states": round((dev.w_max - dev.w_min) / dev.dw_min),
        "symmetry point": np.nanmean(sym) if np.any(np.isfinite(sym)) else float("nan"),
        "w range": (float(dev.w_min), float(dev.w_max)),
    })
print(f"{'preset':22}{'model':16}{'up@0':>10}{'down@0':>10}{'up/down':>9}{'d2d up':>8}{'states':>8}"
      f"{'sym. pt':>9}  range")
for d in device_table:
    print(f"{d['preset']:22}{d['model']:16}{d['up@0']:>10.2e}{d['down@0']:>10.2e}{d['up/down']:>9.2f}"
          f"{d['d2d up']:>8.2f}{d['states']:>8d}{d['symmetry point']:>9.3f}"
          f"  [{d['w range'][0]:g}, {d['w range'][1]:g}]")

# %% [markdown]
# ## 2. Storage: accuracy of a trained network vs levels, programming and read noise
#
# A network trained on the digital emulator is programmed onto chips whose crossbar has one
# non-ideality at a time, starting from the ideal chip. The crossbar knobs act only on the
# stored conductances, so the chip's field is the network `chip.as_model()` encodes (with the
# neuron circuits ideal): it is evaluated with the same emulator the network was trained on.
# Read noise is one draw per settle (`chip.sample_phase`). Bound variation acts through each
# device's own level grid (levels are spread between its own bounds) and through clipping, so
# it is swept at 64 levels. Each point averages `N_CHIPS` chip instances.

# %%
digits = load_digits()
cfg = TrainConfig(hidden=(64,) if FAST else (128,), steps=DIGITAL_STEPS, eval_every=DIGITAL_STEPS,
                  probe_every=DIGITAL_STEPS)
t0 = time.perf_counter()
trained = train(cfg, progress=False)
net = trained.model
emulator = aq.EulerRelaxation(eps=cfg.eps, T1=cfg.T1, T2=cfg.T2, tol=cfg.tol)
base_acc = evaluate(net, aq.SquaredError(), emulator, digits.x_test, digits.y_test)["test_acc"]
w_abs = max(float(jnp.max(jnp.abs(w))) for w in jax.tree_util.tree_leaves((net.weights, net.feedback, net.biases)))
print(f"trained {DIGITAL_STEPS} steps in {time.perf_counter() - t0:.1f} s: test accuracy {base_acc:.4f}, "
      f"max |W| = {w_abs:.2f} (the crossbar stores |W| <= 1)")


def stored_accuracy(changes: dict, n_chips: int = N_CHIPS, read: bool = False) -> tuple[float, float]:
    """Mean and std of test accuracy over chip instances of the ideal chip with ``changes``."""
    hw = ChipConfig.ideal().replace(**changes)
    accs = []
    for k in range(n_chips):
        chip = realize(net, hw, jax.random.PRNGKey(k))
        if read:
            chip = chip.sample_phase(jax.random.PRNGKey(1000 + k))
        accs.append(evaluate(chip.as_model(), aq.SquaredError(), emulator, digits.x_test, digits.y_test)["test_acc"])
    return float(np.mean(accs)), float(np.std(accs))


sweeps = {
    "crossbar.n_levels": ([4, 8, 16, 32, 64] if FAST else [3, 4, 6, 8, 12, 16, 32, 64, 256], {}),
    "crossbar.prog_noise": ([0.005, 0.02, 0.05, 0.1] if FAST else [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2], {}),
    "crossbar.d2d_bounds": ([0.1, 0.3] if FAST else [0.05, 0.1, 0.2, 0.3, 0.5], {"crossbar.n_levels": 64}),
    "crossbar.read_noise": ([0.01, 0.05, 0.1] if FAST else [0.005, 0.01, 0.02, 0.05, 0.1, 0.2], {}),
}
t0 = time.perf_counter()
storage = {}
for knob, (values, extra) in sweeps.items():
    storage[knob] = [(v, *stored_accuracy({knob: v, **extra}, read=knob.endswith("read_noise"))) for v in values]
print(f"storage sweeps in {time.perf_counter() - t0:.1f} s; digital accuracy {base_acc:.4f}")
for knob, pts in storage.items():
    extra = sweeps[knob][1]
    print(f"\n{knob}" + (f" (with {extra})" if extra else ""))
    for v, m, s in pts:
        print(f"  {v:>8g}   test acc {m:.4f} +- {s:.4f}")

# %%
fig, axes = plt.subplots(1, len(storage), figsize=(4.2 * len(storage), 3.4))
for ax, (knob, pts) in zip(axes, storage.items()):
    v, m, s = (np.array(c) for c in zip(*pts))
    ax.errorbar(v, m, yerr=s, marker="o", capsize=3)
    ax.axhline(base_acc, color="k", ls=":", lw=1, label="digital")
    ax.set_xscale("log")
    ax.set(xlabel=knob.split(".")[1], ylabel="test accuracy", ylim=(0, 1))
    ax.grid(alpha=0.3)
axes[0].legend()
fig.tight_layout()
fig.savefig(OUT / "storage_sweeps.png", dpi=110)

# %% [markdown]
# A differential pair with $n$ levels per device stores $2n - 1$ weight values over $[-1, 1]$;
# most trained weights are small compared to that range, so a few levels collapse many of
# them onto zero. Programming noise is relative to the full conductance window, so it too
# costs more the smaller the weights are compared to the window.
#
# ## 3. Asymmetry: zero-mean pulse traffic
#
# Near a minimum the SGD updates average to zero. On a device with $D^+ \ne D^-$ (aihwkit's
# `up_down`) every pair of opposite pulses leaves a net step: a drift, not a random walk.
# Here every weight and bias of the trained network is written into a device (constant step,
# $\Delta w_\mathrm{min} = 0.002$, 1000 states over $[-1, 1]$), every device then receives
# pulses of random sign, and the network is evaluated along the way. A symmetric soft-bounds
# device has a symmetry point at $w = 0$ instead: traffic pulls every weight towards it, a
# weight decay.

# %%
@eqx.filter_jit
def pulse_traffic(device, st, w, key, n_pulses):
    """``n_pulses`` single pulses of random sign on every device (state ``st``) holding ``w``."""

    def one(w, k):
        k_sign, k_c2c = jax.random.split(k)
        n = jnp.where(jax.random.bernoulli(k_sign, 0.5, w.shape), 1, -1)
        return device.apply_pulses(w, st, n, k_c2c, max_pulses=1), None

    return jax.lax.scan(one, w, jax.random.split(key, n_pulses))[0]


def traffic_accuracy(device, key, n_segments=TRAFFIC_SEGMENTS, per_segment=TRAFFIC_PULSES // TRAFFIC_SEGMENTS):
    """Test accuracy and mean drift of the trained network stored in ``device``s, after
    ``0, per_segment, 2 per_segment, ...`` random pulses per device."""
    # One flat array of every weight and bias: a single compilation per device model.
    flat, unflatten = ravel_pytree((net.weights, net.feedback, net.biases))
    k_dev, k_run = jax.random.split(key)
    st = device.sample(k_dev, flat.shape, flat.dtype)
    written = w = jnp.clip(flat, st.b_min, st.b_max)
    out = {"pulses": [], "acc": [], "drift": []}
    for seg in range(n_segments + 1):
        if seg:
            w = pulse_traffic(device, st, w, jax.random.fold_in(k_run, seg), per_segment)
        model = aq.LeakyNetwork(net.sizes, key=None, parameters=unflatten(w))
        out["pulses"].append(seg * per_segment)
        out["acc"].append(evaluate(model, aq.SquaredError(), emulator, digits.x_test, digits.y_test)["test_acc"])
        out["drift"].append(float(jnp.mean(w - written)))
    return out


asymmetries = [0.0, 0.1, 0.3] if FAST else [0.0, 0.02, 0.05, 0.1, 0.2, 0.3]
devices = {f"constant step, up_down {a:g}": ConstantStep(dw_min=0.002, up_down=a, dw_min_dtod=0.1, up_down_dtod=0.01,
                                                         dw_min_std=0.3, w_max=1.0, w_min=-1.0,
                                                         w_max_dtod=0.05, w_min_dtod=0.05)
           for a in asymmetries}
devices["soft bounds, symmetric"] = SoftBounds(dw_min=0.002, up_down=0.0, dw_min_dtod=0.1, up_down_dtod=0.01,
                                               dw_min_std=0.3, w_max=1.0, w_min=-1.0, w_max_dtod=0.05,
                                               w_min_dtod=0.05)
t0 = time.perf_counter()
asym = {name: traffic_accuracy(dev, jax.random.PRNGKey(7)) for name, dev in devices.items()}
traffic_pulses = asym[next(iter(asym))]["pulses"]
print(f"pulse traffic in {time.perf_counter() - t0:.1f} s; digital accuracy {base_acc:.4f}")
print("test accuracy after n random pulses per device (mean drift of the weights at the end)")
print(f"{'device':32}" + "".join(f"{n:>8d}" for n in traffic_pulses) + f"{'drift':>9}")
for name, r in asym.items():
    print(f"{name:32}" + "".join(f"{a:>8.4f}" for a in r["acc"]) + f"{r['drift'][-1]:>9.4f}")

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, r in asym.items():
    a1.plot(r["pulses"], r["acc"], marker="o", ms=3, label=name)
    a2.plot(r["pulses"], r["drift"], marker="o", ms=3, label=name)
a1.axhline(base_acc, color="k", ls=":", lw=1)
a1.set(xlabel="random pulses per device", ylabel="test accuracy", ylim=(0, 1))
a2.set(xlabel="random pulses per device", ylabel="mean weight drift")
for ax in (a1, a2):
    ax.grid(alpha=0.3)
a1.legend(fontsize=7)
fig.tight_layout()
fig.savefig(OUT / "asymmetry_traffic.png", dpi=110)

# %% [markdown]
# The drift grows as `up_down` times the number of pulses ($\approx n\,\Delta w_\mathrm{min}
# \,\mathrm{up\_down}/2$), while the symmetric constant-step device only random-walks
# ($\propto \sqrt{n}$), which still costs accuracy once $\sqrt{n}\,\Delta w_\mathrm{min}$
# reaches the size of the small weights. On-chip training with such devices needs schemes
# that send fewer pulses for the same update (mixed precision: a digital accumulator keeps
# the gradient noise off the devices) or that work around the asymmetry (Tiki-Taka):
# `--update mixed`, `--update tiki-taka`.
#
# ## 4. Asymmetry in on-chip training
#
# EP training runs on a noise-free chip whose every crosspoint is a constant-step device of
# growing `up_down`, written by mixed-precision pulses (a digital accumulator per device sends
# a pulse whenever it exceeds $\Delta w_\mathrm{min}$). Over a short run the effect is
# smaller than in section 3: far from a minimum the update is not zero-mean, and the drift
# accumulates with the number of pulses. The fast mode runs a few steps of two settings only,
# to exercise the loop.

# %%
run_cfg = TrainConfig(hidden=(32,) if FAST else (64,), steps=4 if FAST else 200, eval_every=2 if FAST else 25,
                      probe_every=4 if FAST else 200, optimizer="sgd", lr=0.1, beta=0.2,
                      correction="asym-tracking", gate=False)
run_data = dataclasses.replace(digits, x_test=digits.x_test[:100], y_test=digits.y_test[:100]) if FAST else digits
model0 = build_model(run_cfg, run_data, jax.random.PRNGKey(0))
# The chip's steady-state tolerance matches the emulator's residual tolerance. The chip settles
# over a fixed 40 tau window, as the realistic preset does (the exact-decay integrator; the
# adaptive steady-state solve of the ideal preset takes minutes to compile per device model).
base_hw = ChipConfig.ideal().replace(**{"dynamics.steady_tol": run_cfg.tol, "dynamics.settle_time": 4e-7})
training_asymmetry = {}
for a in ((0.0, 0.5) if FAST else (0.0, 0.1, 0.3, 0.5)):
    dev = ConstantStep(dw_min=0.002, up_down=a, dw_min_dtod=0.1, up_down_dtod=0.01, dw_min_std=0.3,
                       w_max=1.0, w_min=-1.0, w_max_dtod=0.05, w_min_dtod=0.05)
    hw = device_hardware(base_hw, dev)
    chip = attach_devices(realize(model0, hw, jax.random.PRNGKey(1)), dev, jax.random.PRNGKey(2))
    parts = RunParts(model=chip, cost=aq.SquaredError(), relaxation=ChipRelaxation(hw),
                     estimator=aq.EP(beta=run_cfg.beta, kind="centered", correction=run_cfg.correction),
                     updater=PulsedUpdater(device=dev, update_scheme="mixed", optimizer=optax.sgd(run_cfg.lr),
                                           lr=run_cfg.lr, key=jax.random.PRNGKey(3)),
                     data=run_data, label=f"up_down {a}")
    t0 = time.perf_counter()
    res = train(run_cfg, progress=False, parts=parts)
    training_asymmetry[a] = res
    pulses = sum(int(jnp.sum(c)) for c in res.state["pulses"])
    print(f"up_down {a}: final test accuracy {res.summary['final_test_acc']:.4f} "
          f"(best {res.summary['best_test_acc']:.4f}), {pulses} pulses, {time.perf_counter() - t0:.0f} s")

fig, ax = plt.subplots(figsize=(6, 3.6))
for a, res in training_asymmetry.items():
    pts = [(r["step"], r["test_acc"]) for r in res.history if r["kind"] == "eval"]
    ax.plot(*zip(*pts), marker="o", ms=3, label=f"up_down {a}")
ax.set(xlabel="training step", ylabel="test accuracy", title="EP on a chip of constant-step devices")
ax.grid(alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(OUT / "asymmetry_training.png", dpi=110)

# %%
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
