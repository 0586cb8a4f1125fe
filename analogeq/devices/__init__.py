"""Pulsed analog memory devices and the update schemes that program them.

Weight-unit convention
----------------------
Device models act on *weights* ``w`` in the same units as the model's weights (dimensionless
"weight units"): bounds ``w_min``/``w_max``, step sizes ``dw_min`` and all updates are expressed
in them, exactly as in IBM aihwkit. How a weight is physically stored, e.g. as a differential
pair ``w = (G+ - G-) / G_ref`` with conductances in siemens, is handled elsewhere (the chip /
crossbar layer); this package never sees conductances, except :class:`NeuroSimDevice`, whose
published model is a conductance curve: it maps its range ``[G_min, G_max]`` linearly onto
``[w_min, w_max]`` and offers ``conductance`` / ``weight`` conversions.

Contents
--------
- :mod:`analogeq.devices.pulsed`: device models (aihwkit semantics: ``ConstantStep``,
  ``LinearStep``, ``SoftBounds``, ``ExponentialStep``, ``PowerStep``, ``PiecewiseStep``; and
  ``NeuroSimDevice``). ``device.sample(key, shape)`` draws the per-chip device-to-device state;
  ``device.apply_pulses(w, state, n, key)`` applies signed pulse counts.
- :mod:`analogeq.devices.schemes`: ``deterministic_pulses``, ``stochastic_pulses`` (pulse
  coincidence), ``PulsedSGD``, ``MixedPrecision`` and ``TikiTaka`` (v1 and v2), with cumulative
  per-device pulse counters.
- :mod:`analogeq.devices.fit`: ``fit_traces(csv)`` fits a model to measured up/down pulse traces
  (``analogeq devices fit``; CSV format in :mod:`analogeq.devices.traces`).

Everything is a pure function of explicit PRNG keys and immutable ``equinox`` modules, so it
composes with ``jit``/``vmap``/``scan`` and works in float32 or float64.
"""

from analogeq.devices.pulsed import (
    AbstractDevice,
    AbstractPulsedDevice,
    ConstantStep,
    DeviceState,
    ExponentialStep,
    LinearStep,
    PiecewiseStep,
    PowerStep,
    SoftBounds,
)
from analogeq.devices.fit import DeviceFit, fit_traces
from analogeq.devices.neurosim import NeuroSimDevice, a_to_nonlinearity, nonlinearity_to_a
from analogeq.devices.schemes import (
    MixedPrecision,
    MixedPrecisionState,
    PulseCountState,
    PulsedSGD,
    TikiTaka,
    TikiTakaState,
    deterministic_pulses,
    outer_update,
    stochastic_pulses,
)

__all__ = [
    "AbstractDevice",
    "AbstractPulsedDevice",
    "ConstantStep",
    "DeviceFit",
    "DeviceState",
    "ExponentialStep",
    "LinearStep",
    "MixedPrecision",
    "MixedPrecisionState",
    "NeuroSimDevice",
    "PiecewiseStep",
    "PowerStep",
    "PulseCountState",
    "PulsedSGD",
    "SoftBounds",
    "TikiTaka",
    "TikiTakaState",
    "a_to_nonlinearity",
    "deterministic_pulses",
    "fit_traces",
    "nonlinearity_to_a",
    "outer_update",
    "stochastic_pulses",
]
