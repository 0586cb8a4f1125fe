"""Energy and latency of a chip's settles and training steps, from its circuit parameters.

Pure functions, one concept per module: node charging and leak (:mod:`~analogeq.energy.neuron`),
crossbar read dissipation (:mod:`~analogeq.energy.crossbar`), converters
(:mod:`~analogeq.energy.converters`), programming pulses (:mod:`~analogeq.energy.pulses`), one
settle (:mod:`~analogeq.energy.settle`), one training step (:mod:`~analogeq.energy.step`), the
breakdown dict they return (:mod:`~analogeq.energy.breakdown`) and the report of a run
(:mod:`~analogeq.energy.report`, ``analogeq energy``). Costs that the circuit does not fix (per
conversion, per pulse) come from :class:`analogeq.hardware.config.EnergyConfig`.
"""

from analogeq.energy.breakdown import (
    COUNT_KEYS,
    ENERGY_KEYS,
    LATENCY_KEYS,
    dominant,
    with_totals,
)
from analogeq.energy.converters import adc_energy, adc_read_time, adc_rounds, dac_energy
from analogeq.energy.crossbar import chip_read_energy, column_voltages, tile_read_energy
from analogeq.energy.neuron import charging_energy, leak_energy
from analogeq.energy.pulses import (
    level_changes,
    programming_rounds,
    step_pulses,
    total_pulses,
)
from analogeq.energy.settle import mean_settle_breakdown, phase_energy, settle_breakdown
from analogeq.energy.hook import StepEnergy
from analogeq.energy.step import real_nudges, train_step_breakdown

__all__ = [
    "COUNT_KEYS", "ENERGY_KEYS", "LATENCY_KEYS", "adc_energy", "adc_read_time", "adc_rounds",
    "charging_energy", "chip_read_energy", "column_voltages", "dac_energy", "dominant",
    "leak_energy", "level_changes",
    "mean_settle_breakdown", "real_nudges", "StepEnergy", "phase_energy", "programming_rounds", "settle_breakdown",
    "step_pulses", "tile_read_energy", "total_pulses", "train_step_breakdown", "with_totals",
]
