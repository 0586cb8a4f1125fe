"""Regenerate the reference netlists and their ngspice / ODE results.

    .venv/bin/python netlists/regenerate.py            # all blocks
    .venv/bin/python netlists/regenerate.py --block n8 # one block

For each reference block (analogeq.spice.BLOCKS: xor, n8, n64) this writes, next to itself,

* ``<block>.cir``  -- the exported netlist (analogeq.spice.reference_netlist), and
* ``<block>.json`` -- its results: the ``.op`` node voltages [V], the ODE steady state [V], the
  ``.tran`` state at a few times [V], and the validation numbers (max / RMS errors in uV, settle
  times in ns).

tests/test_spice.py checks that the exporter reproduces every ``.cir`` and that ngspice
reproduces the stored ``.op`` voltages.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from analogeq.spice import BLOCKS, build_block, reference_netlist, validate  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLE_TIMES_TAU = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0)


def regenerate(name: str, out: Path = HERE) -> dict:
    """Write ``<name>.cir`` and ``<name>.json`` into ``out``; returns the JSON content."""
    nl = reference_netlist(name)
    path = nl.write(out / f"{name}.cir")
    chip, x = build_block(name)
    v = validate(chip, x, t_stop=nl.t_stop, path=out / f".{name}_run.cir")
    (out / f".{name}_run.cir").unlink(missing_ok=True)
    samples = {}
    for t_tau in SAMPLE_TIMES_TAU:
        k = int(np.argmin(np.abs(v.time - t_tau * chip.tau)))
        samples[f"{v.time[k]:.6e}"] = {"spice": v.spice[k].tolist(), "ode": v.ode[k].tolist()}
    result = {
        "block": name, "sizes": list(chip.sizes), "netlist": path.name, "input": np.asarray(x).tolist(),
        "state_nodes": list(nl.state_nodes),
        "op_volts": dict(zip(nl.state_nodes, v.spice_op.tolist())),
        "ode_steady_volts": dict(zip(nl.state_nodes, v.ode_steady.tolist())),
        "tran_samples_volts": samples,
        "validation": {k: val for k, val in v.summary().items()
                       if k not in ("netlist", "spice_seconds", "ode_seconds")},  # machine-dependent
    }
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    s = result["validation"]
    print(f"{name}: sizes {chip.sizes}, .op vs ODE {s['op_error_max_uV']:.3g} uV, .tran vs ODE max "
          f"{s['tran_error_max_uV']:.3g} uV (rms {s['tran_error_rms_uV']:.3g}); wrote {path.name}, {name}.json")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--block", choices=sorted(BLOCKS), action="append",
                   help="block(s) to regenerate (default: all)")
    args = p.parse_args()
    for name in args.block or list(BLOCKS):
        regenerate(name)


if __name__ == "__main__":
    main()
