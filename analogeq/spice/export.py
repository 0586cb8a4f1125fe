"""A trained run as ngspice netlists: its checkpoint realized on its chip, one file or layer blocks.

:func:`analogeq.spice_report.run_chip` reads a run directory of ``analogeq train``
(:func:`analogeq.load_run`) and returns the chip its checkpoint describes (a :class:`RunChip`), in float64 with every noise source off
(:func:`analogeq.spice.spice_config`):

* a chip run (``hardware`` set in its ``config.toml``, with or without a pulsed device): the
  checkpointed chip itself -- its trained conductances, mismatch and periphery;
* an emulator run: the trained :class:`LeakyNetwork` clipped to the crossbar range and realized
  on ``hardware`` (a preset or TOML file) as chip instance ``Streams.of(cfg).chip``, the instance
  :func:`analogeq.build_analog` would train (:func:`analogeq.montecarlo.instance`).

:func:`export_chip` writes it: ``network.cir`` when the network fits one block
(:data:`MAX_NEURONS`, or ``max_neurons``), else per layer block (:func:`layer_blocks`)
``block_<k>.cir`` (the block's circuits only), ``block_<k>_bench.cir`` (library, input DACs, the
block's boundary inputs as sources at the network's ODE steady state, ``.include
block_<k>.cir``, analyses) and ``top.cir`` (the whole network: DACs, ``.include`` of every block,
analyses), plus ``export.json`` describing the files.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analogeq.hardware.chip import Chip
from analogeq.spice.netlist import MAX_NEURONS, Netlist, SpiceOptions, netlist_parts
from analogeq.spice.noise import NoiseSpec
from analogeq.spice.partition import layer_blocks


@dataclass(frozen=True, eq=False)
class RunChip:
    """The chip a run's checkpoint describes, ready for export.

    Attributes:
        chip: the realized :class:`Chip` (float64, noise off, adaptive dynamics, ideal ADC).
        noise: the thermal noise of the run's hardware (:class:`NoiseSpec`), ``None`` if none.
        kind: ``"chip"`` (trained on the chip) or ``"emulator"`` (trained digitally, realized here).
        hardware: the hardware's name (preset, file or ``"custom"``).
        data: the run's :class:`analogeq.Dataset`.
        step: the checkpoint's training step.
        run_dir: the run directory.
    """

    chip: Chip
    noise: NoiseSpec | None
    kind: str
    hardware: str
    data: object
    step: int
    run_dir: Path


@dataclass(frozen=True, eq=False)
class Export:
    """The files :func:`export_chip` wrote.

    Attributes:
        folder: where they are.
        blocks: the neuron indices of each block (one block: the whole network).
        files: per block the file to run (``network.cir`` or ``block_<k>_bench.cir``).
        fragments: per block the file of its circuits (``block_<k>.cir``; empty for one block).
        top: the top-level file (``network.cir`` or ``top.cir``).
        manifest: what ``export.json`` holds.
    """

    folder: Path
    blocks: tuple[tuple[int, ...], ...]
    files: tuple[Path, ...]
    fragments: tuple[Path, ...]
    top: Path
    manifest: dict = field(default_factory=dict)


def export_chip(chip: Chip, x, folder: str | os.PathLike, *, boundary=None, max_neurons: int = MAX_NEURONS,
                options: SpiceOptions = SpiceOptions(), noise: NoiseSpec | None = None,
                t_stop: float | None = None, analyses: tuple[str, ...] = ("op", "tran"), s0=None,
                title: str = "analogeq run", info: dict | None = None) -> Export:
    """Write ``chip`` driven by input ``x`` (state units) into ``folder`` (module docstring).

    Args:
        boundary: the network's node voltages (state units, ``(n_neurons,)``) that a layer
            block's boundary sources hold; required when the network is split (e.g. the ODE
            steady state, :func:`analogeq.spice.ode_steady_state`).
        max_neurons: block limit (at most :data:`MAX_NEURONS`).
        options, noise, s0, analyses: as :func:`analogeq.spice.chip_netlist`.
        t_stop: ``.tran`` length [s] (default ``20 tau``).
        title: the files' title line prefix; info: extra entries for ``export.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("block_*.cir"), folder / "network.cir", folder / "top.cir"]:
        old.unlink(missing_ok=True)  # a previous export's files would mix with this one's
    t_stop = 20 * chip.tau if t_stop is None else float(t_stop)
    blocks = layer_blocks(chip.sizes, max_neurons)
    kw = dict(s0=s0, t_stop=t_stop, options=options, analyses=analyses, noise=noise)
    n = chip.n_neurons
    manifest = {"sizes": list(chip.sizes), "neurons": n, "tau_s": chip.tau, "v_unit_V": chip.config.neuron.v_unit,
                "t_stop_s": t_stop if "tran" in analyses else None, "analyses": list(analyses),
                "noise": None if noise is None else vars(noise), **(info or {})}
    if len(blocks) == 1:
        p = netlist_parts(chip, x, title=f"{title}: sizes {chip.sizes}", **kw)
        top = folder / "network.cir"
        top.write_text("\n".join(p.head + p.sources + p.body + p.tail) + "\n")
        manifest["blocks"] = [{"neurons": [0, n - 1], "file": top.name, "state_nodes": list(p.state_nodes)}]
        (folder / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return Export(folder=folder, blocks=blocks, files=(top,), fragments=(), top=top, manifest=manifest)
    if boundary is None:
        raise ValueError(f"the network has {n} neurons, over the block limit {max_neurons}: pass boundary "
                         "(the node voltages its layer blocks' boundary sources hold, e.g. the ODE steady state)")
    files, fragments, entries = [], [], []
    for k, idx in enumerate(blocks):
        p = netlist_parts(chip, x, neurons=idx, boundary=boundary,
                          title=f"{title}: block {k}, neurons {idx[0]}..{idx[-1]} of sizes {chip.sizes}", **kw)
        frag, bench = folder / f"block_{k}.cir", folder / f"block_{k}_bench.cir"
        frag.write_text("\n".join([f"* analogeq layer block {k}: neurons {idx[0]}..{idx[-1]} (included by "
                                   f"{bench.name} and top.cir)"] + p.body) + "\n")
        bench.write_text("\n".join(p.head + p.sources + ["", f".include {frag.name}"] + p.tail) + "\n")
        files.append(bench)
        fragments.append(frag)
        entries.append({"neurons": [idx[0], idx[-1]], "file": bench.name, "circuits": frag.name,
                        "state_nodes": list(p.state_nodes)})
    p = netlist_parts(chip, x, title=f"{title}: whole network, sizes {chip.sizes}", limit=n, body=False, **kw)
    top = folder / "top.cir"
    top.write_text("\n".join(p.head + p.sources + [""] + [f".include {f.name}" for f in fragments] + p.tail) + "\n")
    manifest["blocks"] = entries
    manifest["top"] = top.name
    (folder / "export.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return Export(folder=folder, blocks=blocks, files=tuple(files), fragments=tuple(fragments), top=top,
                  manifest=manifest)


_INCLUDE = re.compile(r"^\.include\s+(\S+)\s*$", re.I | re.M)


def read_netlist(path: str | os.PathLike, state_nodes, v_unit: float, tau: float) -> Netlist:
    """A written netlist file as a :class:`Netlist` to run, its ``.include`` lines replaced by
    the included files' text (relative to the file's folder: ngspice's shared library has no
    file of its own to resolve them against)."""
    path = Path(path)
    text = _INCLUDE.sub(lambda m: (path.parent / m.group(1)).read_text().rstrip(), path.read_text())
    m = re.search(r"^\.tran\s+\S+\s+(\S+)", text, re.M)
    analyses = tuple(a for a, pat in (("op", r"^\.op\b"), ("tran", r"^\.tran\b")) if re.search(pat, text, re.M))
    return Netlist(text=text, state_nodes=tuple(state_nodes), v_unit=v_unit, tau=tau,
                   t_stop=float(m.group(1)) if m else None, analyses=analyses)


def to_state(netlist_states: np.ndarray, chip: Chip, neurons, like) -> np.ndarray:
    """Embed a block's states (``(..., n_block_states)``, order of its ``state_nodes``) into
    full chip states shaped like ``like`` (``(..., *chip.state_shape)``), other entries from
    ``like``."""
    out = np.array(like, np.float64, copy=True)
    idx = list(neurons) + ([chip.n_neurons + i for i in neurons] if chip.has_pole else [])
    out[..., idx] = netlist_states
    return out
