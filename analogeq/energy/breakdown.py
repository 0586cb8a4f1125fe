"""The breakdown dict: energy components [J], latency components [s], counts and totals.

Every estimate in :mod:`analogeq.energy` returns a flat dict with the keys below, so one table
and one JSON shape serve a settle, a training step and the command line.
"""

from __future__ import annotations

ENERGY_KEYS = ("neuron_charging_J", "crossbar_read_J", "leak_J", "dac_J", "adc_J", "programming_J")
"""Energy components [J]; their sum is ``energy_J``."""

LATENCY_KEYS = ("settle_s", "dac_s", "adc_s", "programming_s")
"""Latency components [s]; their sum is ``latency_s``."""

COUNT_KEYS = ("dac_conversions", "adc_conversions", "pulses", "pulse_rounds")
"""Operation counts behind the converter and programming terms."""

LABELS = {
    "neuron_charging_J": "neuron charging (C v^2)",
    "crossbar_read_J": "crossbar read (G V^2 T)",
    "leak_J": "neuron leak (g_leak v^2 T)",
    "dac_J": "DAC conversions",
    "adc_J": "ADC conversions",
    "programming_J": "programming pulses",
    "settle_s": "settling (free + nudged windows)",
    "dac_s": "DAC conversions",
    "adc_s": "ADC conversions",
    "programming_s": "programming pulses",
}


def with_totals(parts: dict) -> dict:
    """``parts`` (every key of :data:`ENERGY_KEYS`, :data:`LATENCY_KEYS` and
    :data:`COUNT_KEYS`) plus ``energy_J`` and ``latency_s``."""
    out = dict(parts)
    out["energy_J"] = sum(parts[k] for k in ENERGY_KEYS)
    out["latency_s"] = sum(parts[k] for k in LATENCY_KEYS)
    return out


def dominant(breakdown: dict, keys=ENERGY_KEYS) -> str:
    """The component of ``keys`` with the largest value."""
    return max(keys, key=lambda k: float(breakdown[k]))


def as_floats(breakdown: dict) -> dict:
    """The breakdown with plain Python floats (for JSON)."""
    return {k: float(v) for k, v in breakdown.items()}
