"""Device presets: one TOML file per device in ``device_models/devices/``, every number with its
source.

A preset file has ``name``, ``description``, ``model`` (a class of
:mod:`analogeq.devices.pulsed`, or ``"module:Class"`` for one outside the package), a
``[params]`` table (the model's fields, weight units), an optional ``[inference]`` table
(:class:`analogeq.devices.inference.PCMInference` fields) and a ``[sources]`` table naming where
each number comes from. Adding a device is adding a file.
"""

from __future__ import annotations

import dataclasses
import importlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from analogeq.devices import pulsed
from analogeq.devices.inference import PCMInference

DEVICE_DIR = Path(__file__).resolve().parents[2] / "device_models" / "devices"
MODELS = {cls.__name__: cls for cls in (
    pulsed.ConstantStep, pulsed.LinearStep, pulsed.SoftBounds, pulsed.ExponentialStep,
    pulsed.PowerStep, pulsed.PiecewiseStep, pulsed.NeuroSimDevice)}


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
    def from_toml(cls, path: str | Path) -> "DevicePreset":
        """Read and validate a preset file (errors name the file and the offending key)."""
        path = Path(path)
        with open(path, "rb") as f:
            d = tomllib.load(f)
        where = f"device preset {path.name}"
        unknown = sorted(set(d) - {"name", "description", "model", "params", "inference", "sources"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: name, description, "
                             "model, params, inference, sources")
        model = d.get("model")
        model_cls = device_class(model, where)
        params = dict(d.get("params", {}))
        allowed = {f.name for f in dataclasses.fields(model_cls)}
        bad = sorted(set(params) - allowed)
        if bad:
            raise ValueError(f"{where}: {model} has no parameter(s) {bad}; allowed: {sorted(allowed)}")
        inference = None
        if "inference" in d:
            inf = {k: tuple(v) if isinstance(v, list) else v for k, v in d["inference"].items()}
            allowed_inf = {f.name for f in dataclasses.fields(PCMInference)}
            bad = sorted(set(inf) - allowed_inf)
            if bad:
                raise ValueError(f"{where}: [inference] has no field(s) {bad}; allowed: {sorted(allowed_inf)}")
            inference = PCMInference(**inf)
        sources = dict(d.get("sources", {}))
        missing = sorted((set(params) | set(d.get("inference", {}))) - set(sources))
        if missing:
            raise ValueError(f"{where}: every number needs a source; [sources] lacks {missing}")
        return cls(name=d.get("name", path.stem), description=d.get("description", ""),
                   device=model_cls(**params), params=params, sources=sources,
                   inference=inference)


def device_class(model: str, where: str = "device preset") -> type:
    """The device class a preset's ``model`` names: a key of :data:`MODELS`, or
    ``"module:Class"``, an :class:`~analogeq.devices.pulsed.AbstractDevice` subclass in any
    importable module (a device model outside the package, see docs/extending.md)."""
    if isinstance(model, str) and ":" in model:
        module, _, name = model.partition(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"{where}: model {model!r} cannot be loaded ({e}); 'module:Class' needs "
                             "the module on sys.path (or PYTHONPATH)") from None
        if not (isinstance(cls, type) and issubclass(cls, pulsed.AbstractDevice)):
            raise ValueError(f"{where}: model {model!r} is not a subclass of "
                             "analogeq.devices.pulsed.AbstractDevice")
        return cls
    if model not in MODELS:
        raise ValueError(f"{where}: model {model!r} unknown; choose one of {sorted(MODELS)} "
                         "or 'module:Class'")
    return MODELS[model]


def available_devices() -> list[str]:
    """Names of the presets shipped in ``device_models/devices/``."""
    return sorted(p.stem for p in DEVICE_DIR.glob("*.toml"))


def load_device(spec: str | Path) -> DevicePreset:
    """A :class:`DevicePreset` from a preset name (``analogeq devices list``) or a TOML path."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"device file {str(spec)!r} not found")
        return DevicePreset.from_toml(path)
    if spec not in available_devices():
        raise ValueError(f"unknown device preset {spec!r}; choose one of {available_devices()} "
                         "or give a TOML file")
    return DevicePreset.from_toml(DEVICE_DIR / f"{spec}.toml")
