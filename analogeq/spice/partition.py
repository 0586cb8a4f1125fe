"""Layer blocks: a network too large for one netlist, split into blocks of whole layers.

A block is a set of neurons written with their circuits; the outputs of the neurons outside it
that its columns read (the layer below through the forward tile, the layer above through the
feedback tile) are ideal sources held at ``rho(v_k)`` of a boundary state
(:func:`analogeq.spice.chip_netlist` with ``neurons`` and ``boundary``). With the boundary at
the network's steady state ``v*``, the block's own steady state is ``v*`` restricted to it, and
its transient is the chip's ODE with every state outside the block frozen (:func:`block_field`):
that is what each block's netlist is validated against.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from analogeq.spice.netlist import MAX_NEURONS


def layer_blocks(sizes, max_neurons: int = MAX_NEURONS) -> tuple[tuple[int, ...], ...]:
    """The neuron indices of each block: the whole network when its ``sum(sizes[1:])`` neurons
    fit ``max_neurons``; otherwise consecutive whole layers packed into blocks of at most
    ``max_neurons`` (a layer larger than that split into equal chunks of at most
    ``max_neurons``)."""
    sizes = tuple(int(s) for s in sizes)
    if not (isinstance(max_neurons, int) and 1 <= max_neurons <= MAX_NEURONS):
        raise ValueError(f"max_neurons must be an integer in [1, {MAX_NEURONS}]; got {max_neurons!r}")
    n = sum(sizes[1:])
    if n <= max_neurons:
        return (tuple(range(n)),)
    blocks, current, start = [], [], 0
    for size in sizes[1:]:
        layer = list(range(start, start + size))
        start += size
        if len(current) + size <= max_neurons:
            current += layer
            continue
        if current:
            blocks.append(tuple(current))
            current = []
        if size <= max_neurons:
            current = layer
            continue
        chunks = -(-size // max_neurons)
        per = -(-size // chunks)
        blocks += [tuple(layer[k:k + per]) for k in range(0, size, per)]
    if current:
        blocks.append(tuple(current))
    return tuple(blocks)


def block_mask(chip, neurons) -> np.ndarray:
    """1 on the states of the block's neurons (node voltages and, with a pole, amplifier
    outputs), 0 elsewhere; shape ``chip.state_shape``."""
    n = chip.n_neurons
    mask = np.zeros(chip.state_shape, np.float64)
    idx = np.asarray(neurons, int)
    mask[idx] = 1.0
    if chip.has_pole:
        mask[n + idx] = 1.0
    return mask


def block_state(chip, neurons, boundary, s0=None) -> np.ndarray:
    """The full chip state of a block's transient: ``boundary`` (a full state, state units)
    outside the block, ``s0`` (default: :meth:`Chip.init_state`) inside it."""
    mask = block_mask(chip, neurons)
    inside = np.zeros(chip.state_shape) if s0 is None else np.asarray(s0, np.float64)
    return mask * inside + (1 - mask) * np.asarray(boundary, np.float64)


class BlockField(eqx.Module):
    """The chip's field with the states outside a block frozen: ``mask * F(s; x)`` (units of
    ``1/tau``); what a block netlist with boundary sources integrates."""

    chip: object
    x: jnp.ndarray
    mask: jnp.ndarray

    def __call__(self, s):
        return self.mask * self.chip.force(s, self.x)


def block_field(chip, x, neurons) -> BlockField:
    """:class:`BlockField` of ``chip`` at input ``x`` (state units) for ``neurons``."""
    dtype = chip.offset.dtype
    return BlockField(chip=chip, x=jnp.asarray(x, dtype), mask=jnp.asarray(block_mask(chip, neurons), dtype))


@eqx.filter_jit
def _traj(relax, field, s0, ts):
    return relax.trajectory(field, s0, ts)


def block_trajectory(chip, x, neurons, s0_full, t_seconds, relaxation) -> np.ndarray:
    """The frozen-boundary ODE (:func:`block_field`) from the full state ``s0_full`` (state
    units) at times ``t_seconds`` [s]; shape ``(len(t_seconds), *chip.state_shape)``. The
    times are padded to a multiple of 1024 so repeated calls reuse one compilation."""
    ts = np.asarray(t_seconds, np.float64) / chip.tau
    n = len(ts)
    padded = np.concatenate([ts, np.full(-n % 1024, ts[-1])])
    out = _traj(relaxation, block_field(chip, x, neurons), jnp.asarray(s0_full, chip.offset.dtype),
                jnp.asarray(padded))
    return np.asarray(out)[:n]
