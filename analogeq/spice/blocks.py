"""Small reference blocks for SPICE export: a seeded model realized on a noise-free chip."""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.hardware.chip import Chip
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.realize import realize
from analogeq.models.layered import LeakyNetwork

BLOCKS: dict[str, tuple[int, ...]] = {
    "xor": (2, 4, 1),  # XOR-sized: 2 inputs, 4 hidden, 1 output (5 neurons)
    "n8": (4, 6, 2),  # 8 neurons
    "n64": (16, 48, 16),  # 64 neurons
}
"""Named reference blocks: layer sizes, input first."""


def spice_config(hardware: str | ChipConfig = "realistic") -> ChipConfig:
    """``hardware`` (a :class:`ChipConfig`, preset name or TOML path) with every noise source
    off (temperature 0 K, no read noise), adaptive dynamics and an ideal read-out ADC: the
    deterministic chip a netlist describes, read at full precision. Conductance quantization and
    mismatch, the input DAC, offsets, gains, rails and the pole are kept."""
    if isinstance(hardware, ChipConfig):
        cfg = hardware
    elif str(hardware).endswith(".toml") or Path(str(hardware)).exists():
        cfg = ChipConfig.from_toml(hardware)
    else:
        cfg = ChipConfig.preset(str(hardware))
    return cfg.replace(**{"noise.temperature": 0.0, "crossbar.read_noise": 0.0,
                          "dynamics.settle_time": None, "dynamics.nudged_time": None,
                          "dynamics.average_window": 0.0, "periphery.adc_bits": 0})


def block_sizes(name_or_sizes) -> tuple[int, ...]:
    """Layer sizes from a block name in :data:`BLOCKS` or an explicit sequence of sizes."""
    if isinstance(name_or_sizes, str):
        if name_or_sizes not in BLOCKS:
            raise ValueError(f"unknown block {name_or_sizes!r}; choose one of {sorted(BLOCKS)} or give sizes")
        return BLOCKS[name_or_sizes]
    sizes = tuple(int(n) for n in name_or_sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"sizes must list at least an input and an output layer, each >= 1; got {sizes}")
    return sizes


def build_block(name_or_sizes, hardware: str | ChipConfig = "realistic", seed: int = 0,
                gain: float = 0.8) -> tuple[Chip, jnp.ndarray]:
    """A seeded :class:`LeakyNetwork` (weight scale ``gain``, asymmetry 0.5, biases
    ``N(0, 0.2^2)``, every entry clipped to 90 % of the crossbar range) realized on
    :func:`spice_config` ``(hardware)``, and one input ``x ~ U(-1, 1)`` (state units).
    Needs float64 (``jax_enable_x64``)."""
    sizes = block_sizes(name_or_sizes)
    return _build(sizes, spice_config(hardware), float(gain), jax.random.PRNGKey(seed))


@eqx.filter_jit
def _build(sizes: tuple[int, ...], cfg: ChipConfig, gain: float, key) -> tuple[Chip, jnp.ndarray]:
    """:func:`build_block`'s body, compiled once per block shape and config."""
    model = LeakyNetwork(sizes, key=jax.random.fold_in(key, 0), gain=gain, asymmetry=0.5,
                         dtype=jnp.float64)
    kb = jax.random.split(jax.random.fold_in(key, 3), len(model.biases))
    lim = 0.9 * cfg.crossbar.w_max
    model = LeakyNetwork(sizes, key=None, parameters=(
        tuple(jnp.clip(w, -lim, lim) for w in model.weights),
        tuple(jnp.clip(w, -lim, lim) for w in model.feedback),
        tuple(jnp.clip(0.2 * jax.random.normal(k, b.shape, b.dtype), -lim, lim) for k, b in zip(kb, model.biases)),
    ))
    chip = realize(model, cfg, jax.random.fold_in(key, 1))
    x = jax.random.uniform(jax.random.fold_in(key, 2), (sizes[0],), jnp.float64, -1.0, 1.0)
    return chip, x


def reference_netlist(name: str, hardware: str | ChipConfig = "realistic", seed: int = 0):
    """The netlist of reference block ``name`` (:data:`BLOCKS`) as ``netlists/`` stores it:
    :func:`build_block` ``(name, hardware, seed)`` with ``.op`` and a ``20 tau`` ``.tran`` from
    rest, default :class:`SpiceOptions`."""
    from analogeq.spice.netlist import chip_netlist

    chip, x = build_block(name, hardware, seed)
    return chip_netlist(chip, x, t_stop=20 * chip.tau,
                        title=f"analogeq reference block {name}: sizes {chip.sizes}, "
                              f"hardware {hardware if isinstance(hardware, str) else 'custom'}, seed {seed}")
