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
# # MNIST on a tiled chip, with IR drop
#
# A real crossbar is a grid of physical tiles of fixed size (256 x 256 on IBM's HERMES chip,
# Le Gallo et al. 2023): a 784 x 64 weight matrix is spread over several tiles whose partial
# column currents are summed on the neuron's node. Each tile's row and column wires have a
# resistance per cell segment, so the devices far from the drivers and the sense amplifiers see
# less than the drive voltage (IR drop). analogeq solves each tile's resistive network
# (`analogeq.hardware.wires`: CrossSim's parasitic formulation, Xiao et al. 2021) once per settle;
# the chip's EP update senses the voltage across each device, while the implicit adjoint is the
# exact gradient through the wires.
#
# This notebook trains a small 784-64-10 network with AsymEP on the digital emulator on an MNIST
# subset, programs it onto the `realistic` chip with 64 x 64 tiles, and shows
#
# 1. the tiles the layers occupy and that the tiled chip with ideal wires classifies as the model,
# 2. the IR-drop map of one tile: the voltage across each device for a few wire resistances,
# 3. test accuracy and the EP gradient's cosine (the chip's sensed update vs its exact gradient)
#    against the wire resistance.
#
# The MNIST IDX files are read from `../shared/data/mnist` (relative to the repository root).
# Set `ANALOGEQ_FAST=1` for the short version the test suite runs (fewer images and steps, the
# chip without thermal and read noise, an ODE instead of an SDE).

# %%
import os
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import analogeq as aq
from analogeq.assembly import build_digital, load_data, train
from analogeq.config import TrainConfig
from analogeq.data.dataset import Dataset
from analogeq.ep.gradients import compare_gradients
from analogeq.evaluation import evaluate, traced
from analogeq.hardware import ChipConfig, ChipRelaxation, realize
from analogeq.hardware.tile import tile_grid

FAST = os.environ.get("ANALOGEQ_FAST", "0") == "1"
OUT = Path(os.environ.get("ANALOGEQ_NOTEBOOK_OUT", "runs/notebooks")) / "05_mnist_tiles"
OUT.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()

N_TRAIN = 2000 if FAST else 10000
N_TEST = 300 if FAST else 2000
STEPS = 200 if FAST else 1500
TILE = 64
WIRES = (0.0, 2.5, 10.0) if FAST else (0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
MAP_WIRES = (1.0, 2.5, 5.0)
GRADIENTS = not FAST  # the gradient cosines compile EP and the implicit adjoint through the wire solve (minutes)
print(f"FAST={FAST}: 784-64-10 on {N_TRAIN} MNIST training images for {STEPS} steps, "
      f"{N_TEST} test images, {TILE} x {TILE} tiles; figures go to {OUT}")

# %% [markdown]
# ## 1. AsymEP on the emulator, on an MNIST subset
#
# The recipe of `benchmarks/bench_mnist.py` (AsymEP centered, $\beta = 0.2$, softmax
# cross-entropy on the output states, Adam $2\cdot10^{-3}$) on a 784-64-10 network and a subset
# of the 55,000 training images.

# %%
cfg = TrainConfig(task="mnist", data_dir="../shared/data/mnist", hidden=(64,), optimizer="adam", lr=2e-3,
                  batch_size=32, beta=0.2, cost="cross_entropy", steps=STEPS, eval_every=STEPS // 3,
                  probe_every=STEPS)
full = load_data(cfg)
data = Dataset(full.x_train[:N_TRAIN], full.y_train[:N_TRAIN], full.x_test[:N_TEST], full.y_test[:N_TEST],
               full.n_classes, "mnist subset")
t0 = time.perf_counter()
digital = train(cfg, progress=False, parts=build_digital(cfg, data), label="emulator, AsymEP")
emulator_acc = digital.summary["final_test_acc"]
print(f"trained in {time.perf_counter() - t0:.1f} s: test accuracy {emulator_acc:.4f} on {N_TEST} test "
      f"images, cos(update, exact) {digital.summary['grad_cosine_final']:.5f}")
model, cost = digital.model, aq.make_cost(cfg.cost)
x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)

# %% [markdown]
# ## 2. The network on 64 x 64 tiles
#
# `crossbar.tile_rows` / `tile_cols` set the physical tile; a layer larger than one tile is
# split over a grid of tiles, and (with `tile_sum = "analog"`) the partial currents of a row's
# tiles add on its neuron's node. With ideal wires and no other non-ideality, tiling changes
# nothing; the `realistic` preset adds 64 conductance levels, programming noise, bound
# variation, mismatch, the amplifier pole and 8-bit converters.

# %%
def chip_config(r_segment: float) -> ChipConfig:
    """The realistic preset on TILE x TILE tiles with r_segment [Ohm] per cell segment (ideal
    drivers and sense amplifiers); without thermal and read noise in fast mode."""
    hw = ChipConfig.preset("realistic").replace(**{"crossbar.tile_rows": TILE, "crossbar.tile_cols": TILE,
                                                   "crossbar.r_segment": r_segment})
    if FAST:
        hw = hw.replace(**{"noise.temperature": 0.0, "crossbar.read_noise": 0.0})
    return hw


hw0 = chip_config(0.0)
chip0 = realize(model, hw0, jax.random.PRNGKey(0))
names = [f"W{l}" for l in range(len(chip0.forward))] + [f"B{l}" for l in range(len(chip0.feedback))]
for name, t in zip(names, chip0.forward + chip0.feedback):
    print(f"{name}: {t.g_pos.shape[0]} x {t.g_pos.shape[1]} weights on a "
          f"{' x '.join(map(str, tile_grid(t.g_pos.shape, hw0.crossbar)))} grid of {TILE} x {TILE} tiles")
ideal = realize(model, ChipConfig.ideal().replace(**{"crossbar.tile_rows": TILE, "crossbar.tile_cols": TILE}),
                jax.random.PRNGKey(0))
ideal_acc = evaluate(ideal, cost, ChipRelaxation(ideal.config), x_test, y_test)["test_acc"]
print(f"ideal tiled chip: test accuracy {ideal_acc:.4f} (emulator {emulator_acc:.4f})")

# %% [markdown]
# ## 3. The IR-drop map of one tile
#
# Every column of the tile is driven at 1 V (the worst case: all inputs at full scale) and the
# voltage across each device, drive-wire node minus sense-wire node (`Tile.device_voltages`),
# is shown for the `+` devices of the tile in the middle of the first layer. Drivers sit at
# row 0 of each drive (column) wire and the sense amplifiers at the last column of each sense
# (row) wire, so the drop grows towards the far corner. The devices hold weights around the
# mid conductance $(G_\min + G_\max)/2 \approx 50\ \mu S$; a line of 64 such devices carries
# 3.2 mS, so a few Ohm per segment already costs tens of percent at the far end.

# %%
col = (tile_grid(chip0.forward[0].g_pos.shape, hw0.crossbar)[1] // 2) * TILE  # the middle tile's first column
maps = {}
for r in MAP_WIRES:
    hw = chip_config(r)
    t = realize(model, hw, jax.random.PRNGKey(0)).forward[0]
    v_pos, _ = t.device_voltages(jnp.ones(t.g_pos.shape[1], t.g_pos.dtype), hw.crossbar)
    maps[r] = np.asarray(v_pos[:TILE, col:col + TILE])
    print(f"r_segment {r:4.1f} Ohm: voltage across the devices {maps[r].min():.3f} .. {maps[r].max():.3f} V "
          f"(mean {maps[r].mean():.3f} V)")
v_ideal, _ = chip0.forward[0].device_voltages(jnp.ones(chip0.forward[0].g_pos.shape[1]), hw0.crossbar)
ideal_map_error = float(jnp.max(jnp.abs(v_ideal - 1.0)))

fig, axes = plt.subplots(1, len(MAP_WIRES), figsize=(4 * len(MAP_WIRES), 3.6))
for ax, (r, m) in zip(axes, maps.items()):
    im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set(title=f"r_segment = {r} Ohm", xlabel="column (drive wire)", ylabel="row (sense wire)")
fig.colorbar(im, ax=axes, label="voltage across the device [V] (1 V drive)")
fig.savefig(OUT / "ir_drop_maps.png", dpi=110)

# %% [markdown]
# ## 4. Accuracy and the EP gradient against wire resistance
#
# The same chip instance (one key) with growing segment resistance: test accuracy of the
# programmed network, and (full mode only: compiling EP and the implicit adjoint through the
# wire solve takes minutes on 2 cores) on one batch of 32 training images the cosine of the
# chip's EP update (AsymEP centered, $\beta = 0.2$, sensed device voltages,
# `Chip.update_gradient`) against the chip's own exact gradient (`ImplicitAdjoint`, autodiff
# through the wire networks), and of the sensed update against the exact one at the same states
# (the sensing approximation alone). The wire resistances are traced numbers of the chip's
# configuration (`analogeq.evaluation.traced`), so one compiled program serves every nonzero
# resistance.

# %%
@eqx.filter_jit
def gradients(c, relax, xs, ys, key):
    """The EP update, the sensed update at the exact estimate's states and the exact gradient."""
    g_ep = aq.EP(beta=0.2, kind="centered", correction="asym").estimate(c, cost, relax, xs, ys, gate=False, key=key)
    g_ex = aq.ImplicitAdjoint().estimate(c, cost, relax, xs, ys, gate=False, key=key)
    exact = c.weight_gradient(g_ex.grads)
    sensed = c.weight_gradient(c.update_gradient(xs, g_ex.at, g_ex.weighted))
    return c.weight_gradient(g_ep.grads), sensed, exact


xb, yb = jnp.asarray(data.x_train[:32]), jnp.asarray(data.y_train[:32])
rows = []
for r in WIRES:
    hw = chip_config(r)
    c, relax = realize(model, hw, jax.random.PRNGKey(0)), ChipRelaxation(hw)
    t0 = time.perf_counter()
    acc = evaluate(c, cost, relax, x_test, y_test, jax.random.PRNGKey(1))["test_acc"]
    cos, cos_sensed = np.nan, np.nan
    if GRADIENTS:
        g_ep, g_sensed, g_exact = gradients(*traced((c, relax)), xb, yb, jax.random.PRNGKey(2))
        cos, cos_sensed = (compare_gradients(g, g_exact)["overall"]["cosine"] for g in (g_ep, g_sensed))
    rows.append({"r_segment": r, "test_acc": acc, "cos_ep_vs_exact": float(cos),
                 "cos_sensed_vs_exact": float(cos_sensed), "seconds": time.perf_counter() - t0})
print(f"{'r_segment [Ohm]':>16}{'test acc':>10}{'cos EP/exact':>14}{'cos sensed/exact':>18}{'s':>7}")
for row in rows:
    print(f"{row['r_segment']:>16.1f}{row['test_acc']:>10.4f}{row['cos_ep_vs_exact']:>14.5f}"
          f"{row['cos_sensed_vs_exact']:>18.5f}{row['seconds']:>7.1f}")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
rs = [max(row["r_segment"], 0.1) for row in rows]  # r = 0 drawn at 0.1 on the log axis
axes[0].semilogx(rs, [row["test_acc"] for row in rows], marker="o", label="realistic chip")
axes[0].axhline(emulator_acc, color="gray", ls="--", label="emulator")
axes[0].set(xlabel="r_segment [Ohm] (0 drawn at 0.1)", ylabel="test accuracy", title="Accuracy vs wire resistance")
if GRADIENTS:
    axes[1].semilogx(rs, [row["cos_ep_vs_exact"] for row in rows], marker="o", label="EP update vs exact")
    axes[1].semilogx(rs, [row["cos_sensed_vs_exact"] for row in rows], marker="s", label="sensed vs exact, same states")
    axes[1].set(xlabel="r_segment [Ohm] (0 drawn at 0.1)", ylabel="cosine", title="Gradient vs wire resistance")
    axes[1].legend()
else:
    axes[1].text(0.5, 0.5, "gradient cosines: full mode only", ha="center", va="center")
    axes[1].set_axis_off()
axes[0].legend()
for ax in axes:
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(OUT / "accuracy_vs_wires.png", dpi=110)
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")

# %% [markdown]
# What to look at: with ideal wires every device sees its drive voltage exactly (the map is flat
# at 1 V) and the tiled chip classifies as the model. As the segment resistance grows, the far
# corner of each tile sees a fraction of the drive, so the programmed weights act as if shrunk,
# unevenly across the tile, and the accuracy of the digitally trained weights falls. The sensed
# update leaves out how a device's conductance moves its neighbours' voltages, an error of order
# $G r$ (full mode: the cosine of the sensed update against the exact gradient at the same
# states). At 256 x 256 (`benchmarks/bench_mnist.py`) the same drop is ~16x larger per Ohm, since
# it grows with the square of the line length.
