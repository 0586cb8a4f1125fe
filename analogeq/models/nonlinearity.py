"""Neuron nonlinearities ``rho``: smooth, bounded and holomorphic near the real axis."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array


def rho(s: Array) -> Array:
    """Neuron activation ``tanh(s)``: bounded to (-1, 1), the shape of a differential-pair
    transconductor with rails at +-1 (dimensionless)."""
    return jnp.tanh(s)


def rho_prime(s: Array) -> Array:
    """Derivative of :func:`rho`, ``1 - tanh(s)^2``."""
    t = jnp.tanh(s)
    return 1.0 - t * t
