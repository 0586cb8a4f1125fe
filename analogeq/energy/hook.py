"""Energy accounting as a hook of the training step.

The training loop knows nothing of chips or energy; the assembly layer gives a chip run this
hook, which the one compiled training step calls after the update (see
:func:`analogeq.training.make_train_step`).
"""

from __future__ import annotations

import equinox as eqx

from analogeq.energy.block import block_pulses, block_step_breakdown
from analogeq.energy.pulses import step_pulses
from analogeq.energy.settle import mean_settle_breakdown
from analogeq.energy.step import train_step_breakdown
from analogeq.hardware.transformer import AnalogEqTransformer


class StepEnergy(eqx.Module):
    """Estimated energy (J) and latency (s) of a training step on a chip: a layered chip
    (:mod:`analogeq.energy.step`) or the analog transformer block (:mod:`analogeq.energy.block`,
    whose breakdown has no separate inference settle).

    Attributes:
        betas: the real nudges of the estimator's nudged phases (one nudged settle each).
        full: report every term of the breakdown (and the mean inference settle's breakdown
            under ``settle/...``) instead of the totals ``energy_J`` and ``latency_s``.
    """

    betas: tuple[float, ...] = eqx.field(static=True)
    full: bool = eqx.field(static=True, default=False)

    def __call__(self, chip, new_chip, state, new_state, est) -> dict:
        block = isinstance(chip, AnalogEqTransformer)
        if block:
            step = block_step_breakdown(chip, self.betas, est,
                                        block_pulses(chip, new_chip, state, new_state))
        else:
            step = train_step_breakdown(chip, self.betas, est, step_pulses(chip, new_chip, state, new_state))
        if not self.full:
            return {"energy_J": step["energy_J"], "latency_s": step["latency_s"]}
        out = {f"step/{k}": v for k, v in step.items()}
        if not block:
            out.update({f"settle/{k}": v for k, v in mean_settle_breakdown(chip, est.inputs, est.free).items()})
        return out
