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

The per-tile pieces (:func:`attach_tile`, the pulse code of :class:`PulsedUpdater`) serve the
equilibrium transformer's tiles too (:mod:`analogeq.hardware.transformer_pulsed`).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

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
from analogeq.hardware.config import ChipConfig, ConfigError, CrossbarConfig
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


def check_pulse_update(update: str, device: AbstractDevice | None, tile_gain: str) -> None:
    """Refuse a pulse scheme the run cannot make (one line, naming the option): ``stochastic``
    and ``tiki-taka`` pulse a device model, so they need ``device``, and they pulse rank-one
    coincidences at one learning rate per array, which per-tile gains
    (``crossbar.tile_gain = "auto"``) break."""
    if device is None and update in ("stochastic", "tiki-taka"):
        raise ConfigError(f"update = {update!r} pulses a device model: name one with --device, or "
                          "use update 'mixed' (quantized writes through a digital accumulator) or the "
                          "default 'deterministic' (each update written with stochastic rounding)")
    if device is not None and tile_gain == "auto" and update in ("stochastic", "tiki-taka"):
        raise ConfigError(f"update = {update!r} pulses rank-one coincidences at one learning rate "
                          "per array, which per-tile gains (crossbar.tile_gain = 'auto') break; use "
                          "update 'mixed' or 'deterministic', or tile_gain 'fixed'")


def attach_tile(tile: Tile, device: AbstractDevice, cb: CrossbarConfig, key,
                scale: float | None = None) -> Tile:
    """``tile`` with a pulsed device under every crosspoint (crossbar ``cb`` configured with
    :func:`device_hardware`): device-to-device parameters drawn from ``key``, the weights the
    tile reads (:meth:`Tile.weights`) kept, held by the devices as ``W / (scale gain_t)``
    clipped into each device's bounds and written as ``G+ = G(w)`` against the reference
    ``G- = G(0)`` (module docstring).

    Args:
        scale: the tile's new stage gain (dimensionless; default: its present
            :attr:`Tile.scale`).
    """
    w_min, w_max = _range(device)
    st = device.sample(key, tile.g_pos.shape, tile.g_pos.dtype)
    s = tile.scale if scale is None else scale
    gain = tile.gain
    if cb.tile_gain == "auto":  # the device's own range sets the gains
        gain = auto_gains(tile.weights(cb) / s, cb, min(-w_min, w_max))
    held = tile.weights(cb) / (s if gain is None else s * expand_tiles(gain, tile.g_pos.shape, cb))
    w = jnp.clip(held, st.b_min, st.b_max)
    ref = jnp.full_like(w, _reference(cb, device))
    return Tile(g_pos=ref, g_neg=ref, lo=jnp.stack([ref + st.b_min * cb.G_ref, ref]),
                hi=jnp.stack([ref + st.b_max * cb.G_ref, ref]), device=st,
                scale=s, gain=gain).with_weight(w, cb.G_ref)


def attach_devices(chip: Chip, device: AbstractDevice, key) -> Chip:
    """Put a pulsed device under every crosspoint of ``chip`` (configured with
    :func:`device_hardware`; :func:`attach_tile` on each tile, device parameters drawn once
    from ``key``): the chip's present weights, clipped into each device's bounds."""
    cb = chip.config.crossbar
    keys = jax.random.split(key, len(chip.tiles()))
    return chip.map_tiles(lambda k, tile: attach_tile(tile, device, cb, keys[k]))


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
        self._check_devices(tiles)
        counts = tuple(jnp.zeros(t.g_pos.shape, jnp.int32) for t in tiles)
        if self.update_scheme in ("deterministic", "mixed"):
            opt = self.optimizer.init(eqx.filter(chip.as_model(), eqx.is_inexact_array))
            chi = tuple(jnp.zeros_like(t.g_pos) for t in tiles)
            return {"opt": opt, "chi": chi, "pulses": counts}
        if self.update_scheme == "stochastic":
            return {"pulses": counts}
        return {"tt": self._tiki_taka_states(tiles, _as_matrix), "pulses": counts}

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

    # ------------------------------------------------------------- per tile (shared with blocks)
    def _check_devices(self, tiles) -> None:
        if any(t.device is None for t in tiles):
            raise ValueError(f"{type(self).__name__} needs tiles with devices attached "
                             "(analogeq.hardware.pulsed.attach_devices, attach_block_devices)")

    def _tiki_taka_states(self, tiles, view) -> tuple:
        """Tiki-Taka states of ``tiles``, each array seen by the scheme as ``view(array)``
        (``(n_out, n_in)``); the fast arrays' devices drawn from :attr:`key`."""
        tt = self._tiki_taka()
        keys = jax.random.split(self.key, len(tiles))
        return tuple(tt.init(k, view(t.g_pos).shape, dtype=t.g_pos.dtype) for k, t in zip(keys, tiles))

    def _pulse_tile(self, tile: Tile, dw: Array, chi: Array, count: Array, key,
                    cb: CrossbarConfig) -> tuple[Array, Array, Array]:
        """``deterministic`` / ``mixed``: the optimizer's change ``dw`` of one tile (weight units,
        as the read applies them) as pulses into its devices. Returns the new device weights,
        the accumulator and the cumulative pulse counts."""
        d = tile.device_step(dw, cb)  # pulses move the device weight, the read applies its gain
        if self.update_scheme == "mixed":
            mp = MixedPrecision(dw_min=self.device.dw_min, max_pulses=self.max_pulses)
            acc, n = mp.counts(MixedPrecisionState(chi, count), d)
            chi = acc.chi
        else:
            n = deterministic_pulses(d, self.device.dw_min, self.max_pulses)
        w = self.device.apply_pulses(tile.weight(cb.G_ref), tile.device, n, key, self.max_pulses)
        return w, chi, count + jnp.abs(n)

    def _check_rank_one(self, tiles, estimate) -> None:
        if any(t.gain is not None for t in tiles):
            raise ValueError(f"update {self.update_scheme!r} pulses rank-one coincidences at one "
                             "learning rate per array; with per-tile gains (crossbar.tile_gain = "
                             "'auto') use update 'mixed' or 'deterministic'")
        if estimate is None or estimate.weighted is None:
            raise ValueError(f"update {self.update_scheme!r} writes per-sample rank-one pulses and "
                             "needs a force-form estimator (ep or implicit), not bptt or energy-ep")

    def _rank_one_tile(self, tile: Tile, xs: Array, ds: Array, lr: float, count: Array, tt_state,
                       key, g_ref: float, view, unview) -> tuple[Array, Array, object]:
        """``stochastic`` / ``tiki-taka``: the rank-one pulses of the samples ``(xs, ds)``
        (``(n, n_in)``, ``(n, n_out)``) into one tile at learning rate ``lr`` (device weight
        units per unit of ``x d``). The scheme sees each tile array as ``view(array)``
        (``(n_out, n_in)``); ``unview`` maps its result back. Returns the new device weights,
        the cumulative pulse counts and the Tiki-Taka state (``None`` for ``stochastic``)."""
        w = view(tile.weight(g_ref))
        dev = jax.tree.map(view, tile.device)
        if self.update_scheme == "stochastic":
            sgd = PulsedSGD(self.device, scheme="stochastic", bl_max=self.max_pulses)
            w_new, st = sgd.step(PulseCountState(view(count)), w, dev, xs, ds, lr, key)
            return unview(w_new), unview(st.pulse_count), None
        st = eqx.tree_at(lambda s: (s.c, s.c_dev), tt_state, (w, dev))
        st = self._tiki_taka().step(st, xs, ds, lr, key)
        return unview(st.c), unview(st.pulses_a + st.pulses_c), st

    # ------------------------------------------------------------- the layered chip
    def _digital(self, chip, grads, state, keys):
        gw = eqx.filter(chip.weight_gradient(grads), eqx.is_inexact_array)
        params = eqx.filter(chip.as_model(), eqx.is_inexact_array)
        dw, opt = self.optimizer.update(gw, state["opt"], params)
        dws = tuple(jax.tree_util.tree_leaves((dw.weights, dw.feedback, dw.biases)))
        cb = chip.config.crossbar
        out = [self._pulse_tile(t, d, chi, c, k, cb)
               for t, d, chi, c, k in zip(chip.tiles(), dws, state["chi"], state["pulses"], keys)]
        new_w, chis, counts = (tuple(x) for x in zip(*out))
        return list(new_w), {"opt": opt, "chi": chis, "pulses": counts}

    def _rank_one(self, chip, state, keys, estimate):
        tiles = chip.tiles()
        self._check_rank_one(tiles, estimate)
        signals = jax.vmap(chip.local_signals)(estimate.inputs, estimate.at, estimate.weighted)
        g_ref = chip.config.crossbar.G_ref
        tts = state.get("tt", (None,) * len(tiles))
        new_w, counts, new_tts = [], [], []
        for t, (xs, ds), c, tt, k in zip(tiles, signals, state["pulses"], tts, keys):
            w, c, tt = self._rank_one_tile(t, xs, ds, self.lr, c, tt, k, g_ref, _as_matrix,
                                           lambda m, t=t: m.reshape(t.g_pos.shape))
            new_w.append(w)
            counts.append(c)
            new_tts.append(tt)
        new_state = {"pulses": tuple(counts)}
        if self.update_scheme == "tiki-taka":
            new_state["tt"] = tuple(new_tts)
        return new_w, new_state
