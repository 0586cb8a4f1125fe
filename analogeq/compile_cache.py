"""JAX's persistent compilation cache for analogeq's programs.

Compiling a chip's training step takes tens of seconds on a laptop CPU; the same program is
compiled again by every new process (each ``analogeq train``, each sweep worker). With the
persistent cache an executable compiled once is read back from disk by later processes. The
command line turns it on in a user cache directory; the Python API leaves JAX's configuration
to the caller (call :func:`enable`). A sweep's Dask workers turn it on with the settings of the
process that submits the runs (:func:`settings`).

Environment: ``$ANALOGEQ_COMPILE_CACHE`` (a directory, or ``off``) and
``$ANALOGEQ_COMPILE_CACHE_MIN_SECONDS`` (programs that compile faster are not stored; default
1 s, 0 stores every program -- what the test suite uses, as its processes compile many of the
same small programs).

Programs with host callbacks are not cached by JAX, which is why finite-checks of relaxations
are returned as flags and raised on the host rather than with ``equinox.error_if``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CACHE_ENV = "ANALOGEQ_COMPILE_CACHE"
"""Environment variable: a directory for the cache, or ``off`` to leave it disabled."""
MIN_SECONDS_ENV = "ANALOGEQ_COMPILE_CACHE_MIN_SECONDS"
"""Environment variable: the minimum compile time of a stored program (seconds, >= 0)."""
DEFAULT_MIN_SECONDS = 1.0
"""Programs compiled faster than this (seconds) are not stored unless configured otherwise: the
cache holds the slow training steps, not the many small eager programs."""


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/analogeq/jax`` (``~/.cache/analogeq/jax`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "analogeq" / "jax"


def min_seconds() -> float:
    """``$ANALOGEQ_COMPILE_CACHE_MIN_SECONDS`` (seconds), else :data:`DEFAULT_MIN_SECONDS`.

    Raises ``ValueError`` (one line naming the variable and its value) unless it is a finite
    number >= 0.
    """
    text = os.environ.get(MIN_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_MIN_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{MIN_SECONDS_ENV}={text!r}: expected a number of seconds >= 0 (programs that "
                         f"compile faster are not cached; unset it for the default {DEFAULT_MIN_SECONDS:g})")
    return value


def enable(path: str | os.PathLike | None = None, min_compile_seconds: float | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache and return its directory.

    Args:
        path: cache directory (default: ``$ANALOGEQ_COMPILE_CACHE``, else :func:`default_dir`).
        min_compile_seconds: programs that compile faster than this are not stored (seconds;
            default: :func:`min_seconds`, i.e. ``$ANALOGEQ_COMPILE_CACHE_MIN_SECONDS`` or 1 s).

    Returns ``None`` (and changes nothing) when ``$ANALOGEQ_COMPILE_CACHE`` is ``off`` or the
    directory cannot be created. Raises ``ValueError`` for a bad
    ``$ANALOGEQ_COMPILE_CACHE_MIN_SECONDS`` (see :func:`min_seconds`).
    """
    if min_compile_seconds is None:
        min_compile_seconds = min_seconds()
    env = os.environ.get(CACHE_ENV, "")
    if path is None and env.lower() in ("off", "0", "false", "no"):
        return None
    directory = Path(path or env or default_dir()).expanduser()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def settings() -> tuple[str, float] | None:
    """This process's cache as ``(directory, min_compile_seconds)`` for :func:`enable` in another
    process (a sweep's Dask workers), or ``None`` when JAX has no cache directory set."""
    import jax

    directory = jax.config.jax_compilation_cache_dir
    if not directory:
        return None
    return str(directory), float(jax.config.jax_persistent_cache_min_compile_time_secs)
