"""Tasks: each loader returns a :class:`Dataset` with a fixed train/test split."""

from analogeq.data.dataset import Dataset
from analogeq.data.digits import load_digits
from analogeq.data.parity import load_parity
from analogeq.data.text import CharVocab, load_charlm, read_text

TASKS = {"digits": load_digits, "parity": load_parity, "charlm": load_charlm}
"""Task name (``TrainConfig.task``, ``--task``) -> loader returning a :class:`Dataset`."""


def load_task(name: str, **kwargs) -> Dataset:
    """Dataset by task name (see :data:`TASKS`)."""
    try:
        loader = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None
    return loader(**kwargs)


__all__ = ["CharVocab", "Dataset", "TASKS", "load_charlm", "load_digits", "load_parity", "load_task",
           "read_text"]
