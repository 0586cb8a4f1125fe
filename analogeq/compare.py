"""Analog chip vs idealized digital emulator on the same model, data and seeds.

:func:`compare` reports, at the initial model: the fixed-point error of the chip against the
emulator, gradient cosines (analog EP vs digital EP vs the implicit adjoint of the digital model
and of the chip), settle times in seconds; a Monte Carlo over independent chip instances (one
vectorized call); the chip's energy and latency of a settle and of a training step
(:func:`analogeq.energy_report.energy_report`); and, optionally, test accuracy over training of both
realizations.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.assembly import build_analog, build_digital, load_hardware, train
from analogeq.config import TrainConfig
from analogeq.energy_report import energy_line, energy_report
from analogeq.ep import ImplicitAdjoint, free_phase, tree_cosine
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.realize import realize
from analogeq.jsonio import write_json
from analogeq.streams import Streams


def _rel_err(a, b):
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


@eqx.filter_jit
def chip_metrics(estimator, cost, hw: ChipConfig, model, keys, xs, ys, test_x, test_y, digital_states, digital_exact):
    """Per-chip metrics for chip instances of ``model`` drawn from ``keys`` (vectorized).

    Returns a dict of arrays with one entry per key: ``fixed_point_error`` (node voltages vs the
    emulator's fixed point, relative), ``cos_ep_vs_chip_exact``, ``cos_ep_vs_digital_exact``,
    ``settle_time_s`` (mean over the probe batch) and ``test_acc`` of the realized model.
    """
    relax = ChipRelaxation(hw)

    def one(key):
        k_chip, k_noise, k_test = jax.random.split(key, 3)
        chip = realize(model, hw, k_chip)
        ep, exact = _ep_and_exact(estimator, cost, relax, chip, xs, ys, k_noise)
        g_ep = chip.weight_gradient(ep.grads)
        test = free_phase(chip, relax, test_x, k_test)
        y = jax.vmap(chip.readout)(test.state)
        return {
            "fixed_point_error": _rel_err(ep.free.state[:, : chip.n_neurons], digital_states),
            "cos_ep_vs_chip_exact": tree_cosine(g_ep, chip.weight_gradient(exact.grads)),
            "cos_ep_vs_digital_exact": tree_cosine(g_ep, digital_exact),
            "settle_time_s": jnp.mean(ep.free.time) * relax.tau,
            "test_acc": jnp.mean(jnp.argmax(y, axis=-1) == test_y),
        }

    return jax.vmap(one)(keys)


def monte_carlo(cfg: TrainConfig, hardware, model=None, n_chips: int = 8, n_probe: int = 64) -> dict:
    """Distributions over ``n_chips`` chip instances of ``model`` (default: the run's initial
    model), as ``{metric: {"mean", "std", "min", "max", "values"}}``."""
    hw = load_hardware(hardware)
    digital = build_digital(cfg)
    model = digital.model if model is None else model
    d = digital.data
    xs, ys = jnp.asarray(d.x_train[:n_probe]), jnp.asarray(d.y_train[:n_probe])
    dep, dexact = _ep_and_exact(digital.estimator, digital.cost, digital.relaxation, model, xs, ys, None)
    keys = jax.random.split(Streams.of(cfg).monte_carlo, n_chips)
    per = chip_metrics(digital.estimator, digital.cost, hw, model, keys, xs, ys, jnp.asarray(d.x_test), jnp.asarray(d.y_test),
                       dep.free.state, dexact.grads)
    return {k: _dist(np.asarray(v)) for k, v in per.items()}


def _dist(v: np.ndarray) -> dict:
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "values": v.tolist()}


@eqx.filter_jit
def _ep_and_exact(estimator, cost, relaxation, model, xs, ys, key):
    ep = estimator.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    exact = ImplicitAdjoint().estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    return ep, exact


def gradient_report(cfg: TrainConfig, hardware, n_probe: int = 64) -> dict:
    """Fixed points, gradients and settle times of the initial model on one chip instance."""
    hw = load_hardware(hardware)
    digital, analog = build_digital(cfg), build_analog(cfg, hw)
    d = digital.data
    xs, ys = jnp.asarray(d.x_train[:n_probe]), jnp.asarray(d.y_train[:n_probe])
    key = Streams.of(cfg).probe
    chip, relax = analog.model, analog.relaxation
    dig_ep, dig_exact = _ep_and_exact(digital.estimator, digital.cost, digital.relaxation, digital.model, xs, ys, None)
    ana_ep, ana_exact = _ep_and_exact(analog.estimator, analog.cost, relax, chip, xs, ys, key)
    g_ana, g_chip = chip.weight_gradient(ana_ep.grads), chip.weight_gradient(ana_exact.grads)
    cos = lambda a, b: float(tree_cosine(a, b))  # noqa: E731
    free_v = ana_ep.free.state[:, : chip.n_neurons]
    return {
        "fixed_point_error": float(_rel_err(free_v, dig_ep.free.state)),
        "cos_analog_ep_vs_digital_ep": cos(g_ana, dig_ep.grads),
        "cos_analog_ep_vs_digital_exact": cos(g_ana, dig_exact.grads),
        "cos_analog_ep_vs_chip_exact": cos(g_ana, g_chip),
        "cos_digital_ep_vs_digital_exact": cos(dig_ep.grads, dig_exact.grads),
        "cos_chip_exact_vs_digital_exact": cos(g_chip, dig_exact.grads),
        "chip_settle_time_s": float(jnp.mean(ana_ep.free.time)) * relax.tau,
        "chip_free_converged": float(jnp.mean(ana_ep.free.converged)),
        "emulator_free_steps": int(jnp.max(dig_ep.free.steps)),
        "emulator_free_time_tau": float(jnp.mean(dig_ep.free.time)),
        "tau_s": relax.tau,
    }


def compare(
    cfg: TrainConfig,
    hardware: str | ChipConfig,
    out_dir: str | Path | None = None,
    *,
    n_chips: int = 8,
    train_steps: int | None = None,
    progress: bool = True,
) -> dict:
    """Full analog-vs-digital report (``analogeq compare`` calls this).

    Args:
        cfg: the training run (model, estimator, seeds) used by both realizations.
        hardware: chip preset name, TOML path or :class:`ChipConfig`.
        out_dir: where ``report.json`` and the PNG plots go (nothing written when ``None``).
        n_chips: chip instances in the Monte Carlo (vectorized).
        train_steps: training steps of both realizations (``0``: no training; default
            ``cfg.steps``).
    """
    if n_chips < 1:
        raise ValueError(f"n_chips must be >= 1; got {n_chips}")
    hw = load_hardware(hardware)
    out = Path(out_dir) if out_dir is not None else None
    steps = cfg.steps if train_steps is None else train_steps
    report = {
        "config": cfg.to_dict(),
        "hardware": hw.to_dict(),
        "at_init": gradient_report(cfg, hw),
        "monte_carlo": monte_carlo(cfg, hw, n_chips=n_chips),
        "energy": energy_report(cfg, hw),
    }
    if steps > 0:
        run = cfg.replace(steps=steps)
        digital = train(run, None if out is None else out / "digital", progress=progress,
                        parts=build_digital(run), label="digital emulator")
        parts = build_analog(run, hardware)
        # The label names the chip, and with pulsed devices the device and update scheme.
        label = "analog " + parts.label
        analog = train(run, None if out is None else out / "chip", progress=progress,
                       parts=parts, label=label)
        report["training"] = {"digital emulator": digital.summary, label: analog.summary}
        report["_histories"] = {"digital emulator": digital.history, label: analog.history}
    if out is not None:
        write_report(report, out)
    return report


def write_report(report: dict, out: Path) -> None:
    """``report.json`` plus ``learning_curves.png`` and ``monte_carlo.png``."""
    from analogeq.plots import plot_learning_curves, plot_monte_carlo

    out.mkdir(parents=True, exist_ok=True)
    histories = report.get("_histories")
    if histories:
        plot_learning_curves(histories, out / "learning_curves.png")
    plot_monte_carlo(report["monte_carlo"], out / "monte_carlo.png")
    write_json(out / "report.json", {k: v for k, v in report.items() if k != "_histories"})


COMPARE_ROWS = [
    ("test accuracy (final)", "final_test_acc", ".4f"),
    ("test accuracy (best)", "best_test_acc", ".4f"),
    ("cos(gradient, own exact) mean", "grad_cosine_mean", ".4f"),
    ("cos(gradient, own exact) final", "grad_cosine_final", ".4f"),
    ("steps/s (wall clock, this machine)", "steps_per_second", ".2f"),
]


def format_compare(report: dict) -> str:
    """The side-by-side table printed by ``analogeq compare`` and ``make demo``."""
    init, mc = report["at_init"], report["monte_carlo"]
    lines = []
    if "training" in report:
        runs = report["training"]
        w = max(len(r[0]) for r in COMPARE_ROWS) + 2
        cw = [max(len(label), 8) + 2 for label in runs]
        lines.append(" " * w + "".join(f"{label:>{c}}" for label, c in zip(runs, cw)))
        for name, key, fmt in COMPARE_ROWS:
            lines.append(f"{name:{w}}" + "".join(f"{format(s[key], fmt):>{c}}" for s, c in zip(runs.values(), cw)))
    lines += [
        "",
        f"settle: emulator {init['emulator_free_steps']} Euler steps ({init['emulator_free_time_tau']:.0f} tau); "
        f"chip {init['chip_settle_time_s'] * 1e9:.0f} ns ({init['chip_settle_time_s'] / init['tau_s']:.0f} tau, tau = {init['tau_s'] * 1e9:.0f} ns)",
        f"fixed-point error chip vs emulator: {init['fixed_point_error']:.2e}",
        f"gradient cosines at init: analog EP vs digital EP {init['cos_analog_ep_vs_digital_ep']:.4f}, "
        f"vs digital exact {init['cos_analog_ep_vs_digital_exact']:.4f}, vs chip exact {init['cos_analog_ep_vs_chip_exact']:.4f}; "
        f"digital EP vs digital exact {init['cos_digital_ep_vs_digital_exact']:.5f}",
        f"Monte Carlo over {len(mc['test_acc']['values'])} chips (mean +- std): "
        f"test acc of the realized initial model {mc['test_acc']['mean']:.3f} +- {mc['test_acc']['std']:.3f}, "
        f"fixed-point error {mc['fixed_point_error']['mean']:.2e} +- {mc['fixed_point_error']['std']:.1e}, "
        f"cos(analog EP, chip exact) {mc['cos_ep_vs_chip_exact']['mean']:.4f} +- {mc['cos_ep_vs_chip_exact']['std']:.4f}",
    ]
    if "energy" in report:
        lines.append(energy_line(report["energy"]))
    return "\n".join(lines)
