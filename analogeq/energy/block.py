"""Energy and latency of a training step of the analog equilibrium-transformer block.

The block (:class:`~analogeq.hardware.transformer.AnalogEqTransformer`) settles all ``T`` token
positions at once, so each weight tile exists once per position (``T`` replicas written
identically; the simulation draws one programming error per tile, shared by its replicas). Per
sample, in series: a free settle from reset, then one nudged settle per nudge of the estimator
from the held free state (:mod:`analogeq.energy.step` for the layered chip's conventions).

* Crossbar reads: every replica of tile ``W`` (rows driven, ``h W``) dissipates
  ``sum_ij (G+_ij + G-_ij) h_i^2`` at its drive ``h_i`` [V] (the normalized states for
  ``W_q, W_k, W_v, W_1``, the attention output for ``W_o``, the GELU outputs for ``W_2``,
  ``v_unit`` for the bias tiles), held at the settled drive for the whole window (as
  :mod:`analogeq.energy.crossbar`).
* Nodes: charging ``C v^2`` from reset and ``C |dv| |v|`` per nudged phase, the leak
  ``(1 + c) g_leak v^2`` over every window (damping ``c`` is the node's extra leak).
* Converters: the embedded inputs enter through ``T d`` DAC conversions; every node is read by
  the ADCs after each phase. The readout ``W_h`` is digital, so the nudge (and the AsymEP
  correction) is computed by the periphery from the nodes and driven back: during a nudged
  window the loop closes through one ADC and one DAC conversion per node every
  ``energy.adc_time``.
* Programming: one pulse per level a device moves (:func:`~analogeq.energy.pulses.level_changes`),
  or with pulsed devices the pulses the updater counted, times the ``T`` replicas; tiles are
  programmed in parallel, rows in series.
* Not costed: the multiplier arrays, the translinear softmax, the normalization and GELU
  circuits (:class:`~analogeq.hardware.config.EnergyConfig` has no figures for them) and
  static power, so the totals are lower bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from analogeq.energy.converters import adc_read_time
from analogeq.energy.neuron import charging_energy, leak_energy
from analogeq.energy.pulses import level_changes
from analogeq.energy.step import step_breakdown
from analogeq.hardware.transformer import TILES, AnalogEqTransformer


def block_read_power(chip: AnalogEqTransformer, s):
    """Read power [W] of every tile replica of ``chip`` at state ``s``."""
    vu = chip.config.neuron.v_unit
    drives = chip.tile_drives(chip.nodes(s))
    return sum(chip.tiles[n].read_power_t(drives[n] * vu) for n in TILES)


def block_pulses(old: AnalogEqTransformer, new: AnalogEqTransformer, old_state=None, new_state=None) -> tuple:
    """Per-device pulses of the update from ``old`` (updater state ``old_state``) to ``new``
    (``new_state``), one array per tile in :data:`TILES` order (one replica): with pulsed
    devices (:class:`~analogeq.hardware.transformer_pulsed.PulsedBlockUpdater`) the increase of
    the updater's cumulative counters ``state["pulses"]`` (the ``G+`` device of each pair),
    else the levels each device moved."""
    if isinstance(new_state, dict) and "pulses" in new_state:
        return tuple((n - o)[None] for o, n in zip(old_state["pulses"], new_state["pulses"]))
    cb = new.config.crossbar
    return tuple(level_changes(old.tiles[n], new.tiles[n], cb) for n in TILES)


def block_step_breakdown(chip: AnalogEqTransformer, betas, est, pulses: tuple) -> dict:
    """Breakdown (:mod:`analogeq.energy.breakdown`) of one training step of the block (module
    docstring).

    Args:
        chip: the block the batch was settled on (before the update).
        betas: the real nudges of the step's nudged phases.
        est: the step's :class:`~analogeq.ep.Estimate` (inputs, free states and times,
            contrasts).
        pulses: per-device pulses of one replica of each tile (:func:`block_pulses`).
    """
    cfg = chip.config
    en, nc = cfg.energy, cfg.neuron
    k = len(betas)
    batch, t_len = est.inputs.shape
    nodes = t_len * chip.d_model
    t_free = est.free.time * nc.tau
    t_nudged = t_free if cfg.dynamics.adaptive else jnp.full_like(t_free, cfg.dynamics.nudged_window)
    on_time = t_free + k * t_nudged
    g_node = (1.0 + chip.damping) * nc.g_leak

    def sample(s, a, t_on):
        v = chip.nodes(s) * nc.v_unit
        charge = charging_energy(nc.C, jnp.zeros_like(v), v)
        dv = chip.nodes(a) * nc.v_unit
        for b in betas:
            charge = charge + charging_energy(nc.C, v, v - b * dv)
        return charge, block_read_power(chip, s) * t_on, leak_energy(g_node, v, t_on)

    charge, xbar, leak = jax.vmap(sample)(est.free.state, est.contrast, on_time)
    loop_rounds = k * jnp.sum(jnp.ceil(t_nudged / en.adc_time))
    n_dac = batch * nodes + nodes * loop_rounds
    n_adc = batch * (1 + k) * nodes + nodes * loop_rounds
    return step_breakdown(cfg, charge=charge, xbar=xbar, leak=leak, on_time=on_time, n_dac=n_dac,
                          n_adc=n_adc, dac_s=batch * en.dac_time,
                          adc_s=batch * (1 + k) * adc_read_time(en, [nodes]), pulses=pulses, copies=t_len)
