"""Tests run in float64 where they isolate a method from rounding; models state their dtype."""

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

# Commands the tests run (in process or as subprocesses) share one compilation cache in the
# checkout, not the user's home.
os.environ.setdefault("ANALOGEQ_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))

jax.config.update("jax_enable_x64", True)

import analogeq as aq  # noqa: E402

F64 = jnp.float64


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
