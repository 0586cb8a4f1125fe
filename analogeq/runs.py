"""A finished (or interrupted) training run, read back from the folder ``analogeq train`` wrote."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analogeq.checkpoint import STATE, has_checkpoint, load_checkpoint
from analogeq.config import TrainConfig
from analogeq.assembly import build_parts
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
    ``run_dir`` may also name the checkpoint file itself."""
    d = Path(run_dir)
    if d.name == STATE:
        d = d.parent
    if not d.is_dir():
        raise FileNotFoundError(f"run directory {d} does not exist (give the --out directory of "
                                "'analogeq train')")
    if not (d / "config.toml").exists():
        raise FileNotFoundError(f"{d} has no config.toml: it is not a run directory of 'analogeq train'")
    if not has_checkpoint(d):
        raise FileNotFoundError(f"no checkpoint in {d} (expected checkpoint.eqx and checkpoint.json; "
                                "'analogeq train' writes them every --checkpoint-every steps)")
    cfg = TrainConfig.from_toml(d / "config.toml")
    parts = build_parts(cfg)
    (model, state), meta = load_checkpoint(d, (parts.model, parts.updater.init(parts.model)))
    return Run(config=cfg, parts=parts, model=model, state=state, meta=meta)
