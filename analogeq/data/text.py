"""Character-level language modelling on any plain-text file.

The vocabulary is the sorted set of characters of the whole file (token id = rank). The text is
split once: the first ``1 - val_fraction`` of the characters train, the rest validate (a fixed,
contiguous split, as char-rnn and nanoGPT do). Training samples are every window of
``seq_len`` characters (a read-only strided view, nothing copied) with the next characters as
targets; validation uses ``n_val`` non-overlapping windows spread evenly over the validation
part, so the validation cross-entropy is a fixed average over ``n_val * seq_len`` characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from analogeq.data.dataset import Dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEXT = "../shared/data/tinyshakespeare.txt"


def resolve_text_path(path: str | Path) -> Path:
    """An absolute path; relative paths are taken relative to the repository root (the folder
    holding ``analogeq/``), then to the working directory."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    for base in (REPO_ROOT, Path.cwd()):
        if (base / p).exists():
            return (base / p).resolve()
    return (REPO_ROOT / p).resolve()


@dataclass(frozen=True)
class CharVocab:
    """Characters by token id; ``encode`` / ``decode`` map strings to int32 ids and back."""

    chars: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """Token ids ``(len(text),)``; raises naming characters outside the vocabulary."""
        index = {c: i for i, c in enumerate(self.chars)}
        unknown = sorted({c for c in text if c not in index})
        if unknown:
            raise ValueError(f"characters {unknown!r} are not in the vocabulary of {self.size} characters")
        return np.asarray([index[c] for c in text], dtype=np.int32)

    def decode(self, ids) -> str:
        """The string of token ids (each in ``[0, size)``)."""
        return "".join(self.chars[int(i)] for i in np.asarray(ids).ravel())


def read_text(path: str | Path) -> tuple[str, CharVocab]:
    """The file's text (UTF-8) and its character vocabulary."""
    p = resolve_text_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"text file {p} not found (text_path={str(path)!r}; relative paths "
                                f"are resolved against {REPO_ROOT})")
    text = p.read_text(encoding="utf-8")
    chars = tuple(sorted(set(text)))
    if len(chars) < 2:
        raise ValueError(f"text file {p} must contain at least 2 distinct characters")
    return text, CharVocab(chars)


def load_charlm(text_path: str | Path = DEFAULT_TEXT, seq_len: int = 64, val_fraction: float = 0.1,
                n_val: int = 128) -> Dataset:
    """Character-level next-token prediction on a text file.

    Args:
        text_path: plain-text file (relative paths resolved against the repository root).
        seq_len: context length ``T`` (>= 1).
        val_fraction: trailing share of the characters held out, in ``(0, 1)``.
        n_val: validation windows (>= 1); fewer when the validation part is too short.

    Returns a :class:`Dataset` whose ``x`` are ``(n, T)`` int32 windows, ``y`` the windows shifted
    by one character, ``n_classes`` the vocabulary size and ``name`` ``charlm``.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 1:
        raise ValueError(f"seq_len must be an integer >= 1; got {seq_len!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    if isinstance(n_val, bool) or not isinstance(n_val, (int, np.integer)) or n_val < 1:
        raise ValueError(f"n_val must be an integer >= 1; got {n_val!r}")
    text, vocab = read_text(text_path)
    ids = vocab.encode(text)
    cut = int(len(ids) * (1.0 - val_fraction))
    train, val = ids[:cut], ids[cut:]
    for part, name in ((train, "training"), (val, "validation")):
        if len(part) < seq_len + 1:
            raise ValueError(f"the {name} part of {text_path} has {len(part)} characters; seq_len="
                             f"{seq_len} needs at least {seq_len + 1} (use a longer text or a shorter seq_len)")
    x_train = sliding_window_view(train[:-1], seq_len)
    y_train = sliding_window_view(train[1:], seq_len)
    n_windows = (len(val) - 1) // seq_len
    starts = np.linspace(0, (n_windows - 1) * seq_len, min(n_val, n_windows)).astype(np.int64)
    starts = (starts // seq_len) * seq_len
    x_val = np.stack([val[s:s + seq_len] for s in starts])
    y_val = np.stack([val[s + 1:s + seq_len + 1] for s in starts])
    return Dataset(x_train, y_train, x_val, y_val, n_classes=vocab.size, name="charlm")
