"""A sweep: a base training run and chip, axes to vary (a grid and/or random samples), and the
replicates (training seeds x chip instances) run at every point.

``sweep.toml``::

    [sweep]
    name = "levels-vs-readout"
    seeds = [0]               # training seeds (TrainConfig.seed) per point
    chips = [0, 1, 2]         # chip instances (TrainConfig.chip_seed) per point; or chips = 3

    [train]                   # the base run: TrainConfig fields
    hardware = "realistic"
    steps = 200

    [chip]                    # overrides of the base chip, "section.field" = value
    "crossbar.read_noise" = 0.02

    [grid]                    # every combination of these values
    "crossbar.n_levels" = [8, 16, 32, 64]
    "dynamics.settle_time" = [1e-7, 4e-7]

    [random]                  # plus `samples` random draws (crossed with the grid)
    samples = 8
    seed = 0
    "neuron.offset_sigma" = { log_uniform = [1e-4, 1e-2] }
    lr = { uniform = [1e-3, 5e-3] }

An axis named ``section.field`` (a :class:`~analogeq.hardware.config.ChipConfig` section) varies
the chip; a bare name varies a :class:`~analogeq.config.TrainConfig` field. Every run is
identified by a hash of its full, resolved configuration (training fields, every chip field,
the pulsed device's parameters), so a cached result is reused only for an identical run.

The chip instances of one point and seed are trained together, as one K-chip run
(:func:`analogeq.fleet.train_chips`: one vmapped step for all chips); each still gets its own
row and cache entry.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from analogeq.config import TrainConfig
from analogeq.hardware.config import SECTIONS, ChipConfig
from analogeq.spec import ConfigError, Spec, format_value, ints, read_toml, text

TABLES = ("sweep", "train", "chip", "grid", "random")
SWEEP_KEYS = ("name", "seeds", "chips", "metrics")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
# Summary fields of a run copied into the table (besides the axes and the replicate).
SUMMARY_FIELDS = (
    "final_test_acc", "best_test_acc", "grad_cosine_mean", "grad_cosine_final",
    "unconverged_train_samples", "energy_per_step_J", "latency_per_step_s", "steps",
)
# Columns that depend on the machine, not on the run's configuration.
TIMING_FIELDS = ("seconds",)
METRICS = SUMMARY_FIELDS + TIMING_FIELDS
"""The metrics a sweep can tabulate and plot ([sweep] metrics)."""
DEFAULT_METRICS = ("final_test_acc", "energy_per_step_J", "latency_per_step_s")
MAX_RUNS = 100_000
"""Most runs one sweep file may expand to (a typo in a grid must not become a week of work)."""
MAX_SAMPLES = 10_000
# Bump when what a run computes changes, so old cached results are not mixed with new ones.
SCHEMA = 1


def is_chip_key(name: str) -> bool:
    """Whether an axis name addresses the chip (``section.field``) rather than training."""
    return name.partition(".")[0] in SECTIONS and "." in name


def _check_axis_name(name: str, where: str) -> None:
    if is_chip_key(name):
        section, _, key = name.partition(".")
        if key not in SECTIONS[section].field_names():
            raise ValueError(f"{where}: unknown chip field {name!r}; [{section}] has "
                             f"{', '.join(SECTIONS[section].field_names())}")
    elif "." in name:
        raise ValueError(f"{where}: unknown chip section in {name!r}; sections are {', '.join(SECTIONS)}")
    elif name not in TrainConfig.__dataclass_fields__:
        raise ValueError(f"{where}: {name!r} is neither a training option nor 'section.field' of the "
                         f"chip; training options: {', '.join(sorted(TrainConfig.__dataclass_fields__))}")
    if name in ("seed", "chip_seed"):
        raise ValueError(f"{where}: {name!r} is a replicate, not an axis; list its values in "
                         f"[sweep] {'seeds' if name == 'seed' else 'chips'}")


def _plain(v: Any) -> bool:
    """A TOML value without tables or non-finite numbers (a grid value or a choice)."""
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, float):
        return math.isfinite(v)
    return isinstance(v, (bool, int, str))


@dataclass(frozen=True)
class Distribution:
    """One random axis: ``uniform`` / ``log_uniform`` over ``[low, high]``, ``int_uniform`` over
    the integers ``low..high`` (inclusive), or ``choice`` among listed values."""

    kind: str
    args: tuple

    @classmethod
    def parse(cls, name: str, value: Any) -> "Distribution":
        where = f"[random] {name}"
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(f"{where}: give one distribution as a table, e.g. "
                             f"{{ uniform = [low, high] }}; kinds: {', '.join(DISTRIBUTIONS)}")
        (kind, args), = value.items()
        if kind not in DISTRIBUTIONS:
            raise ValueError(f"{where}: unknown distribution {kind!r}; choose one of {', '.join(DISTRIBUTIONS)}")
        if not isinstance(args, list) or not args:
            raise ValueError(f"{where}: {kind} needs a list of values; got {format_value(args)}")
        if kind == "choice":
            if not all(_plain(a) for a in args):
                raise ValueError(f"{where}: choice needs a list of values (finite numbers, strings, "
                                 f"booleans or lists of them), not tables; got {args!r}")
        else:
            numeric = all(isinstance(a, numbers.Real) and not isinstance(a, bool) for a in args)
            if len(args) != 2 or not numeric or not all(math.isfinite(a) for a in args) or not args[0] < args[1]:
                raise ValueError(f"{where}: {kind} needs [low, high], finite numbers with low < high; "
                                 f"got {args!r}")
            if kind == "log_uniform" and args[0] <= 0:
                raise ValueError(f"{where}: log_uniform needs low > 0; got {args[0]!r}")
            if kind == "int_uniform" and not all(isinstance(a, int) for a in args):
                raise ValueError(f"{where}: int_uniform needs integer bounds; got {args!r}")
        return cls(kind, tuple(args))

    def draw(self, rng: np.random.Generator):
        lo, hi = self.args[0], self.args[-1]
        if self.kind == "uniform":
            return float(rng.uniform(lo, hi))
        if self.kind == "log_uniform":
            return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
        if self.kind == "int_uniform":
            return int(rng.integers(lo, hi + 1))
        return self.args[int(rng.integers(len(self.args)))]


@dataclass(frozen=True)
class Job:
    """One training run of a sweep: the point's axis values and its replicate."""

    point: tuple[tuple[str, Any], ...]
    seed: int
    chip_seed: int
    train: dict
    chip: dict | None
    key: str

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.train)

    def hardware(self) -> ChipConfig | None:
        return None if self.chip is None else ChipConfig.from_dict(self.chip)


@dataclass(frozen=True)
class SweepSpec:
    """A parsed, validated ``sweep.toml`` (see the module docstring)."""

    name: str = "sweep"
    train: dict = field(default_factory=dict)
    chip: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    random: dict = field(default_factory=dict)
    samples: int = 0
    random_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    chips: tuple[int, ...] = (0,)
    metrics: tuple[str, ...] = DEFAULT_METRICS

    @classmethod
    def from_dict(cls, d: dict, where: str = "sweep") -> "SweepSpec":
        """Validate a parsed sweep file (``where`` prefixes every message, e.g. the path)."""
        try:
            return cls._from_dict(d, where)
        except ConfigError as e:
            text_ = str(e)
            raise ConfigError(text_ if text_.startswith(f"{where}:") else f"{where}: {text_}") from None

    @classmethod
    def _from_dict(cls, d: dict, where: str) -> "SweepSpec":
        if not isinstance(d, dict):
            raise ConfigError(f"a sweep must be a mapping of tables {', '.join(TABLES)}; got {format_value(d)}")
        unknown = sorted(set(d) - set(TABLES))
        if unknown:
            raise ValueError(f"{where}: unknown table(s) {unknown}; allowed: {', '.join(TABLES)}")
        for t in TABLES:
            if t in d and not isinstance(d[t], dict):
                raise ConfigError(f"[{t}] must be a table; got {format_value(d[t])}")
        head = dict(d.get("sweep", {}))
        bad = sorted(set(head) - set(SWEEP_KEYS))
        if bad:
            raise ValueError(f"{where}: unknown key(s) {bad} in [sweep]; allowed: {', '.join(SWEEP_KEYS)}")
        metrics = _metrics(head.pop("metrics", list(DEFAULT_METRICS)))
        head["chips"] = _chip_list(head.get("chips", [0]))
        h = SweepHead.from_dict(head)
        seeds, chips = h.seeds, h.chips
        train = dict(d.get("train", {}))
        for k in ("seed", "chip_seed"):
            if k in train:
                raise ValueError(f"{where}: set [sweep] {'seeds' if k == 'seed' else 'chips'} "
                                 f"instead of [train] {k}")
        chip = _flatten_chip(d.get("chip", {}), where)
        grid = dict(d.get("grid", {}))
        for name, vals in grid.items():
            _check_axis_name(name, f"{where}: [grid]")
            if not isinstance(vals, list) or not vals or not all(_plain(v) for v in vals):
                raise ValueError(f"{where}: [grid] {name} must be a non-empty list of values (finite "
                                 f"numbers, strings, booleans or lists of them); got {vals!r}")
        rand = dict(d.get("random", {}))
        samples, rseed = rand.pop("samples", 0), rand.pop("seed", 0)
        if (isinstance(samples, bool) or not isinstance(samples, int) or not 0 <= samples <= MAX_SAMPLES
                or (rand and samples == 0)):
            raise ValueError(f"{where}: [random] samples must be an integer >= 1 when random axes "
                             f"are given (at most {MAX_SAMPLES}); got {format_value(samples)}")
        if isinstance(rseed, bool) or not isinstance(rseed, int) or not 0 <= rseed < 2**32:
            raise ValueError(f"{where}: [random] seed must be an integer in 0..{2**32 - 1}; got {format_value(rseed)}")
        dists = {}
        for name, v in rand.items():
            _check_axis_name(name, f"{where}: [random]")
            if name in grid:
                raise ValueError(f"{where}: {name!r} is both a grid and a random axis")
            dists[name] = Distribution.parse(name, v)
        n_points = math.prod(len(v) for v in grid.values()) * (samples if dists else 1)
        n_runs = n_points * len(seeds) * len(chips)
        if n_runs > MAX_RUNS:
            raise ValueError(f"{where}: the sweep expands to {n_runs} runs ({n_points} points x "
                             f"{len(seeds)} seeds x {len(chips)} chips); at most {MAX_RUNS} are allowed")
        spec = cls(name=h.name, train=train, chip=chip, grid=grid,
                   random=dists, samples=samples if dists else 0, random_seed=int(rseed),
                   seeds=tuple(seeds), chips=tuple(chips), metrics=metrics)
        spec.runs()  # validates every point's training and chip configuration now, not mid-sweep
        return spec

    @classmethod
    def from_toml(cls, path: str | Path) -> "SweepSpec":
        """Read a sweep file; errors (a missing file, a directory, bad TOML, a bad value) are one
        line naming the file."""
        path = Path(path)
        return cls.from_dict(read_toml(path, "sweep"), where=str(path))

    @property
    def axes(self) -> tuple[str, ...]:
        """Axis names: the grid's, then the random ones."""
        return tuple(self.grid) + tuple(self.random)

    def points(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every point as ``((axis, value), ...)``: the grid's cartesian product, each crossed
        with ``samples`` random draws (drawn from ``random_seed``, the same on every call)."""
        grid = [tuple(zip(self.grid, vals)) for vals in itertools.product(*self.grid.values())]
        if not self.random:
            return grid
        rng = np.random.default_rng(self.random_seed)
        draws = [tuple((k, dist.draw(rng)) for k, dist in self.random.items()) for _ in range(self.samples)]
        return [g + r for g in grid for r in draws]

    def runs(self) -> list[Job]:
        """Every run: each point times each (seed, chip) replicate, validated."""
        out = []
        for point in self.points():
            train = {**self.train, **{k: v for k, v in point if not is_chip_key(k)}}
            chip_changes = {**self.chip, **{k: v for k, v in point if is_chip_key(k)}}
            base = TrainConfig.from_dict(train)
            if chip_changes and not base.hardware:
                raise ValueError("the sweep varies the chip but [train] hardware is empty (the digital "
                                 "emulator); set hardware, e.g. hardware = \"realistic\"")
            hw = None
            if base.hardware:
                from analogeq.assembly import load_hardware

                hw = load_hardware(base.hardware).replace(**chip_changes).to_dict()
            for seed in self.seeds:
                for chip_seed in self.chips:
                    cfg = base.replace(seed=seed, chip_seed=chip_seed).to_dict()
                    out.append(Job(point=point, seed=seed, chip_seed=chip_seed, train=cfg, chip=hw,
                                   key=run_key(cfg, hw)))
        return out


@dataclass(frozen=True)
class SweepHead(Spec):
    """The ``[sweep]`` table's name and replicates (``metrics`` is checked by :func:`_metrics`)."""

    _section: ClassVar[str] = "sweep"
    _what: ClassVar[str] = "sweep"

    name: str = text("sweep", "name of the sweep (its default output folder runs/sweeps/<name>)", nonempty=True)
    seeds: tuple[int, ...] = ints((0,), "training seeds run at every point", ge=0, le=2**32 - 1, max_len=1000)
    chips: tuple[int, ...] = ints((0,), "chip instances run at every point", ge=0, le=2**32 - 1, max_len=1000)

    def _check(self) -> None:
        for name in ("seeds", "chips"):
            vals = getattr(self, name)
            if len(set(vals)) != len(vals):
                raise ConfigError(f"sweep.{name} must list distinct integers; got {list(vals)!r}")
        if any(c in self.name for c in "/\\\0") or self.name in (".", ".."):
            raise ConfigError(f"sweep.name must be a plain folder name (no '/', '\\', '..'); got {self.name!r}")


def _chip_list(value: Any) -> Any:
    """``[sweep] chips``: a list of chip seeds, or ``K`` for the seeds ``0 .. K-1``."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 1000:
            raise ConfigError(f"sweep.chips = {value}: a count of chips must be an integer in [1, 1000] "
                              "(or give a list of chip seeds)")
        return list(range(value))
    return value


def _metrics(value: Any) -> tuple[str, ...]:
    """``[sweep] metrics``: a non-empty list of distinct names from :data:`METRICS`."""
    if (not isinstance(value, list) or not value or not all(isinstance(m, str) for m in value)
            or len(set(value)) != len(value)):
        raise ConfigError(f"sweep.metrics must be a non-empty list of distinct metric names from "
                          f"{list(METRICS)}; got {format_value(value)}")
    bad = [m for m in value if m not in METRICS]
    if bad:
        raise ConfigError(f"sweep.metrics: unknown metric(s) {bad}; choose from {list(METRICS)}")
    return tuple(value)


def _flatten_chip(d: dict, where: str) -> dict:
    """``[chip]`` as dotted keys, accepting ``"section.field" = v`` and ``[chip.section]`` tables."""
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict) and k in SECTIONS:
            flat.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            flat[k] = v
    for k in flat:
        if not is_chip_key(k):
            raise ValueError(f"{where}: [chip] key {k!r} must be 'section.field' with a section of "
                             f"{', '.join(SECTIONS)}")
        _check_axis_name(k, f"{where}: [chip]")
    return flat


def run_key(train: dict, chip: dict | None) -> str:
    """Hash of a run's full configuration (16 hex digits): training fields, every chip field and
    the pulsed device's parameters, so editing a preset file invalidates its cached runs."""
    device = None
    if train.get("device"):
        from analogeq.devices.presets import load_device

        preset = load_device(train["device"])
        device = {"params": preset.params, "model": type(preset.device).__name__,
                  "inference": repr(preset.inference)}
    blob = json.dumps({"schema": SCHEMA, "train": train, "chip": chip, "device": device},
                      sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
