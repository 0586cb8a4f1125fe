"""A fixed train/test split held as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Inputs and integer labels of a fixed split.

    Attributes:
        x_train, x_test: inputs, shape ``(n, n_features)``, float32.
        y_train, y_test: integer labels, shape ``(n,)``.
        n_classes: number of classes.
        name: task name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[-1])

    def batch_indices(self, step: int, batch_size: int, seed: int) -> np.ndarray:
        """Training indices of batch ``step``: epoch-wise permutations seeded by ``(seed, epoch)``,
        so any step's batch is reproducible without replaying earlier ones (exact resume)."""
        n = len(self.y_train)
        if not 1 <= batch_size <= n:
            raise ValueError(f"batch_size must lie in [1, {n}] (training set size); got {batch_size}")
        per_epoch = n // batch_size
        epoch, i = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        return perm[i * batch_size:(i + 1) * batch_size]
