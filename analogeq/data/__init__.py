"""Tasks: each loader returns a :class:`Dataset` with a fixed train/test split."""

from __future__ import annotations

from typing import Callable

from analogeq.data.dataset import Dataset
from analogeq.data.digits import load_digits
from analogeq.data.mnist import load_fashion_mnist, load_mnist
from analogeq.data.parity import load_parity
from analogeq.data.text import CharVocab, load_charlm, read_text

TASKS = {"digits": load_digits, "parity": load_parity, "charlm": load_charlm, "mnist": load_mnist,
         "fashion-mnist": load_fashion_mnist}
"""Task name (``TrainConfig.task``, ``--task``) -> loader returning a :class:`Dataset`; extended
by :func:`register_task`."""

_BUILTIN = frozenset(TASKS)


def register_task(name: str, loader: Callable[..., Dataset], *, replace: bool = False) -> None:
    """Make ``loader`` the task ``name``, so ``TrainConfig(task=name)`` and :func:`train` load it.

    A task defined outside the package calls this once, at import of its own module (see
    docs/extending.md). Registering the same loader again is a no-op, so re-imports are safe.

    Args:
        name: task name, a non-empty string without spaces.
        loader: callable returning a :class:`Dataset` (keyword arguments come from
            ``load_task(name, **kwargs)``).
        replace: allow ``name`` to point to a different loader than the one it has (never for
            the built-in tasks).
    """
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise ValueError(f"register_task: name must be a non-empty string without spaces; got {name!r}")
    if not callable(loader):
        raise TypeError(f"register_task({name!r}): loader must be callable; got {type(loader).__name__}")
    old = TASKS.get(name)
    if old is not None and old is not loader:
        if name in _BUILTIN:
            raise ValueError(f"register_task: {name!r} is a built-in task; choose another name")
        if not replace:
            raise ValueError(f"register_task: task {name!r} is already registered to "
                             f"{getattr(old, '__qualname__', old)!r}; pass replace=True to change it")
    TASKS[name] = loader


def load_task(name: str, **kwargs) -> Dataset:
    """Dataset by task name (see :data:`TASKS`)."""
    try:
        loader = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)} "
                         "(or register one with analogeq.data.register_task)") from None
    data = loader(**kwargs)
    if not isinstance(data, Dataset):
        raise TypeError(f"task {name!r}: its loader returned {type(data).__name__}, not an "
                        "analogeq.data.Dataset")
    return data


__all__ = ["CharVocab", "Dataset", "TASKS", "load_charlm", "load_digits", "load_fashion_mnist", "load_mnist",
           "load_parity", "load_task", "read_text", "register_task"]
