"""Export a realized chip instance as a self-contained ngspice netlist (SI units).

The netlist is the chip of :mod:`analogeq.hardware.chip` built from the subcircuits of
``circuits/analogeq.lib`` (copied in verbatim), with the instance's actual sampled conductances,
offsets, gain errors and rails:

* each neuron ``i`` is an RC node ``v<i>`` (``aeq_rc_neuron``: ``1/g_leak`` from the TIA output
  ``y<i>`` into ``C``), read by its nonlinearity (``aeq_tanh_b`` or ``aeq_tanh_bjt``) onto the
  differential row ``u<i>`` / ``un<i>``;
* its column ``s<i>`` collects the differential pairs of the forward, feedback and bias tiles
  (flat resistors ``1/G``; devices at exactly 0 S are left out) and is read by an inverting TIA
  (``aeq_opamp`` or, with ``neuron.amp_pole_tau > 0``, ``aeq_opamp_1p``);
* inputs come from DAC sources ``x<j>`` / ``xn<j>`` at the chip's quantized levels, the bias rows
  from ``b`` / ``bn`` at ``+-v_unit``.

Finite op-amp gain ``A0`` is calibrated out by the feedback conductance: with ``Gsum`` the
column's total crossbar conductance, ``G_f = (A0 G_ref - Gsum) / (1 + A0)`` makes the closed-loop
gain exactly ``1 / G_ref``, and the open-loop pole ``taup = amp_pole_tau A0 G_ref / (Gsum + G_f)``
makes the closed-loop pole exactly ``amp_pole_tau``. The netlist and :meth:`Chip.force` are then
the same circuit; what differs is only how ngspice and diffrax integrate it.

By default no noise is written: the netlist is the chip's deterministic field, the one
:meth:`ChipRelaxation.trajectory` integrates. With ``noise`` (:class:`~analogeq.spice.noise.NoiseSpec`)
the Johnson noise of every leak and every crossbar device is written as random current sources
(``trrandom`` or ``trnoise``, :mod:`analogeq.spice.noise`).

A *block* is a subset of the neurons (``neurons``): only their circuits are written, and the
outputs ``u<k>`` of the neurons outside it that its columns read are ideal sources held at
``rho(v_k)`` of a given ``boundary`` state (e.g. the ODE's steady state): a layer block of a
network too large for one netlist (:mod:`analogeq.spice.partition`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import jax.numpy as jnp
import numpy as np

from analogeq.hardware.chip import Chip
from analogeq.hardware.constants import K_B, Q_E
from analogeq.spice.library import library_text
from analogeq.spice.noise import NoiseSpec, _num, noise_options_line
from analogeq.spice.nudge import Nudge, nudge_lines

MAX_NEURONS = 256
"""Largest block (hidden + output neurons) the exporter writes in one netlist: ngspice's ``.op``
of a dense 256-neuron block takes about 15 s, its 20 tau ``.tran`` about 10 min
(docs/spice-export.md); larger networks are exported as layer blocks."""

NONLINEARITIES = ("behavioral", "bjt")
METHODS = ("trap", "gear")


@dataclass(frozen=True)
class SpiceOptions:
    """Circuit choices and ngspice accuracy settings of an exported netlist.

    Attributes:
        reltol: ngspice relative tolerance (dimensionless, in (0, 0.1]). Default ``1e-7``.
        abstol: absolute current tolerance [A]. Default ``1e-15``.
        vntol: absolute voltage tolerance [V]. Default ``1e-10``.
        chgtol: charge tolerance [C]. Default ``1e-20``.
        trtol: transient truncation-error factor (ngspice default 7; smaller is tighter).
            Default ``1.0``.
        method: integration method, ``"trap"`` or ``"gear"``. Default ``"trap"``.
        max_step: largest ``.tran`` step, in units of the neuron time constant ``tau``, in
            ``[1e-4, 10]``. Default ``0.02``.
        opamp_gain: open-loop DC gain ``A0`` of the TIA op-amps (dimensionless, > 1); the
            feedback conductance is calibrated for it (module docstring). Default ``1e5``.
        opamp_rail: op-amp output rails ``+-opamp_rail`` [V]; the chip model has no TIA
            saturation, so keep it above the largest drive. Default ``50.0``.
        nonlinearity: ``"behavioral"`` (exactly the chip's tanh) or ``"bjt"`` (transistor-level
            differential pair). Default ``"behavioral"``.
        temperature: simulation temperature [degC] (sets ``kT/q`` of the BJT option).
            Default ``27.0`` (ngspice's nominal).
    """

    reltol: float = 1e-7
    abstol: float = 1e-15
    vntol: float = 1e-10
    chgtol: float = 1e-20
    trtol: float = 1.0
    method: str = "trap"
    max_step: float = 0.02
    opamp_gain: float = 1e5
    opamp_rail: float = 50.0
    nonlinearity: str = "behavioral"
    temperature: float = 27.0

    def __post_init__(self) -> None:
        # (low, high) per number; a low of 0 is exclusive. reltol above 0.1 is no accuracy at all;
        # a max_step below 1e-4 tau makes a 20 tau transient 2e5+ steps (minutes in ngspice).
        bounds = {"reltol": (0.0, 0.1), "abstol": (0.0, 1.0), "vntol": (0.0, 1.0), "chgtol": (0.0, 1.0),
                  "trtol": (0.0, 100.0), "max_step": (1e-4, 10.0), "opamp_rail": (0.0, 1e4),
                  "opamp_gain": (1.0, 1e12), "temperature": (-273.15, 1000.0)}
        for name, (lo, hi) in bounds.items():
            v = getattr(self, name)
            exclusive = lo in (0.0, 1.0, -273.15)
            ok = (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                  and (v > lo if exclusive else v >= lo) and v <= hi)
            if not ok:
                raise ValueError(f"SpiceOptions.{name} must be a finite number in "
                                 f"{'(' if exclusive else '['}{lo:g}, {hi:g}]; got {v!r}")
        if self.method not in METHODS:
            raise ValueError(f"SpiceOptions.method must be one of {METHODS}; got {self.method!r}")
        if self.nonlinearity not in NONLINEARITIES:
            raise ValueError(f"SpiceOptions.nonlinearity must be one of {NONLINEARITIES}; "
                             f"got {self.nonlinearity!r}")

    @property
    def vt(self) -> float:
        """Thermal voltage ``kT/q`` [V] at :attr:`temperature`."""
        return K_B * (self.temperature + 273.15) / Q_E


@dataclass(frozen=True, eq=False)
class Netlist:
    """An exported netlist and how its node voltages map back to the chip's state.

    Attributes:
        text: the netlist (ngspice syntax, SI units).
        state_nodes: node whose voltage is each state entry (``v<i>``, then ``y<i>`` with a pole).
        v_unit: volts per state unit [V].
        tau: neuron time constant [s] (the chip's time unit).
        t_stop: ``.tran`` stop time [s] (``None`` without a transient).
        analyses: the analyses the netlist runs (``"op"``, ``"tran"``).
    """

    text: str
    state_nodes: tuple[str, ...]
    v_unit: float
    tau: float
    t_stop: float | None
    analyses: tuple[str, ...] = field(default=("op", "tran"))

    def states(self, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """Chip states (units of ``v_unit``) from ngspice node voltages [V] keyed by node name;
        shape ``(*vector_shape, n_states)``."""
        missing = [n for n in self.state_nodes if n not in vectors]
        if missing:
            raise KeyError(f"ngspice results lack the state nodes {missing[:5]}; got {sorted(vectors)[:10]}")
        return np.stack([np.asarray(vectors[n], np.float64) for n in self.state_nodes], -1) / self.v_unit

    def write(self, path: str | os.PathLike) -> Path:
        """Write :attr:`text` to ``path`` (parents created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text)
        return path


def check_block(chip, n_block: int | None = None, limit: int | None = None) -> Chip:
    """``chip`` if it is a realized :class:`Chip` whose block (``n_block`` neurons, default all)
    has at most ``limit`` (default :data:`MAX_NEURONS`) neurons, else a ``TypeError`` /
    ``ValueError`` that says what to pass."""
    if not isinstance(chip, Chip):
        name = type(chip).__name__
        hint = ("a HopfieldNetwork's rho'(s) factor has no crossbar circuit; use a LeakyNetwork"
                if name == "HopfieldNetwork" else
                "realize a LeakyNetwork first: analogeq.hardware.realize(model, config, key)")
        raise TypeError(f"SPICE export needs a realized Chip; got {name} ({hint})")
    cb = chip.config.crossbar
    if cb.tile_sum == "digital" or any(t.gain is not None for t in chip.tiles()):
        raise ValueError("SPICE export writes one transimpedance stage per neuron (tiles summed as "
                         "currents at gain 1/G_ref); this chip has per-tile gains or digital tile "
                         "summation (crossbar.tile_gain = 'auto' or tile_sum = 'digital'), which "
                         "that circuit does not model: export it with tile_gain 'fixed', tile_sum 'analog'")
    if cb.wired:
        raise ValueError("SPICE export of a chip writes ideal wires; this chip has wire resistance "
                         f"(crossbar.r_segment = {cb.r_segment:g}, r_drive = {cb.r_drive:g}, r_sense = "
                         f"{cb.r_sense:g} Ohm): one tile's network with its wire resistors is "
                         "analogeq.spice.wires; export the chip with the resistances at 0")
    n = chip.n_neurons if n_block is None else n_block
    limit = MAX_NEURONS if limit is None else limit
    if n > limit:
        raise ValueError(f"SPICE export handles blocks of at most {limit} neurons (hidden + "
                         f"output); chip.sizes={chip.sizes} has {n}" + ("" if n_block is None else " in the block")
                         + "; export it in layer blocks (analogeq.spice.partition)")
    return chip


def _columns(chip: Chip, x_volts=None):
    """Per neuron: list of ``(line, g_pos, g_neg)`` for every device pair on its column: the
    rows of its layer's forward, feedback and bias tiles (:meth:`Tile.row_pairs`), each column
    wired to the line :meth:`Chip.tile_inputs` drives it with (DAC ``x<j>``, neuron output
    ``u<k>``, bias line ``b``)."""
    sizes = chip.sizes
    starts = np.cumsum((0,) + sizes[1:])
    cols = []
    for l in range(len(sizes) - 1):
        below = [f"x{j}" for j in range(sizes[0])] if l == 0 else [f"u{starts[l - 1] + j}" for j in range(sizes[l])]
        tiles = [(chip.forward[l], below)]
        if l + 2 < len(sizes):
            tiles.append((chip.feedback[l], [f"u{starts[l + 1] + j}" for j in range(sizes[l + 2])]))
        tiles.append((chip.biases[l], ["b"]))
        rows = [tile.row_pairs(lines) for tile, lines in tiles]
        cols += [[pair for r in rows for pair in r[i]] for i in range(sizes[l + 1])]
    return cols


def _neg(line: str) -> str:
    return line[0] + "n" + line[1:]


def block_neurons(chip: Chip, neurons=None) -> tuple[int, ...]:
    """The sorted neuron indices of a block (default: every neuron), checked."""
    if neurons is None:
        return tuple(range(chip.n_neurons))
    idx = tuple(sorted({int(i) for i in neurons}))
    if not idx or idx[0] < 0 or idx[-1] >= chip.n_neurons:
        raise ValueError(f"neurons must be a non-empty set of indices in [0, {chip.n_neurons}); got {neurons!r}")
    return idx


@dataclass(frozen=True)
class NetlistParts:
    """A netlist in four parts (lists of lines): ``head`` (title, comments, library,
    ``.options``), ``sources`` (input DACs, bias line, boundary sources), ``body`` (the block's
    neurons and columns, noise sources included) and ``tail`` (nudge, ``.save``, ``.nodeset``,
    analyses, ``.end``); ``state_nodes`` as :class:`Netlist`. A layer block's file is its body;
    its test bench and the top-level file are assembled from the parts
    (:mod:`analogeq.spice.export`)."""

    head: list[str]
    sources: list[str]
    body: list[str]
    tail: list[str]
    state_nodes: tuple[str, ...]


def chip_netlist(chip: Chip, x, *, s0=None, t_stop: float | None = None, options: SpiceOptions = SpiceOptions(),
                 nudge: Nudge | None = None, guess=None, analyses: tuple[str, ...] = ("op", "tran"),
                 title: str | None = None, neurons=None, boundary=None, noise: NoiseSpec | None = None) -> Netlist:
    """The netlist of ``chip`` driven by input ``x`` (SI units throughout).

    Args:
        chip: a realized :class:`Chip` (a block of at most :data:`MAX_NEURONS` neurons).
        x: one input sample (state units, shape ``(sizes[0],)``); the DAC sources are set to
            ``chip.dac(x) * v_unit`` [V].
        s0: initial state of the ``.tran`` analysis (state units, shape ``chip.state_shape``;
            default: ``chip.init_state(x)``), applied with ``uic``.
        t_stop: ``.tran`` stop time [s]; required when ``"tran"`` is in ``analyses``.
        options: circuit choices and tolerances (:class:`SpiceOptions`).
        nudge: the nudged phase's branches (:class:`Nudge`), or ``None`` for the free phase.
        guess: ``.nodeset`` for the ``.op`` Newton solve (state units, shape
            ``chip.state_shape``), e.g. the free state when solving a nudged phase.
        analyses: any of ``"op"`` and ``"tran"``.
        title: first (title) line.
        neurons: the block's neuron indices (default: all); the others' outputs are sources.
        boundary: node voltages of every neuron (state units, shape ``(n_neurons,)``) whose
            ``rho`` drives the block's boundary sources; needed when ``neurons`` leaves out a
            neuron the block reads.
        noise: thermal noise sources (:class:`~analogeq.spice.noise.NoiseSpec`) or ``None``.
    """
    p = netlist_parts(chip, x, s0=s0, t_stop=t_stop, options=options, nudge=nudge, guess=guess,
                      analyses=analyses, title=title, neurons=neurons, boundary=boundary, noise=noise)
    t_stop = t_stop if "tran" in analyses else None
    return Netlist(text="\n".join(p.head + p.sources + p.body + p.tail) + "\n", state_nodes=p.state_nodes,
                   v_unit=chip.config.neuron.v_unit, tau=chip.tau, t_stop=t_stop, analyses=tuple(analyses))


def netlist_parts(chip: Chip, x, *, s0=None, t_stop=None, options: SpiceOptions = SpiceOptions(), nudge=None,
                  guess=None, analyses=("op", "tran"), title=None, neurons=None, boundary=None,
                  noise: NoiseSpec | None = None, limit: int | None = None, body: bool = True) -> NetlistParts:
    """:func:`chip_netlist` in its :class:`NetlistParts` (same arguments); ``limit`` overrides
    :data:`MAX_NEURONS` and ``body=False`` leaves the body empty (a top-level file that
    includes its layer blocks' bodies)."""
    idx = block_neurons(check_block(chip, 0), neurons)
    chip = check_block(chip, len(idx), limit)
    with_body = body
    full = len(idx) == chip.n_neurons
    bad = [a for a in analyses if a not in ("op", "tran")]
    if bad or not analyses:
        raise ValueError(f"analyses must be a non-empty subset of ('op', 'tran'); got {analyses!r}")
    if "tran" in analyses and not (t_stop is not None and math.isfinite(t_stop) and t_stop > 0):
        raise ValueError(f"t_stop [s] must be a finite number > 0 for a .tran analysis; got {t_stop!r}")
    if nudge is not None and not full:
        raise ValueError("a nudged phase is exported for the whole network only (neurons=None)")
    cfg = chip.config
    nc, cb = cfg.neuron, cfg.crossbar
    vu, n, pole = nc.v_unit, chip.n_neurons, chip.has_pole
    x = np.asarray(x, np.float64)
    if x.shape != (chip.sizes[0],):
        raise ValueError(f"x must have shape ({chip.sizes[0]},) for chip.sizes={chip.sizes}; got {x.shape}")
    x_volts = np.asarray(chip.dac(jnp.asarray(x, chip.offset.dtype)), np.float64) * vu
    s0 = np.asarray(chip.init_state(x) if s0 is None else s0, np.float64)
    if s0.shape != tuple(chip.state_shape):
        raise ValueError(f"s0 must have shape {tuple(chip.state_shape)} (state units); got {s0.shape}")
    a0, g_ref = options.opamp_gain, cb.G_ref
    offset = np.asarray(chip.offset, np.float64) * vu
    gain = np.asarray(chip.gain, np.float64)
    cols = _columns(chip)
    nt = None if noise is None else noise.step * chip.tau

    span = (f"V(v0..v{n - 1})" if full else "V(v<i>)") + (f", V(y0..y{n - 1})" if pole and full else ", V(y<i>)" if pole else "")
    head = [title or f"analogeq chip block sizes={chip.sizes}",
            "* Exported by analogeq.spice.chip_netlist. SI units: V, A, S, F, s.",
            f"* neurons {n}, sizes {chip.sizes}, tau = C/g_leak = {_num(chip.tau)} s, "
            f"v_unit = {_num(vu)} V, G_ref = {_num(g_ref)} S",
            f"* nonlinearity: {options.nonlinearity}, rail {_num(nc.rail)} V; op-amp A0 = {_num(a0)}, "
            f"rails +-{_num(options.opamp_rail)} V; amplifier pole {_num(nc.amp_pole_tau)} s",
            f"* state s (units of v_unit) = [{span}] / v_unit"]
    if not full:
        head.append(f"* block: neurons {idx[0]}..{idx[-1]} ({len(idx)}); the outputs of the neurons it "
                    "reads outside the block are sources u<k> held at rho(v_k) of a boundary state")
    if noise is None:
        head.append("* Noise sources are not written (deterministic field).")
    else:
        head.append(f"* Thermal noise at {_num(noise.temperature)} K as {noise.source} current sources (4kTG, "
                    f"sampled every {_num(nt)} s): " + ", ".join(
                        w for w, on in (("leak", noise.leak), ("crossbar devices", noise.devices)) if on))
    head += ["", "* ---- subcircuit library (circuits/analogeq.lib, verbatim) ----",
             library_text().rstrip(), "* ---- end of library ----", "",
             f".options reltol={_num(options.reltol)} abstol={_num(options.abstol)} "
             f"vntol={_num(options.vntol)} chgtol={_num(options.chgtol)} trtol={_num(options.trtol)} "
             f"method={options.method} temp={_num(options.temperature)} tnom={_num(options.temperature)}"]
    if noise is not None:
        head.append(noise_options_line(noise))

    used = {line for i in idx for line, _, _ in cols[i]}
    sources = ["", "* input DACs (quantized levels) and the bias rows"]
    for j, v in enumerate(x_volts):
        if full or f"x{j}" in used:
            sources.append(f"Xdac{j} x{j} xn{j} aeq_dac v={_num(v)}")
    sources.append(f"Xdacb b bn aeq_dac v={_num(vu)}")
    outside = sorted(int(line[1:]) for line in used if line[0] == "u" and int(line[1:]) not in idx)
    if outside:
        if boundary is None or np.shape(boundary) != (n,):
            raise ValueError(f"the block reads neurons outside it ({outside[:4]}...): pass boundary, the "
                             f"node voltages of all {n} neurons (state units), shape ({n},)")
        u = np.asarray(chip.rho(jnp.asarray(np.asarray(boundary, np.float64), chip.offset.dtype)), np.float64) * vu
        sources += ["", "* boundary: outputs of neurons outside the block, held at rho(v_k) [V]"]
        sources += [f"Xbd{k} u{k} un{k} aeq_dac v={_num(u[k])}" for k in outside]

    body = ["", "* neurons: nonlinearity circuits driving the differential rows u<i> / un<i>"]
    for i in idx if with_body else ():
        if options.nonlinearity == "behavioral":
            body.append(f"Xnl{i} v{i} u{i} un{i} aeq_tanh_b rail={_num(nc.rail)} gain={_num(gain[i])} "
                        f"offset={_num(offset[i])}")
        else:
            body.append(f"Xnl{i} v{i} u{i} un{i} aeq_tanh_bjt rail={_num(nc.rail)} gain={_num(gain[i])} "
                        f"offset={_num(offset[i])} vt={_num(options.vt)}")
    body += ["", "* columns: differential pairs (G+ from the negated row), calibrated TIA, RC node"]
    for i in idx if with_body else ():
        body += _column_lines(i, cols[i], chip, s0, options, noise, nt)
    body = body if with_body else []

    nodes = tuple(f"v{i}" for i in idx) + (tuple(f"y{i}" for i in idx) if pole else ())
    tail = nudge_lines(chip, nudge) if nudge is not None else []
    tail += ["", "* analyses", ".save " + " ".join(f"v({m})" for m in nodes)]
    if guess is not None:
        guess = np.asarray(guess, np.float64)
        if guess.shape != tuple(chip.state_shape):
            raise ValueError(f"guess must have shape {tuple(chip.state_shape)} (state units); got {guess.shape}")
        sel = list(idx) + ([n + i for i in idx] if pole else [])
        tail.append(".nodeset " + " ".join(f"v({m})={_num(guess[k] * vu)}" for m, k in zip(nodes, sel)))
    if "op" in analyses:
        tail.append(".op")
    if "tran" in analyses:
        t_max = options.max_step * chip.tau if nt is None else min(options.max_step * chip.tau, nt)
        tail.append(f".tran {_num(t_max)} {_num(t_stop)} 0 {_num(t_max)} uic")
    tail.append(".end")
    return NetlistParts(head=head, sources=sources, body=body, tail=tail, state_nodes=nodes)


def _column_lines(i, pairs, chip, s0, options, noise, nt) -> list[str]:
    """Neuron ``i``'s column (device resistors, calibrated TIA feedback), amplifier and RC node,
    and with ``noise`` its noise sources."""
    nc, g_ref, a0, n = chip.config.neuron, chip.config.crossbar.G_ref, options.opamp_gain, chip.n_neurons
    vu = nc.v_unit
    out = [f"* neuron {i}"]
    noisy = []
    gsum = 0.0
    for k, (line, gp, gn) in enumerate(pairs):
        if gp > 0:
            out.append(f"Rp{i}_{k} {_neg(line)} s{i} {_num(1.0 / gp)}")
            if noise is not None and noise.devices:
                noisy.append(noise.source_line(f"Inp{i}_{k}", _neg(line), f"s{i}", gp, nt))
        if gn > 0:
            out.append(f"Rn{i}_{k} {line} s{i} {_num(1.0 / gn)}")
            if noise is not None and noise.devices:
                noisy.append(noise.source_line(f"Inn{i}_{k}", line, f"s{i}", gn, nt))
        gsum += max(gp, 0.0) + max(gn, 0.0)
    g_f = (a0 * g_ref - gsum) / (1.0 + a0)
    if g_f <= 0:
        raise ValueError(f"SpiceOptions.opamp_gain={a0:g} is too low for neuron {i}: the column's "
                         f"conductance {gsum:.3g} S exceeds A0 G_ref; raise opamp_gain")
    out.append(f"Rf{i} s{i} y{i} {_num(1.0 / g_f)}")
    if chip.has_pole:
        taup = nc.amp_pole_tau * a0 * g_ref / (gsum + g_f)
        out.append(f"Xa{i} 0 s{i} y{i} aeq_opamp_1p a0={_num(a0)} taup={_num(taup)} "
                   f"rail={_num(options.opamp_rail)} y0={_num(s0[n + i] * vu)}")
    else:
        out.append(f"Xa{i} 0 s{i} y{i} aeq_opamp a0={_num(a0)} rail={_num(options.opamp_rail)}")
    out.append(f"Xn{i} y{i} v{i} aeq_rc_neuron gleak={_num(nc.g_leak)} c={_num(nc.C)} v0={_num(s0[i] * vu)}")
    if noise is not None and noise.leak:
        out.append(noise.source_line(f"Inl{i}", f"y{i}", f"v{i}", nc.g_leak, nt))
    return out + noisy
