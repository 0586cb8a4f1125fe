"""One crossbar tile with its wire resistances as an ngspice netlist, and its ``.op`` solution.

The circuit of :mod:`analogeq.hardware.wires` (forward-read orientation: columns driven, rows
sensed), written element by element so that ngspice's nodal analysis checks the tile solve:

* ``vu<j> u<j> 0 DC u_j``: the ideal source of column ``j``; ``rd<j> u<j> d<0>_<j>`` its driver
  resistance ``r_drive``;
* ``rdw<i>_<j> d<i>_<j> d<i+1>_<j>``: drive-wire segments, ``rsw<i>_<j> s<i>_<j> s<i>_<j+1>``:
  sense-wire segments (``r_segment``);
* ``rs<i> s<i>_<cols-1> a<i>`` (``r_sense``) and ``va<i> a<i> 0 DC 0``: the sense amplifier's
  virtual ground, a 0 V source whose branch current is row ``i``'s sense current;
* ``rg<i>_<j> d<i>_<j> s<i>_<j>``: device ``(i, j)``, ``1 / g_ij`` (a device at exactly 0 S is
  left out, as in :func:`analogeq.spice.chip_netlist`).

A resistance of exactly 0 is written as a 0 V source (ngspice rejects a 0 Ohm resistor). SI units;
numbers are written to round-trip exactly. Runs through :func:`analogeq.spice.run_netlist` (the
process's one ngspice session).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analogeq.hardware.wires import Wires
from analogeq.spice.netlist import Netlist
from analogeq.spice.noise import _num
from analogeq.spice.runner import run_netlist


def _resistor(name: str, a: str, b: str, r: float) -> str:
    return f"v{name} {a} {b} DC 0" if r == 0 else f"r{name} {a} {b} {_num(r)}"


def tile_netlist(g, u, wires: Wires, *, title: str = "analogeq tile with wire resistance") -> Netlist:
    """The ``.op`` netlist of one tile: conductances ``g`` [S] (shape ``(rows, cols)``), drive
    voltages ``u`` [V] (shape ``(cols,)``), wire resistances ``wires`` [Ohm] (concrete numbers).
    Its :attr:`Netlist.state_nodes` are the drive nodes ``d<i>_<j>`` then the sense nodes
    ``s<i>_<j>``, row-major."""
    g = np.asarray(g, np.float64)
    u = np.asarray(u, np.float64)
    if g.ndim != 2 or not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError(f"g must be a (rows, cols) array of finite conductances >= 0 [S]; got shape "
                         f"{g.shape}, min {np.min(g) if g.size else None}")
    rows, cols = g.shape
    if u.shape != (cols,) or not np.all(np.isfinite(u)):
        raise ValueError(f"u must be {cols} finite drive voltages [V] (shape ({cols},)); got shape {u.shape}")
    r_seg, r_drv, r_sns = (float(wires.r_segment), float(wires.r_drive), float(wires.r_sense))
    lines = [f"* {title}",
             f"* {rows} x {cols} devices; r_segment={_num(r_seg)} r_drive={_num(r_drv)} r_sense={_num(r_sns)} Ohm",
             ".options reltol=1e-9 abstol=1e-18 vntol=1e-12"]
    for j in range(cols):
        lines.append(f"vu{j} u{j} 0 DC {_num(u[j])}")
        lines.append(_resistor(f"d{j}", f"u{j}", f"d0_{j}", r_drv))
        lines += [_resistor(f"dw{i}_{j}", f"d{i}_{j}", f"d{i + 1}_{j}", r_seg) for i in range(rows - 1)]
    for i in range(rows):
        lines += [_resistor(f"sw{i}_{j}", f"s{i}_{j}", f"s{i}_{j + 1}", r_seg) for j in range(cols - 1)]
        lines.append(_resistor(f"s{i}", f"s{i}_{cols - 1}", f"a{i}", r_sns))
        lines.append(f"va{i} a{i} 0 DC 0")
        lines += [f"rg{i}_{j} d{i}_{j} s{i}_{j} {_num(1.0 / g[i, j])}" for j in range(cols) if g[i, j] > 0]
    lines += [".op", ".end"]
    nodes = tuple(f"d{i}_{j}" for i in range(rows) for j in range(cols)) + tuple(
        f"s{i}_{j}" for i in range(rows) for j in range(cols))
    return Netlist(text="\n".join(lines) + "\n", state_nodes=nodes, v_unit=1.0, tau=1.0, t_stop=None,
                   analyses=("op",))


@dataclass(frozen=True)
class TileOperatingPoint:
    """ngspice's ``.op`` of a tile (:func:`tile_op`).

    Attributes:
        drive_nodes: ``D`` [V], shape ``(rows, cols)``.
        sense_nodes: ``S`` [V], shape ``(rows, cols)``.
        sense_currents: each row's current into its virtual ground [A], shape ``(rows,)``.
        drive_currents: each column's source current into the tile [A], shape ``(cols,)``.
        wall_time: seconds ngspice took [s].
        netlist_path: where the netlist was written.
    """

    drive_nodes: np.ndarray
    sense_nodes: np.ndarray
    sense_currents: np.ndarray
    drive_currents: np.ndarray
    wall_time: float
    netlist_path: Path


def tile_op(g, u, wires: Wires, path=None, timeout: float | None = 120.0) -> TileOperatingPoint:
    """Run :func:`tile_netlist`'s ``.op`` in ngspice and return its node voltages and currents
    (``path``: where to write the netlist, default a scratch file; ``timeout`` [s])."""
    net = tile_netlist(g, u, wires)
    res = run_netlist(net, path, timeout)
    rows, cols = np.shape(g)
    v = net.states(res.op)
    # a 0 V source's branch current flows from its + node through it: into the virtual ground
    # for va<i>, out of the tile (so minus) for vu<j>
    sense = np.array([res.op[f"va{i}#branch"] for i in range(rows)])
    drive = -np.array([res.op[f"vu{j}#branch"] for j in range(cols)])
    return TileOperatingPoint(v[: rows * cols].reshape(rows, cols), v[rows * cols:].reshape(rows, cols),
                              sense, drive, res.wall_time, res.netlist_path)
