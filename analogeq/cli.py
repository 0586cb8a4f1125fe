"""The ``analogeq`` command. Each subcommand mirrors a Python function of the package."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from analogeq import cli_types as T
from analogeq import compile_cache
from analogeq.cli_config import add_config_options, config_from_args, dry_run, one_line
from analogeq.config import TrainConfig
from analogeq.devices.cli import register as register_devices
from analogeq.diagnostics.cli import register as register_diagnose
from analogeq.energy.cli import register as register_energy
from analogeq.spice.cli import register as register_spice
from analogeq.sweep.cli import register as register_sweep
from analogeq.textgen import register as register_sample


def cmd_train(args) -> int:
    from analogeq.assembly import train
    from analogeq.plots import plot_learning_curves
    from analogeq.tables import TRAIN_COLUMNS, format_table

    if args.chips > 1:
        return _train_chips(args)
    cfg = config_from_args(args)
    if args.dry_run:
        return dry_run(cfg)
    out = Path(args.out)
    from analogeq.training import TrainingInterrupted

    try:
        result = train(cfg, out, resume=args.resume, progress=not args.no_progress, log=print)
    except TrainingInterrupted as e:  # the last completed step is checkpointed; e says how to resume
        print(f"analogeq train: {e}", file=sys.stderr)
        return 130
    plot_learning_curves({result.summary["label"]: result.history}, out / "learning_curves.png")
    print(format_table([result.summary], TRAIN_COLUMNS))
    if result.diverged:  # an outcome, not a crash: records written, exit status 3
        d = result.summary["diverged"]
        print(f"analogeq train: diverged at step {d['step']} in the {d['phase']} phase: {d['reason']}; "
              f"wrote {out}/metrics.jsonl, summary.json, learning_curves.png", file=sys.stderr)
        return 3
    print(f"wrote {out}/metrics.jsonl, summary.json, learning_curves.png, checkpoint.eqx")
    return 0


def _train_chips(args) -> int:
    """``analogeq train --chips K``: K chip instances trained by one step (:mod:`analogeq.fleet`)."""
    from analogeq.montecarlo import use_host_devices

    use_host_devices(args.host_devices)  # before JAX's first computation
    cfg = config_from_args(args)
    if not cfg.hardware:
        raise ValueError(f"--chips {args.chips} trains {args.chips} chip instances; it needs a chip "
                         "(--hardware PRESET|FILE); the digital emulator has none")
    if args.dry_run:
        return dry_run(cfg)
    from analogeq.fleet import train_chips
    from analogeq.training import TrainingInterrupted

    out = Path(args.out)
    try:
        result = train_chips(cfg, out, n_chips=args.chips, resume=args.resume,
                             progress=not args.no_progress, log=print)
    except TrainingInterrupted as e:
        print(f"analogeq train: {e}", file=sys.stderr)
        return 130
    s = result.summary
    print(f"{s['label']}: {s['n_chips']} chips (seeds {s['chip_seeds'][0]}..{s['chip_seeds'][-1]}), "
          f"mode {s['mode']}, {s['seconds']:.1f} s")
    for name in ("final_test_acc", "best_test_acc", "final_loss", "grad_cosine_final"):
        d = s["spread"][name]
        print(f"  {name:20} mean {d['mean']:.4f}  std {d['std']:.4f}  min {d['min']:.4f}  max {d['max']:.4f}")
    files = "metrics.jsonl, summary.json, chips.csv, curves.csv, learning_curves.png"
    if s["status"] == "diverged":
        print(f"analogeq train: chips {s['diverged_chips']} diverged (their histories end with the "
              f"'diverged' record); wrote {out}/{files}", file=sys.stderr)
        return 3
    print(f"wrote {out}/{files}, checkpoint.eqx")
    return 0


def cmd_compare(args) -> int:
    from analogeq.compare import compare, format_compare
    from analogeq.montecarlo import use_host_devices

    use_host_devices(args.host_devices)  # before JAX's first computation; None: $ANALOGEQ_HOST_DEVICES
    cfg = config_from_args(args)
    hardware = cfg.hardware or "realistic"
    if args.dry_run:
        return dry_run(cfg, hardware)
    # A pulsed device lives on the chip (the config refuses a device without hardware).
    report = compare(cfg if cfg.device else cfg.replace(hardware=""), hardware, args.out, n_chips=args.n_chips,
                     train_steps=args.train_steps, progress=not args.no_progress)
    print(format_compare(report))
    print(f"wrote {args.out}/report.json, monte_carlo.png" + (", learning_curves.png" if "training" in report else ""))
    return 0


def cmd_demo(args) -> int:
    from analogeq.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = T.ArgumentParser(
        prog="analogeq",
        description="Simulate analog in-memory hardware that learns on-chip with Equilibrium "
        "Propagation, beside the idealized digital emulator.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the full traceback (default: one line)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an equilibrium network (digital emulator or, with "
                       "--hardware, on a simulated chip)",
                       description="Train with EP/AsymEP or an exact reference; writes metrics.jsonl, "
                       "summary.json, learning_curves.png and a checkpoint into --out.")
    p.add_argument("--out", type=T.out_dir, default="runs/train", help="output directory (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--chips", type=T.integer(1, 4096), default=1,
                   help="train K chip instances at once (chip seeds --chip-seed .. +K-1), one "
                   "vmapped step for all; needs --hardware; writes per-chip histories and their "
                   "spread (default 1: one run)")
    p.add_argument("--host-devices", type=T.integer(1, 256), default=None,
                   help="with --chips: split the CPU into N XLA host devices and shard the chips "
                   "over them (default: env ANALOGEQ_HOST_DEVICES, else 1)")
    add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="analog chip vs digital emulator on the same model, data and seeds",
                       description="Fixed-point error, gradient cosines (analog EP, digital EP, implicit "
                       "adjoints of the model and of the chip), settle time, a Monte Carlo over chip "
                       "instances and test accuracy over training of both realizations; writes "
                       "report.json and PNG plots into --out. The chip is --hardware (a preset from "
                       "device_models/ or a TOML file; default: realistic).")
    p.add_argument("--n-chips", type=T.integer(1, 4096), default=8,
                   help="chip instances in the Monte Carlo (default 8)")
    p.add_argument("--host-devices", type=T.integer(1, 256), default=None,
                   help="split the CPU into N XLA host devices and shard the Monte Carlo's chips "
                   "over them (same numbers, faster on several cores; default: env "
                   "ANALOGEQ_HOST_DEVICES, else 1; same as XLA_FLAGS="
                   "--xla_force_host_platform_device_count=N set before the process starts)")
    p.add_argument("--train-steps", type=T.integer(0, TrainConfig.spec("steps").le), default=None,
                   help="training steps for both realizations (0: no training; default: --steps)")
    p.add_argument("--out", type=T.out_dir, default="runs/compare", help="output directory (default: runs/compare)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_config_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="the main job: train on digits and print the comparison table")
    p.add_argument("--out", type=T.out_dir, default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--steps", type=T.integer(1, TrainConfig.spec("steps").le), default=None,
                   help="training steps per run (default: config)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_demo)

    register_sample(sub)

    register_diagnose(sub)
    register_spice(sub)
    register_devices(sub)
    register_energy(sub)
    register_sweep(sub)
    return parser


def _command(args) -> str:
    """``analogeq train``, ``analogeq devices show``, ...: the prefix of an error line."""
    words = ["analogeq", args.command]
    for sub in ("devices_command", "spice_command"):
        if getattr(args, sub, None):
            words.append(getattr(args, sub))
    return " ".join(words)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that report a problem with the user's input (configuration, files)."""
    errors: list[type[BaseException]] = [ValueError, TypeError, OSError, KeyError]
    try:
        from analogeq.spice.runner import SpiceError

        errors.append(SpiceError)
    except ImportError:  # pragma: no cover - PySpice is a core dependency
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run the ``analogeq`` command line; returns the exit status. A bad input prints one line
    ``analogeq COMMAND: error: ...`` to stderr and returns 2; an unexpected internal error
    prints one line and returns 1 (``--debug`` prints the traceback); Ctrl-C returns 130."""
    try:
        args, extra = build_parser().parse_known_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad flag (2, message already printed)
        return e.code if isinstance(e.code, int) else 2
    prefix = _command(args)
    if extra:  # named after the subcommand that does not know them (argparse names the top parser)
        print(f"{prefix}: error: unrecognized arguments: {' '.join(extra)} (see '{prefix} --help')",
              file=sys.stderr)
        return 2
    try:
        compile_cache.enable()  # inside: a bad $ANALOGEQ_COMPILE_CACHE_MIN_SECONDS is a one-line error
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 -- anything else is a bug: one line, traceback on request
        if args.debug:
            traceback.print_exc()
        print(f"{prefix}: internal error: {type(e).__name__}: {one_line(e)}"
              + ("" if args.debug else " (run 'analogeq --debug ...' for the traceback)"), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
