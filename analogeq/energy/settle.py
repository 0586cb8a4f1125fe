"""Energy and latency of one settle of one sample on a chip.

A settle starts from the reset state (every node at 0 V), drives the inputs through the DACs,
lets the network relax for a window and reads the result through the ADCs. Its energy is the
node charging (:mod:`analogeq.energy.neuron`), the crossbar's and the leak's dissipation over the
window at the settled drive (:mod:`analogeq.energy.crossbar`) and the conversions
(:mod:`analogeq.energy.converters`); its latency is the window plus one round of DAC
conversions plus the ADC read.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from analogeq.emulator import RelaxResult
from analogeq.energy.breakdown import with_totals
from analogeq.energy.converters import adc_energy, adc_read_time, dac_energy
from analogeq.energy.crossbar import chip_read_energy, partial_sum_conversions
from analogeq.energy.neuron import charging_energy, leak_energy
from analogeq.hardware.chip import Chip

READS = ("outputs", "all")


def node_voltages(chip: Chip, s: Float[Array, " n_state"]) -> Float[Array, " n"]:
    """Node voltages [V] of state ``s`` (units of ``v_unit``; amplifier outputs dropped)."""
    return chip.voltages(s) * chip.config.neuron.v_unit


def phase_energy(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"],
                 window: Float[ArrayLike, ""], s_start: Float[Array, " n_state"] | None = None) -> dict:
    """Energy [J] of one relaxation phase that ends at ``s`` after ``window`` [s], started from
    ``s_start`` (default: the reset state 0): ``neuron_charging_J``, ``crossbar_read_J``,
    ``leak_J``."""
    nc = chip.config.neuron
    v = node_voltages(chip, s)
    v0 = jnp.zeros_like(v) if s_start is None else node_voltages(chip, s_start)
    return {
        "neuron_charging_J": charging_energy(nc.C, v0, v),
        "crossbar_read_J": chip_read_energy(chip, x, s, window),
        "leak_J": leak_energy(nc.g_leak, v, window),
    }


def settle_breakdown(chip: Chip, x: Float[Array, " n_in"], s: Float[Array, " n_state"],
                     window: Float[ArrayLike, ""], read: str = "outputs") -> dict:
    """Breakdown (:mod:`analogeq.energy.breakdown`) of one inference settle of input ``x`` that
    ends at state ``s`` after ``window`` [s]: ``n_in`` DAC conversions, the phase energy from
    reset, and an ADC read of the output layer (``read="outputs"``) or of every neuron
    (``"all"``)."""
    if read not in READS:
        raise ValueError(f"unknown read {read!r}; choose one of {READS}")
    cfg = chip.config
    en, p = cfg.energy, cfg.periphery
    layers = list(chip.sizes[1:]) if read == "all" else [chip.sizes[-1]]
    n_adc, n_dac = sum(layers), chip.sizes[0]
    n_partial = partial_sum_conversions(chip, window)
    parts = phase_energy(chip, x, s, window)
    parts.update({
        "dac_J": dac_energy(en, p.dac_bits, n_dac),
        "adc_J": adc_energy(en, p.adc_bits, n_adc) + adc_energy(en, cfg.crossbar.tile_adc_bits, n_partial),
        "programming_J": 0.0,
        "settle_s": window,
        "dac_s": en.dac_time,
        "adc_s": adc_read_time(en, layers),
        "programming_s": 0.0,
        "dac_conversions": n_dac,
        "adc_conversions": n_adc + n_partial,
        "pulses": 0,
        "pulse_rounds": 0,
    })
    return with_totals(parts)


def mean_settle_breakdown(chip: Chip, xs: Float[Array, "batch n_in"], free: RelaxResult,
                          read: str = "outputs") -> dict:
    """:func:`settle_breakdown` averaged over the samples of a batched free phase ``free``
    (its ``time`` in units of ``tau`` is each sample's window)."""
    windows = free.time * chip.config.neuron.tau
    per = jax.vmap(lambda x, s, w: settle_breakdown(chip, x, s, w, read))(xs, free.state, windows)
    return {k: jnp.mean(jnp.asarray(v)) for k, v in per.items()}
