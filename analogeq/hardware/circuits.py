"""The ``[circuits]`` section of a :class:`~analogeq.hardware.config.ChipConfig`: non-idealities
of the analog equilibrium-transformer block's own circuits (multipliers, softmax,
normalization, GELU), with its sources in ``device_models/realistic.toml``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from analogeq.spec import Spec, boolean, real


@dataclass(frozen=True)
class CircuitConfig(Spec):
    """Non-idealities of the equilibrium-transformer block's circuits beyond the crossbar and the
    neuron (:mod:`analogeq.hardware.transformer`); a layered chip has none of these circuits and
    ignores the section. Defaults: ideal.

    Attributes:
        mult_gain_sigma: relative std of each four-quadrant multiplier's gain, drawn once per
            chip (dimensionless, in ``[0, 1]``). Default ``0.0``.
        mult_offset_sigma: std of each multiplier's output offset [V], drawn once per chip
            (in ``[0, 10]``). Default ``0.0``.
        mult_noise: std of the additive noise at each multiplier-array output (a score
            ``q . k`` or an attention output channel) [V], drawn per settle (in ``[0, 10]``).
            Default ``0.0``.
        softmax_gain_sigma: std of the log gain of each exponentiator of the translinear
            softmax, drawn once per chip (dimensionless, in ``[0, 1]``). Default ``0.0``.
        norm_gain_sigma: relative std of each normalization circuit's gain, drawn once per chip
            (dimensionless, in ``[0, 1]``). Default ``0.0``.
        gelu_rails: saturate the GELU neurons' outputs at the chip's ``neuron.rail``
            (``R tanh(u / R)``); ``False`` = unsaturated. Default ``False``.
    """

    _section: ClassVar[str] = "circuits"

    mult_gain_sigma: float = real(0.0, "relative std of each multiplier's gain", ge=0.0, le=1.0)
    mult_offset_sigma: float = real(0.0, "std of each multiplier's output offset", "V", ge=0.0, le=10.0)
    mult_noise: float = real(0.0, "std of the noise at each multiplier-array output", "V", ge=0.0, le=10.0)
    softmax_gain_sigma: float = real(0.0, "std of each exponentiator's log gain", ge=0.0, le=1.0)
    norm_gain_sigma: float = real(0.0, "relative std of each normalization circuit's gain", ge=0.0, le=1.0)
    gelu_rails: bool = boolean(False, "saturate the GELU neurons at neuron.rail")
