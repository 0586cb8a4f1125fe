"""Assemble a physical training run: the model realized on a chip, settled in continuous time,
read through the ADC and updated by conductance programming."""

from __future__ import annotations

from pathlib import Path

import jax

from analogeq.config import TrainConfig
from analogeq.costs import make_cost
from analogeq.data import Dataset, load_task
from analogeq.devices.presets import load_device
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.programming import ConductanceUpdater
from analogeq.hardware.pulsed import PulsedUpdater, attach_devices, device_hardware
from analogeq.hardware.realize import realize
from analogeq.training import RunParts, build_estimator, build_model
from analogeq.updaters import make_optimizer


def load_hardware(spec: str | ChipConfig) -> ChipConfig:
    """A :class:`ChipConfig` from a config, a preset name or a TOML path."""
    if isinstance(spec, ChipConfig):
        return spec
    if spec.endswith(".toml") or Path(spec).exists():
        return ChipConfig.from_toml(spec)
    return ChipConfig.preset(spec)


def chip_key(cfg: TrainConfig):
    """Key of the chip instance used by a run."""
    return jax.random.fold_in(jax.random.PRNGKey(cfg.chip_seed), 2)


def build_analog(cfg: TrainConfig, hardware: str | ChipConfig, data: Dataset | None = None) -> RunParts:
    """The same model, data and seed as :func:`analogeq.training.build_digital`, realized on a
    chip described by ``hardware``. With ``cfg.device`` every crosspoint is that pulsed device
    (:mod:`analogeq.hardware.pulsed`) and updates are pulses made by ``cfg.update``; otherwise
    updates are quantized conductance writes (:class:`ConductanceUpdater`)."""
    hw = load_hardware(hardware)
    data = data if data is not None else load_task(cfg.task)
    model = build_model(cfg, data, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0))
    optimizer = make_optimizer(cfg.optimizer, cfg.lr)
    label = f"chip ({hardware if isinstance(hardware, str) else 'custom'})"
    if cfg.device:
        device = load_device(cfg.device).device
        hw = device_hardware(hw, device)
        chip = attach_devices(realize(model, hw, chip_key(cfg)), device,
                              jax.random.fold_in(chip_key(cfg), 1))
        updater = PulsedUpdater(device=device, update_scheme=cfg.update, optimizer=optimizer,
                                lr=cfg.lr, key=jax.random.fold_in(chip_key(cfg), 2))
        label = f"chip ({hardware if isinstance(hardware, str) else 'custom'}, {cfg.device}, {cfg.update})"
    else:
        chip, updater = realize(model, hw, chip_key(cfg)), ConductanceUpdater(optimizer)
    return RunParts(
        model=chip, cost=make_cost(cfg.cost), relaxation=ChipRelaxation(hw),
        estimator=build_estimator(cfg), updater=updater, data=data, label=label,
    )
