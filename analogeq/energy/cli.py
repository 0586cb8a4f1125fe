"""``analogeq energy``: the energy and latency breakdown of a settle and of a training step on a
chip (mirrors :func:`analogeq.energy_report.energy_report`)."""

from __future__ import annotations

from pathlib import Path

from analogeq import cli_types as T


def cmd_energy(args) -> int:
    from analogeq.cli_config import config_from_args
    from analogeq.energy_report import energy_report, format_energy

    args.hardware = args.hardware or "realistic"  # before validation: a --device needs a chip
    cfg = config_from_args(args)
    if args.dry_run:
        from analogeq.cli_config import dry_run

        return dry_run(cfg)
    report = energy_report(cfg, cfg.hardware, args.out)
    print(format_energy(report))
    print(f"wrote {Path(args.out) / 'energy.json'}")
    return 0


def register(sub) -> None:
    """Add ``energy`` to the ``analogeq`` parser."""
    from analogeq.cli_config import add_config_options

    p = sub.add_parser("energy", help="energy and latency of a settle and of a training step on a chip",
                       description="Realizes the run's model on --hardware (a preset from "
                       "device_models/ or a TOML file; default: realistic), settles its first "
                       "batch and takes one training step, and prints the breakdown: node charging, "
                       "crossbar read, leak, DAC/ADC conversions and programming pulses [J]; "
                       "settling, conversion and programming time [s]. The costs per conversion "
                       "and per pulse are the chip's [energy] section. Writes energy.json into --out.")
    p.add_argument("--out", type=T.out_dir, default="runs/energy", help="output directory (default: runs/energy)")
    add_config_options(p)
    p.set_defaults(func=cmd_energy)
