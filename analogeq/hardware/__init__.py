"""Hardware description of the analog chip: validated, immutable configs in SI units.

See :mod:`analogeq.hardware.config`; presets live in the repository's ``device_models/``.
"""

from analogeq.hardware.config import (
    DEVICE_MODELS_ENV,
    SECTIONS,
    ChipConfig,
    ConfigError,
    CrossbarConfig,
    DynamicsConfig,
    NeuronConfig,
    NoiseConfig,
    PeripheryConfig,
    ReadoutConfig,
    available_presets,
    device_models_dir,
)
from analogeq.hardware.constants import K_B, Q_E

__all__ = [
    "DEVICE_MODELS_ENV",
    "K_B",
    "Q_E",
    "SECTIONS",
    "ChipConfig",
    "ConfigError",
    "CrossbarConfig",
    "DynamicsConfig",
    "NeuronConfig",
    "NoiseConfig",
    "PeripheryConfig",
    "ReadoutConfig",
    "available_presets",
    "device_models_dir",
]
