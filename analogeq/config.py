"""Training configuration: one validated, immutable record, loadable from TOML.

The CLI builds its ``train`` options from these fields, so the Python API and the command
line take the same names (``--ep-kind`` is ``ep_kind``).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from analogeq.costs import COSTS
from analogeq.ep.estimators import CORRECTIONS, KINDS

MODELS = ("leaky", "hopfield", "eqtransformer")
SEQUENCE_TASKS = ("parity", "charlm")
ESTIMATORS = ("ep", "implicit", "bptt", "energy-ep")
OPTIMIZERS = ("adam", "sgd")
DTYPES = ("float32", "float64")
UPDATES = ("deterministic", "stochastic", "mixed", "tiki-taka")


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(allowed)}")


def _positive(name, value, unit=""):
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0{unit}; got {value!r}")


def _count(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (dimensionless; time in units of ``tau``).

    Model: ``model`` (``leaky`` | ``hopfield``), ``hidden`` layer sizes, initial feedback
    ``asymmetry`` in [0, 1], weight ``gain``. Loss: ``cost``. Gradient: ``estimator``
    (``ep`` | ``implicit`` | ``bptt`` | ``energy-ep``) with ``ep_kind``, ``beta``,
    ``n_points`` and ``correction``. Relaxation: Euler step ``eps``, ``T1`` free and ``T2``
    nudged steps, residual ``tol``, ``stop_at_tol``. Optimizer: ``optimizer``, ``lr``,
    ``batch_size``, ``steps``. Book-keeping: ``seed``, ``eval_every``, ``probe_every`` (EP vs
    implicit-adjoint gradient cosine), ``checkpoint_every``, ``gate`` (leave unconverged
    samples out of the update), ``dtype``. Realization: ``hardware`` is empty for the digital
    emulator, else a preset name from ``device_models/`` or a TOML path: the model is realized
    on that chip (instance drawn from ``chip_seed``) and trained physically; ``device`` (a pulsed
    device preset) makes the updates pulses into that device, turned into pulses by ``update``.

    Equilibrium transformer (``model = "eqtransformer"``, tasks ``parity`` | ``charlm``, cost
    ``token_cross_entropy``): width ``d_model``, ``n_heads``, ``ffn_mult``, ``damping`` c,
    ``qk_norm``; ``bits`` (parity) or ``seq_len`` and ``text_path`` (charlm); free-phase
    ``refine_steps``; ``t2_chunks`` (hindsight-selected nudged-phase length); stability controls
    ``resreg`` (+ ``resreg_scale``, ``resreg_deadband``), ``jacreg`` (+ ``jacreg_target``,
    ``jacreg_floor``, ``jacreg_max``, ``jacreg_ema``), ``weight_cap``, ``ema``, ``warmup``,
    ``grad_clip`` (see :mod:`analogeq.stability`).
    """

    task: str = "digits"
    model: str = "leaky"
    hidden: tuple[int, ...] = (128,)
    asymmetry: float = 0.5
    gain: float = 0.5
    cost: str = "squared_error"
    estimator: str = "ep"
    ep_kind: str = "centered"
    beta: float = 0.05
    n_points: int = 2
    correction: str = "asym"
    eps: float = 0.5
    T1: int = 60
    T2: int = 20
    tol: float = 1e-3
    stop_at_tol: bool = False
    optimizer: str = "adam"
    lr: float = 2e-3
    batch_size: int = 32
    steps: int = 1500
    seed: int = 0
    eval_every: int = 100
    probe_every: int = 100
    checkpoint_every: int = 500
    gate: bool = True
    dtype: str = "float32"
    hardware: str = ""
    chip_seed: int = 0
    device: str = ""
    update: str = "deterministic"
    d_model: int = 64
    n_heads: int = 4
    ffn_mult: int = 4
    damping: float = 1.0
    qk_norm: bool = True
    bits: int = 8
    seq_len: int = 64
    text_path: str = "../shared/data/tinyshakespeare.txt"
    refine_steps: int = 0
    t2_chunks: int = 1
    resreg: float = 0.0
    resreg_scale: float = 2e-2
    resreg_deadband: float = 0.0
    jacreg: float = 0.0
    jacreg_target: float = 1e-3
    jacreg_floor: float = 0.1
    jacreg_max: float = 10.0
    jacreg_ema: float = 0.9
    weight_cap: float = 0.0
    ema: float = 0.0
    warmup: int = 0
    grad_clip: float = 0.0

    def __post_init__(self):
        from analogeq.data import TASKS

        object.__setattr__(self, "hidden", tuple(self.hidden))
        _choice("task", self.task, TASKS)
        _choice("model", self.model, MODELS)
        _choice("cost", self.cost, COSTS)
        _choice("estimator", self.estimator, ESTIMATORS)
        _choice("ep_kind", self.ep_kind, KINDS)
        _choice("correction", self.correction, CORRECTIONS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("dtype", self.dtype, DTYPES)
        _choice("update", self.update, UPDATES)
        for n in self.hidden:
            _count("hidden (each layer size)", n)
        if not 0.0 <= self.asymmetry <= 1.0:
            raise ValueError(f"asymmetry must lie in [0, 1]; got {self.asymmetry!r}")
        for name in ("gain", "beta", "eps", "tol", "lr"):
            _positive(name, getattr(self, name))
        _count("n_points", self.n_points, 2 if self.ep_kind == "holomorphic" else 1)
        for name in ("T1", "T2", "batch_size", "steps", "eval_every", "probe_every", "checkpoint_every"):
            _count(name, getattr(self, name))
        _count("seed", self.seed, 0)
        _count("chip_seed", self.chip_seed, 0)
        if self.hardware and self.ep_kind == "holomorphic" and self.estimator == "ep":
            raise ValueError("ep_kind 'holomorphic' needs complex nudges, which a chip cannot apply; "
                             "use 'centered' or 'one-sided' with hardware")
        if self.hardware and self.model != "leaky":
            raise ValueError(f"hardware realizes the 'leaky' model only; got model {self.model!r}")
        if self.device and self.update in ("stochastic", "tiki-taka") and self.optimizer != "sgd":
            raise ValueError(f"update {self.update!r} is SGD by construction (rank-one pulse "
                             "coincidence); set optimizer 'sgd' (--optimizer sgd)")
        if self.device and not self.hardware:
            raise ValueError("device (a pulsed device preset) needs hardware (a chip preset) to live on; "
                             "set --hardware, e.g. --hardware realistic")

        self._check_transformer()

    def _check_transformer(self):
        for name in ("d_model", "n_heads", "ffn_mult", "seq_len", "t2_chunks"):
            _count(name, getattr(self, name))
        _count("bits", self.bits, 2)
        if self.bits > 16:
            raise ValueError(f"bits must be an integer in [2, 16]; got {self.bits!r}")
        for name in ("refine_steps", "warmup"):
            _count(name, getattr(self, name), 0)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("damping", "resreg", "resreg_deadband", "jacreg", "weight_cap", "grad_clip"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0 (0 turns it off where it is a "
                                 f"control); got {v!r}")
        for name in ("resreg_scale", "jacreg_target", "jacreg_floor", "jacreg_max"):
            _positive(name, getattr(self, name))
        if self.jacreg_floor > self.jacreg_max:
            raise ValueError(f"jacreg_floor ({self.jacreg_floor}) must be <= jacreg_max ({self.jacreg_max})")
        for name in ("jacreg_ema", "ema"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise ValueError(f"{name} must lie in [0, 1) (an EMA decay; 0 turns the EMA off); got {v!r}")
        if not self.text_path:
            raise ValueError("text_path must name a plain-text file for task 'charlm'")
        if self.model == "eqtransformer":
            if self.task not in SEQUENCE_TASKS:
                raise ValueError(f"model 'eqtransformer' trains on a sequence task; choose task from "
                                 f"{list(SEQUENCE_TASKS)}, got {self.task!r}")
            if self.cost != "token_cross_entropy":
                raise ValueError(f"model 'eqtransformer' needs cost 'token_cross_entropy' (per-position "
                                 f"cross-entropy on logits (T, V)); got {self.cost!r}")
            if self.estimator == "energy-ep":
                raise ValueError("estimator 'energy-ep' needs an energy; the eqtransformer is not conservative, "
                                 "use 'ep' (AsymEP), 'implicit' or 'bptt'")
        elif self.task in SEQUENCE_TASKS:
            raise ValueError(f"task {self.task!r} is a sequence task; it needs model 'eqtransformer'")
        if self.t2_chunks > 1 and self.T2 < self.t2_chunks:
            raise ValueError(f"T2 ({self.T2}) must be >= t2_chunks ({self.t2_chunks})")

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; allowed: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_toml(cls, path: str | Path) -> "TrainConfig":
        """Read a TOML file of top-level ``key = value`` pairs (or a ``[train]`` table)."""
        with open(path, "rb") as f:
            d = tomllib.load(f)
        return cls.from_dict(d.get("train", d))

    def to_toml(self) -> str:
        return "".join(f"{k} = {_toml_value(v)}\n" for k, v in self.to_dict().items())


FIELD_HELP = {
    "task": "data set (digits: scikit-learn's 8x8 digits, fixed stratified split)",
    "model": "leaky (F = -s + W rho(s) + b, independent feedback) or hopfield (energy-based)",
    "hidden": "hidden layer sizes, e.g. --hidden 128 or --hidden 256 128",
    "asymmetry": "initial feedback asymmetry in [0, 1] (0: B = W^T, 1: independent)",
    "gain": "weight initialization scale (entries N(0, gain^2 / fan_in))",
    "cost": "squared_error or cross_entropy on the output neurons",
    "estimator": "ep (force-form EP), implicit (exact adjoint), bptt, energy-ep (classic, hopfield)",
    "ep_kind": "one-sided, centered or holomorphic",
    "beta": "nudge strength (radius for holomorphic), > 0",
    "n_points": "number of complex nudges N for holomorphic EP (>= 2)",
    "correction": "none, asym (AsymEP) or asym-tracking (AsymEP linearized at the nudged states' mean)",
    "eps": "Euler step of the emulator in units of tau, > 0",
    "T1": "free-phase Euler steps (the maximum with --stop-at-tol)",
    "T2": "nudged-phase Euler steps (the maximum with --stop-at-tol)",
    "tol": "relative residual |F|/|s| below which a relaxation counts as converged",
    "stop_at_tol": "stop relaxing once the residual is below --tol",
    "optimizer": "adam or sgd",
    "lr": "learning rate",
    "batch_size": "samples per training step",
    "steps": "training steps",
    "seed": "seed of the model initialization and the batch order",
    "eval_every": "steps between test-set evaluations",
    "probe_every": "steps between gradient probes against the implicit adjoint",
    "checkpoint_every": "steps between checkpoints",
    "gate": "leave samples whose free phase did not converge out of the update",
    "dtype": "float32 (as the research emulator runs) or float64",
    "hardware": "train on a simulated chip: a preset from device_models/ or a TOML file",
    "chip_seed": "seed of the chip instance (mismatch, programming error)",
    "device": "program the chip's conductances with pulses into this device preset (analogeq devices "
              "list) or TOML file; empty: quantized writes to the chip's levels",
    "update": "how updates become pulses with --device: deterministic, stochastic (pulse "
              "coincidence), mixed (digital accumulator) or tiki-taka (fast + slow array)",
    "d_model": "eqtransformer: width d of the token states z (T, d)",
    "n_heads": "eqtransformer: attention heads H (divides d_model)",
    "ffn_mult": "eqtransformer: FFN hidden width as a multiple of d_model (4 in the recipe)",
    "damping": "eqtransformer: damping c in F = -(z - x_in) + Attn + FFN - c z, >= 0",
    "qk_norm": "eqtransformer: RMS-normalize each head's queries and keys",
    "bits": "parity task: string length L in [2, 16] (running parity scored at every position in "
            "training, the full L-bit parity at the last position in validation)",
    "seq_len": "charlm task: context length T in characters",
    "text_path": "charlm task: plain-text file (relative paths resolve against the repository root)",
    "refine_steps": "extra free-phase Euler steps at most after T1, taken while the residual exceeds --tol",
    "t2_chunks": "> 1: relax the nudged phase in this many chunks of T2 // t2_chunks steps and keep the "
                 "contrast whose change between chunks is smallest (hindsight selection)",
    "resreg": "weight of the residual penalty |eps F(z_T1)|^2 / |z_T1|^2 (z held fixed); 0: off",
    "resreg_scale": "the resreg weight is scaled by min(1, res / resreg_scale), res the step residual",
    "resreg_deadband": "no residual penalty while the step residual |eps F| / |z| is at or below this",
    "jacreg": "initial weight lambda of the Hutchinson penalty |J_nc v|^2 / |v|^2; 0: off",
    "jacreg_target": "step residual the jacreg controller steers to: lambda *= (res_ema / target)^0.3",
    "jacreg_floor": "lower clip of the jacreg weight lambda",
    "jacreg_max": "upper clip of the jacreg weight lambda",
    "jacreg_ema": "EMA decay of the step residual the jacreg controller reads, in [0, 1)",
    "weight_cap": "cap |W|_F <= cap sqrt(min(shape)) on attention/FFN matrices after each update; 0: off",
    "ema": "decay of the parameter EMA used for evaluation, in [0, 1); 0: off",
    "warmup": "linear learning-rate warmup steps (0: none)",
    "grad_clip": "clip the global gradient norm to this (0: no clipping)",
}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)
