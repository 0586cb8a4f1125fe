"""What ``analogeq devices fit`` writes: the preset TOML (loadable by
:func:`analogeq.devices.presets.load_device`, provenance in its header and ``[sources]``), the
fit's numbers as JSON and a PNG of data against the fit. Every function takes a
:class:`analogeq.devices.fit.DeviceFit` (not imported here: ``DeviceFit.write`` calls this
module)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np

from analogeq.devices.presets import DevicePreset
from analogeq.jsonio import write_json, write_text_atomic
from analogeq.spec import toml_value

__all__ = ["fit_record", "plot_fit", "preset_text", "write_fit"]

_WHAT = {  # how each preset number follows from the per-device fits
    "dw_min": "max(mean D+, mean D-) over devices", "dw_min_dtod": "std((D+ + D-)/2) / dw_min over devices",
    "dw_min_std": "sqrt(sum e^2 / sum step^2) of the one-step errors (cycle-to-cycle)",
    "w_max": "mean of the devices' b_max", "w_min": "mean of the devices' b_min",
    "w_max_dtod": "std(b_max) / w_max over devices", "w_min_dtod": "std(b_min) / |w_min| over devices",
    "up_down": "(mean D+ - mean D-) / dw_min", "up_down_dtod": "std((D+ - D-)/2) / dw_min over devices",
    "gamma": "max(mean gamma_up, mean gamma_down) over devices",
    "gamma_up_down": "(mean gamma_up - mean gamma_down) / gamma",
    "gamma_dtod": "std((gamma_up + gamma_down)/2) / gamma over devices",
    "gamma_up_down_dtod": "std((gamma_up - gamma_down)/2) / gamma over devices",
    "A_up": "mean over devices", "A_down": "mean over devices", "gamma_up": "mean over devices",
    "gamma_down": "mean over devices", "a": "held at aihwkit ExpStepDevice a = 0.244 (A, gamma absorb it)",
    "b": "held at aihwkit ExpStepDevice b = 0.2425 (A, gamma absorb it)",
    "v_up": "mean over devices of the node steps / their mean",
    "v_down": "mean over devices of the node steps / their mean",
}


def _short(fit) -> str:
    p = fit.provenance
    how = "by BIC" if p["model_requested"] == "auto" else "as requested"
    return f"fit to {Path(p['source']).name} (sha256 {p['sha256'][:12]}, {p['date'][:10]}, {fit.model} {how})"


def preset_text(fit, name: str) -> str:
    """The preset TOML of ``fit`` named ``name``: a header comment with the provenance, then
    ``name``, ``description``, ``model``, ``[params]`` and ``[sources]`` (one line per number)."""
    p, c = fit.provenance, fit.candidates[fit.model]
    cmap = p["conductance_map"]
    header = [
        f"Device preset fitted by 'analogeq devices fit' on {p['date']}.",
        (f"source: {p['source']} (sha256 {p['sha256']}), {p['rows']} readings, {p['devices']} device(s), "
        f"{p['cycles']} cycle(s), value column {p['value_column']!r}"),
        (f"weights: w = (G - g_mid) / g_half with g_mid = {cmap['g_mid_S']!r} S, g_half = {cmap['g_half_S']!r} S"
         if cmap else "weights as given (weight units)"),
        f"model: {fit.model} (requested {p['model_requested']!r}); criterion: {p['criterion']}",
        "BIC per family: " + ", ".join(f"{m} {v['bic']:.1f}" for m, v in fit.candidates.items()),
        f"one-step residuals: rms {c['rms']:.3g}, max {c['max_abs']:.3g} (weight units) over {c['n']} steps",
        f"method: {p['method']}",
    ]
    desc = f"fitted to {Path(p['source']).name}: {fit.model}, {p['devices']} device(s), one-step rms {c['rms']:.2g}"
    lines = ["# " + h for h in header]
    lines += ["", f"name = {toml_value(name)}", f"description = {toml_value(desc)}", f"model = {toml_value(fit.model)}",
              "", "[params]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in fit.params.items()]
    lines += ["", "[sources]"]
    lines += [f"{k} = {toml_value(_short(fit) + ': ' + _WHAT[k])}" for k in fit.params]
    return "\n".join(lines) + "\n"


def fit_record(fit, name: str) -> dict:
    """The fit's numbers for ``NAME.json`` (strict JSON)."""
    return {"name": name, "model": fit.model, "params": fit.params, "per_device": fit.per_device,
            "candidates": fit.candidates, "provenance": fit.provenance, "trace_errors": fit.trace_errors()}


def plot_fit(fit, path: str | Path, max_devices: int = 6) -> Path:
    """Two panels: the measured traces (dots) against the noise-free model started at each
    cycle's first reading (lines), and the measured step per pulse against ``w`` with the
    model's step curves. Saves a PNG at ``path``."""
    from analogeq.plots import save_figure  # noqa: I001 -- sets the Agg backend before pyplot loads

    import matplotlib.pyplot as plt

    from analogeq.devices.fit_models import steps, x64

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    labels = list(fit.traces.devices)[:max_devices]
    for k, label in enumerate(labels):
        color = f"C{k % 10}"
        x0 = 0
        for c, sim in zip(fit.traces.devices[label], fit.simulate(label)):
            x = np.arange(x0, x0 + len(c.w))
            ax.plot(x, c.w, ".", ms=2, color=color, alpha=0.5, label=f"device {label}" if x0 == 0 else None)
            ax.plot(x, sim, "-", lw=1, color=color)
            x0 += len(c.w)
        wb, s, wa = fit.traces.pairs(label)
        bx.plot(wb[s > 0], (wa - wb)[s > 0], ".", ms=2, color=color, alpha=0.4)
        bx.plot(wb[s < 0], (wa - wb)[s < 0], ".", ms=2, color=color, alpha=0.4)
        th = fit.theta(label)
        w = np.linspace(th[0], th[1], 200)
        with x64():
            fn = steps(fit.model, fit.nodes)
            bx.plot(w, np.asarray(fn(th, w, np.ones_like(w, bool))), "-", lw=1, color=color)
            bx.plot(w, np.asarray(fn(th, w, np.zeros_like(w, bool))), "-", lw=1, color=color)
    ax.set_xlabel("reading (cycles one after another)")
    ax.set_ylabel("weight (weight units)")
    ax.set_title(f"data (dots) vs {fit.model} fit (lines)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    bx.axhline(0, color="k", lw=0.5)
    bx.set_xlabel("weight before the pulse (weight units)")
    bx.set_ylabel("change per pulse (up > 0, down < 0)")
    bx.set_title(f"change per pulse vs weight: data (dots), {fit.model} (lines)", fontsize=9)
    return save_figure(fig, path)


def write_fit(fit, out: str | Path, name: str) -> dict[str, Path]:
    """Write ``NAME.toml`` (the preset), ``NAME.json`` (the fit's numbers) and ``NAME.png`` into
    ``out``; the TOML is read back through :class:`DevicePreset` before anything is written, so
    a preset that would not load is never left behind. Returns the three paths."""
    out = Path(out)
    text = preset_text(fit, name)
    DevicePreset.from_dict(tomllib.loads(text), default_name=name)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"toml": out / f"{name}.toml", "json": out / f"{name}.json", "png": out / f"{name}.png"}
    write_text_atomic(paths["toml"], text)
    write_json(paths["json"], fit_record(fit, name))
    plot_fit(fit, paths["png"])
    return paths
