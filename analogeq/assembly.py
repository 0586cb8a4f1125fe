"""Assembly: the one place that turns a :class:`~analogeq.config.TrainConfig` into the parts of a
run (:class:`~analogeq.training.RunParts`).

Everything that runs a configuration (``train``, ``compare``, sweeps, ``energy``, ``drift``,
``diagnose``, ``sample``, the notebooks) builds it here, so the digital emulator and a chip get
the same model, data, seeds and training options. The training loop receives the parts and
imports neither the chip nor the energy model; what a chip adds to a step (energy accounting) it
adds as a hook.

A chip run honours the optimizer options (``warmup``, ``grad_clip``: the digital periphery
computes the update before it is written) and the residual penalty ``resreg`` (the residual is
the node current ``C dz/dt`` left at the end of the settle window, read at the held state; its
gradient at that state is, for a crossbar weight, that residual times the row's input, the same
local outer product as the EP update). It refuses the stability controls that act on the
parameters as numbers (``weight_cap``, ``ema``, ``jacreg``): conductances cannot be rescaled or
averaged, and the Jacobian penalty's gradient needs second derivatives the chip cannot sense.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp

from analogeq import stability
from analogeq.config import TrainConfig
from analogeq.costs import make_cost
from analogeq.data import Dataset, load_task
from analogeq.devices.presets import load_device
from analogeq.emulator import EulerRelaxation
from analogeq.energy import StepEnergy, real_nudges
from analogeq.ep import BPTT, EP, AbstractEstimator, EnergyEP, ImplicitAdjoint
from analogeq.ep.recipe import AdaptiveEP, RefinedEulerRelaxation, WithReadoutGradient
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.programming import ConductanceUpdater
from analogeq.hardware.pulsed import PulsedUpdater, check_pulse_update
from analogeq.models import HopfieldNetwork, LeakyNetwork
from analogeq.models.transformer import EqTransformer
from analogeq.montecarlo import chip_hardware, instance
from analogeq.streams import Streams
from analogeq.training import RunParts, TrainResult, fit
from analogeq.transformer_chip import build_transformer_chip, check_transformer_chip_options
from analogeq.updaters import OptaxUpdater

# Stability controls that change parameters as numbers; a chip's conductances cannot follow.
CHIP_REFUSES = {
    "weight_cap": "rescales weight matrices after each update",
    "ema": "evaluates an exponential average of the parameters",
    "jacreg": "differentiates a Jacobian penalty (second derivatives of the field) through the parameters",
}


def task_options(cfg: TrainConfig) -> dict:
    """Keyword arguments of :func:`~analogeq.data.load_task` for ``cfg.task``."""
    if cfg.task == "parity":
        return {"bits": cfg.bits}
    if cfg.task == "charlm":
        return {"text_path": cfg.text_path, "seq_len": cfg.seq_len}
    if cfg.task in ("mnist", "fashion-mnist") and cfg.data_dir:
        return {"data_dir": cfg.data_dir}
    return {}


def load_data(cfg: TrainConfig) -> Dataset:
    """The data set of ``cfg.task`` with the run's task options."""
    return load_task(cfg.task, **task_options(cfg))


def dtype_of(cfg: TrainConfig):
    """The run's float dtype (``float64`` turns on JAX's 64-bit mode)."""
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
        return jnp.float64
    return jnp.float32


def build_model(cfg: TrainConfig, data: Dataset, key):
    """The model named by ``cfg.model`` sized for ``data``, initialized from ``key``."""
    if cfg.model == "eqtransformer":
        return EqTransformer(data.n_classes, data.n_features, cfg.d_model, cfg.n_heads, key=key,
                             ffn_mult=cfg.ffn_mult, damping=cfg.damping, qk_norm=cfg.qk_norm,
                             dtype=dtype_of(cfg))
    sizes = (data.n_features, *cfg.hidden, data.n_classes)
    if cfg.model == "leaky":
        return LeakyNetwork(sizes, key=key, asymmetry=cfg.asymmetry, gain=cfg.gain, dtype=dtype_of(cfg))
    return HopfieldNetwork(sizes, key=key, gain=cfg.gain, dtype=dtype_of(cfg))


def gradient_estimator(cfg: TrainConfig) -> AbstractEstimator:
    """The estimator of the loss gradient named by ``cfg.estimator`` (for the eqtransformer with
    the readout's direct gradient, :class:`~analogeq.ep.recipe.WithReadoutGradient`), without
    the stability penalties."""
    if cfg.estimator == "ep" and cfg.t2_chunks > 1:
        est = AdaptiveEP(beta=cfg.beta, kind=cfg.ep_kind, n_points=cfg.n_points,
                         correction=cfg.correction, chunks=cfg.t2_chunks)
    elif cfg.estimator == "ep":
        est = EP(beta=cfg.beta, kind=cfg.ep_kind, n_points=cfg.n_points, correction=cfg.correction)
    elif cfg.estimator == "implicit":
        est = ImplicitAdjoint()
    elif cfg.estimator == "bptt":
        est = BPTT()
    else:
        est = EnergyEP(beta=cfg.beta)
    return WithReadoutGradient(est) if cfg.model == "eqtransformer" else est


def exact_estimator(cfg: TrainConfig) -> AbstractEstimator:
    """The exact reference of :func:`gradient_estimator`: the implicit adjoint of the same field."""
    return WithReadoutGradient(ImplicitAdjoint()) if cfg.model == "eqtransformer" else ImplicitAdjoint()


def build_estimator(cfg: TrainConfig) -> AbstractEstimator:
    """The run's estimator: :func:`gradient_estimator` with the stability penalties
    (:class:`~analogeq.stability.Penalized`) when ``resreg`` or ``jacreg`` is on."""
    est = gradient_estimator(cfg)
    if cfg.resreg > 0 or cfg.jacreg > 0:
        est = stability.Penalized(est, eps=cfg.eps, resreg=cfg.resreg, resreg_scale=cfg.resreg_scale,
                                  resreg_deadband=cfg.resreg_deadband, jacreg=cfg.jacreg > 0)
    return est


def build_relaxation(cfg: TrainConfig) -> EulerRelaxation:
    """The digital emulator's explicit-Euler relaxation."""
    if cfg.refine_steps > 0:
        return RefinedEulerRelaxation(eps=cfg.eps, T1=cfg.T1, T2=cfg.T2, tol=cfg.tol,
                                      stop_at_tol=cfg.stop_at_tol, refine_steps=cfg.refine_steps)
    return EulerRelaxation(eps=cfg.eps, T1=cfg.T1, T2=cfg.T2, tol=cfg.tol, stop_at_tol=cfg.stop_at_tol)


def build_updater(cfg: TrainConfig, inner=None):
    """The run's updater: ``inner`` (default: optax with the run's optimizer) wrapped in the
    stability controls the config enables (:class:`~analogeq.stability.StabilizedUpdater`)."""
    inner = inner if inner is not None else OptaxUpdater(stability.build_optimizer(cfg))
    if not stability.enabled(cfg):
        return inner
    return stability.StabilizedUpdater(inner, jacreg=cfg.jacreg, jacreg_target=cfg.jacreg_target,
                                       jacreg_floor=cfg.jacreg_floor, jacreg_max=cfg.jacreg_max,
                                       jacreg_ema=cfg.jacreg_ema, weight_cap=cfg.weight_cap, ema=cfg.ema)


def _hooks(cfg: TrainConfig) -> tuple:
    return (stability.controller_metrics,) if cfg.jacreg > 0 else ()


def _probe(cfg: TrainConfig):
    exact = cfg.estimator == "implicit"
    return None if exact else (gradient_estimator(cfg), exact_estimator(cfg))


def build_digital(cfg: TrainConfig, data: Dataset | None = None) -> RunParts:
    """The idealized digital emulator run described by ``cfg``."""
    data = data if data is not None else load_data(cfg)
    return RunParts(
        model=build_model(cfg, data, Streams.of(cfg).init), cost=make_cost(cfg.cost),
        relaxation=build_relaxation(cfg), estimator=build_estimator(cfg), updater=build_updater(cfg),
        data=data, label="digital", hooks=_hooks(cfg), probe=_probe(cfg),
    )


load_hardware = ChipConfig.load


def check_chip_options(cfg: TrainConfig) -> None:
    """Refuse the options a chip run cannot honour, naming each and why."""
    if cfg.refine_steps > 0 or cfg.t2_chunks > 1:
        raise ValueError("refine_steps and t2_chunks shape the emulator's Euler relaxation; a chip "
                         "settles in continuous time: set refine_steps = 0 and t2_chunks = 1 with --hardware")
    on = [name for name in CHIP_REFUSES if getattr(cfg, name) > 0]
    if on:
        why = "; ".join(f"{n} {CHIP_REFUSES[n]}" for n in on)
        raise ValueError(f"a chip run cannot honour {', '.join(on)} ({why}, which conductances "
                         "cannot follow); set them to 0 with --hardware (warmup and grad_clip are "
                         "honoured)")
    if cfg.model == "eqtransformer":
        check_transformer_chip_options(cfg)


def build_analog(cfg: TrainConfig, hardware: str | Path | ChipConfig, data: Dataset | None = None) -> RunParts:
    """The same model, data and seed as :func:`build_digital`, realized on a chip described by
    ``hardware`` (a :class:`ChipConfig`, a preset name or a TOML path) and trained physically.

    With ``cfg.device`` every crosspoint is that pulsed device (:mod:`analogeq.hardware.pulsed`)
    and updates are pulses made by ``cfg.update``; otherwise updates are quantized conductance
    writes (:class:`ConductanceUpdater`). The optimizer (with ``warmup`` and ``grad_clip``)
    turns the measured gradient into the update that is written.
    """
    check_chip_options(cfg)
    hw = load_hardware(hardware)
    data = data if data is not None else load_data(cfg)
    if cfg.model == "eqtransformer":  # the analog block: its own realization and updater
        name = hardware if isinstance(hardware, (str, Path)) else "custom"
        block = build_model(cfg, data, Streams.of(cfg).init)
        probe = None if cfg.estimator == "implicit" else (gradient_estimator(cfg), exact_estimator(cfg))
        return build_transformer_chip(cfg, hw, data, block, build_estimator(cfg), probe, str(name))
    streams = Streams.of(cfg)
    model = build_model(cfg, data, streams.init)
    optimizer = stability.build_optimizer(cfg)
    name = hardware if isinstance(hardware, (str, Path)) else "custom"
    device = load_device(cfg.device).device if cfg.device else None
    check_pulse_update(cfg.update, device, hw.crossbar.tile_gain)
    hw = chip_hardware(hw, device)
    chip = instance(model, hw, streams.chip, device)
    if device is not None:
        updater = PulsedUpdater(device=device, update_scheme=cfg.update, optimizer=optimizer,
                                lr=cfg.lr, key=streams.pulses)
        label = f"chip ({name}, {cfg.device}, {cfg.update})"
    else:
        mixed = cfg.update == "mixed"
        updater = ConductanceUpdater(optimizer, accumulate=mixed)
        label = f"chip ({name}, mixed)" if mixed else f"chip ({name})"
    estimator = build_estimator(cfg)
    return RunParts(
        model=chip, cost=make_cost(cfg.cost), relaxation=ChipRelaxation(hw), estimator=estimator,
        updater=updater, data=data, label=label,
        hooks=(StepEnergy(tuple(real_nudges(estimator))),), probe=_probe(cfg),
    )


def build_parts(cfg: TrainConfig, hardware: str | Path | ChipConfig | None = None,
                data: Dataset | None = None) -> RunParts:
    """The parts of the run ``cfg`` describes: on the chip ``hardware`` (default
    ``cfg.hardware``) when one is named, else on the digital emulator."""
    hardware = hardware if hardware is not None else cfg.hardware
    return build_analog(cfg, hardware, data) if hardware else build_digital(cfg, data)


def with_parts(parts: RunParts, **changes) -> RunParts:
    """``parts`` with some fields replaced (e.g. a custom estimator or relaxation)."""
    return dataclasses.replace(parts, **changes)


def train(cfg: TrainConfig, out_dir: str | Path | None = None, *, resume: bool = False,
          progress: bool = True, parts: RunParts | None = None, label: str | None = None,
          log=None) -> TrainResult:
    """Train as ``cfg`` says; ``analogeq train`` calls this.

    Args:
        cfg: the run's configuration.
        out_dir: where ``metrics.jsonl``, ``config.toml``, ``summary.json`` and the checkpoint go
            (nothing is written when ``None``).
        resume: continue from the checkpoint in ``out_dir`` (same configuration except
            :data:`~analogeq.training.RESUMABLE_CHANGES`); the continuation is bit-identical to
            an uninterrupted run.
        progress: show a progress bar.
        parts: pre-built run parts (default: :func:`build_parts` of ``cfg``), e.g. with a custom
            estimator (:func:`with_parts`).
        label: the run's name in the progress bar and summary (default ``parts.label``).
        log: where one-line messages go (default: nowhere).
    """
    parts = parts if parts is not None else build_parts(cfg)
    return fit(parts, cfg, out_dir, resume=resume, progress=progress, label=label, log=log)
