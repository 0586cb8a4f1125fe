"""The pulse response of a device preset: full up then full down sweeps over many sampled
devices, as a designer reads a device (``analogeq devices show``)."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from analogeq.devices.presets import DevicePreset


def pulse_response(preset: DevicePreset, n_devices: int = 64, seed: int = 0, max_pulses: int = 4000) -> dict:
    """Weights (weight units) of ``n_devices`` devices, drawn from ``seed``, starting at their
    lower bound, after each of ``n`` up pulses then ``n`` down pulses, with ``n`` the number
    that spans the nominal range (``(w_max - w_min) / dw_min``, 20 % more, at most
    ``max_pulses``).

    Returns ``{"pulse": (2n,), "w": (2n, n_devices), "n_up": n}`` as NumPy arrays.
    """
    device = preset.device
    n = min(max_pulses, math.ceil(1.2 * (device.w_max - device.w_min) / device.dw_min))
    k_dev, k_c2c = jax.random.split(jax.random.PRNGKey(seed))
    st = device.sample(k_dev, (n_devices,), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32)
    signs = jnp.concatenate([jnp.ones(n, jnp.int32), -jnp.ones(n, jnp.int32)])
    w = device.trace(st.b_min, st, signs, k_c2c)
    return {"pulse": np.arange(1, 2 * n + 1), "w": np.asarray(w), "n_up": n}


def plot_pulse_response(preset: DevicePreset, response: dict, path: str | Path) -> Path:
    """Mean, 5-95 % band over devices and a few single devices; saves a PNG at ``path``."""
    from analogeq.plots import save_figure  # sets the Agg backend before pyplot loads

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    p, w = response["pulse"], response["w"]
    lo, hi = np.percentile(w, [5, 95], axis=1)
    ax.fill_between(p, lo, hi, color="tab:blue", alpha=0.25, label="5-95 % of devices")
    for k in range(min(3, w.shape[1])):
        ax.plot(p, w[:, k], lw=0.6, color="0.4", alpha=0.8, label="single devices" if k == 0 else None)
    ax.plot(p, w.mean(axis=1), color="tab:blue", lw=2, label="mean")
    ax.axvline(response["n_up"], color="k", ls=":", lw=1)
    ax.set_xlabel("pulse number (up, then down)")
    ax.set_ylabel("weight (weight units)")
    ax.set_title(f"{preset.name}: {preset.description}", fontsize=9)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)
