"""Pulsed devices on the analog equilibrium transformer's tiles, and the four pulse schemes.

The block's tiles (:data:`~analogeq.hardware.transformer.TILES`) get the layered chip's
referenced pairs (:mod:`analogeq.hardware.pulsed`: ``G+`` a pulsed device, ``G-`` the reference
device at weight 0, ``G_ref`` from :func:`~analogeq.hardware.pulsed.device_hardware`), behind
their own stage gain ``s`` (:attr:`Tile.scale`): the read applies ``W = s w`` with ``w = (G+ -
G-) / G_ref`` the device weight. :func:`attach_block_devices` re-chooses ``s`` for the device's
range (largest weight at ``w_dev / headroom``, ``w_dev = min(-w_min, w_max)``) and writes
``w = W / s``.

:class:`PulsedBlockUpdater` writes the update with the layered chip's per-tile pulse code
(:class:`~analogeq.hardware.pulsed.PulsedUpdater`):

* ``deterministic`` / ``mixed``: the run's optimizer maps the weight-unit gradient of every
  parameter to changes ``dW``; a tile's ``dW / s`` (:meth:`Tile.device_step`) becomes rounded
  pulse counts or goes through the digital accumulator;
* ``stochastic`` / ``tiki-taka``: rank-one pulses, one per token position of each sample, from
  :meth:`~analogeq.hardware.transformer.AnalogEqTransformer.local_signals` (the rows' drives and
  the adjoint at the tile's outputs), at the device learning rate ``lr / s``.

The digital parts (:data:`~analogeq.hardware.transformer_updates.DIGITAL`) change through the
optimizer on their gradient under every scheme. Cumulative pulse counts per device are kept in
the state (``state["pulses"]``, one array per tile in :data:`TILES` order), which the energy
hook reads (:func:`analogeq.energy.block.block_pulses`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.devices.pulsed import AbstractDevice
from analogeq.hardware.pulsed import PulsedUpdater, attach_tile
from analogeq.hardware.transformer import TILES, AnalogEqTransformer, _tile_scale
from analogeq.hardware.transformer_updates import (
    DIGITAL,
    TRAIN_HEADROOM,
    block_gradient,
    block_parameters,
)
from analogeq.models.transformer import PARAMETER_NAMES

__all__ = ["PulsedBlockUpdater", "attach_block_devices"]


def attach_block_devices(chip: AnalogEqTransformer, device: AbstractDevice, key,
                         headroom: float = TRAIN_HEADROOM) -> AnalogEqTransformer:
    """Put a pulsed device under every crosspoint of the block ``chip`` (realized on hardware
    configured with :func:`~analogeq.hardware.pulsed.device_hardware`; one
    :func:`~analogeq.hardware.pulsed.attach_tile` per tile, device parameters drawn from
    ``key``).

    Each tile's stage gain becomes ``s = max(1, headroom max|W| / w_dev)`` (dimensionless;
    ``w_dev = min(-w_min, w_max)`` of the device, in device weight units), so its largest
    weight sits at ``w_dev / headroom`` of the device range, or lower where the weights are
    small (a gain below 1 would shrink the range the tile's weights can reach, and a tile of
    zeros, the initial biases, has no largest weight); the devices hold ``W / s`` clipped into
    their sampled bounds. ``headroom`` (>= 1): growth room of the weights (default
    :data:`~analogeq.hardware.transformer_updates.TRAIN_HEADROOM`).
    """
    if not isinstance(chip, AnalogEqTransformer):
        raise TypeError(f"attach_block_devices attaches to an AnalogEqTransformer; got "
                        f"{type(chip).__name__} (use attach_devices for a layered Chip)")
    cb = chip.config.crossbar
    w_dev = min(-float(device.w_min), float(device.w_max))
    keys = jax.random.split(key, len(TILES))
    tiles = {n: attach_tile(chip.tiles[n], device, cb, k, scale=_tile_scale(n, chip.weight(n), w_dev, headroom))
             for n, k in zip(TILES, keys)}
    return eqx.tree_at(lambda c: c.tiles, chip, tiles)


def _transposed(x):
    """A block tile ``(rows, cols)`` is read ``h W`` (rows driven), so the schemes' ``(n_out,
    n_in)`` array is ``W^T``; a bias tile ``(cols,)`` is ``(cols, 1)``."""
    return x[:, None] if x.ndim == 1 else x.T


def _untransposed(m, shape):
    return m[:, 0] if len(shape) == 1 else m.T


class PulsedBlockUpdater(PulsedUpdater):
    """Writes the update of an :class:`AnalogEqTransformer` with devices attached
    (:func:`attach_block_devices`) as pulses (module docstring). Fields as
    :class:`~analogeq.hardware.pulsed.PulsedUpdater`; ``optimizer`` also updates the digital
    parts under ``stochastic`` and ``tiki-taka``, and ``lr`` is in weight units as the read
    applies them."""

    def _names(self) -> tuple[str, ...]:
        """The parameters the optimizer changes: all of them for the schemes that pulse its
        output, the digital parts only for the rank-one schemes."""
        return PARAMETER_NAMES if self.update_scheme in ("deterministic", "mixed") else DIGITAL

    def init(self, chip: AnalogEqTransformer):
        tiles = [chip.tiles[n] for n in TILES]
        self._check_devices(tiles)
        params = block_parameters(chip)
        state = {"opt": self.optimizer.init({n: params[n] for n in self._names()}),
                 "pulses": tuple(jnp.zeros(t.g_pos.shape, jnp.int32) for t in tiles)}
        if self.update_scheme == "mixed":
            state["chi"] = tuple(jnp.zeros_like(t.g_pos) for t in tiles)
        if self.update_scheme == "tiki-taka":
            state["tt"] = self._tiki_taka_states(tiles, _transposed)
        return state

    def update(self, chip: AnalogEqTransformer, grads, state, key, estimate=None):
        """``grads``: the weight-unit dict of
        :class:`~analogeq.hardware.transformer_updates.InWeightUnits`, or a gradient shaped like
        ``chip`` (converted with :func:`block_gradient`); the rank-one schemes read the tiles'
        signals from ``estimate`` instead."""
        if isinstance(grads, AnalogEqTransformer):
            grads = block_gradient(chip, grads)
        cb = chip.config.crossbar
        tiles = [chip.tiles[n] for n in TILES]
        names, params = self._names(), block_parameters(chip)
        dw, opt = self.optimizer.update({n: grads[n] for n in names}, state["opt"],
                                        {n: params[n] for n in names})
        keys = jax.random.split(key, len(TILES))
        new_state = {"opt": opt}
        if self.update_scheme in ("deterministic", "mixed"):
            chis = state.get("chi", (None,) * len(TILES))
            out = [self._pulse_tile(t, dw[n], chi, c, k, cb)
                   for n, t, chi, c, k in zip(TILES, tiles, chis, state["pulses"], keys)]
            new_w, chis, counts = zip(*out)
            if self.update_scheme == "mixed":
                new_state["chi"] = tuple(chis)
        else:
            new_w, counts, tts = self._rank_one_block(chip, tiles, state, keys, estimate)
            if self.update_scheme == "tiki-taka":
                new_state["tt"] = tts
        new_state["pulses"] = tuple(counts)
        written = {n: t.with_weight(w, cb.G_ref) for n, t, w in zip(TILES, tiles, new_w)}
        new = eqx.tree_at(lambda c: c.tiles, chip, written)
        new = eqx.tree_at(lambda c: tuple(getattr(c, n) for n in DIGITAL), new,
                          tuple(getattr(chip, n) + dw[n] for n in DIGITAL))
        return new, new_state

    def _rank_one_block(self, chip, tiles, state, keys, estimate):
        self._check_rank_one(tiles, estimate)
        signals = jax.vmap(chip.local_signals)(estimate.inputs, estimate.at, estimate.weighted)
        g_ref = chip.config.crossbar.G_ref
        tts = state.get("tt", (None,) * len(TILES))
        out = []
        for n, t, c, tt, k in zip(TILES, tiles, state["pulses"], tts, keys):
            inp, d = signals[n]
            # Every (sample, position) pair is one rank-one update, applied in turn.
            xs, ds = inp.reshape(-1, inp.shape[-1]), d.reshape(-1, d.shape[-1])
            # The read applies W = s w, so a change -lr d x^T of W is -(lr / s) d x^T of the
            # device weight w the pulses move.
            out.append(self._rank_one_tile(t, xs, ds, self.lr / t.scale, c, tt, k, g_ref, _transposed,
                                           lambda m, t=t: _untransposed(m, t.g_pos.shape)))
        new_w, counts, tts = zip(*out)
        return new_w, counts, tuple(tts)
