"""The training options on the command line: one ``--flag`` per :class:`TrainConfig` field, typed
and bounded from the field's own spec, shared by every subcommand that builds a run (``train``,
``compare``, ``energy``), and the one-line form of an error."""

from __future__ import annotations

import argparse
import dataclasses

from analogeq import cli_types as T
from analogeq.config import TrainConfig

# Flags whose values name a preset or a file: checked for kind (a directory is refused).
_PATH_FIELDS = {"hardware": T.preset_or_file("chip"), "device": T.preset_or_file("device")}


def _field_type(name: str):
    """The argparse type of a :class:`TrainConfig` field's flag: a finite float or a bounded
    integer within the field's own bounds (so the error names the flag), preset names checked
    for kind. Cross-field rules are TrainConfig's, checked when the configuration is built."""
    if name in _PATH_FIELDS:
        return _PATH_FIELDS[name]
    spec = TrainConfig.spec(name)
    if spec.kind == "int":
        if spec.also:  # values allowed besides the range (0 meaning off): TrainConfig checks
            return T.integer()
        return T.integer(None if spec.ge is None else int(spec.ge),
                         T.INT_MAX if spec.le is None else int(spec.le))
    if spec.kind == "real":
        lo = spec.gt if spec.gt is not None else spec.ge
        hi = spec.lt if spec.lt is not None else spec.le
        return T.number(lo, hi, lo_open=spec.gt is not None, hi_open=spec.lt is not None, unit=spec.unit)
    return str


def add_config_options(p: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` field (they override ``--config``), plus
    ``--config`` and ``--dry-run``."""
    p.add_argument("--config", type=T.in_file, help="TOML file with TrainConfig fields (or a [train] table)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the options (and the chip and device they name), print the resolved "
                   "configuration and stop")
    g = p.add_argument_group("training options (override --config; same names as TrainConfig)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        help_ = f"{TrainConfig.spec(f.name).doc} (default: {f.default!r})"
        if isinstance(f.default, bool):
            g.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_)
        elif isinstance(f.default, tuple):
            spec = TrainConfig.spec(f.name)  # each element within the field's bounds
            each = T.integer(1 if spec.ge is None else int(spec.ge), T.INT_MAX if spec.le is None else int(spec.le))
            g.add_argument(flag, dest=f.name, type=each, nargs="+", default=None, metavar="N", help=help_)
        else:
            g.add_argument(flag, dest=f.name, type=_field_type(f.name), default=None, help=help_)


def config_from_args(args) -> TrainConfig:
    """``--config`` TOML (or defaults) with command-line options applied on top."""
    cfg = TrainConfig.from_toml(args.config) if args.config else TrainConfig()
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
               if getattr(args, f.name, None) is not None}
    return cfg.replace(**changes)


def dry_run(cfg: TrainConfig, hardware: str = "") -> int:
    """``--dry-run``: load the chip and device the configuration names (so their files are
    checked too) and refuse chip options a chip run cannot honour, print the resolved
    configuration as TOML, run nothing."""
    from analogeq.spec import ConfigError

    hardware = hardware or cfg.hardware
    if hardware:
        from analogeq.assembly import check_chip_options, load_hardware

        try:
            load_hardware(hardware)
        except ValueError as e:
            raise ConfigError(f"hardware {hardware!r}: {one_line(e)}") from None
        check_chip_options(cfg)
    if cfg.device:
        from analogeq.devices.presets import load_device

        try:
            load_device(cfg.device)
        except ValueError as e:
            raise ConfigError(f"device {cfg.device!r}: {one_line(e)}") from None
    print(cfg.to_toml(), end="")
    return 0


def one_line(e: BaseException) -> str:
    """An exception as one line. A file-system error names the file; an
    ``EquinoxRuntimeError`` keeps its message and drops the explanation equinox appends."""
    if isinstance(e, OSError) and e.strerror:
        text = f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    else:
        text = str(e)
        if type(e).__name__ == "EquinoxRuntimeError":
            text = text.split("\n\n")[0].split("-------")[0]
    return " ".join(text.split()) or type(e).__name__
