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
# # SPICE validation walk-through
#
# The chip simulator integrates an ODE, $\tau\,\dot v = -v + W u + b$, derived from the
# circuit: differential conductance pairs feed a transimpedance stage with feedback
# $G_\mathrm{ref}$, which drives an RC neuron node; the nonlinearity circuit outputs
# $u = (1 + \gamma) R \tanh((v + o)/R)$. This notebook checks that derivation against a circuit
# simulator. A small realized chip (its actual sampled conductances, offsets and gains) is
# written as an ngspice netlist built from the subcircuit library `circuits/analogeq.lib`, and
# solved by ngspice:
#
# * `.op`: the DC operating point, to compare with the ODE's steady state;
# * `.tran`: the transient from the same initial state, to compare waveforms point by point.
#
# What to look at: the errors in microvolts (the test suite's bounds are 10 uV for `.op` and
# 50 uV for `.tran`), what sets them (ngspice's tolerances and time step, the op-amp's finite
# gain), and what changes when the behavioral tanh is replaced by a transistor-level
# differential pair. At the end, EP runs with ngspice solving every phase.
#
# Needs ngspice's shared library (`apt-get install ngspice libngspice0` on Debian).
# `ANALOGEQ_FAST=1` runs the 8-neuron block only and fewer tolerance settings.

# %%
import os
import time
from pathlib import Path

import jax

# Microvolt agreement needs float64 before any array is created.
jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analogeq.spice import (  # noqa: E402
    BLOCKS,
    SpiceOptions,
    available,
    build_block,
    chip_netlist,
    compare_with_ode,
    ode_steady_state,
    run_netlist,
    validate,
)

FAST = os.environ.get("ANALOGEQ_FAST", "0") == "1"
OUT = Path(os.environ.get("ANALOGEQ_NOTEBOOK_OUT", "runs/notebooks")) / "03_spice_validation"
OUT.mkdir(parents=True, exist_ok=True)
T_START = time.perf_counter()
assert available(), "ngspice's shared library is missing: apt-get install -y ngspice libngspice0"
print(f"FAST={FAST}; reference blocks {BLOCKS}; netlists and figures go to {OUT}")

# %% [markdown]
# ## 1. A realized block
#
# `build_block("n8")` draws a seeded leaky network with 4 inputs, 6 hidden and 2 output
# neurons and realizes it on the `realistic` preset with every noise source off: 64
# conductance levels, programming error, bound variation, DAC quantization, offsets, gain
# mismatch, rails and a 1 ns amplifier pole are kept, because a netlist describes one
# deterministic circuit. The pole adds one state per neuron (the amplifier output `y`).

# %%
chip, x = build_block("n8")
cfg = chip.config
g = chip.forward[0]
print(f"sizes {chip.sizes}: {chip.n_neurons} neurons, state {chip.state_shape} (node voltages + amplifier outputs)")
print(f"tau = C/g_leak = {chip.tau * 1e9:.1f} ns, G_ref = {cfg.crossbar.G_ref * 1e6:.1f} uS, "
      f"amplifier pole {cfg.neuron.amp_pole_tau * 1e9:.1f} ns, {cfg.crossbar.n_levels} levels")
print(f"first tile G+ in [{float(g.g_pos.min()) * 1e6:.2f}, {float(g.g_pos.max()) * 1e6:.2f}] uS; "
      f"offsets {np.round(np.asarray(chip.offset) * 1e3, 3)} mV")
print("input x =", np.round(np.asarray(x), 4), "-> DAC", np.round(np.asarray(chip.dac(x)), 4))

# %% [markdown]
# ## 2. The netlist
#
# `chip_netlist` writes the library verbatim, then one DAC source per input, one nonlinearity
# subcircuit per neuron, and per neuron a column of resistors ($1/G^+$ from the negated input
# row, $1/G^-$ from the row), the calibrated transimpedance op-amp (with its pole) and the RC
# node, with the initial conditions for `.tran`.

# %%
netlist = chip_netlist(chip, x, t_stop=20 * chip.tau)
path = netlist.write(OUT / "n8.cir")
body = netlist.text.split("* ---- end of library ----")[1].splitlines()
print(f"{path}: {len(netlist.text.splitlines())} lines, of which the circuit proper:")
print("\n".join(netlist.text.splitlines()[:5]))
print("...")
shown = [line for line in body if line.strip()][:12] + ["..."] + [line for line in body if line.strip()][-6:]
print("\n".join(shown))
counts = {kind: sum(line.startswith(kind) for line in body) for kind in ("Rp", "Rn", "Rf", "Xa", "Xn", "Xnl", "Xdac")}
print("elements:", counts)

# %% [markdown]
# ## 3. `.op` against the ODE's steady state
#
# `run_netlist` runs the netlist in the process's ngspice session (PySpice's shared-library
# interface) and returns node voltages; `Netlist.states` maps them back to the chip's state.
# The ODE steady state comes from the chip's own diffrax relaxation, run adaptively to a
# relative residual of $10^{-10}$.

# %%
op_only = chip_netlist(chip, x, analyses=("op",))
res = run_netlist(op_only)
v_spice = op_only.states(res.op) * cfg.neuron.v_unit
v_ode = ode_steady_state(chip, x) * cfg.neuron.v_unit
n = chip.n_neurons
print(f"ngspice .op in {res.wall_time * 1e3:.1f} ms")
print(f"{'node':>6}{'ngspice [V]':>16}{'ODE [V]':>16}{'diff [uV]':>12}")
for i in range(n):
    print(f"{'v' + str(i):>6}{v_spice[i]:>16.9f}{v_ode[i]:>16.9f}{(v_spice[i] - v_ode[i]) * 1e6:>12.4f}")
op_error_uV = float(np.max(np.abs(v_spice - v_ode))) * 1e6
print(f"max |.op - ODE| over all {len(v_spice)} states: {op_error_uV:.4f} uV")

# %% [markdown]
# The remaining difference, far below a microvolt, is ngspice's Newton tolerance (`vntol`
# $= 10^{-10}$ V). The op-amps have a finite open-loop gain ($A_0 = 10^5$); the exporter
# calibrates each feedback conductance for it, so it does not show (section 5 changes $A_0$).
#
# ## 4. `.tran` against the ODE trajectory
#
# `validate` runs both analyses and integrates the ODE from the same initial state, evaluated
# at ngspice's own time points, so neither side is interpolated.

# %%
val = validate(chip, x, path=OUT / "n8_validate.cir")
s = val.summary()
print(f".op   max {s['op_error_max_uV']:.4f} uV   rms {s['op_error_rms_uV']:.4f} uV")
print(f".tran max {s['tran_error_max_uV']:.3f} uV   rms {s['tran_error_rms_uV']:.3f} uV over "
      f"{s['tran_points']} time points x {val.spice.shape[1]} states")
print(f"settle into +-{s['settle_band_uV']:.0f} uV: ODE {s['settle_ode_ns']:.1f} ns, "
      f"ngspice {s['settle_spice_ns']:.1f} ns")
print(f"wall time: ngspice {s['spice_seconds'] * 1e3:.0f} ms, ODE {s['ode_seconds'] * 1e3:.0f} ms")
tran_error_uV = s["tran_error_max_uV"]

# %%
t_ns = val.time * 1e9
fig, (a, b) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
for i in range(n):
    a.plot(t_ns, val.ode[:, i], "-", color=f"C{i}", lw=1.2)
    a.plot(t_ns[::25], val.spice[::25, i], ".", color=f"C{i}", ms=4)
a.set(ylabel="node voltage [V]", title="n8 block: ODE (lines) and ngspice (dots)")
b.plot(t_ns, (val.spice[:, :n] - val.ode[:, :n]) * 1e6, lw=0.7)
b.set(xlabel="time [ns]", ylabel="ngspice - ODE [uV]")
for ax in (a, b):
    ax.grid(alpha=0.3)
fig.tight_layout()
fig.savefig(OUT / "n8_overlay.png", dpi=110)

# %% [markdown]
# The transient error peaks during the fast initial swing and falls as the nodes settle, the
# signature of an integration error.
#
# ## 5. What sets the transient error
#
# If the error is ngspice's integration error, tightening its time step (`max_step`, in tau)
# and relative tolerance (`reltol`, which also drives the time-step control) must shrink it,
# while `.op` stays put; changing the op-amp gain $A_0$ must not. The chip and the ODE are
# compiled once; each setting costs one ngspice run.

# %%
settings = [SpiceOptions(max_step=0.1, reltol=1e-5), SpiceOptions(),
            SpiceOptions(max_step=0.005, reltol=1e-9)]
if not FAST:
    settings += [SpiceOptions(max_step=0.05, reltol=1e-6), SpiceOptions(max_step=0.005),
                 SpiceOptions(max_step=0.002, reltol=1e-9, trtol=0.2), SpiceOptions(method="gear"),
                 SpiceOptions(opamp_gain=1e3), SpiceOptions(opamp_gain=1e7)]
tolerance_rows = []
for opt in settings:
    v = validate(chip, x, options=opt).summary()
    tolerance_rows.append((opt, v))
print(f"{'method':>7}{'max_step':>9}{'reltol':>8}{'trtol':>6}{'A0':>7}{'points':>8}{'.op max [uV]':>14}"
      f"{'.tran max [uV]':>16}{'ngspice [ms]':>14}")
for opt, v in tolerance_rows:
    print(f"{opt.method:>7}{opt.max_step:>9g}{opt.reltol:>8g}{opt.trtol:>6g}{opt.opamp_gain:>7.0e}{v['tran_points']:>8d}"
          f"{v['op_error_max_uV']:>14.4f}{v['tran_error_max_uV']:>16.3f}{v['spice_seconds'] * 1e3:>14.0f}")
tightest_tran_uV = tolerance_rows[2][1]["tran_error_max_uV"]

# %% [markdown]
# ## 6. Behavioral vs transistor-level nonlinearity
#
# `SpiceOptions(nonlinearity="bjt")` replaces the behavioral $\tanh$ source by a bipolar
# differential pair whose output is a $\tanh$ of $v/(2V_T)$ only for ideal, matched
# transistors. The difference to the model is no longer a solver error: it is the
# circuit not being the model, here millivolts.

# %%
bjt = validate(chip, x, options=SpiceOptions(nonlinearity="bjt"))
print(f"transistor-level tanh: .op max {bjt.op_error_max * 1e3:.3f} mV, .tran max {bjt.tran_error_max * 1e3:.3f} mV "
      f"(behavioral: {op_error_uV:.4f} uV, {tran_error_uV:.3f} uV)")

# %% [markdown]
# ## 7. Larger blocks
#
# The exporter writes blocks of up to 256 neurons (larger runs as layer blocks). The full mode
# validates every reference block; the error does not grow with the block, since each node is solved to the same
# tolerances.

# %%
block_rows = []
for name in (["xor", "n8"] if FAST else ["xor", "n8", "n64"]):
    c, xb = build_block(name)
    v = validate(c, xb).summary()
    block_rows.append((name, v))
print(f"{'block':>6}{'sizes':>14}{'neurons':>9}{'.op max [uV]':>14}{'.tran max [uV]':>16}{'ngspice [s]':>13}")
for name, v in block_rows:
    print(f"{name:>6}{tuple(v['sizes'])!s:>14}{v['neurons']:>9d}{v['op_error_max_uV']:>14.4f}"
          f"{v['tran_error_max_uV']:>16.3f}{v['spice_seconds']:>13.3f}")

# %% [markdown]
# ## 8. EP with ngspice in the loop
#
# ngspice is a relaxation like the chip's ODE: `SpiceRelaxation` solves the free phase and both
# nudged phases (`.op`, started from the held free state; the nudge is a conductance $\beta
# g_\mathrm{leak}$ from each output node to its target), so SPICE-in-the-loop EP is the ordinary
# estimator, `EP(beta=1e-3, kind="centered").estimate(chip, SquaredError(),
# SpiceRelaxation(chip.config), xs, targets)`. `compare_with_ode` runs it next to the same EP on
# the chip's ODE and compares the two weight updates. A chip with an amplifier pole runs
# uncorrected EP here (the AsymEP correction circuit is built for chips without a pole).

# %%
xs = jax.random.uniform(jax.random.PRNGKey(5), (2 if FAST else 8, chip.sizes[0]), jnp.float64, -1.0, 1.0)
targets = jnp.arange(xs.shape[0]) % chip.sizes[-1]
t0 = time.perf_counter()
loop = compare_with_ode(chip, xs, targets, beta=1e-3)
print(f"SPICE-in-the-loop EP on {xs.shape[0]} inputs in {time.perf_counter() - t0:.1f} s "
      f"(the SPICE-in-the-loop estimate {loop['spice_seconds']:.2f} s)")
print(f"update cosine {loop['cosine']:.8f}, relative error {loop['rel_error']:.2e}, "
      f"max free-state difference {loop['free_error_V'] * 1e6:.3f} uV")
spice_ep_cosine = loop["cosine"]

# %%
print(f"notebook ran in {time.perf_counter() - T_START:.0f} s")
