"""Assembly of a training run of the equilibrium transformer on an analog chip.

:func:`analogeq.assembly.build_analog` calls :func:`build_transformer_chip` for
``model = "eqtransformer"``: the digital block of :func:`~analogeq.assembly.build_model` (same
seed, so the same initial block as the digital run) is realized with
:func:`~analogeq.hardware.transformer.realize_transformer` on the chip (instance key
``Streams.chip``; the mismatch of its multipliers, softmax and normalization circuits from the
chip's ``[circuits]`` section), settles in continuous time (:class:`~analogeq.hardware.ChipRelaxation`:
the free and the nudged phases of EP/AsymEP on the analog field, read through the ADC), and is
updated by :class:`~analogeq.hardware.transformer_updates.BlockUpdater` from the estimate in
weight units. The gradient probe compares that estimate with the block's own exact gradient
(the implicit adjoint of the analog field, same free states, same noise draw).

What a chip run of the block honours, beyond the options every chip run refuses
(:data:`~analogeq.assembly.CHIP_REFUSES`: ``weight_cap``, ``ema``, ``jacreg`` act on parameters
as numbers; ``refine_steps``, ``t2_chunks`` shape the Euler emulator):

* ``resreg``: the residual left at the end of a fixed settle window (``dynamics.settle_time``;
  the ``ideal-windowed`` preset reads at the emulator recipe's 15 tau), penalized at the held
  state as the ADCs read it (:class:`~analogeq.stability.Penalized` on the analog field). It is
  the chip's stability control: it keeps the field settling within its readout time. With an
  adaptive settle (no window) the residual is the solver's tolerance and the penalty vanishes;

* ``warmup``, ``grad_clip``: the periphery's optimizer computes the update before it is written;
* ``gate``: the residual of a settle is measured by the periphery;
* ``damping``: the node leak ``(1 + c) g_leak``; ``qk_norm``: the q/k normalization circuits;
* ``correction = "asym"`` / ``"asym-tracking"``: applied as the field's own ``J - J^T`` at the
  held state (the behavioral block has no transposed-attention circuit; this is the AsymEP of
  the emulator, evaluated on the analog field with its mismatch).

Tile writes (``update``) without a device (``device`` unset) are quantized conductance writes
with stochastic level rounding (``"deterministic"``) or mixed-precision through a digital
accumulator (``"mixed"``). With ``device`` (a preset of :mod:`analogeq.devices.presets`) every
crosspoint is that pulsed device against a reference device
(:func:`~analogeq.hardware.transformer_pulsed.attach_block_devices`: ``G_ref`` from
:func:`~analogeq.hardware.pulsed.device_hardware`, each tile's stage gain re-chosen for the
device's range) and :class:`~analogeq.hardware.transformer_pulsed.PulsedBlockUpdater` writes
the update as pulses under each of the four schemes: ``deterministic`` and ``mixed`` pulse the
optimizer's change, ``stochastic`` and ``tiki-taka`` pulse rank-one coincidences of each token
position's local signals at ``lr`` (the digital parts follow the optimizer under every scheme).
Refused here (one line each): ``stochastic`` and ``tiki-taka`` without a device, or with
per-tile gains (``crossbar.tile_gain = "auto"``), as on the layered chip
(:func:`~analogeq.hardware.pulsed.check_pulse_update`), and the ``bptt`` estimator (no Euler
unroll on a continuous-time chip).
"""

from __future__ import annotations

from analogeq.config import TrainConfig
from analogeq.costs import make_cost
from analogeq.data import Dataset
from analogeq.devices.presets import load_device
from analogeq.energy import StepEnergy, real_nudges
from analogeq.hardware.config import ChipConfig, ConfigError
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.pulsed import check_pulse_update, device_hardware
from analogeq.hardware.transformer import realize_transformer
from analogeq.hardware.transformer_pulsed import (
    PulsedBlockUpdater,
    attach_block_devices,
)
from analogeq.hardware.transformer_updates import (
    TRAIN_HEADROOM,
    BlockUpdater,
    InWeightUnits,
)
from analogeq.stability import build_optimizer
from analogeq.streams import Streams
from analogeq.training import RunParts

FLOAT32_RTOL = 1e-6
"""Relative tolerance of the adaptive solver in a float32 run (about 8 float32 epsilons; the
largest that :class:`~analogeq.hardware.ChipRelaxation` derives, ``min(1e-6, 1e-2
steady_tol)``). On the ideal preset it derives ``1e-8``, below float32's resolution: the step
controller then rejects steps on rounding error, and a settle took 580 Tsit5 steps instead of
48 for the same residual (8-bit parity, d = 8, after 40 training steps). ``1e-5`` is too loose
to reach a residual of ``1e-6`` at all. Float64 runs keep the derived tolerance."""


POLE_STEP = 0.1
"""Exact-decay step [units of ``tau``] of the block's settles when it has an amplifier pole and
the chip sets no ``dynamics.sde_dt``. The default steps (0.25 tau, 0.5 before the readout
window) hold the branch currents over a step while the stage output follows them with a lag;
as training grows the block's Jacobian, that lagged loop stops settling. Measured on 8-bit
parity (d = 32, the ``amp-pole`` group of ``benchmarks/bench_transformer_chip.py`` after 600
steps, 32 samples): at 0.25 tau 4 nudged phases failed (residual up to 9.6) and free residuals
reached 0.31; at 0.1 tau none failed (nudged residual <= 0.04, free <= 0.08); at 0.05 tau
0.013 and 0.038. Without a pole the same block settles at the default steps (free residual
4e-4 at 0.25 tau)."""


def relaxation_for(cfg: TrainConfig, hw: ChipConfig) -> ChipRelaxation:
    """The chip's relaxation for the run: :data:`FLOAT32_RTOL` in a float32 run, and
    :data:`POLE_STEP` for a block with an amplifier pole whose chip leaves the step to the
    integrator."""
    dyn = hw.dynamics
    if hw.neuron.amp_pole_tau > 0 and dyn.sde_dt is None and dyn.integrator == "exact-decay":
        hw = hw.replace(**{"dynamics.sde_dt": POLE_STEP * hw.neuron.tau})
    if cfg.dtype == "float64":
        return ChipRelaxation(hw)
    return ChipRelaxation(hw, rtol=FLOAT32_RTOL)


def check_transformer_chip_options(cfg: TrainConfig) -> None:
    """Refuse what a chip run of the eqtransformer cannot do (module docstring), naming why."""
    if cfg.estimator == "bptt":
        raise ConfigError("estimator.estimator 'bptt' differentiates the Euler unroll; a chip settles "
                          "in continuous time: use 'ep' (AsymEP) or 'implicit' with hardware")


def build_transformer_chip(cfg: TrainConfig, hw: ChipConfig, data: Dataset, block, estimator, probe,
                           name: str = "custom") -> RunParts:
    """The run ``cfg`` with its eqtransformer realized on the chip ``hw`` (module docstring).

    Args:
        cfg: the run's configuration (``model = "eqtransformer"``).
        hw: the chip; its ``circuits`` section sets the non-idealities of the block's
            multipliers, softmax, normalization circuits and GELU rails.
        data: the run's data set.
        block: the digital block the run starts from (the emulator run's initialization).
        estimator: the run's gradient estimator, in the block's own parameters.
        probe: ``(estimate, exact reference)`` estimators of the gradient probe, or ``None``.
        name: the chip's name in the run's label.
    """
    check_transformer_chip_options(cfg)
    device = load_device(cfg.device).device if cfg.device else None
    check_pulse_update(cfg.update, device, hw.crossbar.tile_gain)
    streams = Streams.of(cfg)
    optimizer = build_optimizer(cfg)
    if device is not None:
        hw = device_hardware(hw, device)
    chip = realize_transformer(block, hw, streams.chip, headroom=TRAIN_HEADROOM)
    if device is not None:
        chip = attach_block_devices(chip, device, streams.devices)
        updater = PulsedBlockUpdater(device=device, update_scheme=cfg.update, optimizer=optimizer,
                                     lr=cfg.lr, key=streams.pulses)
        label = f"chip ({name}, {cfg.device}, {cfg.update})"
    else:
        mixed = cfg.update == "mixed"
        updater = BlockUpdater(optimizer, accumulate=mixed)
        label = f"chip ({name}, mixed)" if mixed else f"chip ({name})"
    probe = None if probe is None else tuple(InWeightUnits(e) for e in probe)
    return RunParts(
        model=chip, cost=make_cost(cfg.cost), relaxation=relaxation_for(cfg, hw),
        estimator=InWeightUnits(estimator), updater=updater, data=data, label=label, probe=probe,
        hooks=(StepEnergy(tuple(real_nudges(estimator))),),
    )
