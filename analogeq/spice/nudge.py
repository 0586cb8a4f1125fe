"""The nudged phase's extra circuits in a netlist: nudging branches and the AsymEP correction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from analogeq.spice.noise import _num


@dataclass(frozen=True, eq=False)
class Nudge:
    """The nudged phase's extra circuits, in the chip's state units.

    Attributes:
        beta: nudge strength (dimensionless, either sign; squared-error cost ``1/2|y - t|^2``),
            realized as a transconductance ``beta g_leak`` from each output node to its target.
        target: target of each output neuron (state units, shape ``(n_outputs,)``).
        hold: the held free state ``s*`` (state units, node voltages only), needed with
            ``correction``.
        correction: matrix ``M`` (``(n, n)``, units of ``1/tau``) of an extra linear field
            ``M (v - v*)`` (AsymEP: ``M = -2 A``), realized as transconductances ``M_ik g_leak``.
    """

    beta: float
    target: np.ndarray
    hold: np.ndarray | None = None
    correction: np.ndarray | None = None


def nudge_lines(chip, nudge: Nudge) -> list[str]:
    """The nudging branches (and, with a correction, the held state and AsymEP elements) of
    ``chip`` (a whole-network netlist), in SI units."""
    nc = chip.config.neuron
    vu, n, n_out = nc.v_unit, chip.n_neurons, chip.sizes[-1]
    target = np.asarray(nudge.target, np.float64)
    if target.shape != (n_out,):
        raise ValueError(f"Nudge.target must have shape ({n_out},) (one per output neuron); got {target.shape}")
    if not math.isfinite(nudge.beta):
        raise ValueError(f"Nudge.beta must be finite; got {nudge.beta!r}")
    out = ["", f"* nudging branches: beta = {_num(nudge.beta)}, gn = beta g_leak, targets t<k>"]
    for k in range(n_out):
        i = n - n_out + k
        out.append(f"Vt{k} t{k} 0 DC {_num(target[k] * vu)}")
        out.append(f"Xnu{k} v{i} t{k} aeq_nudge gn={_num(nudge.beta * nc.g_leak)}")
    if nudge.correction is not None:
        m = np.asarray(nudge.correction, np.float64)
        if chip.has_pole:
            raise ValueError("Nudge.correction (the AsymEP circuit) is exported for chips without an "
                             "amplifier pole; set neuron.amp_pole_tau = 0 or use correction 'none'")
        if m.shape != (n, n) or nudge.hold is None or np.shape(nudge.hold) != (n,):
            raise ValueError(f"Nudge.correction must be ({n}, {n}) with Nudge.hold of shape ({n},); "
                             f"got {m.shape} and {None if nudge.hold is None else np.shape(nudge.hold)}")
        hold = np.asarray(nudge.hold, np.float64)
        out.append("* AsymEP correction: sample-and-hold sources h<k> = free state, elements gm = M_ik g_leak")
        for k in range(n):
            out.append(f"Vh{k} h{k} 0 DC {_num(hold[k] * vu)}")
        for i in range(n):
            for k in range(n):
                if m[i, k] != 0:
                    out.append(f"Xc{i}_{k} v{i} v{k} h{k} aeq_asym gm={_num(m[i, k] * nc.g_leak)}")
    return out
