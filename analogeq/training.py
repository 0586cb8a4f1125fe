"""The one training loop: free phase -> nudged phases -> update, for any realization.

A run is assembled from parts (:class:`RunParts`, built by :mod:`analogeq.assembly`): a model
(the field, or a chip realizing it), a cost, a relaxation (how the realization settles), an
estimator (how the gradient is formed), an updater (how it is written), the data, and hooks that
add metrics to a step (a chip's energy accounting). :func:`fit` drives them with deterministic
batches, JSONL metrics, a progress bar, periodic evaluation, a gradient probe against the exact
gradient and checkpoints with exact resume. This module imports no realization: whatever is
specific to a chip arrives in the parts.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from analogeq import stability
from analogeq.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from analogeq.config import TrainConfig
from analogeq.costs import AbstractCost
from analogeq.data import Dataset
from analogeq.emulator import AbstractRelaxation
from analogeq.ep import AbstractEstimator, compare_gradients
from analogeq.evaluation import evaluate
from analogeq.streams import Streams
from analogeq.updaters import AbstractUpdater

# Fields that may change between a checkpoint and its resumption.
RESUMABLE_CHANGES = {"steps", "eval_every", "probe_every", "checkpoint_every"}


@dataclass(frozen=True)
class RunParts:
    """Everything the loop needs; :mod:`analogeq.assembly` builds them from a config.

    Attributes:
        model: the field (digital emulator) or the chip that realizes it.
        cost, relaxation, estimator, updater: the four parts of a training step.
        data: the data set.
        label: the run's name in tables and progress bars.
        hooks: callables ``(model, new_model, state, new_state, estimate) -> dict`` whose
            scalars the compiled step adds to its metrics (e.g. a chip's energy per step).
        probe: ``(estimator, exact)``: the run's gradient estimator without penalties and the
            exact reference it is probed against (``None`` when the run is exact).
    """

    model: eqx.Module
    cost: AbstractCost
    relaxation: AbstractRelaxation
    estimator: AbstractEstimator
    updater: AbstractUpdater
    data: Dataset
    label: str = "digital"
    hooks: tuple[Callable[..., dict], ...] = ()
    probe: tuple[AbstractEstimator, AbstractEstimator] | None = None


def make_train_step(parts: RunParts, gate: bool):
    """The one jit-compiled training step ``(model, state, x, y, key) -> (model, state, metrics)``
    of every realization: estimate, update, then the metrics of the step, of the estimator
    (``Estimate.metrics``) and of each hook in ``parts.hooks``."""
    cost, relaxation, estimator, updater = parts.cost, parts.relaxation, parts.estimator, parts.updater
    hooks = parts.hooks

    @eqx.filter_jit
    def step(model, state, xb, yb, key):
        k_est, k_write = jax.random.split(key)
        est = estimator.estimate(model, cost, relaxation, xb, yb, gate=gate, key=k_est)
        new_model, new_state = updater.update(model, est.grads, state, k_write, estimate=est)
        y = jax.vmap(model.readout)(est.free.state)
        metrics = {
            "loss": jnp.mean(jax.vmap(cost)(y, yb)),
            "train_acc": stability.scored_accuracy(y, yb),
            "free_residual_max": jnp.max(est.free.residual),
            "free_steps_mean": jnp.mean(est.free.steps.astype(jnp.float32)),
            "unconverged": jnp.sum(~est.free.converged),
            "nudged_residual_max": jnp.max(est.nudged_residual),
            **est.metrics,
        }
        for hook in hooks:
            metrics.update(hook(model, new_model, state, new_state, est))
        return new_model, new_state, metrics

    return step


@eqx.filter_jit
def _probe(model, cost, relaxation, estimator, exact, xs, ys, key):
    ours = estimator.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    ref = exact.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    return ours.grads, ref.grads


def gradient_probe(model, cost, relaxation, probe, xs, ys, key=None) -> dict:
    """Cosine and relative error of the run's gradient against the exact gradient of the same
    field (the chip's own field on an analog run), on the same noise draw; on the Euler
    emulator also against BPTT through the ``T1``-step unroll (``grad_cosine_bptt``).

    Args:
        probe: ``(estimator, exact)`` as in :attr:`RunParts.probe`.
    """
    from analogeq.diagnostics.probe import bptt_probe

    estimator, exact = probe
    g, ref = _probe(model, cost, relaxation, estimator, exact, jnp.asarray(xs), jnp.asarray(ys), key)
    overall = compare_gradients(g, ref)["overall"]
    return {"grad_cosine": overall["cosine"], "grad_rel_error": overall["rel_error"],
            **bptt_probe(g, model, cost, relaxation, xs, ys)}


@dataclass
class TrainResult:
    """Final model, every metrics record, a summary (see :func:`summarize`) and the updater's
    final state (for a pulsed chip: the per-device pulse counters, ``state["pulses"]``)."""

    model: eqx.Module
    history: list[dict]
    summary: dict
    state: object = None


def _jsonable(d: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def summarize(history: list[dict], label: str, seconds: float, steps_run: int) -> dict:
    """Final/best test accuracy, gradient-probe statistics, throughput and, on a chip, the mean
    estimated energy and latency per training step (NaN for the digital emulator)."""
    evals = [r for r in history if r["kind"] == "eval"]
    train = [r for r in history if r["kind"] == "train"]
    cos = [r["grad_cosine"] for r in evals if "grad_cosine" in r]
    energy = [r["energy_J"] for r in train if "energy_J" in r]
    latency = [r["latency_s"] for r in train if "latency_s" in r]
    return {
        "label": label,
        "final_test_acc": evals[-1]["test_acc"] if evals else float("nan"),
        "best_test_acc": max((r["test_acc"] for r in evals), default=float("nan")),
        "grad_cosine_mean": float(np.mean(cos)) if cos else float("nan"),
        "grad_cosine_min": float(np.min(cos)) if cos else float("nan"),
        "grad_cosine_final": cos[-1] if cos else float("nan"),
        "unconverged_train_samples": int(sum(r["unconverged"] for r in train)),
        "steps": train[-1]["step"] if train else 0,
        "seconds": seconds,
        "steps_per_second": steps_run / seconds if seconds > 0 else float("nan"),
        "energy_per_step_J": float(np.mean(energy)) if energy else float("nan"),
        "latency_per_step_s": float(np.mean(latency)) if latency else float("nan"),
    }


def fit(
    parts: RunParts,
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    label: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """The training loop: train ``parts`` as ``cfg`` says (:func:`analogeq.assembly.train`
    builds the parts and calls this; ``analogeq train`` calls that).

    Args:
        parts: the run's parts (:mod:`analogeq.assembly`).
        cfg: the run's configuration (steps, batches, seeds, book-keeping).
        out_dir: where ``metrics.jsonl``, ``config.toml``, ``summary.json`` and the checkpoint go
            (nothing is written when ``None``).
        resume: continue from the checkpoint in ``out_dir`` (same configuration except
            :data:`RESUMABLE_CHANGES`); the continuation is bit-identical to an uninterrupted run.
        progress: show a progress bar.
        label: the run's name in the progress bar and summary (default ``parts.label``).
        log: where one-line messages go (default: nowhere).
    """
    label = label or parts.label
    data, log = parts.data, log or (lambda msg: None)
    out = Path(out_dir) if out_dir is not None else None
    model, state, start, history = parts.model, parts.updater.init(parts.model), 0, []

    if resume:
        if out is None or not has_checkpoint(out):
            raise FileNotFoundError(f"--resume: no checkpoint in {out}")
        (model, state), meta = load_checkpoint(out, (model, state))
        _check_resumable(cfg, meta["config"])
        start = meta["step"]
        history = [r for r in _read_jsonl(out / "metrics.jsonl") if r["step"] <= start]
        log(f"resumed from step {start} in {out}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.toml").write_text(cfg.to_toml())
        _write_jsonl(out / "metrics.jsonl", history)

    step_fn = make_train_step(parts, cfg.gate)
    streams = Streams.of(cfg)
    probe_n = min(64, len(data.y_train))
    probe_x, probe_y = data.x_train[:probe_n], data.y_train[:probe_n]

    def record(rec):
        rec = _jsonable(rec)
        history.append(rec)
        if out is not None:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")

    eval_key = streams.eval

    def do_eval(k, m):
        m = stability.ema_model(m, state)  # the parameter EMA when the run keeps one
        rec = {"kind": "eval", "step": k,
               **evaluate(m, parts.cost, parts.relaxation, data.x_test, data.y_test, eval_key)}
        if parts.probe is not None and (k % cfg.probe_every == 0 or k == cfg.steps):
            rec.update(gradient_probe(m, parts.cost, parts.relaxation, parts.probe, probe_x,
                                      probe_y, eval_key))
        record(rec)
        return rec

    if start == 0:
        do_eval(0, model)
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=start, disable=not progress, desc=label, unit="step")
    for k in range(start, cfg.steps):
        idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
        model, state, m = step_fn(model, state, jnp.asarray(data.x_train[idx]),
                                  jnp.asarray(data.y_train[idx]), streams.step(k))
        rec = {"kind": "train", "step": k + 1, **m}
        record(rec)
        if rec["unconverged"]:
            log(f"step {k + 1}: {rec['unconverged']} samples did not converge "
                f"(max residual {rec['free_residual_max']:.2e}); "
                + ("left out of the update" if cfg.gate else "used anyway (gate off)"))
        done = k + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            ev = do_eval(done, model)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", test_acc=f"{ev['test_acc']:.3f}")
        if out is not None and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            save_checkpoint(out, (model, state), {"step": done, "config": cfg.to_dict()})
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - t0
    summary = summarize(history, label, seconds, cfg.steps - start)
    if out is not None:
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return TrainResult(model=model, history=history, summary=summary, state=state)


def _check_resumable(cfg: TrainConfig, saved: dict) -> None:
    now = cfg.to_dict()
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and now[k] != saved.get(k))
    if diff:
        raise ValueError(
            "cannot resume: the checkpoint was written with a different configuration in "
            + ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {now[k]!r})" for k in diff)
        )


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
