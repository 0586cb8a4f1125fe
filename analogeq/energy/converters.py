"""Energy and time of the data conversions (:class:`analogeq.hardware.config.EnergyConfig`).

One conversion of ``b`` bits costs ``fom * 2**b`` [J] (an ideal converter, ``b = 0``, is charged
as :data:`~analogeq.hardware.config.IDEAL_CONVERTER_COST_BITS` bits). Timing: the DACs of a phase
convert in parallel, one conversion time per round; a layer of ``n`` neurons is read by
``ceil(n / adc_share)`` ADCs and layers convert in parallel, so reading a set of layers takes the
slowest layer's ``ceil(n / ceil(n / adc_share))`` conversions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from analogeq.hardware.config import EnergyConfig


def adc_energy(energy: EnergyConfig, bits: int, n: float) -> float:
    """Energy [J] of ``n`` ADC conversions at ``bits`` resolution."""
    return n * energy.adc_energy(bits)


def dac_energy(energy: EnergyConfig, bits: int, n: float) -> float:
    """Energy [J] of ``n`` DAC conversions at ``bits`` resolution."""
    return n * energy.dac_energy(bits)


def adc_rounds(layer_sizes: Sequence[int], share: int) -> int:
    """Conversions in series to read every neuron of ``layer_sizes`` once, with each layer of
    ``n`` neurons on ``ceil(n / share)`` ADCs and the layers converting in parallel."""
    return max((math.ceil(n / math.ceil(n / share)) for n in layer_sizes if n > 0), default=0)


def adc_read_time(energy: EnergyConfig, layer_sizes: Sequence[int]) -> float:
    """Time [s] to read every neuron of ``layer_sizes`` once through the ADCs."""
    return adc_rounds(layer_sizes, energy.adc_share) * energy.adc_time
