"""``analogeq spice export`` and ``analogeq spice validate``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from analogeq import cli_types as T


def _add_block_options(p: argparse.ArgumentParser) -> None:
    from analogeq.spice.blocks import BLOCKS

    g = p.add_argument_group("block (a seeded LeakyNetwork realized on a noise-free chip)")
    which = g.add_mutually_exclusive_group()
    which.add_argument("--block", choices=sorted(BLOCKS), default=None,
                       help="reference block: " + ", ".join(f"{k} = sizes {v}" for k, v in BLOCKS.items())
                       + " (default: n8)")
    which.add_argument("--sizes", type=T.integer(1, 64), nargs="+", metavar="N",
                       help="layer sizes, input first (at most 64 hidden + output neurons)")
    g.add_argument("--hardware", type=T.preset_or_file("chip"), default="realistic",
                   help="chip preset from device_models/ or a TOML file, SI units; noise is switched "
                        "off (default: realistic)")
    g.add_argument("--seed", type=T.seed, default=0, help="seed of the model, the chip instance and "
                   "the input (default: 0)")
    # Inputs beyond +-10 state units drive every neuron far into its rails (tanh is flat there).
    g.add_argument("--input", type=T.number(-10.0, 10.0, unit="state units"), nargs="+", metavar="X",
                   help="input sample in state units (volts / v_unit), one value per input neuron, "
                        "in [-10, 10] (default: seeded uniform in [-1, 1])")
    g.add_argument("--t-stop", type=T.number(0.0, 1.0, lo_open=True, allowed="> 0 seconds (at most 1 s)"),
                   default=None,
                   help=".tran length in seconds, at most 1e4 tau (default: 20 tau, tau = C / g_leak)")
    g.add_argument("--nonlinearity", choices=("behavioral", "bjt"), default="behavioral",
                   help="neuron nonlinearity circuit: behavioral tanh source or BJT differential "
                        "pair (default: behavioral)")
    g.add_argument("--reltol", type=T.number(0.0, 0.1, lo_open=True), default=None,
                   help="ngspice reltol in (0, 0.1] (default 1e-7)")
    g.add_argument("--method", choices=("trap", "gear"), default=None,
                   help="ngspice integration method (default trap)")
    g.add_argument("--max-step", type=T.number(1e-4, 10.0, unit="tau"), default=None,
                   help="largest .tran step in units of tau, in [1e-4, 10] (default 0.02)")
    g.add_argument("--timeout", type=T.number(0.0, 86400.0, lo_open=True, unit="s"), default=None,
                   help="wall-clock limit of the ngspice run in seconds (default: from the netlist "
                        "size and step count, at least 60 s)")


def _build(args):
    import jax

    from analogeq.spice.blocks import block_sizes, build_block, spice_config
    from analogeq.spice.netlist import MAX_NEURONS, SpiceOptions

    try:
        hardware = spice_config(args.hardware)  # a bad chip file fails here, named after the flag
    except ValueError as e:
        raise ValueError(f"--hardware {args.hardware!r}: {' '.join(str(e).split())}") from None

    sizes = block_sizes(args.sizes or args.block or "n8")  # checked before anything is built
    if sum(sizes[1:]) > MAX_NEURONS:
        raise ValueError(f"--sizes {' '.join(map(str, sizes))} has {sum(sizes[1:])} hidden + output "
                         f"neurons; the exporter writes blocks of at most {MAX_NEURONS}")
    if args.input is not None and len(args.input) != sizes[0]:
        raise ValueError(f"--input needs {sizes[0]} values (one per input neuron) for sizes "
                         f"{sizes}; got {len(args.input)}")
    opts = {"nonlinearity": args.nonlinearity}
    for name in ("reltol", "method", "max_step"):
        if getattr(args, name) is not None:
            opts[name] = getattr(args, name)
    options = SpiceOptions(**opts)
    jax.config.update("jax_enable_x64", True)  # netlists carry float64 conductances
    import jax.numpy as jnp

    chip, x = build_block(sizes, hardware, args.seed)
    if args.input is not None:
        x = jnp.asarray(args.input, jnp.float64)
    if args.t_stop is not None and args.t_stop > 1e4 * chip.tau:
        raise ValueError(f"--t-stop {args.t_stop:g} s is over 1e4 tau (tau = {chip.tau:.3g} s); the "
                         "block settles within ~20 tau")
    return chip, x, options


def cmd_export(args) -> int:
    """Write the netlist of a block (SI units) to ``--out``."""
    from analogeq.spice.netlist import chip_netlist

    try:
        chip, x, options = _build(args)
        t_stop = args.t_stop or 20 * chip.tau
        nl = chip_netlist(chip, x, t_stop=t_stop, options=options)
        path = nl.write(args.out)
    except (ValueError, TypeError, OSError) as e:
        from analogeq.cli_config import one_line

        print(f"analogeq spice export: error: {one_line(e)}", file=sys.stderr)
        return 2
    print(f"wrote {path}: sizes {chip.sizes}, {chip.n_neurons} neurons, tau = {chip.tau:.4g} s, "
          f".op and .tran to {t_stop:.4g} s; state nodes {nl.state_nodes[0]}..{nl.state_nodes[-1]} "
          f"(volts; divide by v_unit = {nl.v_unit:g} V for states)")
    return 0


def cmd_validate(args) -> int:
    """ODE vs ngspice on one block; exit status 1 when an error exceeds its bound."""
    from analogeq.spice.runner import SpiceError, time_limit
    from analogeq.spice.validate import validate

    out = Path(args.out)
    try:
        chip, x, options = _build(args)
        with time_limit(args.timeout):
            v = validate(chip, x, t_stop=args.t_stop, options=options, path=out / "block.cir")
    except (ValueError, TypeError, OSError, SpiceError) as e:
        from analogeq.cli_config import one_line

        print(f"analogeq spice validate: error: {one_line(e)}", file=sys.stderr)
        return 2
    v.write(out)
    s = v.summary()
    print(json.dumps({k: s[k] for k in ("sizes", "op_error_max_uV", "op_error_rms_uV", "tran_error_max_uV",
                                        "tran_error_rms_uV", "settle_ode_ns", "settle_spice_ns",
                                        "spice_seconds", "ode_seconds")}, indent=2))
    print(f"wrote {out}/block.cir, validation.json, overlay.png")
    ok = s["op_error_max_uV"] <= args.max_op_uv and s["tran_error_max_uV"] <= args.max_tran_uv
    if not ok:
        print(f"analogeq spice validate: FAILED: .op error {s['op_error_max_uV']:.3g} uV (bound "
              f"{args.max_op_uv:g}), .tran error {s['tran_error_max_uV']:.3g} uV (bound {args.max_tran_uv:g})",
              file=sys.stderr)
    return 0 if ok else 1


def register(subparsers) -> None:
    """Add the ``spice`` command (``export``, ``validate``) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "spice", help="export small chip blocks to ngspice netlists and validate the ODE against them",
        description="SPICE export and validation of small blocks (<= 64 neurons) with ngspice. "
        "Netlists are in SI units (V, A, S, F, s) and use circuits/analogeq.lib.")
    sub = p.add_subparsers(dest="spice_command", required=True)
    e = sub.add_parser("export", help="write a block's netlist (.op and .tran)",
                       description="Realize a block on a chip (its sampled conductances, offsets, gains, "
                       "rails, amplifier pole) and write it as a self-contained ngspice netlist.")
    _add_block_options(e)
    e.add_argument("--out", type=T.out_file, default="runs/spice/block.cir",
                   help="netlist path (default: runs/spice/block.cir)")
    e.set_defaults(func=cmd_export)
    v = sub.add_parser("validate", help="ODE vs ngspice: .op and .tran errors in microvolts, settle "
                       "times, an overlay plot",
                       description="Run the block's netlist in ngspice and the chip's diffrax ODE "
                       "(float64) from the same initial state; report max and RMS voltage errors (uV), "
                       "settle times (ns) and wall times (s); write block.cir, validation.json and "
                       "overlay.png into --out. Exit status 1 if an error exceeds its bound.")
    _add_block_options(v)
    v.add_argument("--out", type=T.out_dir, default="runs/spice", help="output directory (default: runs/spice)")
    v.add_argument("--max-op-uv", type=T.number(0.0, lo_open=True, unit="uV"), default=10.0,
                   help="bound on the .op vs ODE steady-state error in microvolts (default 10)")
    v.add_argument("--max-tran-uv", type=T.number(0.0, lo_open=True, unit="uV"), default=50.0,
                   help="bound on the .tran vs ODE trajectory error in microvolts (default 50)")
    v.set_defaults(func=cmd_validate)
