"""L-bit parity as causal next-token prediction (embedded, no download).

Input: the ``L`` bits ``b_1 ... b_L`` as tokens 0 and 1 (``T = L``, vocabulary 2). The target at
position ``t`` is the running parity ``p_t = b_1 xor ... xor b_t`` -- the next token of the stream
``b_1 p_1 b_2 p_2 ...`` -- predicted causally from the bits seen so far (parity tokens are never
inputs). Scored positions:

* training: every position (the running parities are intermediate supervision; an equilibrium
  block can compute ``p_t = p_{t-1} xor b_t`` by attending to the previous position's settled
  state, so depth comes from the relaxation, not from layers);
* validation: only the last position, whose target is the full ``L``-bit parity (other
  positions carry ``-1``, "not scored", see :class:`analogeq.costs.TokenCrossEntropy`), so
  validation accuracy is exactly ``L``-bit parity accuracy.

All ``2^L`` strings are enumerated and split once, at random with a fixed seed, into disjoint
train and validation strings: validation strings are never seen in training.
"""

from __future__ import annotations

import numpy as np

from analogeq.data.dataset import Dataset


def parity_sequences(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Every ``bits``-bit string as ``(x, y)``, both ``(2^L, L)`` int32: the bits, and the running
    parity ``y[:, t] = x[:, :t + 1].sum() % 2`` (so ``y[:, -1]`` is the string's parity)."""
    codes = np.arange(2 ** bits, dtype=np.int64)
    x = ((codes[:, None] >> np.arange(bits)[None, :]) & 1).astype(np.int32)
    y = (np.cumsum(x, axis=1) % 2).astype(np.int32)
    return x, y


def load_parity(bits: int = 8, val_fraction: float = 0.25, split_seed: int = 0) -> Dataset:
    """L-bit parity with a fixed split of the ``2^L`` strings.

    Args:
        bits: ``L`` in ``[2, 16]``.
        val_fraction: share of strings held out for validation, in ``(0, 1)`` (8 bits, 0.25:
            192 train / 64 validation strings).
        split_seed: seed of the split.

    Returns a :class:`Dataset` with ``n_classes = 2`` (the vocabulary size), ``n_features = L``
    (the sequence length), training targets at every position and validation targets at the
    last position only (``-1`` elsewhere).
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in [2, 16]; got {bits!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    x, y = parity_sequences(int(bits))
    perm = np.random.default_rng(split_seed).permutation(len(x))
    n_val = max(1, round(val_fraction * len(x)))
    if n_val >= len(x):
        raise ValueError(f"val_fraction {val_fraction} leaves no training strings for {bits} bits")
    va, tr = perm[:n_val], perm[n_val:]
    y_val = np.full_like(y[va], -1)
    y_val[:, -1] = y[va, -1]
    return Dataset(x[tr], y[tr], x[va], y_val, n_classes=2, name=f"parity{bits}")
