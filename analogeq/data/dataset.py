"""A fixed train/test split (with an optional validation split) held as NumPy arrays."""

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
        x_val, y_val: an optional validation split held out of the training data (``None``:
            none). When present, the training loop evaluates on it periodically and on the test
            set once at the end (see :attr:`eval_split`).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    def __post_init__(self):
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("Dataset: x_val and y_val must both be given or both be None")

    @property
    def has_validation(self) -> bool:
        """Whether a validation split is held out."""
        return self.y_val is not None

    @property
    def eval_split(self) -> tuple[str, np.ndarray, np.ndarray]:
        """``(name, x, y)`` of the split evaluated during training: ``"validation"`` when one is
        held out, else ``"test"``."""
        if self.has_validation:
            return "validation", self.x_val, self.y_val
        return "test", self.x_test, self.y_test

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
