"""Analog chip vs idealized digital emulator on the same model, data and seeds.

:func:`compare` reports, at the initial model: the fixed-point error of the chip against the
emulator, gradient cosines (analog EP vs digital EP vs the implicit adjoint of the digital model
and of the chip), settle times in seconds; a Monte Carlo over independent chip instances (one
call over all chips, :mod:`analogeq.montecarlo`), of the initial and, after training, of the
trained models; the chip's energy and latency of a settle and of a training step
(:func:`analogeq.energy_report.energy_report`); and, optionally, test accuracy over training of both
realizations.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp

from analogeq.assembly import (
    build_analog,
    build_digital,
    load_data,
    load_hardware,
    train,
)
from analogeq.config import TrainConfig
from analogeq.costs import make_cost
from analogeq.devices.presets import load_device
from analogeq.energy_report import energy_line, energy_report
from analogeq.ep import ImplicitAdjoint, free_phase, tree_cosine
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.jsonio import write_json
from analogeq.montecarlo import (
    chip_hardware,
    chip_streams,
    deployable,
    distribution,
    evaluate_chips,
    instance,
    map_chips,
    resolve_mode,
)
from analogeq.streams import Streams


def _rel_err(a, b):
    return jnp.linalg.norm(a - b) / jnp.linalg.norm(b)


class InitialChipMetrics(eqx.Module):
    """Per-chip metrics of a model realized on chip instance ``key`` (a per-chip function for
    :func:`analogeq.montecarlo.map_chips`): the instance is ``k_chip`` of
    :func:`~analogeq.montecarlo.chip_streams` (with ``device``: pulsed devices attached), the
    EP and exact gradients use ``k_probe``, the test evaluation ``k_test``."""

    estimator: eqx.Module
    cost: eqx.Module
    relaxation: ChipRelaxation
    device: eqx.Module | None = None

    def __call__(self, key, model, xs, ys, test_x, test_y, digital_states, digital_exact):
        k_chip, k_noise, k_test = chip_streams(key)
        chip = instance(model, self.relaxation.config, k_chip, self.device)
        ep, exact = _ep_and_exact(self.estimator, self.cost, self.relaxation, chip, xs, ys, k_noise)
        g_ep = chip.weight_gradient(ep.grads)
        test = free_phase(chip, self.relaxation, test_x, k_test)
        y = jax.vmap(chip.readout)(test.state)
        return {
            "fixed_point_error": _rel_err(ep.free.state[:, : chip.n_neurons], digital_states),
            "cos_ep_vs_chip_exact": tree_cosine(g_ep, chip.weight_gradient(exact.grads)),
            "cos_ep_vs_digital_exact": tree_cosine(g_ep, digital_exact),
            "settle_time_s": jnp.mean(ep.free.time) * self.relaxation.tau,
            "test_acc": jnp.mean(jnp.argmax(y, axis=-1) == test_y),
        }


def chip_metrics(estimator, cost, hw: ChipConfig, model, keys, xs, ys, test_x, test_y, digital_states,
                 digital_exact, *, device=None, mode: str = "auto"):
    """Per-chip metrics for chip instances of ``model`` drawn from ``keys`` (one call over all
    chips: :func:`analogeq.montecarlo.map_chips` with ``mode``).

    Returns a dict of arrays with one entry per key: ``fixed_point_error`` (node voltages vs the
    emulator's fixed point, relative), ``cos_ep_vs_chip_exact``, ``cos_ep_vs_digital_exact``,
    ``settle_time_s`` (mean over the probe batch) and ``test_acc`` of the realized model. With a
    pulsed ``device`` every instance has those devices under its crosspoints.
    """
    hw = chip_hardware(hw, device)
    fn = InitialChipMetrics(estimator, cost, ChipRelaxation(hw), device)
    return map_chips(fn, keys, deployable(model, hw), xs, ys, test_x, test_y, digital_states,
                     digital_exact, mode=mode)


def _device(cfg: TrainConfig):
    """The run's pulsed device model (``None`` without ``--device``)."""
    return load_device(cfg.device).device if cfg.device else None


def chip_keys(cfg: TrainConfig, n_chips: int):
    """The Monte Carlo's chip keys: ``n_chips`` keys split from ``Streams.of(cfg).monte_carlo``."""
    return jax.random.split(Streams.of(cfg).monte_carlo, n_chips)


def monte_carlo(cfg: TrainConfig, hardware, model=None, n_chips: int = 8, n_probe: int = 64,
                mode: str = "auto") -> dict:
    """Distributions over ``n_chips`` chip instances of ``model`` (default: the run's initial
    model; with ``cfg.device`` every instance has pulsed devices), as ``{metric: {"mean",
    "std", "min", "max", "values"}}``. ``mode``: see :func:`analogeq.montecarlo.map_chips`."""
    hw = load_hardware(hardware)
    digital = build_digital(cfg)
    model = digital.model if model is None else model
    d = digital.data
    xs, ys = jnp.asarray(d.x_train[:n_probe]), jnp.asarray(d.y_train[:n_probe])
    dep, dexact = _ep_and_exact(digital.estimator, digital.cost, digital.relaxation, model, xs, ys, None)
    per = chip_metrics(digital.estimator, digital.cost, hw, model, chip_keys(cfg, n_chips), xs, ys,
                       jnp.asarray(d.x_test), jnp.asarray(d.y_test), dep.free.state, dexact.grads,
                       device=_device(cfg), mode=mode)
    return {k: distribution(v) for k, v in per.items()}


def trained_monte_carlo(cfg: TrainConfig, hardware, trained: dict, data=None, n_chips: int = 8,
                        mode: str = "auto") -> dict:
    """The trained models of a report programmed onto ``n_chips`` chip instances (the same
    instances as :func:`monte_carlo`'s, pulsed devices with ``cfg.device``) and evaluated on the
    test set: the accuracy spread a design ships with.

    Args:
        trained: ``{name: model}``; a trained :class:`~analogeq.hardware.chip.Chip` is read back
            with :meth:`~analogeq.hardware.chip.Chip.as_model` (weights beyond the crossbar range
            clipped, :func:`~analogeq.montecarlo.deployable`), a digital model is used as it is.
        data: the run's data set (default: loaded from ``cfg``).

    Returns:
        ``{name: {metric: {"mean", "std", "min", "max", "values"}}}`` with the metrics of
        :class:`~analogeq.montecarlo.ChipEvaluation` (``test_acc``, ``test_loss``,
        ``settle_time_s``, ``test_unconverged``).
    """
    hw = load_hardware(hardware)
    data = data if data is not None else load_data(cfg)
    keys = chip_keys(cfg, n_chips)
    out = {}
    for name, model in trained.items():
        per = evaluate_chips(model, hw, keys, data.x_test, data.y_test, make_cost(cfg.cost),
                             device=_device(cfg), mode=mode)
        out[name] = {k: distribution(v) for k, v in per.items()}
    return out


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
    mode: str = "auto",
) -> dict:
    """Full analog-vs-digital report (``analogeq compare`` calls this).

    Args:
        cfg: the training run (model, estimator, seeds) used by both realizations.
        hardware: chip preset name, TOML path or :class:`ChipConfig`.
        out_dir: where ``report.json`` and the PNG plots go (nothing written when ``None``).
        n_chips: chip instances in the Monte Carlo (one call over all chips; with
            ``cfg.device`` each has pulsed devices).
        train_steps: training steps of both realizations (``0``: no training; default
            ``cfg.steps``).
        mode: how the Monte Carlo maps over chips (:func:`analogeq.montecarlo.map_chips`;
            ``auto``: sharded over the local devices when there are several).

    The report's ``monte_carlo`` holds the initial model on ``n_chips`` instances; after
    training, ``monte_carlo_trained`` holds the chip-trained weights (read back from the trained
    chip) and the emulator-trained model programmed onto the same instances
    (:func:`trained_monte_carlo`); ``monte_carlo_setup`` says how it ran.
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
        "monte_carlo": monte_carlo(cfg, hw, n_chips=n_chips, mode=mode),
        "monte_carlo_setup": {"n_chips": n_chips, "mode": resolve_mode(mode),
                              "local_devices": jax.local_device_count(), "device": cfg.device or None,
                              "chip_keys": f"split(PRNGKey(chip_seed={cfg.chip_seed}), {n_chips})"},
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
        # The chip trained on instance chip_seed; its weights (and the emulator's) shipped onto
        # the Monte Carlo's instances: what a design's accuracy spreads over in production.
        report["monte_carlo_trained"] = trained_monte_carlo(
            run, hw, {"chip-trained": analog.model, "emulator-trained": digital.model},
            data=parts.data, n_chips=n_chips, mode=mode)
        report["monte_carlo_setup"]["trained_chip_final_test_acc"] = analog.summary["final_test_acc"]
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
    for name, mct in report.get("monte_carlo_trained", {}).items():
        acc = mct["test_acc"]
        lines.append(f"Monte Carlo of the trained model over {len(acc['values'])} chips, {name} weights: "
                     f"test acc {acc['mean']:.3f} +- {acc['std']:.3f} (min {acc['min']:.3f}, max {acc['max']:.3f})")
    if "energy" in report:
        lines.append(energy_line(report["energy"]))
    return "\n".join(lines)
