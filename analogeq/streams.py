"""Named PRNG streams of a run.

Every random draw of a run comes from one of these streams, derived from the run's ``seed`` (the
model and the batch order) and ``chip_seed`` (the chip instance). Naming them in one place keeps
two runs that differ only in ``chip_seed`` on the same model and the same batches, and gives
each chip instance its own noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax


@dataclass(frozen=True)
class Streams:
    """The keys of a run with ``seed`` and ``chip_seed``.

    Attributes:
        seed: seed of the model initialization and of the batch order.
        chip_seed: seed of the chip instance (mismatch, programming error, device spreads) and,
            together with ``seed``, of the noise the chip sees while it trains.
    """

    seed: int
    chip_seed: int = 0

    @classmethod
    def of(cls, cfg) -> "Streams":
        """The streams of a :class:`~analogeq.config.TrainConfig`."""
        return cls(cfg.seed, cfg.chip_seed)

    def _seeded(self, stream: int):
        return jax.random.fold_in(jax.random.PRNGKey(self.seed), stream)

    @property
    def init(self):
        """Model initialization (independent of the chip)."""
        return self._seeded(0)

    @property
    def train(self):
        """Per-step noise of training: step ``k`` uses ``fold_in(train, k)`` (read and thermal
        noise, stochastic writes). It belongs to the chip instance too, so two chips trained from
        the same seed see different noise."""
        return jax.random.fold_in(self._seeded(1), self.chip_seed)

    @property
    def eval(self):
        """Noise of evaluations and gradient probes."""
        return jax.random.fold_in(self._seeded(3), self.chip_seed)

    @property
    def probe(self):
        """Noise of the one-off chip-vs-emulator gradient report."""
        return self._seeded(3)

    @property
    def chip(self):
        """The chip instance: bounds, programming error, neuron mismatch."""
        return jax.random.fold_in(jax.random.PRNGKey(self.chip_seed), 2)

    @property
    def devices(self):
        """Per-device parameters of pulsed devices attached to the chip."""
        return device_key(self.chip)

    @property
    def pulses(self):
        """Pulse noise of the pulsed updater (cycle-to-cycle, stochastic coincidence)."""
        return jax.random.fold_in(self.chip, 2)

    @property
    def monte_carlo(self):
        """Chip instances of a Monte Carlo: split into one key per chip."""
        return jax.random.PRNGKey(self.chip_seed)

    def step(self, k: int):
        """The key of training step ``k`` (0-based)."""
        return jax.random.fold_in(self.train, k)


def device_key(chip_key):
    """The key of the pulsed devices attached to the chip instance drawn from ``chip_key`` (one
    derivation for a run's chip and for every Monte Carlo instance)."""
    return jax.random.fold_in(chip_key, 1)
