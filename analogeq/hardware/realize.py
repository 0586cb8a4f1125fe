"""Realization: map a model onto one chip instance sampled from a PRNG key."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from analogeq.hardware.chip import Chip
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.programming import program
from analogeq.hardware.tile import Tile, auto_gains, expand_tiles
from analogeq.models.layered import LeakyNetwork


def _bounds(key, shape, cb, dtype):
    """Per-device bounds ``G_min (1 + d xi)``, ``G_max (1 + d xi')`` for the + and - device."""
    k1, k2 = jax.random.split(key)
    lo = cb.G_min * (1 + cb.d2d_bounds * jax.random.normal(k1, (2, *shape), dtype))
    hi = cb.G_max * (1 + cb.d2d_bounds * jax.random.normal(k2, (2, *shape), dtype))
    lo = jnp.maximum(lo, 0.0)
    return lo, jnp.maximum(hi, lo + 1e-3 * (cb.G_max - cb.G_min))


def map_tile(w, cb, key, scale: float = 1.0) -> Tile:
    """Program weights ``w`` (dimensionless) as differential pairs around the mid conductance.

    The tile reads ``scale w`` (its stage gain :attr:`Tile.scale`): its devices hold ``w``
    as ``(G+ - G-) / G_ref``, or with ``crossbar.tile_gain = "auto"`` ``w / gain_t`` on
    physical tile ``t`` (:func:`auto_gains`, stored in :attr:`Tile.gain`)."""
    kb, kp, kn = jax.random.split(key, 3)
    lo, hi = _bounds(kb, w.shape, cb, w.dtype)
    gain = auto_gains(w, cb, cb.w_max) if cb.tile_gain == "auto" else None
    held = w if gain is None else w / expand_tiles(gain, w.shape, cb)
    mid = (cb.G_min + cb.G_max) / 2
    g_pos = program(mid + held * cb.G_ref / 2, lo[0], hi[0], cb, kp)
    g_neg = program(mid - held * cb.G_ref / 2, lo[1], hi[1], cb, kn)
    return Tile(g_pos=g_pos, g_neg=g_neg, lo=lo, hi=hi, scale=scale, gain=gain)


def realize(model: LeakyNetwork, config: ChipConfig, key) -> Chip:
    """A chip instance of ``model``: bounds, programming error, quantization and neuron
    mismatch are drawn once from ``key``. With every non-ideality off the chip's field equals
    the model's.

    Args:
        model: a :class:`LeakyNetwork` (the field an amplifier-based crossbar computes).
        config: the hardware description.
        key: PRNG key of this chip instance.
    """
    if not isinstance(model, LeakyNetwork):
        raise TypeError(
            f"realize maps a LeakyNetwork onto crossbar tiles; got {type(model).__name__} "
            "(a Hopfield energy's rho'(s) factor has no crossbar circuit here)"
        )
    cb, nc = config.crossbar, config.neuron
    limit = math.inf if cb.tile_gain == "auto" else cb.w_max  # auto gains fit every tile
    for name, ws in (("weights", model.weights), ("feedback", model.feedback), ("biases", model.biases)):
        for l, w in enumerate(ws):
            if not isinstance(w, jax.core.Tracer) and float(jnp.max(jnp.abs(w))) > limit + 1e-12:
                raise ValueError(
                    f"model.{name}[{l}] has |w| up to {float(jnp.max(jnp.abs(w))):.3g}, beyond the "
                    f"crossbar range {limit:.3g} = (G_max - G_min)/G_ref; raise crossbar.G_max or "
                    "G_ref's denominator, or scale the model"
                )
    k_fwd, k_fb, k_b, k_off, k_gain = jax.random.split(key, 5)
    tiles = lambda ws, k: tuple(map_tile(w, cb, kk) for w, kk in zip(ws, jax.random.split(k, max(len(ws), 1))))  # noqa: E731
    n = sum(model.sizes[1:])
    dtype = model.weights[0].dtype
    return Chip(
        sizes=model.sizes,
        forward=tiles(model.weights, k_fwd),
        feedback=tiles(model.feedback, k_fb),
        biases=tiles(model.biases, k_b),
        offset=nc.offset_sigma / nc.v_unit * jax.random.normal(k_off, (n,), dtype),
        gain=1 + nc.gain_sigma * jax.random.normal(k_gain, (n,), dtype),
        config=config,
    )
