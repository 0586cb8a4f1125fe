"""Training configuration: one validated, immutable record in six sections, loadable from TOML.

The fields are declared in sections, each a frozen dataclass on the spec base of
:mod:`analogeq.spec` (help text, type and bounds in the field metadata):

=================  ==========================================================================
section            fields
=================  ==========================================================================
``[model]``        :class:`ModelOptions`: the network (``model``, ``hidden``, ``asymmetry``,
                   ``gain``; the eqtransformer's ``d_model``, ``n_heads``, ...)
``[task]``         :class:`TaskOptions`: data set and loss (``task``, ``cost``, ``bits``, ...)
``[estimator]``    :class:`EstimatorOptions`: gradient estimator and relaxation (``estimator``,
                   ``ep_kind``, ``beta``, ``eps``, ``T1``, ``T2``, ``tol``, ...)
``[optimizer]``    :class:`OptimizerOptions`: ``optimizer``, ``lr``, ``batch_size``, ``steps``,
                   ``epochs``, ``warmup``, ``grad_clip``, ``ema``
``[stability]``    :class:`StabilityOptions`: residual and Jacobian penalties, weight cap
``[run]``          :class:`RunOptions`: seeds, book-keeping, dtype, chip and device
=================  ==========================================================================

:class:`TrainConfig` is the union of the six sections, so every field keeps one flat name:
``cfg.lr``, ``TrainConfig(lr=...)``, ``cfg.replace(lr=...)`` and the CLI's ``--lr`` (built from
:meth:`TrainConfig.options`). :meth:`TrainConfig.section` returns one section.
:meth:`TrainConfig.to_toml` writes one TOML table per section; :meth:`TrainConfig.from_toml`
reads those tables, the flat ``key = value`` files of earlier versions and a ``[train]`` table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from analogeq.costs import COSTS
from analogeq.ep.estimators import CORRECTIONS, KINDS
from analogeq.spec import (
    ConfigError,
    Spec,
    boolean,
    choice,
    format_value,
    integer,
    ints,
    real,
    text,
)

__all__ = [
    "DTYPES",
    "ESTIMATORS",
    "EstimatorOptions",
    "MAX_RELAX_STEPS",
    "MAX_WIDTH",
    "MODELS",
    "ModelOptions",
    "OPTIMIZERS",
    "OptimizerOptions",
    "RunOptions",
    "SECTIONS",
    "SEQUENCE_TASKS",
    "StabilityOptions",
    "TaskOptions",
    "TrainConfig",
    "UPDATES",
]

MODELS = ("leaky", "hopfield", "eqtransformer")
SEQUENCE_TASKS = ("parity", "charlm")
ESTIMATORS = ("ep", "implicit", "bptt", "energy-ep")
OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "float64")
UPDATES = ("deterministic", "stochastic", "mixed", "tiki-taka")

MAX_RELAX_STEPS = 1_000_000
"""Most Euler steps of one relaxation phase (``T1``, ``T2``, ``refine_steps``): every step is a
full forward pass of the batch, so more is a typo that would only hang the run."""

MAX_WIDTH = 1 << 16
"""Widest layer, sequence, batch or attention width accepted (memory grows with its square)."""

MAX_STEPS = 100_000_000
"""Most training steps (and step intervals)."""

SEED_MAX = 2**32 - 1
"""Largest seed: ``jax.random.PRNGKey`` takes an unsigned 32-bit integer."""


def _tasks() -> tuple[str, ...]:
    from analogeq.data import TASKS  # registry that register_task extends at run time

    return tuple(TASKS)


@dataclass(frozen=True)
class ModelOptions(Spec):
    """``[model]``: the network (dimensionless). The eqtransformer fields are read only with
    ``model = "eqtransformer"``."""

    _section: ClassVar[str] = "model"

    model: str = choice("leaky", "leaky (F = -s + W rho(s) + b, independent feedback), hopfield "
                        "(energy-based) or eqtransformer (equilibrium transformer block)", MODELS)
    hidden: tuple[int, ...] = ints((128,), "hidden layer sizes, e.g. --hidden 128 or --hidden 256 128",
                                   ge=1, le=MAX_WIDTH, max_len=16)
    asymmetry: float = real(0.5, "initial feedback asymmetry (0: B = W^T, 1: independent)", ge=0.0, le=1.0)
    gain: float = real(0.5, "weight initialization scale (entries N(0, gain^2 / fan_in))", gt=0.0)
    d_model: int = integer(64, "eqtransformer: width d of the token states z (T, d)", ge=1, le=MAX_WIDTH)
    n_heads: int = integer(4, "eqtransformer: attention heads H (divides d_model)", ge=1, le=1024)
    ffn_mult: int = integer(4, "eqtransformer: FFN hidden width as a multiple of d_model (4 in the recipe)",
                            ge=1, le=64)
    damping: float = real(1.0, "eqtransformer: damping c in F = -(z - x_in) + Attn + FFN - c z", ge=0.0)
    qk_norm: bool = boolean(True, "eqtransformer: RMS-normalize each head's queries and keys")


@dataclass(frozen=True)
class TaskOptions(Spec):
    """``[task]``: the data set and the loss."""

    _section: ClassVar[str] = "task"

    task: str = choice("digits", "data set (digits: scikit-learn's 8x8 digits, fixed stratified split; "
                       "mnist, fashion-mnist: 28x28 images from --data-dir, 5000 training images held "
                       "out for validation; parity and charlm: sequence tasks of the eqtransformer)", _tasks)
    cost: str = choice("squared_error", "loss on the output neurons: squared_error, cross_entropy, or "
                       "token_cross_entropy (the eqtransformer's)", tuple(COSTS))
    bits: int = integer(8, "parity task: string length L (running parity scored at every position in "
                        "training, the full L-bit parity at the last position in validation)", ge=2, le=16)
    seq_len: int = integer(64, "charlm task: context length T in characters", ge=1, le=MAX_WIDTH)
    text_path: str = text("../shared/data/tinyshakespeare.txt", "charlm task: plain-text file (relative "
                          "paths resolve against the repository root)", nonempty=True)
    data_dir: str = text("", "mnist, fashion-mnist tasks: folder holding the four IDX files "
                         "(train-images-idx3-ubyte, ..., gzip or raw; relative paths resolve against the "
                         "repository root); empty: ../shared/data/mnist for mnist")


@dataclass(frozen=True)
class EstimatorOptions(Spec):
    """``[estimator]``: the gradient estimator and the relaxation (time in units of ``tau``)."""

    _section: ClassVar[str] = "estimator"

    estimator: str = choice("ep", "ep (force-form EP), implicit (exact adjoint), bptt, energy-ep "
                            "(classic, hopfield)", ESTIMATORS)
    ep_kind: str = choice("centered", "one-sided, centered or holomorphic", tuple(KINDS))
    beta: float = real(0.05, "nudge strength (radius for holomorphic)", gt=0.0)
    n_points: int = integer(2, "number of complex nudges N for holomorphic EP (>= 2 there)", ge=1, le=64)
    correction: str = choice("asym", "none, asym (AsymEP) or asym-tracking (AsymEP linearized at the "
                             "nudged states' mean)", tuple(CORRECTIONS))
    eps: float = real(0.5, "Euler step of the emulator in units of tau (explicit Euler on the leak -s "
                      "diverges for eps >= 2)", gt=0.0, lt=2.0)
    T1: int = integer(60, "free-phase Euler steps (the maximum with --stop-at-tol)", ge=1, le=MAX_RELAX_STEPS)
    T2: int = integer(20, "nudged-phase Euler steps (the maximum with --stop-at-tol)", ge=1,
                      le=MAX_RELAX_STEPS)
    tol: float = real(1e-3, "relative residual |F|/|s| below which a relaxation counts as converged",
                      gt=0.0, le=1.0)
    stop_at_tol: bool = boolean(False, "stop relaxing once the residual is below --tol")
    refine_steps: int = integer(0, "extra free-phase Euler steps at most after T1, taken while the "
                                "residual exceeds --tol", ge=0, le=MAX_RELAX_STEPS)
    t2_chunks: int = integer(1, "> 1: relax the nudged phase in this many chunks of T2 // t2_chunks steps "
                             "and keep the contrast whose change between chunks is smallest (hindsight "
                             "selection)", ge=1, le=MAX_RELAX_STEPS)
    gate: bool = boolean(True, "leave samples whose free phase did not converge out of the update")


@dataclass(frozen=True)
class OptimizerOptions(Spec):
    """``[optimizer]``: the parameter update and its schedule."""

    _section: ClassVar[str] = "optimizer"

    optimizer: str = choice("adam", "adam or sgd", OPTIMIZERS)
    lr: float = real(2e-3, "learning rate", gt=0.0)
    batch_size: int = integer(32, "samples per training step", ge=1, le=MAX_WIDTH)
    steps: int = integer(1500, "training steps (ignored when --epochs > 0)", ge=1, le=MAX_STEPS)
    epochs: int = integer(0, "> 0: train this many passes over the training set, i.e. epochs * "
                          "(n_train // batch_size) steps, instead of --steps", ge=0, le=10_000)
    warmup: int = integer(0, "linear learning-rate warmup steps (0: none)", ge=0, le=MAX_STEPS)
    grad_clip: float = real(0.0, "clip the global gradient norm to this (0: no clipping)", ge=0.0)
    ema: float = real(0.0, "decay of the parameter EMA used for evaluation (0: off)", ge=0.0, lt=1.0)


@dataclass(frozen=True)
class StabilityOptions(Spec):
    """``[stability]``: penalties and caps that keep a non-conservative model near a stable fixed
    point (see :mod:`analogeq.stability`); 0 turns each control off."""

    _section: ClassVar[str] = "stability"

    resreg: float = real(0.0, "weight of the residual penalty |eps F(z_T1)|^2 / |z_T1|^2 (z held fixed); "
                         "0: off", ge=0.0)
    resreg_scale: float = real(2e-2, "the resreg weight is scaled by min(1, res / resreg_scale), res the "
                               "step residual", gt=0.0)
    resreg_deadband: float = real(0.0, "no residual penalty while the step residual |eps F| / |z| is at "
                                  "or below this", ge=0.0)
    jacreg: float = real(0.0, "initial weight lambda of the Hutchinson penalty |J_nc v|^2 / |v|^2; 0: off",
                         ge=0.0)
    jacreg_target: float = real(1e-3, "step residual the jacreg controller steers to: lambda *= "
                                "(res_ema / target)^0.3", gt=0.0)
    jacreg_floor: float = real(0.1, "lower clip of the jacreg weight lambda", gt=0.0)
    jacreg_max: float = real(10.0, "upper clip of the jacreg weight lambda", gt=0.0)
    jacreg_ema: float = real(0.9, "EMA decay of the step residual the jacreg controller reads", ge=0.0, lt=1.0)
    weight_cap: float = real(0.0, "cap |W|_F <= cap sqrt(min(shape)) on attention/FFN matrices after each "
                             "update; 0: off", ge=0.0)


@dataclass(frozen=True)
class RunOptions(Spec):
    """``[run]``: seeds, book-keeping, number type, and the chip and device a run lives on."""

    _section: ClassVar[str] = "run"

    seed: int = integer(0, "seed of the model initialization and the batch order", ge=0, le=SEED_MAX)
    eval_every: int = integer(100, "steps between test-set evaluations", ge=1, le=MAX_STEPS)
    probe_every: int = integer(100, "steps between gradient probes against the implicit adjoint",
                               ge=1, le=MAX_STEPS)
    checkpoint_every: int = integer(500, "steps between checkpoints", ge=1, le=MAX_STEPS)
    dtype: str = choice("float32", "float32 (as the research emulator runs) or float64", DTYPES)
    hardware: str = text("", "train on a simulated chip: a preset from device_models/ or a TOML file "
                         "(empty: the digital emulator)")
    chip_seed: int = integer(0, "seed of the chip instance (mismatch, programming error)", ge=0, le=SEED_MAX)
    device: str = text("", "program the chip's conductances with pulses into this device preset "
                       "(analogeq devices list) or TOML file; empty: quantized writes to the chip's levels")
    update: str = choice("deterministic", "how updates become pulses with --device: deterministic, "
                         "stochastic (pulse coincidence), mixed (digital accumulator) or tiki-taka (fast "
                         "+ slow array); without --device: deterministic (each update written with "
                         "stochastic level rounding) or mixed (whole levels from a digital accumulator)",
                         UPDATES)


SECTIONS: dict[str, type[Spec]] = {cls._section: cls for cls in (
    ModelOptions, TaskOptions, EstimatorOptions, OptimizerOptions, StabilityOptions, RunOptions)}
"""TOML table name -> section class, in the order :meth:`TrainConfig.to_toml` writes them."""

_SECTION_OF = {name: sec for sec, cls in SECTIONS.items() for name in cls.field_names()}


# Bases in reverse so that dataclass field order (collected along the reversed MRO) is the
# section order: model, task, estimator, optimizer, stability, run.
@dataclass(frozen=True)
class TrainConfig(RunOptions, StabilityOptions, OptimizerOptions, EstimatorOptions, TaskOptions,
                  ModelOptions):
    """Everything that defines a training run: the union of the sections :class:`ModelOptions`,
    :class:`TaskOptions`, :class:`EstimatorOptions`, :class:`OptimizerOptions`,
    :class:`StabilityOptions` and :class:`RunOptions` under their flat field names
    (dimensionless; time in units of ``tau``).

    Every field is validated on construction (type, finiteness, range, choices, size bounds),
    then the combinations: holomorphic EP needs ``n_points >= 2`` and no chip; a chip realizes
    the ``leaky`` model or the eqtransformer; pulse-coincidence updates are SGD; a device lives
    on a chip; the eqtransformer trains on a sequence task with ``token_cross_entropy``. Errors are one
    :class:`~analogeq.spec.ConfigError` line naming the dotted field (``optimizer.lr``).
    """

    _section: ClassVar[str] = ""
    _what: ClassVar[str] = "training config"
    _header: ClassVar[tuple[str, ...]] = ("analogeq training configuration (written by TrainConfig.to_toml).",)

    @classmethod
    def _path(cls, name: str) -> str:
        return f"{_SECTION_OF[name]}.{name}" if name in _SECTION_OF else name

    def _check(self) -> None:
        if self.ep_kind == "holomorphic" and self.estimator == "ep" and self.n_points < 2:
            raise ConfigError(f"estimator.n_points must be >= 2 for ep_kind 'holomorphic' (complex nudges "
                              f"around a circle); got {self.n_points}")
        if self.hardware and self.ep_kind == "holomorphic" and self.estimator == "ep":
            raise ConfigError("estimator.ep_kind 'holomorphic' needs complex nudges, which a chip cannot "
                              "apply; use 'centered' or 'one-sided' with hardware")
        euler_only = [f"{n} = {getattr(self, n)}" for n, off in (("refine_steps", 0), ("t2_chunks", 1))
                      if getattr(self, n) != off]
        if self.hardware and euler_only:
            raise ConfigError(f"estimator.{euler_only[0].split()[0]}: a chip settles in continuous time and "
                              f"cannot honour the Euler emulator's {', '.join(euler_only)}; leave it at its "
                              "default with hardware")
        if self.hardware and self.model not in ("leaky", "eqtransformer"):
            raise ConfigError(f"hardware realizes the 'leaky' model only, or the 'eqtransformer' block; "
                              f"got model.model {self.model!r}")
        if self.device and self.update in ("stochastic", "tiki-taka") and self.optimizer != "sgd":
            raise ConfigError(f"run.update {self.update!r} is SGD by construction (rank-one pulse "
                              "coincidence); set optimizer 'sgd' (--optimizer sgd)")
        if self.device and not self.hardware:
            raise ConfigError("run.device (a pulsed device preset) needs hardware (a chip preset) to live "
                              "on; set --hardware, e.g. --hardware realistic")
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model ({self.d_model}) must be divisible by model.n_heads "
                              f"({self.n_heads})")
        if self.jacreg_floor > self.jacreg_max:
            raise ConfigError(f"stability.jacreg_floor ({self.jacreg_floor}) must be <= "
                              f"stability.jacreg_max ({self.jacreg_max})")
        if self.model == "eqtransformer":
            if self.task not in SEQUENCE_TASKS:
                raise ConfigError(f"model 'eqtransformer' trains on a sequence task; choose task from "
                                  f"{list(SEQUENCE_TASKS)}, got {self.task!r}")
            if self.cost != "token_cross_entropy":
                raise ConfigError(f"model 'eqtransformer' needs cost 'token_cross_entropy' (per-position "
                                  f"cross-entropy on logits (T, V)); got {self.cost!r}")
            if self.estimator == "energy-ep":
                raise ConfigError("estimator 'energy-ep' needs an energy; the eqtransformer is not "
                                  "conservative, use 'ep' (AsymEP), 'implicit' or 'bptt'")
        elif self.task in SEQUENCE_TASKS:
            raise ConfigError(f"task {self.task!r} is a sequence task; it needs model 'eqtransformer'")
        if self.t2_chunks > 1 and self.T2 < self.t2_chunks:
            raise ConfigError(f"estimator.T2 ({self.T2}) must be >= estimator.t2_chunks ({self.t2_chunks})")

    # ---- sections ----------------------------------------------------------------------------

    def section(self, name: str) -> Spec:
        """The section ``name`` (``"model"``, ``"task"``, ...) of this config."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown section {name!r}; sections: {', '.join(SECTIONS)}")
        cls = SECTIONS[name]
        return cls(**{k: getattr(self, k) for k in cls.field_names()})

    @classmethod
    def from_sections(cls, **sections: Spec | Mapping[str, Any]) -> TrainConfig:
        """Build from section instances or mappings: ``TrainConfig.from_sections(optimizer=
        OptimizerOptions(lr=1e-3))``; missing sections take their defaults."""
        return cls.from_dict({k: v.to_dict() if isinstance(v, Spec) else v for k, v in sections.items()})

    # ---- dicts and files ---------------------------------------------------------------------

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (flat names), validated again."""
        unknown = sorted(set(changes) - set(_SECTION_OF))
        if unknown:
            raise ConfigError(f"unknown training option(s) {unknown}; allowed: {sorted(_SECTION_OF)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Flat ``{field: value}`` (lists for tuples), e.g. for JSON and hashing."""
        return {name: list(v) if isinstance(v := getattr(self, name), tuple) else v for name in _SECTION_OF}

    def to_sections(self) -> dict[str, dict[str, Any]]:
        """``{section: {field: value}}``, the layout of :meth:`to_toml`."""
        return {name: self.section(name).to_dict() for name in SECTIONS}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping of flat ``field: value`` pairs, of ``section: {field: value}``
        tables, a mix of both, or one ``train`` table holding either (earlier versions' layout).
        Unknown keys and tables, a key given twice and keys beside a ``train`` table raise
        :class:`ConfigError` naming them."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a training config must be a mapping of options or [section] tables; "
                              f"got {format_value(d)}")
        if "train" in d:
            others = sorted(set(d) - {"train"})
            if others:
                raise ConfigError(f"keys beside the [train] table: {others}; put every option in [train] "
                                  "or use the [model], [task], ... tables without [train]")
            if not isinstance(d["train"], Mapping):
                raise ConfigError(f"[train] must be a table of training options; got {format_value(d['train'])}")
            return cls.from_dict(d["train"])
        flat: dict[str, Any] = {}
        for key, value in d.items():
            if key in SECTIONS and isinstance(value, Mapping):
                allowed = SECTIONS[key].field_names()
                for k, v in value.items():
                    if k not in allowed:
                        home = f" ({k} belongs in [{_SECTION_OF[k]}])" if k in _SECTION_OF else ""
                        raise ConfigError(f"unknown key '{key}.{k}' in section [{key}]{home}; allowed "
                                          f"keys: {', '.join(allowed)}")
                    cls._put(flat, k, v)
            elif key in _SECTION_OF:
                cls._put(flat, key, value)
            elif isinstance(value, Mapping):
                raise ConfigError(f"unknown section [{key}]; allowed sections: {', '.join(SECTIONS)}")
            else:
                raise ConfigError(f"unknown training option(s) ['{key}']; allowed: {sorted(_SECTION_OF)}")
        return cls(**flat)

    @staticmethod
    def _put(flat: dict[str, Any], key: str, value: Any) -> None:
        if key in flat:
            raise ConfigError(f"{_SECTION_OF[key]}.{key} is given twice (flat and in [{_SECTION_OF[key]}])")
        flat[key] = value

    def toml_lines(self) -> list[str]:
        """One TOML table per section (the flat fields grouped back into their sections)."""
        lines: list[str] = []
        for name in SECTIONS:
            lines += ["", f"[{name}]"] + self.section(name).toml_lines()
        return lines
