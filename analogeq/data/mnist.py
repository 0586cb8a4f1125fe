"""MNIST and Fashion-MNIST from the four IDX files of their distribution (no download).

MNIST: Y. LeCun, L. Bottou, Y. Bengio, P. Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998; files and format at http://yann.lecun.com/exdb/mnist/.
Fashion-MNIST: H. Xiao, K. Rasul, R. Vollgraf, arXiv:1708.07747 (2017), a drop-in replacement
with the same file names, shapes and label range.

A folder holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each gzip-compressed (``.gz``) or
raw. ``validation`` of the 60,000 training images (a seeded random subset) are held out as the
validation split the training loop evaluates periodically; the 10,000 test images are kept for
the final evaluation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analogeq.data.dataset import Dataset
from analogeq.data.idx import read_idx
from analogeq.data.text import REPO_ROOT, resolve_text_path

DEFAULT_MNIST_DIR = "../shared/data/mnist"
"""Where ``load_mnist`` looks without ``data_dir`` (relative to the repository root)."""

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
"""The four files of the distribution (each with or without ``.gz``)."""

N_CLASSES = 10


def find_file(folder: Path, stem: str) -> Path:
    """``folder/stem.gz`` or else ``folder/stem``; a one-line error naming both when neither exists."""
    for p in (folder / f"{stem}.gz", folder / stem):
        if p.is_file():
            return p
    raise FileNotFoundError(f"{stem}[.gz] not found in {folder}; the folder must hold the four IDX files "
                            f"{', '.join(FILES.values())} (each gzip-compressed with .gz or raw)")


def read_split(folder: Path, images: str, labels: str) -> tuple[np.ndarray, np.ndarray]:
    """Images scaled to ``[0, 1]`` and flattened, ``(n, rows * cols)`` float32, and their labels
    ``(n,)`` int32, checked: same count, labels in ``0..9``."""
    fi, fl = find_file(folder, images), find_file(folder, labels)
    x = read_idx(fi, ndim=3, dtype_code=0x08)
    y = read_idx(fl, ndim=1, dtype_code=0x08)
    if len(x) != len(y):
        raise ValueError(f"{fl}: {len(y)} labels for the {len(x)} images of {fi}; expected equal counts")
    if y.size and int(y.max()) >= N_CLASSES:
        bad = int(np.argmax(y >= N_CLASSES))
        raise ValueError(f"{fl}: label {int(y[bad])} at index {bad}; labels must lie in 0..{N_CLASSES - 1}")
    return (x.reshape(len(x), -1) / np.float32(255.0)).astype(np.float32), y.astype(np.int32)


def load_idx_folder(data_dir: str | Path, *, name: str, validation: int = 5000,
                    split_seed: int = 0) -> Dataset:
    """The data set in an MNIST-layout folder (see the module docstring).

    Args:
        data_dir: the folder (relative paths resolve against the repository root, then the
            working directory).
        name: task name stored in the dataset.
        validation: training images held out as the validation split (0: none; the training
            loop then evaluates on the test set).
        split_seed: seed of the random choice of validation images.
    """
    folder = resolve_text_path(data_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{name}: data_dir {str(data_dir)!r} is not a folder ({folder}; relative "
                                f"paths resolve against {REPO_ROOT}); it must hold the four IDX files "
                                f"{', '.join(FILES.values())} (gzip or raw)")
    x_train, y_train = read_split(folder, FILES["train_images"], FILES["train_labels"])
    x_test, y_test = read_split(folder, FILES["test_images"], FILES["test_labels"])
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"{folder}: training images have {x_train.shape[1]} pixels, test images "
                         f"{x_test.shape[1]}; expected the same image size")
    if not isinstance(validation, (int, np.integer)) or isinstance(validation, bool) \
            or not 0 <= validation < len(y_train):
        raise ValueError(f"validation must be an integer in [0, {len(y_train) - 1}] (training images "
                         f"held out); got {validation!r}")
    if validation == 0:
        return Dataset(x_train, y_train, x_test, y_test, n_classes=N_CLASSES, name=name)
    held = np.zeros(len(y_train), dtype=bool)
    held[np.random.default_rng(split_seed).permutation(len(y_train))[:validation]] = True
    return Dataset(x_train[~held], y_train[~held], x_test, y_test, n_classes=N_CLASSES, name=name,
                   x_val=x_train[held], y_val=y_train[held])


def load_mnist(data_dir: str | Path = DEFAULT_MNIST_DIR, validation: int = 5000, split_seed: int = 0) -> Dataset:
    """MNIST: 28x28 handwritten digits, pixels scaled to ``[0, 1]`` and flattened to 784
    features; by default 55,000 training, 5,000 validation and 10,000 test images.

    Args:
        data_dir: folder with the four IDX files (default ``../shared/data/mnist``).
        validation, split_seed: see :func:`load_idx_folder`.
    """
    return load_idx_folder(data_dir, name="mnist", validation=validation, split_seed=split_seed)


def load_fashion_mnist(data_dir: str | Path | None = None, validation: int = 5000,
                       split_seed: int = 0) -> Dataset:
    """Fashion-MNIST (same files, shapes and split as :func:`load_mnist`); ``data_dir`` is
    required, since no copy ships with the project."""
    if data_dir is None or not str(data_dir):
        raise ValueError("fashion-mnist: data_dir is required (--data-dir DIR, a folder holding the four "
                         f"IDX files {', '.join(FILES.values())}, gzip or raw)")
    return load_idx_folder(data_dir, name="fashion-mnist", validation=validation, split_seed=split_seed)
