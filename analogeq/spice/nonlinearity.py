"""The neuron nonlinearity in ngspice: behavioral source vs transistor-level differential pair."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from analogeq.spice.library import library_text
from analogeq.spice.netlist import Netlist, SpiceOptions, _num
from analogeq.spice.runner import run_netlist


@dataclass(frozen=True, eq=False)
class NonlinearitySweep:
    """Both nonlinearity circuits over an input ramp (volts).

    Attributes:
        v_in: input voltages [V]; behavioral, bjt: outputs [V] of ``aeq_tanh_b`` and
        ``aeq_tanh_bjt``; model: ``gain rail tanh((v_in + offset) / rail)`` computed here [V].
    """

    v_in: np.ndarray
    behavioral: np.ndarray
    bjt: np.ndarray
    model: np.ndarray

    @property
    def max_error(self) -> float:
        """Largest ``|bjt - behavioral|`` [V] over the sweep."""
        return float(np.max(np.abs(self.bjt - self.behavioral)))


def sweep_nonlinearity(rail: float = 1.0, gain: float = 1.0, offset: float = 0.0, span: float = 3.0,
                       options: SpiceOptions = SpiceOptions(),
                       path: str | os.PathLike | None = None) -> NonlinearitySweep:
    """Drive ``aeq_tanh_b`` and ``aeq_tanh_bjt`` (same ``rail`` [V], ``gain``, ``offset`` [V])
    with a ramp over ``+-span rail`` [V] in one ngspice ``.tran`` (both circuits are static, so
    the ramp is a DC sweep) and return the outputs."""
    if not (rail > 0 and span > 0):
        raise ValueError(f"rail [V] and span must be > 0; got rail={rail!r}, span={span!r}")
    lo, hi = -span * rail, span * rail
    text = "\n".join([
        "analogeq nonlinearity: behavioral vs BJT differential pair",
        library_text().rstrip(),
        f".options reltol={_num(options.reltol)} abstol={_num(options.abstol)} vntol={_num(options.vntol)} "
        f"temp={_num(options.temperature)} tnom={_num(options.temperature)}",
        f"Vin in 0 PWL(0 {_num(lo)} 1u {_num(hi)})",
        f"Xb in ob obn aeq_tanh_b rail={_num(rail)} gain={_num(gain)} offset={_num(offset)}",
        f"Xq in oq oqn aeq_tanh_bjt rail={_num(rail)} gain={_num(gain)} offset={_num(offset)} vt={_num(options.vt)}",
        ".save v(in) v(ob) v(oq)",
        ".tran 2n 1u 0 2n",
        ".end",
    ]) + "\n"
    nl = Netlist(text=text, state_nodes=("in", "ob", "oq"), v_unit=1.0, tau=1.0, t_stop=1e-6, analyses=("tran",))
    res = run_netlist(nl, path)
    v_in, ob, oq = (np.asarray(res.tran[k]) for k in ("in", "ob", "oq"))
    return NonlinearitySweep(v_in=v_in, behavioral=ob, bjt=oq,
                             model=gain * rail * np.tanh((v_in + offset) / rail))
