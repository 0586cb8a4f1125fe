"""Argument types for the ``analogeq`` command line: every flag is checked when it is parsed.

Each factory returns a callable for ``argparse``'s ``type=``; a bad value raises
:class:`argparse.ArgumentTypeError`, which the parser turns into one line
``analogeq SUBCOMMAND: error: argument --flag: <what is allowed>; got <value>``. Numbers must be
finite (``nan``, ``inf`` and overflowing literals such as ``1e400`` are refused), integers lie in
a stated range (so a seed cannot overflow a PRNG key) and paths are checked for kind (a file
where a file is read, a writable folder where output goes) before any work starts.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from pathlib import Path
from typing import Callable

SEED_MAX = 2**32 - 1
"""Largest seed: ``jax.random.PRNGKey`` takes an unsigned 32-bit integer."""

INT_MAX = 2**31 - 1
"""Largest count any flag accepts (JAX indexes and loops with int32)."""


class ArgumentParser(argparse.ArgumentParser):
    """An :class:`argparse.ArgumentParser` whose errors are one line: ``PROG: error: MESSAGE``
    (no usage block), exit status 2. Subparsers inherit the class."""

    def error(self, message: str):  # noqa: D102 -- argparse's hook
        # "argument --x: must be ..." (a type below failed) reads "--x must be ..."
        message = re.sub(r"^argument (\S+): must be ", r"\1 must be ", " ".join(message.split()))
        self.exit(2, f"{self.prog}: error: {message}\n")


def _interval(lo, hi, lo_open, hi_open) -> str:
    if lo is None and hi is None:
        return "a finite number"
    if hi is None:
        return f"a finite number {'>' if lo_open else '>='} {lo:g}"
    if lo is None:
        return f"a finite number {'<' if hi_open else '<='} {hi:g}"
    return f"a finite number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, unit: str = "", allowed: str = "") -> Callable[[str], float]:
    """A finite float in ``[lo, hi]`` (``lo_open``/``hi_open`` exclude the end; ``None``: no
    bound); ``unit`` is appended to the message, ``allowed`` replaces its description."""
    allowed = allowed or _interval(lo, hi, lo_open, hi_open) + (f" {unit}" if unit else "")

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}") from None
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) \
                or (hi is not None and (v >= hi if hi_open else v > hi)):
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}")
        return v

    parse.__name__ = "number"
    return parse


def integer(lo: int | None = None, hi: int | None = INT_MAX) -> Callable[[str], int]:
    """A decimal integer in ``[lo, hi]`` (``None``: no bound; ``hi`` defaults to 2**31 - 1)."""
    lo_eff = -INT_MAX - 1 if lo is None else lo
    hi_eff = INT_MAX if hi is None else hi
    allowed = f"an integer in [{lo_eff}, {hi_eff}]"

    def parse(text: str) -> int:
        try:
            v = int(text.strip(), 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}") from None
        if not lo_eff <= v <= hi_eff:
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text!r}")
        return v

    parse.__name__ = "integer"
    return parse


seed = integer(0, SEED_MAX)
"""A PRNG seed in ``[0, 2**32 - 1]``."""

count = integer(1)
"""A count >= 1."""


def _first_existing(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_writable_below(path: Path, text: str) -> None:
    """The nearest existing ancestor of ``path`` (the path itself, for an existing folder) must be
    a writable directory, so the file or the folders below it can be created."""
    anc = _first_existing(path if path.is_dir() else path.parent)
    if not anc.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text!r}: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {anc} is not writable")


def out_dir(text: str) -> Path:
    """An output folder: non-empty, not an existing file, creatable and writable."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name an output folder; got an empty path")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give a folder for the outputs")
    _check_writable_below(path, text)
    return path


def out_file(text: str) -> Path:
    """An output file: non-empty, not a directory, in a creatable and writable folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name an output file; got an empty path")
    path = Path(text)
    if path.is_dir() or text.endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name")
    _check_writable_below(path, text)
    return path


def in_file(text: str) -> Path:
    """A file to read: non-empty and not a directory. (That it exists is checked when it is
    opened, so a command line can be parsed, e.g. by the docs test, before its files exist.)"""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a file; got an empty path")
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file")
    if path.exists() and not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"file {text!r} is not readable")
    return path


def in_dir(text: str) -> Path:
    """A run folder (or the ``checkpoint.eqx`` inside one): non-empty and not another file.
    That it exists is checked when it is read."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a run folder; got an empty path")
    path = Path(text)
    if path.exists() and not path.is_dir() and path.name != "checkpoint.eqx":
        raise argparse.ArgumentTypeError(f"{text!r} is a file; give the run folder")
    return path


def preset_or_file(kind: str) -> Callable[[str], str]:
    """A preset name or a TOML file of ``kind`` (``"chip"``, ``"device"``); an empty string is
    kept (it means "none"/"the default"). A directory is refused here; unknown names and
    missing files are refused by the loader (with the list of presets)."""

    def parse(text: str) -> str:
        if text and Path(text).is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a {kind} preset name "
                                             f"or a {kind} TOML file")
        return text

    parse.__name__ = f"{kind} preset"
    return parse
