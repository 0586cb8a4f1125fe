"""Tasks: each loader returns a :class:`Dataset` with a fixed train/test split."""

from analogeq.data.dataset import Dataset
from analogeq.data.digits import load_digits

TASKS = {"digits": load_digits}


def load_task(name: str, **kwargs) -> Dataset:
    """Dataset by task name (see :data:`TASKS`)."""
    try:
        loader = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None
    return loader(**kwargs)


__all__ = ["Dataset", "TASKS", "load_digits", "load_task"]
