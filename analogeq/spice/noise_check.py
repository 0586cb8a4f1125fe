"""Transient-noise validation: node-voltage variance from ngspice vs the chip's SDE vs ``kT/C``.

The test circuit is a chip of independent RC neurons (sizes ``(1, n_nodes)``, every weight and
bias 0, no amplifier pole) realized on a chip config, so each node is an RC node driven by its
leak's Johnson noise and, with ``devices``, by its column's devices through the TIA. Closed form
(one-sided densities ``4 k T G``; the leak's current noise into ``C`` and the devices' through
the stage gain ``g_leak / G_ref``):

    var(v) = kT/C (1 + g_leak sum_j G_j / G_ref^2),

``kT/C`` alone without ``devices``. Three estimates of it:

* ngspice: the exported netlist with its noise sources (:mod:`analogeq.spice.noise`), one
  ``.tran`` from rest; after a ``10 tau`` burn-in each node's voltage is resampled on a uniform
  grid and its variance taken about the node's mean (the DC offset of the bias devices' mismatch).
  Standard error by batch means: batches of ``batch_tau`` (>> the ``tau/2`` correlation time of
  ``v^2``), their spread over ``sqrt(n_batches)``. Expected value ``kT/C`` times
  :func:`~analogeq.spice.noise.interpolation_factor` of the sampling step.
* the SDE: the chip's exact-decay integrator (:class:`analogeq.hardware.integrators.ExactDecay`,
  exact Ornstein-Uhlenbeck steps) with the chip's own noise model (:meth:`Chip.noise`) over
  ``sde_draws`` independent settles of ``10 tau`` from rest; standard error
  ``std((v - mean)^2) / sqrt(N)``.
* the closed form above.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from analogeq.hardware.config import ChipConfig
from analogeq.hardware.constants import K_B
from analogeq.spice.noise import NoiseSpec, interpolation_factor
from analogeq.spice.validate import require_float64


@dataclass(frozen=True)
class NoiseValidation:
    """Node-voltage variances [V^2] of one noise test (module docstring), with standard errors.

    Attributes:
        kTC: ``k T / C`` [V^2]; closed_form: the closed-form variance (``kT/C`` times the
            devices' factor); expected_spice: ``closed_form`` times the source's interpolation
            factor (what ngspice should give).
        spice, spice_se: ngspice's variance and its standard error; spice_samples: independent
            samples it is worth (``(T - burn-in) n_nodes / tau``, about ``2 var^2 / se^2``).
        sde, sde_se, sde_samples: the SDE's variance, its standard error and sample count.
        n_nodes, t_stop_tau, step_tau: test size; source: the ngspice source kind
            (:class:`~analogeq.spice.noise.NoiseSpec`); devices: crossbar noise on;
            spice_seconds: ngspice wall time.
    """

    kTC: float
    closed_form: float
    expected_spice: float
    spice: float
    spice_se: float
    spice_samples: float
    sde: float
    sde_se: float
    sde_samples: int
    n_nodes: int
    t_stop_tau: float
    step_tau: float
    source: str
    devices: bool
    temperature: float
    spice_seconds: float

    def summary(self) -> dict:
        """JSON-ready numbers (variances in uV^2, ratios, relative standard errors)."""
        u = 1e12
        return {
            "temperature_K": self.temperature, "n_nodes": self.n_nodes, "t_stop_tau": self.t_stop_tau,
            "noise_source": self.source, "noise_step_tau": self.step_tau, "devices": self.devices,
            "kTC_uV2": self.kTC * u, "closed_form_uV2": self.closed_form * u,
            "expected_spice_uV2": self.expected_spice * u,
            "spice_uV2": self.spice * u, "spice_se_uV2": self.spice_se * u, "spice_samples": self.spice_samples,
            "sde_uV2": self.sde * u, "sde_se_uV2": self.sde_se * u, "sde_samples": self.sde_samples,
            "spice_over_closed_form": self.spice / self.closed_form, "sde_over_closed_form": self.sde / self.closed_form,
            "spice_over_sde": self.spice / self.sde,
            "spice_rel_se": self.spice_se / self.spice, "sde_rel_se": self.sde_se / self.sde,
            "spice_seconds": self.spice_seconds,
        }

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write ``noise_validation.json`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "noise_validation.json"
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return path


def noise_chip(hardware: str | ChipConfig = "ideal", n_nodes: int = 64, temperature: float = 300.0,
               devices: bool = False, seed: int = 0):
    """The test chip: ``n_nodes`` independent RC neurons (zero weights) on ``hardware`` with
    ``kT/C`` noise on, crossbar thermal noise ``devices``, no amplifier pole and exact-decay
    dynamics; returns ``(noisy_chip, spice_chip)`` (same conductances; the second noise-free,
    for the netlist)."""
    from analogeq.hardware.realize import realize
    from analogeq.models.layered import LeakyNetwork
    from analogeq.spice.blocks import spice_config

    cfg = hardware if isinstance(hardware, ChipConfig) else ChipConfig.load(hardware)
    tau = cfg.neuron.tau
    cfg = cfg.replace(**{"noise.temperature": float(temperature), "neuron.kTC_noise": True,
                         "crossbar.thermal_noise": bool(devices), "crossbar.read_noise": 0.0,
                         "neuron.amp_pole_tau": 0.0, "dynamics.integrator": "exact-decay",
                         "dynamics.settle_time": 10 * tau, "dynamics.nudged_time": None,
                         "dynamics.average_window": 0.0, "dynamics.sde_dt": None})
    zeros = lambda *s: jnp.zeros(s, jnp.float64)  # noqa: E731
    net = LeakyNetwork((1, n_nodes), key=None, parameters=((zeros(n_nodes, 1),), (), (zeros(n_nodes),)))
    chip = realize(net, cfg, jax.random.PRNGKey(seed))
    import equinox as eqx

    return chip, eqx.tree_at(lambda c: c.config, chip, spice_config(cfg))


def closed_form_variance(chip) -> float:
    """``kT/C (1 + g_leak mean_i(sum_j G_ij) / G_ref^2)`` [V^2] of the test chip (module
    docstring); the device term only with ``crossbar.thermal_noise``."""
    cfg = chip.config
    ktc = K_B * cfg.noise.temperature / cfg.neuron.C
    if not cfg.crossbar.thermal_noise:
        return ktc
    g = np.asarray(chip.forward[0].line_conductance() + chip.biases[0].line_conductance())
    return float(ktc * (1 + cfg.neuron.g_leak * np.mean(g) / cfg.crossbar.G_ref ** 2))


def rc_netlist(chip, noise: NoiseSpec, t_stop: float):
    """The bare circuit of the test chip's nodes: per neuron a leak resistor ``1/g_leak`` and
    ``C`` to ground with the leak's noise source (:meth:`~analogeq.spice.noise.NoiseSpec.source_line`),
    ``.tran`` to ``t_stop`` [s] from rest. No TIA, nonlinearity or devices: the ``kT/C`` check of
    the noise sources alone, and about 20x faster in ngspice than the exported chip."""
    from analogeq.spice.netlist import Netlist
    from analogeq.spice.noise import _num, noise_options_line

    nc, n = chip.config.neuron, chip.n_neurons
    nt = noise.step * chip.tau
    lines = [f"analogeq kT/C check: {n} RC nodes with {noise.source} leak noise", noise_options_line(noise)]
    for i in range(n):
        lines += [f"R{i} v{i} 0 {_num(1 / nc.g_leak)}", f"C{i} v{i} 0 {_num(nc.C)} ic=0",
                  noise.source_line(f"In{i}", "0", f"v{i}", nc.g_leak, nt)]
    nodes = tuple(f"v{i}" for i in range(n))
    lines += [".save " + " ".join(f"v({m})" for m in nodes), f".tran {_num(nt)} {_num(t_stop)} 0 {_num(nt)} uic", ".end"]
    return Netlist(text="\n".join(lines) + "\n", state_nodes=nodes, v_unit=nc.v_unit, tau=chip.tau,
                   t_stop=t_stop, analyses=("tran",))


def spice_variance(chip, spice_chip, noise: NoiseSpec, t_stop_tau: float, burn_tau: float = 10.0,
                   batch_tau: float = 20.0, circuit: str = "chip"):
    """ngspice's node variance [V^2], its batch-means standard error, the independent samples it
    is worth, and the wall time (module docstring); ``circuit`` ``"chip"`` (the exported chip)
    or ``"rc"`` (:func:`rc_netlist`)."""
    from analogeq.spice.netlist import chip_netlist
    from analogeq.spice.runner import run_netlist

    tau = chip.tau
    if circuit == "rc":
        nl = rc_netlist(chip, noise, t_stop_tau * tau)
    else:
        nl = chip_netlist(spice_chip, np.zeros(1), t_stop=t_stop_tau * tau, analyses=("tran",), noise=noise)
    res = run_netlist(nl, timeout=max(600.0, 0.01 * t_stop_tau / noise.step * chip.n_neurons))
    t = np.asarray(res.time)
    keep = np.concatenate([[True], np.diff(t) > 0])
    grid = np.arange(burn_tau * tau, t[keep][-1], 0.5 * noise.step * tau)
    v = np.stack([np.interp(grid, t[keep], np.asarray(res.tran[m])[keep]) for m in nl.state_nodes])
    d2 = (v - v.mean(axis=1, keepdims=True)) ** 2
    per = int(round(batch_tau / (0.5 * noise.step)))
    nb = d2.shape[1] // per
    batches = d2[:, : nb * per].reshape(d2.shape[0], nb, per).mean(-1).ravel()
    var = float(d2.mean())
    se = float(batches.std(ddof=1) / np.sqrt(batches.size))
    samples = (grid[-1] - grid[0]) / tau * d2.shape[0]
    return var, se, float(samples), res.wall_time


def sde_variance(chip, draws: int, key=None):
    """The SDE's node variance [V^2], standard error and sample count (module docstring)."""
    from analogeq.hardware.dynamics import ChipRelaxation

    relax = ChipRelaxation(chip.config)
    integ = relax.exact_decay()
    x = jnp.zeros((1,), jnp.float64)
    field = lambda s: chip.force(s, x)  # noqa: E731
    sigma = chip.noise()
    s0 = chip.init_state(x)
    keys = jax.random.split(jax.random.PRNGKey(0) if key is None else key, draws)
    ends = np.asarray(jax.jit(jax.vmap(lambda k: integ(field, s0, noise=sigma, key=k)))(keys))
    vu = chip.config.neuron.v_unit
    d2 = ((ends - ends.mean(0)) * vu) ** 2
    return float(d2.mean()), float(d2.std(ddof=1) / np.sqrt(d2.size)), int(d2.size)


def noise_validation(hardware: str | ChipConfig = "ideal", *, n_nodes: int = 64, t_stop_tau: float = 330.0,
                     step: float = 0.02, sde_draws: int = 400, temperature: float = 300.0, devices: bool = False,
                     seed: int = 1, circuit: str = "chip", source: str = "trrandom") -> NoiseValidation:
    """Node-voltage variance of ``n_nodes`` RC neurons on ``hardware`` from ngspice (a
    ``t_stop_tau`` transient with ``source`` noise sampled every ``step tau``), from the chip's SDE
    (``sde_draws`` settles) and in closed form (module docstring). The defaults give about
    ``20,000`` independent samples on each side: relative standard errors near 1 %.
    ``circuit="rc"`` runs the bare RC nodes (:func:`rc_netlist`; leak noise only) in ngspice
    instead of the exported chip. ``source`` ``"trrandom"`` is reproducible for a ``seed``;
    ``"trnoise"`` is not, and its variance scatters beyond its standard error
    (:mod:`analogeq.spice.noise`)."""
    require_float64()
    if circuit not in ("chip", "rc"):
        raise ValueError(f"circuit must be 'chip' or 'rc'; got {circuit!r}")
    if circuit == "rc" and devices:
        raise ValueError("circuit='rc' has no crossbar devices; use circuit='chip' with devices=True")
    if not (t_stop_tau > 10.0 + 2 * 20.0):
        raise ValueError(f"t_stop_tau must exceed 50 (a 10 tau burn-in and two 20 tau batches); got {t_stop_tau!r}")
    chip, spice_chip = noise_chip(hardware, n_nodes, temperature, devices, seed)
    noise = NoiseSpec(temperature=temperature, leak=True, devices=devices, step=step, seed=seed, source=source)
    ktc = K_B * temperature / chip.config.neuron.C
    closed = closed_form_variance(chip)
    sp, sp_se, sp_n, secs = spice_variance(chip, spice_chip, noise, t_stop_tau, circuit=circuit)
    sde, sde_se, sde_n = sde_variance(chip, sde_draws, jax.random.PRNGKey(seed))
    return NoiseValidation(kTC=ktc, closed_form=closed, expected_spice=closed * interpolation_factor(step, source),
                           spice=sp, spice_se=sp_se, spice_samples=sp_n, sde=sde, sde_se=sde_se, sde_samples=sde_n,
                           n_nodes=n_nodes, t_stop_tau=t_stop_tau, step_tau=step, source=source, devices=devices,
                           temperature=temperature, spice_seconds=secs)
