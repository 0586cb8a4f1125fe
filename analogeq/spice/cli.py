"""``analogeq spice export``, ``validate`` and ``report``: a reference block (block options) or
the trained chip of a run directory (``RUN_DIR``)."""

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
    which.add_argument("--sizes", type=T.integer(1, 256), nargs="+", metavar="N",
                       help="layer sizes, input first (at most 256 hidden + output neurons)")
    g.add_argument("--hardware", type=T.preset_or_file("chip"), default=None,
                   help="chip preset from device_models/ or a TOML file, SI units; noise is switched "
                        "off (default: realistic). With RUN_DIR: the chip an emulator run is realized on")
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
        hardware = spice_config(args.hardware or "realistic")  # a bad chip file fails here, named after the flag
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


def _run_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run (with RUN_DIR: the trained chip of an 'analogeq train' run)")
    g.add_argument("run_dir", nargs="?", default=None, metavar="RUN_DIR",
                   help="run directory of 'analogeq train' (config.toml + checkpoint.eqx); without it "
                        "the block options below apply")
    g.add_argument("--max-neurons", type=T.integer(1, 256), default=256,
                   help="block limit: a network with more hidden + output neurons is written as layer "
                        "blocks of at most this many (default 256)")


def _run_out(args, leaf: str) -> Path:
    """``--out`` (a folder; ``ValueError`` naming it when unusable), else ``RUN_DIR/leaf``."""
    if args.out is None:
        return Path(args.run_dir) / leaf
    try:
        return T.out_dir(str(args.out))
    except argparse.ArgumentTypeError as e:
        raise ValueError(f"--out: {e}") from None


def _fail(cmd: str, e: BaseException) -> int:
    from analogeq.cli_config import one_line

    print(f"analogeq spice {cmd}: error: {one_line(e)}", file=sys.stderr)
    return 2


def _run_export(args) -> int:
    from dataclasses import replace

    import numpy as np

    from analogeq.spice.export import export_chip
    from analogeq.spice_report import run_chip
    from analogeq.spice.noise import NoiseSpec
    from analogeq.spice.validate import ode_steady_state

    try:
        rc = run_chip(args.run_dir, args.hardware)
        n_test = len(rc.data.y_test)
        if not 0 <= args.sample < n_test:
            raise ValueError(f"--sample {args.sample} is outside the run's test set [0, {n_test})")
        chip, x = rc.chip, np.asarray(rc.data.x_test[args.sample], np.float64)
        noise = None
        if args.noise:
            noise = replace(rc.noise, source=args.noise_source) if rc.noise else NoiseSpec(
                temperature=300.0, source=args.noise_source)
        steady = ode_steady_state(chip, x)
        ex = export_chip(chip, x, _run_out(args, "spice/netlist"), boundary=steady[: chip.n_neurons],
                         max_neurons=args.max_neurons, noise=noise, t_stop=args.t_stop,
                         title=f"analogeq run {Path(args.run_dir).name}, test sample {args.sample}",
                         info={"run": str(args.run_dir), "kind": rc.kind, "hardware": rc.hardware,
                               "step": rc.step, "sample": args.sample, "label": int(rc.data.y_test[args.sample])})
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        return _fail("export", e)
    what = ex.top.name if len(ex.blocks) == 1 else f"{len(ex.blocks)} layer blocks + {ex.top.name}"
    print(f"wrote {ex.folder}: {what}, export.json; {rc.kind} run, sizes {chip.sizes}, {chip.n_neurons} neurons, "
          f"hardware {rc.hardware}, test sample {args.sample}" + (", thermal noise sources" if noise else ""))
    return 0


def cmd_export(args) -> int:
    """Write the netlist of a block (SI units) to ``--out``, or a run's (``RUN_DIR``)."""
    from analogeq.spice.netlist import chip_netlist

    if args.run_dir is not None:
        return _run_export(args)
    try:
        args.out = T.out_file("runs/spice/block.cir" if args.out is None else args.out)
    except argparse.ArgumentTypeError as e:
        return _fail("export", ValueError(f"--out: {e}"))
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


def _run_validate(args) -> int:
    from analogeq.spice_report import run_chip
    from analogeq.spice.run_validation import validate_run
    from analogeq.spice.runner import SpiceError

    out = _run_out(args, "spice/validation")
    try:
        rc = run_chip(args.run_dir, args.hardware)
        v = validate_run(rc, out, samples=args.samples, tran_samples=args.tran_samples,
                         max_neurons=args.max_neurons, t_stop=args.t_stop)
    except (ValueError, TypeError, OSError, RuntimeError, SpiceError) as e:
        return _fail("validate", e)
    v.write(out)
    s = v.summary
    print(json.dumps({k: s[k] for k in ("sizes", "blocks", "samples", "agreement", "accuracy_ode", "accuracy_spice",
                                        "op_error_max_uV", "tran_error_max_uV", "spice_op_seconds_per_sample",
                                        "spice_op_tran_seconds_per_sample")}, indent=2))
    print(f"wrote {out}/run_validation.json, node_errors.png, overlay_block*.png, netlists/")
    tran = s["tran_error_max_uV"] or 0.0
    ok = s["op_error_max_uV"] <= args.max_op_uv and tran <= args.max_tran_uv and s["agreement"] >= args.min_agreement
    if not ok:
        print(f"analogeq spice validate: FAILED: agreement {s['agreement']:.4f} (bound {args.min_agreement:g}), "
              f".op error {s['op_error_max_uV']:.3g} uV (bound {args.max_op_uv:g}), .tran error {tran:.3g} uV "
              f"(bound {args.max_tran_uv:g})", file=sys.stderr)
    return 0 if ok else 1


def _noise_source_option(p) -> None:
    from analogeq.spice.noise import SOURCES

    p.add_argument("--noise-source", choices=SOURCES, default=SOURCES[0],
                   help="ngspice noise source: trrandom (held samples, reproducible with .options seed; "
                        "default) or trnoise (linear between samples; ngspice seeds it with its process id)")


def cmd_report(args) -> int:
    """The validation report of a run (``index.md`` and everything it links) into ``--out``."""
    from analogeq.spice_report import spice_report
    from analogeq.spice.runner import SpiceError

    out = _run_out(args, "spice/report")
    try:
        index = spice_report(args.run_dir, out, hardware=args.hardware, samples=args.samples,
                             tran_samples=args.tran_samples, max_neurons=args.max_neurons,
                             noise_check=args.noise_check, noise_nodes=args.noise_nodes,
                             noise_source=args.noise_source, fits=args.fit or ())
    except (ValueError, TypeError, OSError, RuntimeError, SpiceError) as e:
        return _fail("report", e)
    print(f"wrote {index} (netlist/, validation/, noise/" + (", fits/" if args.fit else "") + ")")
    return 0


def cmd_validate(args) -> int:
    """ODE vs ngspice on one block, or on a run's test samples (``RUN_DIR``); exit status 1 when
    an error exceeds its bound."""
    from analogeq.spice.runner import SpiceError, time_limit
    from analogeq.spice.validate import validate

    if args.run_dir is not None:
        return _run_validate(args)
    out = Path(args.out or "runs/spice")
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
        "spice", help="export chip blocks or trained runs to ngspice netlists and validate the ODE against them",
        description="SPICE export and validation with ngspice: a reference block (block options) or the "
        "trained chip of a run directory (RUN_DIR; networks over the block limit as layer blocks). "
        "Netlists are in SI units (V, A, S, F, s) and use circuits/analogeq.lib. See docs/spice-export.md.")
    sub = p.add_subparsers(dest="spice_command", required=True)
    e = sub.add_parser("export", help="write a block's or a trained run's netlist (.op and .tran)",
                       description="Realize a block on a chip (its sampled conductances, offsets, gains, "
                       "rails, amplifier pole) and write it as a self-contained ngspice netlist; with RUN_DIR "
                       "the run's trained chip on one test sample (network.cir, or layer blocks and top.cir).")
    _run_options(e)
    e.add_argument("--sample", type=T.integer(0, 1_000_000), default=0,
                   help="with RUN_DIR: index of the test sample that drives the input DACs (default 0)")
    e.add_argument("--noise", action="store_true",
                   help="with RUN_DIR: add thermal-noise sources for every leak and device (at the "
                        "hardware's temperature, else 300 K)")
    _noise_source_option(e)
    _add_block_options(e)
    e.add_argument("--out", default=None,
                   help="netlist path (default: runs/spice/block.cir); with RUN_DIR a folder (default: "
                        "RUN_DIR/spice/netlist)")
    e.set_defaults(func=cmd_export)
    v = sub.add_parser("validate", help="ODE vs ngspice: .op and .tran errors in microvolts, settle "
                       "times, an overlay plot",
                       description="Run the block's netlist in ngspice and the chip's diffrax ODE "
                       "(float64) from the same initial state; report max and RMS voltage errors (uV), "
                       "settle times (ns) and wall times (s); write block.cir, validation.json and "
                       "overlay.png into --out. Exit status 1 if an error exceeds its bound.")
    _run_options(v)
    v.add_argument("--samples", type=T.integer(1, 1_000_000), default=None,
                   help="with RUN_DIR: the first N test samples (default: all)")
    v.add_argument("--tran-samples", type=T.integer(0, 1_000_000), default=1,
                   help="with RUN_DIR: samples also run as .tran and compared with the ODE trajectory (default 1)")
    v.add_argument("--min-agreement", type=T.number(0.0, 1.0), default=1.0,
                   help="with RUN_DIR: least classification agreement, a fraction (default 1)")
    _add_block_options(v)
    v.add_argument("--out", type=T.out_dir, default=None,
                   help="output directory (default: runs/spice; with RUN_DIR: RUN_DIR/spice/validation)")
    v.add_argument("--max-op-uv", type=T.number(0.0, lo_open=True, unit="uV"), default=10.0,
                   help="bound on the .op vs ODE steady-state error in microvolts (default 10)")
    v.add_argument("--max-tran-uv", type=T.number(0.0, lo_open=True, unit="uV"), default=50.0,
                   help="bound on the .tran vs ODE trajectory error in microvolts (default 50)")
    v.set_defaults(func=cmd_validate)
    r = sub.add_parser("report", help="a run's SPICE validation report: netlists, ODE-vs-ngspice plots "
                       "and numbers, the noise check, device fits, index.md",
                       description="Export the run's trained chip, validate it on the test samples against the "
                       "ODE, check the transient noise against the SDE and kT/C, copy device fits, and "
                       "write index.md linking everything into --out (a self-contained folder).")
    r.add_argument("run_dir", metavar="RUN_DIR", help="run directory of 'analogeq train'")
    r.add_argument("--out", type=T.out_dir, default=None, help="report folder (default: RUN_DIR/spice/report)")
    r.add_argument("--hardware", type=T.preset_or_file("chip"), default=None,
                   help="chip an emulator run is realized on (default: realistic)")
    r.add_argument("--samples", type=T.integer(1, 1_000_000), default=None, help="first N test samples (default: all)")
    r.add_argument("--tran-samples", type=T.integer(0, 1_000_000), default=1,
                   help="samples also run as .tran (default 1)")
    r.add_argument("--max-neurons", type=T.integer(1, 256), default=256, help="block limit (default 256)")
    r.add_argument("--noise-check", choices=("chip", "rc", "none"), default="chip",
                   help="transient-noise check on the exported chip's RC neurons, on bare RC nodes, or none "
                        "(default: chip)")
    r.add_argument("--noise-nodes", type=T.integer(1, 256), default=16,
                   help="RC neurons of the noise check (about 320 independent samples each; default 16)")
    _noise_source_option(r)
    r.add_argument("--fit", action="append", metavar="FILE",
                   help="device-fit file (TOML/JSON, e.g. from 'analogeq devices fit') to include; repeatable")
    r.set_defaults(func=cmd_report)
