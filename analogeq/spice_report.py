"""A trained run as SPICE: :func:`run_chip` reads the chip a run's checkpoint describes, and
:func:`spice_report` writes a validation report a designer can hand on: one folder with the netlists, ODE-vs-ngspice
plots and numbers, the transient-noise check and (optionally) device fits, summarized in
``index.md``.

Layout of ``out/``::

    index.md                 the summary (relative links to everything below)
    netlist/                 the trained chip on test sample 0 (export.json describes the files)
    netlist_noise/           the same with thermal-noise sources (when the hardware has noise)
    validation/              run_validation.json, node_errors.png, overlay_block<k>.png, and the
                             .tran samples' netlists
    noise/noise_validation.json
    fits/                    the device-fit files given (and a plot beside each, if present)
"""

from __future__ import annotations

import json
import os
import shutil
import tomllib
from dataclasses import replace
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.hardware.config import ChipConfig
from analogeq.models.layered import LeakyNetwork
from analogeq.montecarlo import deployable, instance
from analogeq.runs import load_run
from analogeq.spice.blocks import spice_config
from analogeq.spice.export import RunChip, export_chip
from analogeq.spice.netlist import MAX_NEURONS, SpiceOptions
from analogeq.spice.noise import NoiseSpec
from analogeq.spice.noise_check import noise_validation
from analogeq.spice.run_validation import validate_run
from analogeq.spice.validate import ode_steady_state
from analogeq.streams import Streams

NOISE_CHECKS = ("chip", "rc", "none")
"""``noise_check`` of :func:`spice_report`: the exported chip's noise sources, the bare RC
nodes, or none."""


def _float64(tree):
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_array(a) and jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


def run_chip(run_dir: str | os.PathLike, hardware: str | os.PathLike | None = None) -> RunChip:
    """The chip of the run in ``run_dir`` (module docstring). ``hardware`` (a chip preset name or
    TOML path) realizes an emulator run (default ``"realistic"``); a chip run is its own chip, so
    ``hardware`` is refused there. Raises one-line ``ValueError`` / ``FileNotFoundError`` for a
    run that cannot be exported (a Hopfield or transformer model, a damaged checkpoint)."""
    jax.config.update("jax_enable_x64", True)  # netlists carry float64 conductances
    run = load_run(run_dir)
    cfg, model = run.config, run.model
    where = Path(run_dir) / "config.toml"
    if cfg.hardware:
        if hardware is not None:
            raise ValueError(f"{where}: the run trained on the chip {cfg.hardware!r}, whose conductances are "
                             f"the export; drop --hardware {hardware!r} (it realizes emulator runs only)")
        chip = _float64(model)
        noise = NoiseSpec.of_chip(chip.config)
        chip = eqx.tree_at(lambda c: c.config, chip, spice_config(chip.config))
        return RunChip(chip=chip, noise=noise, kind="chip", hardware=str(cfg.hardware), data=run.parts.data,
                       step=run.step, run_dir=Path(run_dir))
    if not isinstance(model, LeakyNetwork):
        raise ValueError(f"{where}: model {cfg.model!r} has no crossbar circuit to export; SPICE export "
                         "takes a 'leaky' model (an emulator run) or a chip run")
    name = "realistic" if hardware is None else str(hardware)
    hw = ChipConfig.load(name)
    noise = NoiseSpec.of_chip(hw)
    sc = spice_config(hw)
    chip = instance(_float64(deployable(model, sc)), sc, Streams.of(cfg).chip)
    return RunChip(chip=chip, noise=noise, kind="emulator", hardware=name, data=run.parts.data,
                   step=run.step, run_dir=Path(run_dir))


def spice_report(run_dir: str | os.PathLike, out_dir: str | os.PathLike, *, hardware: str | None = None,
                 samples: int | None = None, tran_samples: int = 1, max_neurons: int = MAX_NEURONS,
                 options: SpiceOptions = SpiceOptions(), noise_check: str = "chip", noise_nodes: int = 16,
                 noise_source: str = "trrandom", fits=(), progress=None) -> Path:
    """Write the report of the run in ``run_dir`` into ``out_dir`` (module docstring); returns
    the path of ``index.md``.

    Args:
        hardware: chip preset or TOML realizing an emulator run (:func:`run_chip`).
        samples, tran_samples, max_neurons, options: as :func:`validate_run`.
        noise_check: one of :data:`NOISE_CHECKS`; the check runs ``noise_nodes`` RC neurons at
            the hardware's temperature (300 K if it has none) for ``330 tau`` (about
            ``320 noise_nodes`` independent samples).
        noise_source: the ngspice noise source of the noise netlist and check (``"trrandom"``
            or ``"trnoise"``, :class:`~analogeq.spice.noise.NoiseSpec`).
        fits: device-fit files (TOML or JSON, e.g. from ``analogeq devices fit``) copied into
            ``fits/`` with a PNG of the same stem beside each, if there is one.
    """
    if noise_check not in NOISE_CHECKS:
        raise ValueError(f"noise_check must be one of {NOISE_CHECKS}; got {noise_check!r}")
    fits = [Path(f) for f in fits]
    for f in fits:
        if not f.is_file():
            raise FileNotFoundError(f"device fit {f} does not exist (give a TOML or JSON file)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rc = run_chip(run_dir, hardware)
    chip = rc.chip
    x0 = np.asarray(rc.data.x_test[0], np.float64)
    steady = ode_steady_state(chip, x0)
    title = f"analogeq run {rc.run_dir.name}, test sample 0"
    ex = export_chip(chip, x0, out / "netlist", boundary=steady[: chip.n_neurons], max_neurons=max_neurons,
                     options=options, title=title)
    ex_noise = None
    if rc.noise is not None:
        rc = replace(rc, noise=replace(rc.noise, source=noise_source))
        ex_noise = export_chip(chip, x0, out / "netlist_noise", boundary=steady[: chip.n_neurons],
                               max_neurons=max_neurons, options=options, noise=rc.noise,
                               analyses=("tran",), title=title + ", thermal noise")
    val = validate_run(rc, out / "validation", samples=samples, tran_samples=tran_samples,
                       max_neurons=max_neurons, options=options, progress=progress)
    val.write(out / "validation")
    noise = None
    if noise_check != "none":
        temperature = rc.noise.temperature if rc.noise is not None else 300.0
        devices = noise_check == "chip" and rc.noise is not None and rc.noise.devices
        cfg = chip.config.replace(**{"noise.temperature": temperature})
        noise = noise_validation(cfg, n_nodes=noise_nodes, temperature=temperature, devices=devices,
                                 circuit=noise_check, source=noise_source)
        noise.write(out / "noise")
    copied = _copy_fits(fits, out / "fits")
    index = out / "index.md"
    index.write_text(_markdown(rc, ex, ex_noise, val.summary, None if noise is None else noise.summary(),
                               copied, out))
    return index


def _copy_fits(fits, folder: Path) -> list[tuple[Path, Path | None, dict | None]]:
    """Copy each fit file (and ``<stem>.png`` beside it) into ``folder``; returns
    ``(file, plot, parsed)`` per fit."""
    out = []
    for f in fits:
        folder.mkdir(parents=True, exist_ok=True)
        dst = folder / f.name
        shutil.copyfile(f, dst)
        plot = f.with_suffix(".png")
        pdst = None
        if plot.is_file():
            pdst = folder / plot.name
            shutil.copyfile(plot, pdst)
        try:
            parsed = tomllib.loads(f.read_text()) if f.suffix == ".toml" else json.loads(f.read_text())
        except (ValueError, UnicodeDecodeError):
            parsed = None
        out.append((dst, pdst, parsed))
    return out


def _flat(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            rows += _flat(v, f"{prefix}{k}.")
        elif not isinstance(v, list) or len(v) <= 8:
            rows.append((prefix + str(k), v))
    return rows


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _markdown(rc, ex, ex_noise, s: dict, noise: dict | None, fits, out: Path) -> str:
    rel = lambda p: Path(p).relative_to(out).as_posix()  # noqa: E731
    chip = rc.chip
    lines = [f"# SPICE validation of `{rc.run_dir}`", "",
             f"- Run: {rc.kind} run, checkpoint step {rc.step}, layer sizes {tuple(chip.sizes)} "
             f"({chip.n_neurons} neurons), hardware `{rc.hardware}`.",
             f"- Chip: tau = C / g_leak = {chip.tau:.4g} s, v_unit = {chip.config.neuron.v_unit:g} V, "
             f"G_ref = {chip.config.crossbar.G_ref:.4g} S, amplifier pole {chip.config.neuron.amp_pole_tau:g} s.",
             "- Units in every netlist: V, A, S, F, s. Subcircuits from `circuits/analogeq.lib`, copied in.", "",
             "## Netlists", ""]
    if len(ex.blocks) == 1:
        lines.append(f"The whole network fits one netlist: [`{rel(ex.top)}`]({rel(ex.top)}) (test sample 0, "
                     "`.op` and a 20 tau `.tran` from rest).")
    else:
        lines.append(f"The network is split into {len(ex.blocks)} layer blocks. Each bench file runs one block "
                     "with its boundary inputs as sources held at the ODE steady state of test sample 0; "
                     f"[`{rel(ex.top)}`]({rel(ex.top)}) includes every block's circuits as the whole network.")
        lines += [""] + [f"- block {k}: neurons {b[0]}..{b[-1]}: [`{rel(f)}`]({rel(f)}) (circuits in "
                         f"[`{rel(g)}`]({rel(g)}))" for k, (b, f, g) in enumerate(zip(ex.blocks, ex.files, ex.fragments))]
    if ex_noise is not None:
        lines += ["", f"With thermal noise (`{rc.noise.source}` sources for the leak and every device at "
                  f"{rc.noise.temperature:g} K): [`{rel(ex_noise.top)}`]({rel(ex_noise.top)})."]
    tran = "n/a" if s["tran_error_max_uV"] is None else f"{s['tran_error_max_uV']:.3g}"
    lines += ["", "## ODE vs ngspice", "",
              f"{s['samples']} test samples; the chip's ODE steady state (adaptive, float64) vs ngspice `.op` of "
              f"every block, and the first {s['tran_samples']} sample(s) as `.tran` vs the ODE trajectory.", "",
              "| quantity | value |", "|---|---|",
              f"| classification agreement (ngspice vs ODE) | {s['agreement'] * 100:.2f} % |",
              f"| accuracy vs labels: ODE / ngspice | {s['accuracy_ode'] * 100:.2f} % / {s['accuracy_spice'] * 100:.2f} % |",
              f"| largest `.op` node error | {s['op_error_max_uV']:.3g} uV |",
              f"| RMS `.op` node error | {s['op_error_rms_uV']:.3g} uV |",
              f"| largest `.tran` node error | {tran} uV |",
              f"| ngspice `.op` time per sample | {_fmt(s['spice_op_seconds_per_sample'])} s |",
              f"| ngspice `.op` + `.tran` time per sample | {_fmt(s['spice_op_tran_seconds_per_sample'])} s |",
              "", "Per-node errors: ![node errors](validation/node_errors.png)", ""]
    lines += [f"Block {k} transient: ![overlay](validation/overlay_block{k}.png)" for k in range(len(ex.blocks))
              if s["tran_samples"]]
    lines += ["", "All numbers: [`validation/run_validation.json`](validation/run_validation.json)."]
    if noise is not None:
        lines += ["", "## Thermal noise", "",
                  f"{noise['n_nodes']} independent RC neurons at {noise['temperature_K']:g} K "
                  f"({'the exported chip, leak and device noise' if noise['devices'] else 'leak noise'}), "
                  f"`{noise['noise_source']}` sampled every {noise['noise_step_tau']:g} tau:", "",
                  "| estimate | variance [uV^2] | standard error [uV^2] |", "|---|---|---|",
                  f"| closed form (kT/C = {noise['kTC_uV2']:.4g}) | {noise['closed_form_uV2']:.4g} | exact |",
                  f"| ngspice (expected {noise['expected_spice_uV2']:.4g} with the sampling) | "
                  f"{noise['spice_uV2']:.4g} | {noise['spice_se_uV2']:.3g} |",
                  f"| chip SDE (exact-decay) | {noise['sde_uV2']:.4g} | {noise['sde_se_uV2']:.3g} |", "",
                  f"ngspice / closed form = {noise['spice_over_closed_form']:.4f}, SDE / closed form = "
                  f"{noise['sde_over_closed_form']:.4f}, ngspice / SDE = {noise['spice_over_sde']:.4f}. "
                  "Numbers: [`noise/noise_validation.json`](noise/noise_validation.json)."]
    if fits:
        lines += ["", "## Device fits", ""]
        for f, plot, parsed in fits:
            lines.append(f"### [`{rel(f)}`]({rel(f)})")
            if parsed:
                lines += ["", "| field | value |", "|---|---|"] + [f"| `{k}` | {_fmt(v)} |" for k, v in _flat(parsed)]
            if plot is not None:
                lines += ["", f"![fit]({rel(plot)})"]
            lines.append("")
    return "\n".join(lines) + "\n"
