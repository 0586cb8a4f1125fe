"""The ``analogeq`` command. Each subcommand mirrors a Python function of the package."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from analogeq.config import FIELD_HELP, TrainConfig
from analogeq.devices.cli import register as register_devices
from analogeq.energy.cli import register as register_energy
from analogeq.textgen import register as register_sample
from analogeq.diagnostics.cli import register as register_diagnose
from analogeq.spice.cli import register as register_spice
from analogeq.sweep.cli import register as register_sweep


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field (they override ``--config``)."""
    g = p.add_argument_group("training options (override --config; same names as TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{FIELD_HELP[f.name]} (default: {f.default!r})"
        if isinstance(f.default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif isinstance(f.default, tuple):
            g.add_argument(flag, dest=f.name, type=int, nargs="+", default=None, metavar="N", help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=type(f.default), default=None, help=help_)


def config_from_args(args) -> TrainConfig:
    """``--config`` TOML (or defaults) with command-line options applied on top."""
    cfg = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
               if getattr(args, f.name, None) is not None}
    return cfg.replace(**changes)


def cmd_train(args) -> int:
    from analogeq.plots import plot_learning_curves
    from analogeq.report import TRAIN_COLUMNS, format_table
    from analogeq.training import train

    cfg = config_from_args(args)
    out = Path(args.out)
    result = train(cfg, out, resume=args.resume, progress=not args.no_progress, log=print)
    plot_learning_curves({result.summary["label"]: result.history}, out / "learning_curves.png")
    print(format_table([result.summary], TRAIN_COLUMNS))
    print(f"wrote {out}/metrics.jsonl, summary.json, learning_curves.png, checkpoint.eqx")
    return 0


def cmd_compare(args) -> int:
    from analogeq.compare import compare, format_compare

    cfg = config_from_args(args)
    hardware = cfg.hardware or "realistic"
    report = compare(cfg.replace(hardware=""), hardware, args.out, n_chips=args.n_chips,
                     train_steps=args.train_steps, progress=not args.no_progress)
    print(format_compare(report))
    print(f"wrote {args.out}/report.json, monte_carlo.png" + (", learning_curves.png" if "training" in report else ""))
    return 0


def cmd_demo(args) -> int:
    from analogeq.demo import run_demo

    run_demo(Path(args.out), steps=args.steps, progress=not args.no_progress)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="analogeq",
        description="Simulate analog in-memory hardware that learns on-chip with Equilibrium "
        "Propagation, beside the idealized digital emulator.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train an equilibrium network (digital emulator or, with "
                       "--hardware, on a simulated chip)",
                       description="Train with EP/AsymEP or an exact reference; writes metrics.jsonl, "
                       "summary.json, learning_curves.png and a checkpoint into --out.")
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig fields (or a [train] table)")
    p.add_argument("--out", default="runs/train", help="output directory (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_options(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compare", help="analog chip vs digital emulator on the same model, data and seeds",
                       description="Fixed-point error, gradient cosines (analog EP, digital EP, implicit "
                       "adjoints of the model and of the chip), settle time, a Monte Carlo over chip "
                       "instances and test accuracy over training of both realizations; writes "
                       "report.json and PNG plots into --out. The chip is --hardware (a preset from "
                       "device_models/ or a TOML file; default: realistic).")
    p.add_argument("--n-chips", type=int, default=8, help="chip instances in the Monte Carlo (default 8)")
    p.add_argument("--train-steps", type=int, default=None,
                   help="training steps for both realizations (0: no training; default: --steps)")
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig fields")
    p.add_argument("--out", default="runs/compare", help="output directory (default: runs/compare)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_config_options(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="the main job: train on digits and print the comparison table")
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: config)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(func=cmd_demo)

    register_sample(sub)

    register_diagnose(sub)
    register_spice(sub)
    register_devices(sub)
    register_energy(sub)
    register_sweep(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"analogeq {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
