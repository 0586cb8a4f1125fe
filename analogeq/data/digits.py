"""scikit-learn's bundled 8x8 digits (1797 samples), the embedded default task."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as _sk_digits
from sklearn.model_selection import train_test_split

from analogeq.data.dataset import Dataset


def load_digits(test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Digits with pixels scaled to ``[0, 1]`` and a fixed stratified split.

    Args:
        test_fraction: share of samples held out (default 0.2: 1437 train / 360 test).
        split_seed: seed of the split (fixed so results are comparable across runs).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    d = _sk_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int32)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    return Dataset(xtr, ytr, xte, yte, n_classes=10, name="digits")
