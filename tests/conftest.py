"""Tests run in float64 where they isolate a method from rounding; models state their dtype."""

import os
from pathlib import Path

# Most of a cold suite is XLA's CPU compilation; LLVM's expensive passes buy run time the tests
# do not need (measured: test_chip.py 147 -> 131 s, test_pulsed_chip.py 104 -> 98 s, cold cache).
# The numbers do not change: no pass here relaxes floating-point semantics. Set before JAX loads.
os.environ.setdefault("XLA_FLAGS", "--xla_llvm_disable_expensive_passes=true")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

# Commands the tests run (in process or as subprocesses) share one compilation cache in the
# checkout, not the user's home (set ANALOGEQ_COMPILE_CACHE to another directory for a cold run,
# or to "off"), and store every program however small: the suite runs one process per file and
# many `analogeq` subprocesses, which compile many of the same programs (the eager operations of
# realizing the conftest models on the chip presets, hundreds per file at 50-100 ms each; the
# small training configs; ~20 sub-second programs per CLI process), so a program compiled by one
# process is read back by the others, and a second run of the suite compiles little.
os.environ.setdefault("ANALOGEQ_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
os.environ.setdefault("ANALOGEQ_COMPILE_CACHE_MIN_SECONDS", "0")

jax.config.update("jax_enable_x64", True)

import analogeq as aq  # noqa: E402
from analogeq import compile_cache  # noqa: E402

# The test processes use it too (with the settings above, inherited by the subprocesses).
compile_cache.enable()

F64 = jnp.float64

# ANALOGEQ_TEST_PROFILE=path: append, per test, its process CPU seconds (all threads, not
# subprocesses), the number of programs handed to XLA's backend and their compile seconds
# (JAX's /jax/core/compile/backend_compile_duration event), to find where the suite's time goes.
_PROFILE = os.environ.get("ANALOGEQ_TEST_PROFILE")
if _PROFILE:
    import time

    _compile = [0, 0.0]

    def _on_compile(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            _compile[0] += 1
            _compile[1] += duration

    jax.monitoring.register_event_duration_secs_listener(_on_compile)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        cpu, wall, (n, sec) = time.process_time(), time.perf_counter(), list(_compile)
        yield
        with open(_PROFILE, "a") as f:
            f.write(f"{time.process_time() - cpu:8.1f} cpu {time.perf_counter() - wall:8.1f} wall "
                    f"{_compile[0] - n:4d} compiles {_compile[1] - sec:7.1f} s  {item.nodeid}\n")


@pytest.fixture(scope="session")
def batch():
    """A small input batch with labels (float64)."""
    xs = jax.random.uniform(jax.random.PRNGKey(1), (4, 8), F64)
    return xs, jnp.array([0, 1, 2, 3])


@pytest.fixture(scope="session")
def tight():
    """Euler relaxation run to a 1e-13 residual (float64)."""
    return aq.EulerRelaxation(eps=0.5, T1=5000, T2=5000, tol=1e-13, stop_at_tol=True)


@pytest.fixture(scope="session")
def leaky():
    """Leaky-integrator network with strongly asymmetric feedback (asymmetry 0.7)."""
    return aq.LeakyNetwork((8, 12, 5), key=jax.random.PRNGKey(0), asymmetry=0.7, gain=0.8, dtype=F64)


@pytest.fixture(scope="session")
def hopfield():
    return aq.HopfieldNetwork((8, 12, 5), key=jax.random.PRNGKey(0), gain=0.8, dtype=F64)
