"""Data converters: uniform mid-tread quantizers for the input DAC and the read-out ADC."""

from __future__ import annotations

import jax.numpy as jnp
from jaxtyping import Array


def quantize(v: Array, bits: int, full_scale: float) -> Array:
    """Clip ``v`` [V] to ``[-full_scale, full_scale]`` and round to ``2**bits`` uniform levels.

    ``bits == 0`` is an ideal converter (no clipping, no rounding).
    """
    if bits == 0:
        return v
    step = 2.0 * full_scale / (2**bits - 1)
    clipped = jnp.clip(v, -full_scale, full_scale)
    return jnp.round((clipped + full_scale) / step) * step - full_scale
