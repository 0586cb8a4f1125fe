"""Device presets: one TOML file per device in ``device_models/devices/``, every number with its
source.

A preset file has ``name``, ``description``, ``model`` (a class of
:mod:`analogeq.devices.pulsed`, or ``"module:Class"`` for a device class outside the package),
a ``[params]`` table (the model's fields, weight units), an optional ``[inference]`` table
(:class:`analogeq.devices.inference.PCMInference` fields) and a ``[sources]`` table naming where
each number comes from. Adding a device is adding a file.

Every parameter is validated by :mod:`analogeq.spec` (types, finiteness, ranges, unknown keys),
so a bad file fails when it is read, in one line naming the file, the field, the value and what
is allowed, instead of dividing by zero or indexing out of range inside a compiled update. The
ranges follow the models' definitions in aihwkit's pulsed devices (Rasch et al., "A flexible and
fast PyTorch toolkit for simulating training and inference on analog crossbar arrays", AICAS
2021) and NeuroSim (Chen et al., IEEE TCAD 37(12), 2018): step sizes and ranges are positive,
spreads are non-negative, nonlinearity labels stay below NeuroSim's reachable 10.1.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from analogeq.devices import pulsed
from analogeq.devices.inference import PCMInference
from analogeq.devices.neurosim import NeuroSimDevice
from analogeq.package_data import data_dir
from analogeq.spec import (
    ConfigError,
    Spec,
    boolean,
    format_value,
    integer,
    read_toml,
    real,
)

DEVICE_DIR = data_dir("device_models") / "devices"
"""Folder of the device presets (``device_models/devices/``, installed with the package)."""
MODELS = {cls.__name__: cls for cls in (
    pulsed.ConstantStep, pulsed.LinearStep, pulsed.SoftBounds, pulsed.ExponentialStep,
    pulsed.PowerStep, pulsed.PiecewiseStep, NeuroSimDevice)}
KEYS = ("name", "description", "model", "params", "inference", "sources")
"""Top-level keys of a preset file."""

_SPREAD = 10.0  # largest relative spread: beyond it the sampled steps/bounds are noise only


# --------------------------------------------------------------------------------------------
# [params]: one Spec per device model (the fields of the classes in analogeq.devices.pulsed)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PulsedParams(Spec):
    """Parameters shared by the aihwkit-style pulsed models (weight units)."""

    _section: ClassVar[str] = "params"

    dw_min: float = real(0.001, "mean weight change of one pulse at w = 0", gt=0.0, le=1.0)
    dw_min_dtod: float = real(0.3, "device-to-device spread of the step (relative)", ge=0.0, le=_SPREAD)
    dw_min_std: float = real(0.3, "cycle-to-cycle spread of each pulse (relative)", ge=0.0, le=_SPREAD)
    w_max: float = real(0.6, "mean upper weight bound", ge=0.0, le=1e3)
    w_min: float = real(-0.6, "mean lower weight bound", ge=-1e3, le=0.0)
    w_max_dtod: float = real(0.3, "device-to-device spread of the upper bound (relative)", ge=0.0, le=_SPREAD)
    w_min_dtod: float = real(0.3, "device-to-device spread of the lower bound (relative)", ge=0.0, le=_SPREAD)
    up_down: float = real(0.0, "systematic up/down step asymmetry (> 0 shrinks the down step)", ge=-1.0, le=1.0)
    up_down_dtod: float = real(0.01, "device-to-device spread of the up/down asymmetry", ge=0.0, le=_SPREAD)

    def _check(self) -> None:
        if not self.w_max > self.w_min:
            raise ConfigError(f"params.w_max ({self.w_max!r}) must be > params.w_min ({self.w_min!r}): "
                              "the weight range [w_min, w_max] must not be empty")


@dataclass(frozen=True)
class ConstantStepParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.ConstantStep`."""


@dataclass(frozen=True)
class SoftBoundsParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.SoftBounds`."""


@dataclass(frozen=True)
class LinearStepParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.LinearStep`."""

    gamma_up: float = real(0.0, "slope of the up step in w (relative to the bound)", ge=-100.0, le=100.0)
    gamma_down: float = real(0.0, "slope of the down step in w (relative to the bound)", ge=-100.0, le=100.0)
    gamma_up_dtod: float = real(0.05, "device-to-device spread of gamma_up", ge=0.0, le=_SPREAD)
    gamma_down_dtod: float = real(0.05, "device-to-device spread of gamma_down", ge=0.0, le=_SPREAD)
    mean_bound_reference: bool = boolean(True, "scale by the mean bounds (else each device's)")
    mult_noise: bool = boolean(True, "cycle-to-cycle noise multiplies the whole step")


@dataclass(frozen=True)
class ExponentialStepParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.ExponentialStep` (exponents bounded so exp() stays finite)."""

    A_up: float = real(0.00081, "prefactor of the up-step exponential", ge=-1e3, le=1e3)
    A_down: float = real(0.36833, "prefactor of the down-step exponential", ge=-1e3, le=1e3)
    gamma_up: float = real(12.44625, "exponent of the up step", ge=-50.0, le=50.0)
    gamma_down: float = real(12.78785, "exponent of the down step", ge=-50.0, le=50.0)
    a: float = real(0.244, "scale of z = 2 a w / (b_max - b_min) + b", ge=-10.0, le=10.0)
    b: float = real(0.2425, "offset of z", ge=-10.0, le=10.0)


@dataclass(frozen=True)
class PowerStepParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.PowerStep`."""

    gamma: float = real(1.0, "exponent of the power-law step", ge=0.0, le=100.0)
    gamma_dtod: float = real(0.1, "device-to-device spread of the exponent (relative)", ge=0.0, le=_SPREAD)
    gamma_up_down: float = real(0.0, "systematic up/down difference of the exponent", ge=-10.0, le=10.0)
    gamma_up_down_dtod: float = real(0.0, "device-to-device spread of that difference", ge=0.0, le=_SPREAD)


@dataclass(frozen=True)
class PiecewiseStepParams(PulsedParams):
    """:class:`analogeq.devices.pulsed.PiecewiseStep`; ``v_up`` / ``v_down`` (lists of relative
    step sizes) are checked by :func:`_nodes`."""


@dataclass(frozen=True)
class NeuroSimParams(Spec):
    """:class:`analogeq.devices.neurosim.NeuroSimDevice` (conductances in S, weights in weight units)."""

    _section: ClassVar[str] = "params"

    g_min: float = real(3.08e-9, "smallest conductance", "S", ge=0.0, le=1.0)
    g_max: float = real(38.5e-9, "largest conductance", "S", gt=0.0, le=1.0)
    nl_ltp: float = real(2.40, "nonlinearity label of potentiation", ge=-10.1, le=10.1)
    nl_ltd: float = real(-4.88, "nonlinearity label of depression", ge=-10.1, le=10.1)
    p_max_ltp: int = integer(97, "pulses spanning the range (potentiation)", ge=1, le=1_000_000)
    p_max_ltd: int = integer(100, "pulses spanning the range (depression)", ge=1, le=1_000_000)
    c2c_std: float = real(0.035, "cycle-to-cycle std per sqrt(pulse), fraction of the range", ge=0.0, le=1.0)
    nl_dtod: float = real(0.0, "device-to-device std of the labels", ge=0.0, le=10.0)
    w_min: float = real(-1.0, "weight of g_min", ge=-1e3, le=1e3)
    w_max: float = real(1.0, "weight of g_max", ge=-1e3, le=1e3)

    def _check(self) -> None:
        if not self.g_max > self.g_min:
            raise ConfigError(f"params.g_max ({self.g_max!r}) must be > params.g_min ({self.g_min!r})")
        if not self.w_max > self.w_min:
            raise ConfigError(f"params.w_max ({self.w_max!r}) must be > params.w_min ({self.w_min!r})")


PARAMS: dict[str, type[Spec]] = {
    "ConstantStep": ConstantStepParams, "LinearStep": LinearStepParams, "SoftBounds": SoftBoundsParams,
    "ExponentialStep": ExponentialStepParams, "PowerStep": PowerStepParams,
    "PiecewiseStep": PiecewiseStepParams, "NeuroSimDevice": NeuroSimParams}
"""The validated ``[params]`` of each model."""


def _reals(path: str, value: Any, n: int | None, *, ge: float | None = None, lo_le_hi: bool = False) -> tuple:
    """A list of ``n`` finite numbers (1..1000 when ``n`` is None), each ``>= ge``; with
    ``lo_le_hi`` a pair ``[lo, hi]`` with ``lo <= hi``."""
    count = f"{n} numbers" if n else "1..1000 numbers"
    allowed = f"a list of {count}" + (f", each >= {ge:g}" if ge is not None else "") + \
        (", [low, high] with low <= high" if lo_le_hi else "") + ", finite"
    ok = isinstance(value, (list, tuple)) and (len(value) == n if n else 1 <= len(value) <= 1000)
    ok = ok and all(isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                    and (ge is None or v >= ge) for v in value)
    if ok and lo_le_hi:
        ok = value[0] <= value[1]
    if not ok:
        raise ConfigError(f"{path} must be {allowed}; got {format_value(value)}")
    return tuple(float(v) for v in value)


def _nodes(params: dict) -> dict:
    """PiecewiseStep's ``v_up`` / ``v_down``: equally long lists of relative steps >= 0."""
    out = {}
    for name in ("v_up", "v_down"):
        if name in params:
            out[name] = _reals(f"params.{name}", params[name], None, ge=0.0)
    if len(out.get("v_up", (1.0, 1.0))) != len(out.get("v_down", (1.0, 1.0))):
        raise ConfigError(f"params.v_up and params.v_down must have the same number of nodes; got "
                          f"{len(out.get('v_up', (1.0, 1.0)))} and {len(out.get('v_down', (1.0, 1.0)))}")
    return out


def _params(model: str, params: Any) -> dict:
    """The validated ``[params]`` of ``model`` as keyword arguments of its class."""
    if not isinstance(params, dict):
        raise ConfigError(f"[params] must be a table of {model}'s parameters; got {format_value(params)}")
    params = dict(params)
    nodes = _nodes(params) if model == "PiecewiseStep" else {}
    for k in nodes:
        params.pop(k)
    spec = PARAMS[model]
    allowed = spec.field_names() + (("v_up", "v_down") if model == "PiecewiseStep" else ())
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise ConfigError(f"{model} has no parameter(s) {['params.' + b for b in bad]}; allowed: "
                          f"{', '.join(allowed)}")
    validated = spec.from_dict(params)
    given = {k: getattr(validated, k) for k in params}
    return {**given, **nodes}


def device_class(model: Any) -> type:
    """The device class a preset's ``model`` names: a key of :data:`MODELS`, or
    ``"module:Class"``, an :class:`~analogeq.devices.pulsed.AbstractDevice` subclass in any
    importable module (a device model outside the package; see docs/extending.md)."""
    if isinstance(model, str) and model in MODELS:
        return MODELS[model]
    if isinstance(model, str) and ":" in model:
        module, _, name = model.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError, ValueError) as e:
            raise ConfigError(f"model {model!r} cannot be loaded ({e}); 'module:Class' needs the module "
                              "on sys.path (PYTHONPATH)") from None
        if not (isinstance(cls, type) and issubclass(cls, pulsed.AbstractDevice)):
            raise ConfigError(f"model {model!r} is not a subclass of analogeq.devices.pulsed.AbstractDevice")
        return cls
    got = repr(model) if isinstance(model, str) or model is None else format_value(model)
    raise ConfigError(f"model {got} unknown; choose one of {sorted(MODELS)} or 'module:Class'")


def _outside_params(model: str, cls: type, params: Any) -> dict:
    """``[params]`` of a device class outside the package: its dataclass fields only; the
    aihwkit fields it shares with :class:`PulsedParams` get their checks, the others must be
    finite numbers or booleans (the class's own checks run when it is built)."""
    if not isinstance(params, dict):
        raise ConfigError(f"[params] must be a table of {model}'s parameters; got {format_value(params)}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    bad = sorted(set(params) - set(allowed))
    if bad:
        raise ConfigError(f"{model} has no parameter(s) {['params.' + b for b in bad]}; allowed: "
                          f"{', '.join(allowed)}")
    shared = {k: v for k, v in params.items() if k in PulsedParams.field_names()}
    if issubclass(cls, pulsed.AbstractPulsedDevice):
        validated = PulsedParams.from_dict(shared)
        shared = {k: getattr(validated, k) for k in shared}
    for k, v in params.items():
        if k not in shared and not (isinstance(v, bool) or (isinstance(v, numbers.Real) and math.isfinite(v))):
            raise ConfigError(f"params.{k} must be a finite number or a boolean; got {format_value(v)}")
    return {**params, **shared}


# PCM inference model: (kind, bounds) per field; pairs are (a, b) of "a ln gh + b" or clips.
_INFERENCE = {
    "g_max": ("real", dict(gt=0.0, le=1.0)), "t0": ("real", dict(gt=0.0, le=1e9)),
    "read_q_max": ("real", dict(ge=0.0, le=10.0)), "t_read": ("real", dict(gt=0.0, le=1.0)),
    "prog_coeff": (3, {}), "nu_mu": (2, {}), "nu_sigma": (2, {}), "read_q": (2, {}),
    "nu_mu_clip": (2, dict(lo_le_hi=True)), "nu_sigma_clip": (2, dict(ge=0.0, lo_le_hi=True)),
}


def _inference(table: Any) -> PCMInference:
    if not isinstance(table, dict):
        raise ConfigError(f"[inference] must be a table of PCMInference fields; got {format_value(table)}")
    bad = sorted(set(table) - set(_INFERENCE))
    if bad:
        raise ConfigError(f"unknown key(s) {bad} in [inference]; allowed keys: {', '.join(_INFERENCE)}")
    kwargs = {}
    for k, v in table.items():
        kind, bounds = _INFERENCE[k]
        if kind == "real":
            lo = f"({bounds['gt']:g}" if "gt" in bounds else f"[{bounds['ge']:g}"
            ok = (isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
                  and (v > bounds["gt"] if "gt" in bounds else v >= bounds["ge"]) and v <= bounds["le"])
            if not ok:
                raise ConfigError(f"inference.{k} must be a finite number in {lo}, {bounds['le']:g}]; "
                                  f"got {format_value(v)}")
            kwargs[k] = float(v)
        else:
            kwargs[k] = _reals(f"inference.{k}", v, kind, **bounds)
    return PCMInference(**kwargs)


@dataclass(frozen=True)
class DevicePreset:
    """A named device: its pulsed model, optional inference model and the sources of its numbers."""

    name: str
    description: str
    device: pulsed.AbstractDevice
    params: dict = field(default_factory=dict)
    sources: dict = field(default_factory=dict)
    inference: PCMInference | None = None

    @classmethod
    def from_dict(cls, d: Any, default_name: str = "device") -> "DevicePreset":
        """Validate a parsed preset (errors are :class:`ConfigError` naming the field)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a device preset must be a table of {', '.join(KEYS)}; got {format_value(d)}")
        unknown = sorted(set(d) - set(KEYS))
        if unknown:
            raise ConfigError(f"unknown key(s) {unknown}; allowed: {', '.join(KEYS)}")
        for key in ("name", "description"):
            if key in d and not isinstance(d[key], str):
                raise ConfigError(f"{key} must be a string; got {format_value(d[key])}")
        model = d.get("model")
        model_cls = device_class(model)
        params = (_params(model, d.get("params", {})) if model_cls is MODELS.get(model)
                  else _outside_params(model, model_cls, d.get("params", {})))
        inference = _inference(d["inference"]) if "inference" in d else None
        sources = d.get("sources", {})
        if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
            raise ConfigError(f"[sources] must be a table of strings (where each number comes from); "
                              f"got {format_value(sources)}")
        missing = sorted((set(params) | set(d.get("inference", {}))) - set(sources))
        if missing:
            raise ConfigError(f"every number needs a source; [sources] lacks {missing}")
        try:
            device = model_cls(**params)
        except (ValueError, TypeError) as e:  # the model's own cross-field checks
            raise ConfigError(f"[params] of model {model}: {e}") from None
        name = d.get("name", default_name)
        if not name:
            raise ConfigError("name must be a non-empty string; got ''")
        return cls(name=name, description=d.get("description", ""), device=device,
                   params=dict(d.get("params", {})), sources=dict(sources), inference=inference)

    @classmethod
    def from_toml(cls, path: str | Path) -> "DevicePreset":
        """Read and validate a preset file (errors name the file and the offending field)."""
        path = Path(path)
        d = read_toml(path, "device preset")
        try:
            return cls.from_dict(d, default_name=path.stem)
        except ConfigError as e:
            raise ConfigError(f"device preset {path}: {e}") from None


def available_devices() -> list[str]:
    """Names of the presets shipped in ``device_models/devices/``."""
    return sorted(p.stem for p in DEVICE_DIR.glob("*.toml"))


def load_device(spec: str | Path) -> DevicePreset:
    """A :class:`DevicePreset` from a preset name (``analogeq devices list``) or a TOML path."""
    if not isinstance(spec, (str, Path)) or not str(spec):
        raise ConfigError(f"device must be a preset name ({', '.join(available_devices())}) or a TOML "
                          f"file; got {format_value(spec)}")
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return DevicePreset.from_toml(path)
    if spec not in available_devices():
        raise ConfigError(f"unknown device preset {str(spec)!r}; choose one of {available_devices()} "
                          "or give a TOML file")
    return DevicePreset.from_toml(DEVICE_DIR / f"{spec}.toml")
