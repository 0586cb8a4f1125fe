"""Energy and latency of one training step (one batch) on a chip.

Per sample, in series on the one chip: a free settle from reset (:mod:`analogeq.energy.settle`),
then as many nudged settles as the estimator runs (1 one-sided, 2 centered; none for the exact
implicit reference, which no chip runs), each started from the held free state; the update
needs every neuron's state read through the ADCs after the free phase and after each nudged
phase. Then the batch update is programmed (:mod:`analogeq.energy.pulses`).

* Nudged-phase windows: the nudged settle window (``dynamics.nudged_time``, else the fixed
  ``dynamics.settle_time``), or in adaptive mode the sample's measured free-phase time (the
  nudged phase's own time is not recorded).
* Nudged-phase dissipation is taken at the free state ``s*``: the nudged states differ from it
  by ``O(beta)``, so the static power differs by a relative ``O(beta)``. The AsymEP correction's
  reads act on ``s - s*`` (also ``O(beta)``), so their dissipation is ``O(beta^2)`` and left out.
  Node charging of a nudged phase moves each node by ``dv = -beta_k a v_unit`` from ``v*``.
* DAC conversions per sample: the inputs (``n_in``, free phase), the targets of the nudging
  branch (``n_out``, once, if there is a nudged phase) and, without a sample-and-hold
  (``periphery.sample_hold = false``), the stored free state written back before each nudged
  phase (``n_neurons`` each). Each of these is one round of parallel conversions.
* Static power of amplifiers and digital logic is not modelled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from analogeq.energy.breakdown import with_totals
from analogeq.energy.converters import adc_energy, adc_read_time, dac_energy
from analogeq.energy.crossbar import chip_read_energy, partial_sum_conversions
from analogeq.energy.neuron import charging_energy, leak_energy
from analogeq.energy.pulses import programming_rounds, total_pulses
from analogeq.energy.settle import node_voltages
from analogeq.hardware.chip import Chip


def real_nudges(estimator) -> list[float]:
    """The (real) nudges ``beta_k`` of the estimator's nudged phases; ``[]`` when it runs none."""
    betas = list(estimator.nudges())
    if any(complex(b).imag != 0 for b in betas):
        raise ValueError("an analog chip relaxes real voltages: holomorphic (complex) nudges have "
                         "no energy on a chip; use ep_kind 'centered' or 'one-sided'")
    return [float(complex(b).real) for b in betas]


def train_step_breakdown(chip: Chip, betas, est, pulses: tuple) -> dict:
    """Breakdown (:mod:`analogeq.energy.breakdown`) of one training step on ``chip``.

    Args:
        chip: the chip the batch was settled on (before the update).
        betas: the real nudges of the step's nudged phases (:func:`real_nudges`).
        est: the step's :class:`~analogeq.ep.Estimate` (free states, settle times, contrasts).
        pulses: per-device pulses of the update (:func:`analogeq.energy.pulses.step_pulses`).
    """
    cfg = chip.config
    en, nc, per = cfg.energy, cfg.neuron, cfg.periphery
    k = len(betas)
    batch = est.free.state.shape[0]
    n_in, n_out, n_neurons = chip.sizes[0], chip.sizes[-1], chip.n_neurons
    t_free = est.free.time * nc.tau
    t_nudged = t_free if cfg.dynamics.adaptive else jnp.full_like(t_free, cfg.dynamics.nudged_window)
    on_time = t_free + k * t_nudged

    def sample(x, s, a, t_on):
        v = node_voltages(chip, s)
        charge = charging_energy(nc.C, jnp.zeros_like(v), v)
        dv = node_voltages(chip, a)
        for b in betas:
            charge = charge + charging_energy(nc.C, v, v - b * dv)
        return charge, chip_read_energy(chip, x, s, t_on), leak_energy(nc.g_leak, v, t_on)

    if est.inputs is None:
        raise ValueError("the energy of a training step needs the estimate's inputs: use a "
                         "force-form estimator (ep or implicit)")
    charge, xbar, leak = jax.vmap(sample)(est.inputs, est.free.state, est.contrast, on_time)
    dac_rounds = 1 + (1 if k else 0) + (0 if per.sample_hold else k)
    n_dac = batch * (n_in + (n_out if k else 0) + (0 if per.sample_hold else k * n_neurons))
    n_adc = batch * (1 + k) * n_neurons
    return step_breakdown(cfg, charge=charge, xbar=xbar, leak=leak, on_time=on_time, n_dac=n_dac,
                          n_adc=n_adc, dac_s=batch * dac_rounds * en.dac_time,
                          adc_s=batch * (1 + k) * adc_read_time(en, chip.sizes[1:]), pulses=pulses,
                          n_partial=partial_sum_conversions(chip, on_time))


def step_breakdown(cfg, *, charge, xbar, leak, on_time, n_dac, n_adc, dac_s, adc_s, pulses,
                   copies: int = 1, n_partial=0) -> dict:
    """The breakdown of one training step from its per-sample terms and counts (shared by the
    layered chip and :mod:`analogeq.energy.block`).

    Args:
        cfg: the chip's :class:`~analogeq.hardware.config.ChipConfig`.
        charge, xbar, leak: per-sample node charging, crossbar read and leak energies [J].
        on_time: per-sample time the chip is driven (free plus nudged windows) [s].
        n_dac, n_adc: DAC and read-out ADC conversions of the step.
        dac_s, adc_s: the step's conversion latencies [s].
        pulses: per-device pulses of one copy of each tile (:func:`step_pulses`).
        copies: how many identically written copies each tile has.
        n_partial: partial-sum ADC conversions (digital tile summation).
    """
    en, per = cfg.energy, cfg.periphery
    n_pulses = copies * total_pulses(pulses)
    rounds = programming_rounds(pulses)
    return with_totals({
        "neuron_charging_J": jnp.sum(charge),
        "crossbar_read_J": jnp.sum(xbar),
        "leak_J": jnp.sum(leak),
        "dac_J": dac_energy(en, per.dac_bits, n_dac),
        "adc_J": adc_energy(en, per.adc_bits, n_adc) + adc_energy(en, cfg.crossbar.tile_adc_bits, n_partial),
        "programming_J": n_pulses * en.pulse_energy,
        "settle_s": jnp.sum(on_time),
        "dac_s": dac_s,
        "adc_s": adc_s,
        "programming_s": rounds * en.pulse_width,
        "dac_conversions": n_dac,
        "adc_conversions": n_adc + n_partial,
        "pulses": n_pulses,
        "pulse_rounds": rounds,
    })
