"""Validated hardware description of an analog in-memory chip, in SI units.

A :class:`ChipConfig` is plain, immutable, hashable configuration data (frozen dataclasses of
Python numbers): one section per block of the chip (:mod:`analogeq.hardware.sections`: ``crossbar``,
``neuron``, ``periphery``, ``noise``, ``dynamics``, ``energy``, and ``circuits`` for the
equilibrium-transformer block's own circuits), validated by the one spec base of
:mod:`analogeq.spec`.

Every field has a default; the defaults together are the *ideal* chip (every non-ideality off;
the ``energy`` section holds literature costs, the same in every preset), so
``ChipConfig() == ChipConfig.ideal() == ChipConfig.preset("ideal")``.

Configs come from dicts (:meth:`ChipConfig.from_dict`), TOML files
(:meth:`ChipConfig.from_toml`) or named presets (:meth:`ChipConfig.preset`): the TOML files of
the repository's ``device_models/`` folder, installed with the package as
``analogeq.device_models``. :meth:`ChipConfig.replace` makes validated variants for sweeps
(``cfg.replace(**{"crossbar.n_levels": 16})``). Invalid values raise :class:`ConfigError` (a
``ValueError``) naming the file, the dotted field and what is allowed.

A config is also a JAX pytree (registered below and in :mod:`analogeq.hardware.sections`): its
numeric hardware values (levels, noise amplitudes, temperature, converter ranges, conductances;
:data:`~analogeq.hardware.sections.TRACED_FIELDS`) are its leaves and everything else, with
whether each leaf is zero, is static. Passed into a compiled function as arrays
(:func:`analogeq.evaluation.traced`), those values are traced arguments: one program serves a
sweep over them, and only a changed switch or shape compiles again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from analogeq.hardware.sections import (
    IDEAL_CONVERTER_COST_BITS,
    MAX_LEVELS,
    MAX_TEMPERATURE,
    SECTIONS,
    CircuitConfig,
    CrossbarConfig,
    DynamicsConfig,
    EnergyConfig,
    NeuronConfig,
    NoiseConfig,
    PeripheryConfig,
    ReadoutConfig,
)
from analogeq.package_data import data_dir
from analogeq.spec import ConfigError, Spec, format_value, section

__all__ = [
    "ChipConfig",
    "CircuitConfig",
    "ConfigError",
    "CrossbarConfig",
    "DEVICE_MODELS_ENV",
    "DynamicsConfig",
    "EnergyConfig",
    "IDEAL_CONVERTER_COST_BITS",
    "MAX_LEVELS",
    "MAX_SDE_STEPS",
    "MAX_SETTLE_TAU",
    "MAX_TEMPERATURE",
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

MAX_SETTLE_TAU = 1e5
"""Longest fixed settle window, and slowest amplifier pole, in units of the node time constant
``tau``: a first-order node is settled to ``e^-100000`` long before, so a longer window is a unit
mistake (seconds for nanoseconds) that would only hang the solver."""

MAX_SDE_STEPS = 1_000_000
"""Most fixed steps in one settle window (``settle_time / sde_dt``); beyond it a
single settle of one sample takes minutes, which is a mistaken step, not a simulation."""


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------


def device_models_dir() -> Path:
    """Directory holding the chip preset TOML files: ``$ANALOGEQ_DEVICE_MODELS`` if set, else
    the ``analogeq.device_models`` package data (the repository's ``device_models/`` folder,
    installed with the package; in a source checkout it is that folder itself)."""
    env = os.environ.get(DEVICE_MODELS_ENV)
    if env:
        return Path(env).expanduser()
    return data_dir("device_models")


def available_presets() -> list[str]:
    """Sorted names of the presets (``*.toml`` stems) in :func:`device_models_dir`."""
    d = device_models_dir()
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.toml") if p.is_file())


# --------------------------------------------------------------------------------------------
# The chip
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChipConfig(Spec):
    """Validated hardware description of an analog chip, in SI units.

    Attributes:
        crossbar: :class:`CrossbarConfig`.
        neuron: :class:`NeuronConfig`.
        periphery: :class:`PeripheryConfig`.
        noise: :class:`NoiseConfig`.
        dynamics: :class:`DynamicsConfig`.
        energy: :class:`EnergyConfig`.
        circuits: :class:`CircuitConfig` (the equilibrium-transformer block's multipliers,
            softmax, normalization and GELU rails; ignored by a layered chip).

    Each defaults to its ideal section; a section may also be given as a mapping of its fields.
    Instances are immutable and hashable (usable as static arguments). Besides each section's
    own bounds, the settle window and the amplifier pole are at most :data:`MAX_SETTLE_TAU`
    node time constants and a noisy settle takes at most :data:`MAX_SDE_STEPS` steps.
    """

    _what: ClassVar[str] = "chip config"
    _header: ClassVar[tuple[str, ...]] = (
        "analogeq chip configuration, SI units (written by ChipConfig.to_toml).",
        "Omitted optional fields take their defaults (e.g. crossbar.G_ref = G_max - G_min,",
        "dynamics.settle_time = adaptive).",
    )

    crossbar: CrossbarConfig = section(CrossbarConfig)
    neuron: NeuronConfig = section(NeuronConfig)
    periphery: PeripheryConfig = section(PeripheryConfig)
    noise: NoiseConfig = section(NoiseConfig)
    dynamics: DynamicsConfig = section(DynamicsConfig)
    energy: EnergyConfig = section(EnergyConfig)
    circuits: CircuitConfig = section(CircuitConfig)

    def _check(self) -> None:
        tau, dyn = self.neuron.tau, self.dynamics
        pole = self.neuron.amp_pole_tau
        if pole > MAX_SETTLE_TAU * tau:
            raise ConfigError(
                f"neuron.amp_pole_tau must be <= {MAX_SETTLE_TAU:g} tau = {MAX_SETTLE_TAU * tau:g} s "
                f"(amplifier pole time constant; tau = C / g_leak = {tau:g} s); got {pole:g}"
            )
        if dyn.settle_time is None:
            return
        if dyn.settle_time > MAX_SETTLE_TAU * tau:
            raise ConfigError(
                f"dynamics.settle_time must be <= {MAX_SETTLE_TAU:g} tau = {MAX_SETTLE_TAU * tau:g} s "
                f"(fixed settle window in seconds; tau = C / g_leak = {tau:g} s); got {dyn.settle_time:g}"
            )
        # Only a given step, or Euler--Maruyama's default of half the fastest time constant (which
        # a fast amplifier pole shrinks), can make a window too many steps; exact-decay's default
        # is a fixed fraction of tau (analogeq.hardware.integrators.DEFAULT_STEP).
        if dyn.sde_dt is not None:
            dt, what, value = dyn.sde_dt, "dynamics.sde_dt", dyn.sde_dt
        elif dyn.integrator == "euler-maruyama":
            dt = 0.5 * (min(tau, pole) if pole > 0 else tau)
            what, value = "neuron.amp_pole_tau (euler-maruyama steps half of it)", pole
        else:
            return
        steps = dyn.settle_time / dt
        if steps > MAX_SDE_STEPS:
            raise ConfigError(
                f"{what}: a settle would take {steps:.3g} steps (dynamics.settle_time / step "
                f"= {dyn.settle_time:g} s / {dt:g} s), more than {MAX_SDE_STEPS:,}; use a step "
                f">= {dyn.settle_time / MAX_SDE_STEPS:g} s or a shorter settle window; got {value:g}"
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
    def preset(cls, name: str) -> ChipConfig:
        """Load the named preset ``<device_models_dir()>/<name>.toml`` (see
        :func:`device_models_dir`; ``$ANALOGEQ_DEVICE_MODELS`` overrides the directory).
        Unknown names raise :class:`ConfigError` listing the available presets."""
        if not isinstance(name, str):
            raise ConfigError(f"preset name must be a str; got {format_value(name)}")
        stem = name[:-5] if name.endswith(".toml") else name
        directory = device_models_dir()
        available = available_presets()
        if stem not in available:
            raise ConfigError(
                f"unknown preset {name!r}; available presets in {directory}: "
                f"{', '.join(available) if available else '(none)'}"
            )
        return cls.from_toml(directory / f"{stem}.toml")

    @classmethod
    def load(cls, spec: str | os.PathLike | ChipConfig) -> ChipConfig:
        """A config from a :class:`ChipConfig` (returned as is), a TOML file path or a preset name
        (what ``--hardware`` accepts)."""
        if isinstance(spec, ChipConfig):
            return spec
        if str(spec).endswith(".toml") or Path(spec).exists():
            return cls.from_toml(spec)
        return cls.preset(str(spec))


# --------------------------------------------------------------------------------------------
# Traced hardware numbers
# --------------------------------------------------------------------------------------------


def _register() -> None:
    import jax

    names = ChipConfig.field_names()

    def flatten(cfg):
        return tuple(getattr(cfg, n) for n in names), None

    def unflatten(aux, sections):
        obj = object.__new__(ChipConfig)  # no validation: the sections may hold tracers
        for n, s in zip(names, sections):
            object.__setattr__(obj, n, s)
        return obj

    jax.tree_util.register_pytree_node(ChipConfig, flatten, unflatten)


_register()

