"""How a gradient becomes new parameters. The digital emulator applies it with optax;
analog realizations write conductances instead (see ``analogeq.hardware``)."""

from __future__ import annotations

import abc

import equinox as eqx
import optax


class AbstractUpdater(eqx.Module):
    """Maps ``(model, grads, state)`` to ``(model, state)``."""

    @abc.abstractmethod
    def init(self, model):
        """Updater state for ``model``."""

    @abc.abstractmethod
    def update(self, model, grads, state, key, estimate=None):
        """Apply ``grads`` (gradient of the loss) to ``model``; ``key`` feeds stochastic writes.

        ``estimate`` (an :class:`analogeq.ep.Estimate`) carries the per-sample local signals
        the gradient was built from; updaters that write rank-one pulses per sample need it.
        """


class OptaxUpdater(AbstractUpdater):
    """Digital update with an optax optimizer over the model's float arrays."""

    optimizer: optax.GradientTransformation = eqx.field(static=True)

    def init(self, model):
        return self.optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    def update(self, model, grads, state, key, estimate=None):
        del key, estimate
        params = eqx.filter(model, eqx.is_inexact_array)
        updates, state = self.optimizer.update(grads, state, params)
        return eqx.apply_updates(model, updates), state


def make_optimizer(name: str, lr: float) -> optax.GradientTransformation:
    """``adam`` or ``sgd`` with learning rate ``lr``."""
    if name == "adam":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    raise ValueError(f"unknown optimizer {name!r}; choose 'adam' or 'sgd'")
