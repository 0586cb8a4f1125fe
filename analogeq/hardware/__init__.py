"""The analog chip: validated SI-unit configs (presets in ``device_models/``), realization of a
model as a chip instance, its continuous-time dynamics and conductance programming."""

from analogeq.hardware.config import (
    DEVICE_MODELS_ENV,
    SECTIONS,
    ChipConfig,
    CircuitConfig,
    ConfigError,
    CrossbarConfig,
    DynamicsConfig,
    EnergyConfig,
    NeuronConfig,
    NoiseConfig,
    PeripheryConfig,
    ReadoutConfig,
    available_presets,
    device_models_dir,
)
from analogeq.hardware.constants import K_B, Q_E
from analogeq.hardware.chip import Chip, Tile
from analogeq.hardware.converters import quantize
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.programming import ConductanceUpdater, program
from analogeq.hardware.realize import realize
from analogeq.hardware.transformer import AnalogEqTransformer, realize_transformer
from analogeq.hardware.transformer_updates import BlockUpdater, InWeightUnits, block_gradient, block_parameters
from analogeq.hardware.verdict import continuous_verdict, format_verdict

__all__ = [
    "AnalogEqTransformer",
    "CircuitConfig",
    "continuous_verdict",
    "format_verdict",
    "realize_transformer",
    "BlockUpdater",
    "InWeightUnits",
    "block_gradient",
    "block_parameters",
    "Chip",
    "ChipRelaxation",
    "ConductanceUpdater",
    "Tile",
    "program",
    "quantize",
    "realize",
    "DEVICE_MODELS_ENV",
    "K_B",
    "Q_E",
    "SECTIONS",
    "ChipConfig",
    "ConfigError",
    "CrossbarConfig",
    "DynamicsConfig",
    "EnergyConfig",
    "NeuronConfig",
    "NoiseConfig",
    "PeripheryConfig",
    "ReadoutConfig",
    "available_presets",
    "device_models_dir",
]
