"""Validated hardware description of an analog in-memory chip, in SI units.

A :class:`ChipConfig` is plain, immutable, hashable configuration data (frozen dataclasses, no
JAX): one section per block of the chip (DESIGN.md section 4).

======================  =================================================================
section                 what it describes
======================  =================================================================
``crossbar``            :class:`CrossbarConfig`: differential conductance pairs, levels,
                        programming / read noise, device-to-device bounds
``neuron``              :class:`NeuronConfig`: RC node, nonlinearity circuit (rails, offset,
                        gain mismatch), amplifier pole, ``kT/C`` noise
``periphery``           :class:`PeripheryConfig`: DAC, ADC, sample-and-hold
``noise``               :class:`NoiseConfig`: temperature (sets every thermal noise)
``dynamics``            :class:`DynamicsConfig` (alias ``ReadoutConfig``): settle window,
                        steady-state tolerance, time-averaged readout
``energy``              :class:`EnergyConfig`: energy and time of a conversion and of a
                        programming pulse (for :mod:`analogeq.energy`)
======================  =================================================================

Every field has a default; the defaults together are the *ideal* chip (every non-ideality off;
the ``energy`` section holds literature costs, the same in every preset), so
``ChipConfig() == ChipConfig.ideal() == ChipConfig.preset("ideal")``.

Configs come from dicts (:meth:`ChipConfig.from_dict`), TOML files
(:meth:`ChipConfig.from_toml`) or named presets in the repository's ``device_models/``
directory (:meth:`ChipConfig.preset`); :meth:`ChipConfig.replace` makes validated variants for
sweeps (``cfg.replace(**{"crossbar.n_levels": 16})``). Invalid values raise
:class:`ConfigError` (a ``ValueError``) naming the dotted field and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from analogeq.hardware.constants import K_B

__all__ = [
    "ChipConfig",
    "ConfigError",
    "CrossbarConfig",
    "DynamicsConfig",
    "EnergyConfig",
    "IDEAL_CONVERTER_COST_BITS",
    "NeuronConfig",
    "NoiseConfig",
    "PeripheryConfig",
    "ReadoutConfig",
    "SECTIONS",
    "available_presets",
    "device_models_dir",
]

DEVICE_MODELS_ENV = "ANALOGEQ_DEVICE_MODELS"
"""Environment variable overriding the directory searched by :meth:`ChipConfig.preset`."""


class ConfigError(ValueError):
    """An invalid hardware configuration; the message names the dotted field and what is
    allowed."""


# --------------------------------------------------------------------------------------------
# Field specifications
# --------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    """Readable value for error messages (plain Python numbers, type shown for non-numbers)."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return f"{value!r} ({type(value).__name__})"


def _fmt_typed(value: Any) -> str:
    """``value`` with its type, for wrong-type messages."""
    return f"{value!r} ({type(value).__name__})"


@dataclass(frozen=True)
class _Spec:
    """How one config field is validated (kept in the dataclass field's metadata)."""

    kind: str  # "real" | "int" | "bool"
    doc: str
    unit: str = ""
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    optional: bool = False  # None allowed (meaning given in ``doc``)
    int_ok: Any = None  # predicate for ints
    int_allowed: str = ""  # human description of the allowed ints

    def constraint(self) -> str:
        """Human description of the allowed values, with the unit."""
        if self.kind == "bool":
            return "a bool (true/false)"
        if self.kind == "int":
            return self.int_allowed
        lo = hi = None
        if self.gt is not None:
            lo = f"({self.gt:g}"
        elif self.ge is not None:
            lo = f"[{self.ge:g}"
        if self.lt is not None:
            hi = f"{self.lt:g})"
        elif self.le is not None:
            hi = f"{self.le:g}]"
        if lo and hi:
            text = f"in {lo}, {hi}"
        elif lo:
            text = ("> " if lo[0] == "(" else ">= ") + lo[1:]
        elif hi:
            text = ("< " if hi[-1] == ")" else "<= ") + hi[:-1]
        else:
            text = "a finite real number"
        if self.unit:
            text += f" {self.unit}"
        if self.optional:
            text += " or None"
        return text

    def validate(self, path: str, value: Any) -> Any:
        """Return ``value`` coerced to a plain Python type, or raise :class:`ConfigError`."""
        if value is None and self.optional:
            return None
        what = f"({self.doc})"
        if self.kind == "bool":
            if isinstance(value, np.bool_):
                value = bool(value)
            if not isinstance(value, bool):
                raise ConfigError(
                    f"{path} must be a bool (true/false) {what}; got {_fmt_typed(value)}"
                )
            return value
        if self.kind == "int":
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise ConfigError(
                    f"{path} must be an integer: {self.int_allowed} {what}; got {_fmt_typed(value)}"
                )
            value = int(value)
            if not self.int_ok(value):
                raise ConfigError(f"{path} must be {self.int_allowed} {what}; got {value!r}")
            return value
        # real
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigError(
                f"{path} must be a finite real number, {self.constraint()} {what}; "
                f"got {_fmt_typed(value)}"
            )
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{path} must be finite, {self.constraint()} {what}; got {value!r}")
        bad = (
            (self.gt is not None and not value > self.gt)
            or (self.ge is not None and not value >= self.ge)
            or (self.lt is not None and not value < self.lt)
            or (self.le is not None and not value <= self.le)
        )
        if bad:
            raise ConfigError(f"{path} must be {self.constraint()} {what}; got {value!r}")
        return value


def _real(default, doc, unit="", **bounds):
    return field(default=default, metadata={"spec": _Spec("real", doc, unit, **bounds)})


def _opt_real(default, doc, unit="", **bounds):
    return field(
        default=default, metadata={"spec": _Spec("real", doc, unit, optional=True, **bounds)}
    )


def _int(default, doc, ok, allowed):
    return field(
        default=default, metadata={"spec": _Spec("int", doc, int_ok=ok, int_allowed=allowed)}
    )


def _bool(default, doc):
    return field(default=default, metadata={"spec": _Spec("bool", doc)})


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


class _Section:
    """Shared behaviour of the config sections (validation, dict conversion)."""

    _section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            spec = f.metadata.get("spec")
            if spec is None:
                continue
            path = f"{self._section}.{f.name}"
            object.__setattr__(self, f.name, spec.validate(path, getattr(self, f.name)))
        self._check()

    def _check(self) -> None:
        """Cross-field checks (subclasses)."""

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the section's fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls) if "spec" in f.metadata)

    @classmethod
    def spec(cls, key: str) -> _Spec:
        """Validation spec (doc, unit, bounds) of one field."""
        for f in dataclasses.fields(cls):
            if f.name == key and "spec" in f.metadata:
                return f.metadata["spec"]
        raise KeyError(key)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]):
        """Build the section from a mapping of field name -> value (SI units); missing fields
        take their (ideal) defaults; unknown keys raise :class:`ConfigError` naming the key and
        the allowed keys."""
        if not isinstance(d, Mapping):
            raise ConfigError(
                f"section [{cls._section}] must be a table/mapping of "
                f"{', '.join(cls.field_names())}; got {_fmt(d)}"
            )
        allowed = cls.field_names()
        for key in d:
            if key not in allowed:
                raise ConfigError(
                    f"unknown key '{cls._section}.{key}' in section [{cls._section}]; "
                    f"allowed keys: {', '.join(allowed)}"
                )
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value (SI units). Fields that are ``None`` or derived from other fields
        (``crossbar.G_ref`` when left at its default) are omitted, so the dict is TOML
        representable and ``from_dict(to_dict())`` round-trips exactly."""
        out = {}
        for key in self.field_names():
            value = getattr(self, key)
            if value is None or self._derived(key):
                continue
            out[key] = value
        return out

    def _derived(self, key: str) -> bool:
        return False

    def replace(self, **changes: Any):
        """A new, validated section with ``changes`` (field name -> value) applied. Derived
        fields (``crossbar.G_ref`` at its default) are re-derived."""
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)


@dataclass(frozen=True)
class CrossbarConfig(_Section):
    """Crossbar tile of differential conductance pairs (DESIGN.md section 4).

    A signed weight is a pair of devices, ``W = (G+ - G-) / G_ref`` with each ``G`` in
    ``[G_min, G_max]``.

    Attributes:
        G_min: minimum device conductance [S], ``>= 0``. Default ``0.0``.
        G_max: maximum device conductance [S], ``> G_min``. Default ``1e-4`` (100 uS).
        G_ref: weight scale [S], ``> 0``; default ``None`` -> ``G_max - G_min`` (so ``|W| <= 1``
            maps onto the full conductance range). Left at the default it is re-derived when
            ``G_min`` / ``G_max`` change through :meth:`ChipConfig.replace`.
        n_levels: programmable conductance levels per device, evenly spaced over
            ``[G_min, G_max]``; ``0`` = continuous, else ``>= 2``. Default ``0``.
        prog_noise: std of the programmed conductance relative to ``G_max - G_min``
            (dimensionless, ``>= 0``), drawn once per programming. Default ``0.0``.
        d2d_bounds: relative std of each device's own ``G_min`` / ``G_max`` (device-to-device
            variation, drawn once per chip), in ``[0, 1)``. Default ``0.0``.
        read_noise: relative std of a device's conductance per MVM read, multiplicative:
            ``G_read = G (1 + read_noise xi)`` (dimensionless, ``>= 0``). Default ``0.0``.
        thermal_noise: Johnson current noise of every device, PSD ``4 k_B T G`` [A^2/Hz]
            (temperature from :class:`NoiseConfig`). Default ``False``.
    """

    _section: ClassVar[str] = "crossbar"

    G_min: float = _real(0.0, "minimum device conductance", "S", ge=0.0)
    G_max: float = _real(1e-4, "maximum device conductance", "S", gt=0.0)
    G_ref: float | None = _opt_real(
        None, "weight scale W = (G+ - G-)/G_ref; None = G_max - G_min", "S", gt=0.0
    )
    n_levels: int = _int(
        0,
        "programmable conductance levels per device",
        lambda n: n == 0 or n >= 2,
        "0 (continuous) or >= 2",
    )
    prog_noise: float = _real(
        0.0, "relative std of programmed G w.r.t. G_max - G_min", "", ge=0.0
    )
    d2d_bounds: float = _real(
        0.0, "device-to-device relative std of each device's G_min/G_max", "", ge=0.0, lt=1.0
    )
    read_noise: float = _real(0.0, "relative std of G per MVM read", "", ge=0.0)
    thermal_noise: bool = _bool(False, "Johnson current noise sqrt(4 k_B T G) per device")

    _G_ref_auto: bool = field(default=False, init=False, repr=False, compare=False)

    def _check(self) -> None:
        if not self.G_min < self.G_max:
            raise ConfigError(
                f"crossbar.G_min must be < crossbar.G_max "
                f"(got G_min={self.G_min:g} S, G_max={self.G_max:g} S)"
            )
        if self.G_ref is None:
            object.__setattr__(self, "G_ref", self.G_max - self.G_min)
            object.__setattr__(self, "_G_ref_auto", True)

    def _derived(self, key: str) -> bool:
        return key == "G_ref" and self._G_ref_auto

    @property
    def w_max(self) -> float:
        """Largest representable ``|W| = (G_max - G_min) / G_ref`` (dimensionless)."""
        return (self.G_max - self.G_min) / self.G_ref

    @property
    def on_off_ratio(self) -> float:
        """``G_max / G_min`` (dimensionless; ``inf`` when ``G_min == 0``)."""
        return self.G_max / self.G_min if self.G_min > 0 else math.inf


@dataclass(frozen=True)
class NeuronConfig(_Section):
    """Neuron: an RC node followed by a nonlinearity circuit (DESIGN.md section 4).

    The node obeys ``C dv/dt = -g_leak v + I_in``; ``tau = C / g_leak`` [s]. A state value ``s``
    (dimensionless, as in the model) is the node voltage ``v = s * v_unit``. The nonlinearity
    circuit outputs ``rail * tanh(v / rail)`` [V]: in state units
    ``rho_hw(s) = (rail / v_unit) tanh(s v_unit / rail)``, which is exactly the model's
    ``rho = tanh`` when ``rail == v_unit`` (rails at state +-1).

    Attributes:
        C: node capacitance [F], ``> 0``. Default ``1e-12`` (1 pF).
        g_leak: node leak conductance [S], ``> 0``. Default ``1e-4`` (10 kOhm).
        rail: output rails of the nonlinearity circuit, ``+-rail`` [V], ``> 0``. Default ``1.0``.
        v_unit: voltage that represents state value 1.0 [V], ``> 0``. Default ``1.0``.
        offset_sigma: std of the input-referred offset voltage of each neuron's nonlinearity
            circuit [V], drawn once per chip, ``>= 0``. Default ``0.0``.
        gain_sigma: relative std of each neuron's nonlinearity gain, drawn once per chip
            (dimensionless, ``>= 0``). Default ``0.0``.
        amp_pole_tau: time constant of the amplifier's extra first-order state [s]:
            ``amp_pole_tau dy/dt = rho_hw(v) - y``; ``0`` = no pole (infinite bandwidth),
            ``>= 0``. Default ``0.0``.
        kTC_noise: thermal noise of the node (leak resistor into ``C``, integrated variance
            ``k_B T / C`` [V^2]; temperature from :class:`NoiseConfig`). Default ``False``.
    """

    _section: ClassVar[str] = "neuron"

    C: float = _real(1e-12, "node capacitance", "F", gt=0.0)
    g_leak: float = _real(1e-4, "node leak conductance", "S", gt=0.0)
    rail: float = _real(1.0, "output rails +-rail of the nonlinearity circuit", "V", gt=0.0)
    v_unit: float = _real(1.0, "voltage representing state value 1.0", "V", gt=0.0)
    offset_sigma: float = _real(
        0.0, "std of the input-referred offset per neuron", "V", ge=0.0
    )
    gain_sigma: float = _real(0.0, "relative std of the per-neuron gain", "", ge=0.0)
    amp_pole_tau: float = _real(
        0.0, "amplifier pole time constant, 0 = no pole", "s", ge=0.0
    )
    kTC_noise: bool = _bool(False, "kT/C thermal noise of the neuron node")

    @property
    def tau(self) -> float:
        """Node time constant ``C / g_leak`` [s]."""
        return self.C / self.g_leak

    @property
    def rail_units(self) -> float:
        """Rails in state units, ``rail / v_unit`` (dimensionless; 1 = the model's tanh)."""
        return self.rail / self.v_unit


_BITS_OK = lambda b: b == 0 or 1 <= b <= 16  # noqa: E731
_BITS_ALLOWED = "0 (ideal, no quantization or clipping) or in 1..16"


@dataclass(frozen=True)
class PeripheryConfig(_Section):
    """Converters and sample-and-hold (DESIGN.md section 4).

    A converter with ``bits > 0`` clips to ``[-range, +range]`` [V] and quantizes to
    ``2**bits`` uniform levels over that interval; ``bits = 0`` is ideal (no quantization, no
    clipping; the range is then unused).

    Attributes:
        dac_bits: input DAC resolution, ``0`` (ideal) or ``1..16``. Default ``0``.
        dac_range: DAC full scale, outputs in ``[-dac_range, dac_range]`` [V], ``> 0``.
            Default ``1.0``.
        adc_bits: read-out ADC resolution, ``0`` (ideal) or ``1..16``. Default ``0``.
        adc_range: ADC full scale, inputs in ``[-adc_range, adc_range]`` [V], ``> 0``.
            Default ``1.0``.
        sample_hold: the free-phase state is held on-chip in an analog sample-and-hold
            (``True``) rather than read out through the ADC and stored digitally (``False``).
            Default ``True``.
    """

    _section: ClassVar[str] = "periphery"

    dac_bits: int = _int(0, "input DAC resolution in bits", _BITS_OK, _BITS_ALLOWED)
    dac_range: float = _real(1.0, "DAC full scale, +-dac_range", "V", gt=0.0)
    adc_bits: int = _int(0, "read-out ADC resolution in bits", _BITS_OK, _BITS_ALLOWED)
    adc_range: float = _real(1.0, "ADC full scale, +-adc_range", "V", gt=0.0)
    sample_hold: bool = _bool(True, "analog sample-and-hold of the free state")


@dataclass(frozen=True)
class NoiseConfig(_Section):
    """Chip-wide noise environment. Which noise sources are on is set next to each source
    (``crossbar.thermal_noise``, ``crossbar.read_noise``, ``crossbar.prog_noise``,
    ``neuron.kTC_noise``); the temperature sets the size of every thermal one.

    Attributes:
        temperature: chip temperature [K], ``>= 0`` (``0`` = no thermal noise). Default ``0.0``.
    """

    _section: ClassVar[str] = "noise"

    temperature: float = _real(0.0, "chip temperature", "K", ge=0.0)

    @property
    def kT(self) -> float:
        """Thermal energy ``k_B T`` [J]."""
        return K_B * self.temperature


@dataclass(frozen=True)
class DynamicsConfig(_Section):
    """How the analog dynamics are run and read out (DESIGN.md section 4).

    Attributes:
        settle_time: fixed settle window [s] after which the state is read (the readout time is
            a hardware parameter), ``> 0``; ``None`` = integrate adaptively until the
            steady-state event. Default ``None``.
        steady_tol: relative tolerance of the steady state (dimensionless, in ``(0, 1)``): the
            stopping event in adaptive mode, the convergence check of a fixed window.
            Default ``1e-6``.
        average_window: readout averaged over the last ``average_window`` seconds of the settle
            window (or after the steady-state event) [s], ``>= 0``; ``0`` = instantaneous
            sample. In fixed mode ``average_window <= settle_time``. Default ``0.0``.
        sde_dt: time step [s] of the Euler--Maruyama integration used when noise is on,
            ``> 0``; ``None`` = half the fastest time constant (``tau`` or the amplifier
            pole). Default ``None``.
    """

    _section: ClassVar[str] = "dynamics"

    settle_time: float | None = _opt_real(
        None, "fixed settle window; None = adaptive to steady state", "s", gt=0.0
    )
    steady_tol: float = _real(1e-6, "relative steady-state tolerance", "", gt=0.0, lt=1.0)
    average_window: float = _real(
        0.0, "time-averaged readout window, 0 = instantaneous", "s", ge=0.0
    )
    sde_dt: float | None = _opt_real(
        None, "fixed time step of the noisy (SDE) dynamics; None = half the fastest "
        "time constant", "s", gt=0.0
    )

    def _check(self) -> None:
        if self.settle_time is not None and self.average_window > self.settle_time:
            raise ConfigError(
                "dynamics.average_window must be <= dynamics.settle_time (the readout averages "
                "the last average_window seconds of the settle window); "
                f"got average_window={self.average_window:g} s, "
                f"settle_time={self.settle_time:g} s"
            )

    @property
    def adaptive(self) -> bool:
        """Whether the dynamics run adaptively to the steady state (``settle_time is None``)."""
        return self.settle_time is None


ReadoutConfig = DynamicsConfig
"""Alias of :class:`DynamicsConfig` (the readout timing is part of the dynamics section)."""

IDEAL_CONVERTER_COST_BITS = 8
"""Resolution at which an ideal converter (``bits = 0``) is charged energy: it still converts,
and 8 bits is the resolution of the converters in the realistic preset and in ISAAC."""


@dataclass(frozen=True)
class EnergyConfig(_Section):
    """Energy and time of the chip's conversions and programming pulses (:mod:`analogeq.energy`).

    The dissipation of the crossbar, the leak and the node capacitance follows from the other
    sections (conductances, ``g_leak``, ``C``, ``v_unit``); this section holds what those do not
    determine. A converter of ``b`` bits costs ``fom * 2**b`` per conversion (a Walden-style
    figure of merit taken at the nominal resolution, so the estimate is on the high side of one
    taken with the effective bits); an ideal converter (``bits = 0``) is charged as
    :data:`IDEAL_CONVERTER_COST_BITS` = 8 bits, since it still converts.

    Attributes:
        adc_fom: ADC energy per conversion step [J], ``>= 0``. Default ``6.5e-15``: ISAAC
            (Shafiee et al., ISCA 2016) budgets 16 mW for 8 ADCs of 8 bits at 1.2 GS/s, i.e.
            1.67 pJ per conversion (its ADC is Kull et al., ISSCC 2013, a 3.1 mW 8-bit 1.2 GS/s
            SAR ADC in 32 nm SOI), / 2**8 = 6.5 fJ per step. Murmann's ADC Performance Survey
            (ISSCC/VLSI 1997-2022) puts GS/s designs at tens of fJ per effective step and the
            best slow SAR ADCs below 1 fJ, so this is a mid-range number.
        adc_time: time of one ADC conversion [s], ``> 0``. Default ``8.33e-10`` (1 / 1.2 GS/s,
            the same ADC).
        adc_share: read-out lines of one neuron layer multiplexed onto one ADC, ``>= 1``; a layer
            of ``n`` neurons has ``ceil(n / adc_share)`` ADCs and layers convert in parallel.
            Default ``128``: ISAAC shares one ADC among the 128 bit lines of a crossbar.
        dac_fom: DAC energy per conversion step [J], ``>= 0``. Default ``1.33e-15`` (order of
            magnitude): a binary-weighted capacitive DAC switches on average ``1.33 * 2**b``
            unit capacitors' worth of ``C_u V^2`` per conversion (Saberi et al., IEEE TCAS-I 58,
            2011, conventional switching; 1363 ``C_u V^2`` at 10 bits), here with
            ``C_u = 1 fF`` and ``V = 1 V`` (design choice). The power the DAC delivers into the
            crossbar is counted in the crossbar read energy, not here.
        dac_time: time of one DAC conversion [s], ``> 0``; the DACs of a phase convert in
            parallel. Default ``1e-9`` (order of magnitude, design choice: the same ~1 ns scale
            as the ADC conversion).
        pulse_energy: energy of one programming pulse [J], ``>= 0``. Default ``2e-12`` (order of
            magnitude): NeuroSim's write energy ``V_w^2 G t_w`` per pulse (its 1T1R rule,
            without the wire charging) with its IdealDevice pulse ``V_w = 2 V``,
            ``t_w = 10 ns`` on a device in mid range, ``G = 50 uS`` of the 0-100 uS window.
            NeuroSim's Ag:a-Si device (3.2 V, 300 us, 38.5 nS) gives 1.2e-10 J.
        pulse_width: duration of one programming pulse [s], ``> 0``. Default ``1e-8`` (10 ns,
            NeuroSim IdealDevice; its Ag:a-Si device takes 300 us).
    """

    _section: ClassVar[str] = "energy"

    adc_fom: float = _real(6.5e-15, "ADC energy per conversion step, E = adc_fom 2^bits", "J",
                           ge=0.0)
    adc_time: float = _real(8.33e-10, "time of one ADC conversion", "s", gt=0.0)
    adc_share: int = _int(128, "read-out lines of a layer sharing one ADC", lambda n: n >= 1,
                          "an integer >= 1")
    dac_fom: float = _real(1.33e-15, "DAC energy per conversion step, E = dac_fom 2^bits", "J",
                           ge=0.0)
    dac_time: float = _real(1e-9, "time of one DAC conversion", "s", gt=0.0)
    pulse_energy: float = _real(2e-12, "energy of one programming pulse", "J", ge=0.0)
    pulse_width: float = _real(1e-8, "duration of one programming pulse", "s", gt=0.0)

    @staticmethod
    def cost_bits(bits: int) -> int:
        """Resolution a conversion is charged at: ``bits``, or
        :data:`IDEAL_CONVERTER_COST_BITS` for an ideal converter (``bits = 0``)."""
        return bits if bits > 0 else IDEAL_CONVERTER_COST_BITS

    def adc_energy(self, bits: int) -> float:
        """Energy of one ADC conversion at ``bits`` resolution [J]."""
        return self.adc_fom * 2.0 ** self.cost_bits(bits)

    def dac_energy(self, bits: int) -> float:
        """Energy of one DAC conversion at ``bits`` resolution [J]."""
        return self.dac_fom * 2.0 ** self.cost_bits(bits)

SECTIONS: dict[str, type[_Section]] = {
    "crossbar": CrossbarConfig,
    "neuron": NeuronConfig,
    "periphery": PeripheryConfig,
    "noise": NoiseConfig,
    "dynamics": DynamicsConfig,
    "energy": EnergyConfig,
}
"""Section name -> section class, in the order of :class:`ChipConfig`'s fields."""


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


def device_models_dir() -> Path:
    """Directory holding the preset TOML files: ``$ANALOGEQ_DEVICE_MODELS`` if set, else the
    repository's ``device_models/`` (next to the ``analogeq`` package)."""
    env = os.environ.get(DEVICE_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "device_models"


def available_presets() -> list[str]:
    """Sorted names of the presets (``*.toml`` stems) in :func:`device_models_dir`."""
    d = device_models_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.toml") if p.is_file())


# --------------------------------------------------------------------------------------------
# The chip
# --------------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip repr is valid TOML for finite floats
    raise ConfigError(f"cannot write {_fmt(value)} to TOML")


@dataclass(frozen=True)
class ChipConfig:
    """Validated hardware description of an analog chip, in SI units.

    Attributes:
        crossbar: :class:`CrossbarConfig`.
        neuron: :class:`NeuronConfig`.
        periphery: :class:`PeripheryConfig`.
        noise: :class:`NoiseConfig`.
        dynamics: :class:`DynamicsConfig`.
        energy: :class:`EnergyConfig`.

    Each defaults to its ideal section; a section may also be given as a mapping of its fields.
    Instances are immutable and hashable (usable as static arguments).
    """

    crossbar: CrossbarConfig = field(default_factory=CrossbarConfig)
    neuron: NeuronConfig = field(default_factory=NeuronConfig)
    periphery: PeripheryConfig = field(default_factory=PeripheryConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    energy: EnergyConfig = field(default_factory=EnergyConfig)

    def __post_init__(self) -> None:
        for name, cls in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, cls.from_dict(value))
            elif not isinstance(value, cls):
                raise ConfigError(
                    f"{name} must be a {cls.__name__} or a mapping of its fields "
                    f"({', '.join(cls.field_names())}); got {_fmt(value)}"
                )

    # ---- derived quantities -----------------------------------------------------------------

    @property
    def tau(self) -> float:
        """Neuron time constant ``C / g_leak`` [s]."""
        return self.neuron.tau

    # ---- construction -----------------------------------------------------------------------

    @classmethod
    def ideal(cls) -> ChipConfig:
        """The ideal chip: every non-ideality off (all defaults)."""
        return cls()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ChipConfig:
        """Build from ``{section: {field: value}}`` (SI units, e.g. parsed TOML). Missing
        sections / fields take their ideal defaults; unknown sections or keys raise
        :class:`ConfigError` naming them and the allowed names."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"chip config must be a mapping of sections; got {_fmt(d)}")
        for name in d:
            if name not in SECTIONS:
                raise ConfigError(
                    f"unknown section [{name}]; allowed sections: {', '.join(SECTIONS)}"
                )
        return cls(**{name: SECTIONS[name].from_dict(d[name]) for name in d})

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> ChipConfig:
        """Load a TOML file (one table per section, SI units). Errors name the file."""
        path = Path(path)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e

    @classmethod
    def preset(cls, name: str) -> ChipConfig:
        """Load the named preset ``<device_models_dir()>/<name>.toml`` (see
        :func:`device_models_dir`; ``$ANALOGEQ_DEVICE_MODELS`` overrides the directory).
        Unknown names raise :class:`ConfigError` listing the available presets."""
        if not isinstance(name, str):
            raise ConfigError(f"preset name must be a str; got {_fmt(name)}")
        stem = name[:-5] if name.endswith(".toml") else name
        directory = device_models_dir()
        available = available_presets()
        if stem not in available:
            raise ConfigError(
                f"unknown preset {name!r}; available presets in {directory}: "
                f"{', '.join(available) if available else '(none)'}"
            )
        return cls.from_toml(directory / f"{stem}.toml")

    # ---- export -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {field: value}}`` in SI units; ``None`` / derived fields are omitted (see
        :meth:`CrossbarConfig.to_dict`), so ``ChipConfig.from_dict(cfg.to_dict()) == cfg``."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def to_toml(self, path: str | os.PathLike | None = None) -> str:
        """TOML text of :meth:`to_dict` with unit comments; written to ``path`` if given.
        ``ChipConfig.from_toml(path) == cfg``."""
        lines = [
            "# analogeq chip configuration, SI units (written by ChipConfig.to_toml).",
            "# Omitted optional fields take their defaults (e.g. crossbar.G_ref = G_max - G_min,",
            "# dynamics.settle_time = adaptive).",
        ]
        for name, cls in SECTIONS.items():
            lines += ["", f"[{name}]"]
            for key, value in getattr(self, name).to_dict().items():
                spec = cls.spec(key)
                unit = f"[{spec.unit}] " if spec.unit else ""
                lines.append(f"{key} = {_toml_value(value)}  # {unit}{spec.doc}")
        text = "\n".join(lines) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    # ---- variants ---------------------------------------------------------------------------

    def replace(self, **changes: Any) -> ChipConfig:
        """A new, validated config with ``changes`` applied, for sweeps.

        Keys are dotted ``"section.field"`` (``cfg.replace(**{"crossbar.n_levels": 16})``) or a
        bare section name whose value is a section instance (replaces it) or a mapping of
        fields (updates them). ``crossbar.G_ref`` left at its default is re-derived from the new
        ``G_min`` / ``G_max``. Unknown keys and invalid values raise :class:`ConfigError`.
        """
        d: dict[str, dict[str, Any]] = self.to_dict()
        for key, value in changes.items():
            section, dot, name = key.partition(".")
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown config field {key!r}; keys are 'section.field' with sections "
                    f"{', '.join(SECTIONS)}"
                )
            cls = SECTIONS[section]
            if not dot:
                if isinstance(value, cls):
                    d[section] = value.to_dict()
                elif isinstance(value, Mapping):
                    d[section].update(value)
                else:
                    raise ConfigError(
                        f"{section} must be replaced by a {cls.__name__} or a mapping of its "
                        f"fields; got {_fmt(value)}"
                    )
                continue
            if name not in cls.field_names():
                raise ConfigError(
                    f"unknown key '{key}' in section [{section}]; allowed keys: "
                    f"{', '.join(cls.field_names())}"
                )
            d[section][name] = value
        return ChipConfig.from_dict(d)
