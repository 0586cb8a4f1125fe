"""On-chip learning with pulsed devices: the chip's conductances change only through pulses into
a device model (:mod:`analogeq.devices`), turned from the EP update by an update scheme.

Weight-unit <-> conductance mapping (stated once, tested in ``tests/test_pulsed_chip.py``).
Each crosspoint is a differential pair: ``G+`` is the pulsed device, ``G-`` a fixed reference
device. With the device's nominal weight range ``[w_min, w_max]`` spanning the crossbar's
conductance window ``[G_min, G_max]``,

    G(w) = G_min + (w - w_min) kappa,     kappa = (G_max - G_min) / (w_max - w_min),
    G+ = G(w),   G- = G(0),   G_ref = kappa,

so the chip weight ``W = (G+ - G-) / G_ref`` equals the device weight ``w``: learning rates,
``dw_min`` and bounds are in the model's weight units. ``G_ref = kappa`` is the transimpedance
gain a designer sets for the device (:func:`device_hardware`). A device's own sampled bounds
``[b_min, b_max]`` become the tile's conductance bounds.

Schemes (``update``): ``deterministic`` (the periphery computes the batch update with the
optimizer and sends ``round(|dW| / dw_min)`` pulses, capped at ``max_pulses``), ``stochastic``
(per-sample stochastic pulse coincidence of the rank-one factors, SGD), ``mixed`` (digital
accumulator, pulses on overflow) and ``tiki-taka`` (TTv2: gradient pulses onto a fast array
``A``, buffered column transfers onto the chip's array ``C``; ``W = C``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from analogeq.devices.pulsed import AbstractDevice
from analogeq.devices.schemes import (
    MixedPrecision,
    MixedPrecisionState,
    PulseCountState,
    PulsedSGD,
    TikiTaka,
    deterministic_pulses,
)
from analogeq.hardware.chip import Chip
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.tile import Tile, auto_gains, expand_tiles
from analogeq.updaters import AbstractUpdater

UPDATES = ("deterministic", "stochastic", "mixed", "tiki-taka")


def _range(device: AbstractDevice) -> tuple[float, float]:
    return float(device.w_min), float(device.w_max)


def device_hardware(hw: ChipConfig, device: AbstractDevice) -> ChipConfig:
    """``hw`` with the transimpedance gain ``G_ref = (G_max - G_min) / (w_max - w_min)`` that
    makes one device weight unit one chip weight unit."""
    w_min, w_max = _range(device)
    cb = hw.crossbar
    return hw.replace(**{"crossbar.G_ref": (cb.G_max - cb.G_min) / (w_max - w_min)})


def _reference(cb, device) -> float:
    """``G(0)`` [S], the reference device's conductance."""
    w_min, _ = _range(device)
    return cb.G_min - w_min * cb.G_ref


def attach_devices(chip: Chip, device: AbstractDevice, key) -> Chip:
    """Put a pulsed device under every crosspoint of ``chip`` (configured with
    :func:`device_hardware`): device-to-device parameters are drawn once from ``key``, the
    chip's present weights are clipped into each device's bounds and written as ``G+ = G(w)``
    against the reference ``G- = G(0)`` (see the module docstring)."""
    cb = chip.config.crossbar
    g0 = _reference(cb, device)
    keys = jax.random.split(key, len(chip.tiles()))

    w_min, w_max = _range(device)

    def attach(k: int, tile: Tile) -> Tile:
        st = device.sample(keys[k], tile.g_pos.shape, tile.g_pos.dtype)
        gain = tile.gain
        if cb.tile_gain == "auto":  # the device's own range sets the gains
            gain = auto_gains(tile.weights(cb) / tile.scale, cb, min(-w_min, w_max))
        held = tile.weight(cb.G_ref) if gain is None else (
            tile.weights(cb) / (tile.scale * expand_tiles(gain, tile.g_pos.shape, cb)))
        w = jnp.clip(held, st.b_min, st.b_max)
        ref = jnp.full_like(w, g0)
        return Tile(g_pos=ref, g_neg=ref, lo=jnp.stack([ref + st.b_min * cb.G_ref, ref]),
                    hi=jnp.stack([ref + st.b_max * cb.G_ref, ref]), device=st,
                    scale=tile.scale, gain=gain).with_weight(w, cb.G_ref)

    return chip.map_tiles(attach)


def _as_matrix(x):
    """Bias tiles are one-column arrays: the schemes see them as ``(n, 1)``."""
    return x[:, None] if x.ndim == 1 else x


class PulsedUpdater(AbstractUpdater):
    """Writes the EP update into the chip's pulsed devices.

    Attributes:
        device: the device model under every crosspoint (its per-device state is in the tiles).
        update: ``deterministic`` | ``stochastic`` | ``mixed`` | ``tiki-taka``.
        optimizer: digital rule for ``deterministic`` and ``mixed`` (the periphery computes
            ``dW`` before pulsing); ``stochastic`` and ``tiki-taka`` are SGD by construction.
        lr: learning rate of the rank-one schemes (weight units per unit of ``x d``).
        key: PRNG key of the Tiki-Taka fast array's devices (a property of the chip instance).
        max_pulses: cap on pulses per device and update (bit length for coincidence).
        transfer_every: Tiki-Taka updates (samples) between column transfers; each transfer
            moves ``lr`` times the read column of ``A`` onto the chip's array (TTv2 buffer).
    """

    device: AbstractDevice
    update_scheme: str = eqx.field(static=True)
    optimizer: optax.GradientTransformation = eqx.field(static=True)
    lr: float = eqx.field(static=True)
    key: jax.Array
    max_pulses: int = eqx.field(static=True, default=31)
    transfer_every: int = eqx.field(static=True, default=1)

    def __check_init__(self):
        if self.update_scheme not in UPDATES:
            raise ValueError(f"unknown update {self.update_scheme!r}; choose one of {list(UPDATES)}")

    def _tiki_taka(self) -> TikiTaka:
        # The transfer rate scales with the learning rate, as aihwkit's scale_transfer_lr
        # (default on): C integrates A, and an absolute rate of 1 makes that loop ring.
        return TikiTaka(device_a=self.device, device_c=self.device, transfer_every=self.transfer_every,
                        transfer_lr=self.lr, buffered=True, scheme="stochastic", bl_max=self.max_pulses)

    def init(self, chip: Chip):
        tiles = chip.tiles()
        if any(t.device is None for t in tiles):
            raise ValueError("PulsedUpdater needs a chip with devices attached "
                             "(analogeq.hardware.pulsed.attach_devices)")
        counts = tuple(jnp.zeros(t.g_pos.shape, jnp.int32) for t in tiles)
        if self.update_scheme in ("deterministic", "mixed"):
            opt = self.optimizer.init(eqx.filter(chip.as_model(), eqx.is_inexact_array))
            chi = tuple(jnp.zeros_like(t.g_pos) for t in tiles)
            return {"opt": opt, "chi": chi, "pulses": counts}
        if self.update_scheme == "stochastic":
            return {"pulses": counts}
        tt = self._tiki_taka()
        keys = jax.random.split(self.key, len(tiles))
        return {"tt": tuple(tt.init(k, _as_matrix(t.g_pos).shape, dtype=t.g_pos.dtype)
                            for k, t in zip(keys, tiles)), "pulses": counts}

    def update(self, chip: Chip, grads, state, key, estimate=None):
        cb = chip.config.crossbar
        tiles = chip.tiles()
        keys = jax.random.split(key, len(tiles))
        if self.update_scheme in ("deterministic", "mixed"):
            new_w, state = self._digital(chip, grads, state, keys)
        else:
            new_w, state = self._rank_one(chip, state, keys, estimate)
        chip = chip.map_tiles(lambda k, t: t.with_weight(new_w[k], cb.G_ref))
        return chip, state

    def _digital(self, chip, grads, state, keys):
        gw = eqx.filter(chip.weight_gradient(grads), eqx.is_inexact_array)
        params = eqx.filter(chip.as_model(), eqx.is_inexact_array)
        dw, opt = self.optimizer.update(gw, state["opt"], params)
        dws = tuple(jax.tree_util.tree_leaves((dw.weights, dw.feedback, dw.biases)))
        g_ref = chip.config.crossbar.G_ref
        mp = MixedPrecision(dw_min=self.device.dw_min, max_pulses=self.max_pulses)
        new_w, chis, counts = [], [], []
        cb = chip.config.crossbar
        for t, d, chi, c, k in zip(chip.tiles(), dws, state["chi"], state["pulses"], keys):
            d = t.device_step(d, cb)  # pulses move the device weight, the read applies its gain
            if self.update_scheme == "mixed":
                acc, n = mp.counts(MixedPrecisionState(chi, c), d)
                chi = acc.chi
            else:
                n = deterministic_pulses(d, self.device.dw_min, self.max_pulses)
            new_w.append(self.device.apply_pulses(t.weight(g_ref), t.device, n, k, self.max_pulses))
            chis.append(chi)
            counts.append(c + jnp.abs(n))
        return new_w, {"opt": opt, "chi": tuple(chis), "pulses": tuple(counts)}

    def _rank_one(self, chip, state, keys, estimate):
        if any(t.gain is not None for t in chip.tiles()):
            raise ValueError(f"update {self.update_scheme!r} pulses rank-one coincidences at one "
                             "learning rate per array; with per-tile gains (crossbar.tile_gain = "
                             "'auto') use update 'mixed' or 'deterministic'")
        if estimate is None or estimate.weighted is None:
            raise ValueError(f"update {self.update_scheme!r} writes per-sample rank-one pulses and "
                             "needs a force-form estimator (ep or implicit), not bptt or energy-ep")
        signals = jax.vmap(chip.local_signals)(estimate.inputs, estimate.at, estimate.weighted)
        g_ref = chip.config.crossbar.G_ref
        new_w, counts, tts = [], [], []
        for i, (t, (xs, ds), k) in enumerate(zip(chip.tiles(), signals, keys)):
            w = _as_matrix(t.weight(g_ref))
            dev = jax.tree.map(_as_matrix, t.device)
            if self.update_scheme == "stochastic":
                sgd = PulsedSGD(self.device, scheme="stochastic", bl_max=self.max_pulses)
                count = PulseCountState(_as_matrix(state["pulses"][i]))
                w_new, st = sgd.step(count, w, dev, xs, ds, self.lr, k)
                counts.append(st.pulse_count.reshape(t.g_pos.shape))
            else:
                tt = self._tiki_taka()
                st = eqx.tree_at(lambda s: (s.c, s.c_dev), state["tt"][i], (w, dev))
                st = tt.step(st, xs, ds, self.lr, k)
                w_new = st.c
                tts.append(st)
                counts.append((st.pulses_a + st.pulses_c).reshape(t.g_pos.shape))
            new_w.append(w_new.reshape(t.g_pos.shape))
        new_state = {"pulses": tuple(counts)}
        if tts:
            new_state["tt"] = tuple(tts)
        return new_w, new_state
