"""A finished (or interrupted) training run, read back from the folder ``analogeq train`` wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analogeq.checkpoint import STATE, has_checkpoint, load_checkpoint, read_checkpoint_meta
from analogeq.config import TrainConfig
from analogeq.assembly import build_parts
from analogeq.spec import ConfigError
from analogeq.training import RunParts


@dataclass(frozen=True)
class Run:
    """``config``, the rebuilt ``parts`` (data, cost, relaxation, ...), the checkpointed
    ``model`` and updater ``state``, and the checkpoint's ``meta`` (``step``, ...)."""

    config: TrainConfig
    parts: RunParts
    model: object
    state: object
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta.get("step", -1))


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory (its ``config.toml`` and checkpoint); the model is rebuilt with the
    builders ``train`` uses (the digital emulator, or the chip of ``config.hardware``).
    ``run_dir`` may also name the checkpoint file itself.

    The files are checked before anything is built: a missing folder, a damaged ``config.toml``
    and a missing, empty, truncated or altered checkpoint each raise one line naming the file
    (:class:`~analogeq.spec.ConfigError` / :class:`~analogeq.checkpoint.CheckpointError`, both
    ``ValueError``; ``FileNotFoundError`` for a missing folder)."""
    d = Path(run_dir)
    if d.name == STATE:
        d = d.parent
    if not d.is_dir():
        what = "is a file, not" if d.exists() else "does not exist; give"
        raise FileNotFoundError(f"run directory {d} {what} the --out directory of 'analogeq train'")
    if not (d / "config.toml").is_file():
        raise FileNotFoundError(f"{d} has no config.toml: it is not a run directory of 'analogeq train'")
    if not has_checkpoint(d):
        raise FileNotFoundError(f"no checkpoint in {d} (expected {STATE}; 'analogeq train' writes it "
                                "every --checkpoint-every steps)")
    read_checkpoint_meta(d, legacy=True)  # verifies the checkpoint's hash before any work
    cfg = TrainConfig.from_toml(d / "config.toml")
    try:
        parts = build_parts(cfg)
    except ValueError as e:  # e.g. the chip or device preset it names no longer loads
        raise ConfigError(f"{d / 'config.toml'}: {' '.join(str(e).split())}") from None
    (model, state), meta = load_checkpoint(d, (parts.model, parts.updater.init(parts.model)))
    return Run(config=cfg, parts=parts, model=model, state=state, meta=meta)
