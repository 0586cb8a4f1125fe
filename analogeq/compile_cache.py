"""JAX's persistent compilation cache for analogeq's programs.

Compiling a chip's training step takes tens of seconds on a laptop CPU; the same program is
compiled again by every new process (each ``analogeq train``, each sweep worker). With the
persistent cache an executable compiled once is read back from disk by later processes. The
command line turns it on in a user cache directory; the Python API leaves JAX's configuration
to the caller (call :func:`enable`).

Programs with host callbacks are not cached by JAX, which is why finite-checks of relaxations
are returned as flags and raised on the host rather than with ``equinox.error_if``.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "ANALOGEQ_COMPILE_CACHE"
"""Environment variable: a directory for the cache, or ``off`` to leave it disabled."""


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/analogeq/jax`` (``~/.cache/analogeq/jax`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "analogeq" / "jax"


def enable(path: str | os.PathLike | None = None, min_compile_seconds: float = 1.0) -> Path | None:
    """Turn on JAX's persistent compilation cache and return its directory.

    Args:
        path: cache directory (default: ``$ANALOGEQ_COMPILE_CACHE``, else :func:`default_dir`).
        min_compile_seconds: programs that compile faster than this are not stored (seconds).

    Returns ``None`` (and changes nothing) when ``$ANALOGEQ_COMPILE_CACHE`` is ``off`` or the
    directory cannot be created.
    """
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
