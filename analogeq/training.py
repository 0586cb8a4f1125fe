"""The one training loop: free phase -> nudged phases -> update, for any realization.

A run is assembled from parts (:class:`RunParts`): a model (the field), a cost, a relaxation
(how the realization settles), an estimator (how the gradient is formed) and an updater (how it
is written). :func:`train` drives them with deterministic batches, JSONL metrics, a progress bar,
periodic evaluation, a gradient probe against the implicit adjoint and checkpoints with exact
resume.
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

from analogeq.checkpoint import has_checkpoint, load_checkpoint, save_checkpoint
from analogeq.config import TrainConfig
from analogeq.costs import AbstractCost, make_cost
from analogeq.data import Dataset, load_task
from analogeq.emulator import AbstractRelaxation, EulerRelaxation
from analogeq.ep import BPTT, EP, AbstractEstimator, EnergyEP, ImplicitAdjoint, compare_gradients, free_phase
from analogeq.models import HopfieldNetwork, LeakyNetwork
from analogeq import stability
from analogeq.ep.recipe import AdaptiveEP, RefinedEulerRelaxation, WithReadoutGradient
from analogeq.updaters import AbstractUpdater, OptaxUpdater, make_optimizer

# Fields that may change between a checkpoint and its resumption.
RESUMABLE_CHANGES = {"steps", "eval_every", "probe_every", "checkpoint_every"}


@dataclass(frozen=True)
class RunParts:
    """Everything the loop needs; build with :func:`build_digital` or an analog builder."""

    model: eqx.Module
    cost: AbstractCost
    relaxation: AbstractRelaxation
    estimator: AbstractEstimator
    updater: AbstractUpdater
    data: Dataset
    label: str = "digital"


def dtype_of(cfg: TrainConfig):
    if cfg.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
        return jnp.float64
    return jnp.float32


def build_model(cfg: TrainConfig, data: Dataset, key):
    """The model named by ``cfg.model`` sized for ``data``."""
    if cfg.model == "eqtransformer":
        from analogeq.models.transformer import EqTransformer

        return EqTransformer(data.n_classes, data.n_features, cfg.d_model, cfg.n_heads, key=key,
                             ffn_mult=cfg.ffn_mult, damping=cfg.damping, qk_norm=cfg.qk_norm,
                             dtype=dtype_of(cfg))
    sizes = (data.n_features, *cfg.hidden, data.n_classes)
    if cfg.model == "leaky":
        return LeakyNetwork(sizes, key=key, asymmetry=cfg.asymmetry, gain=cfg.gain, dtype=dtype_of(cfg))
    return HopfieldNetwork(sizes, key=key, gain=cfg.gain, dtype=dtype_of(cfg))


def build_estimator(cfg: TrainConfig) -> AbstractEstimator:
    """The estimator named by ``cfg.estimator`` (for the eqtransformer wrapped so the readout's
    direct gradient is included, see :class:`analogeq.ep.recipe.WithReadoutGradient`)."""
    est = _named_estimator(cfg)
    return WithReadoutGradient(est) if cfg.model == "eqtransformer" else est


def _named_estimator(cfg: TrainConfig) -> AbstractEstimator:
    if cfg.estimator == "ep" and cfg.t2_chunks > 1:
        return AdaptiveEP(beta=cfg.beta, kind=cfg.ep_kind, n_points=cfg.n_points, correction=cfg.correction,
                          chunks=cfg.t2_chunks)
    if cfg.estimator == "ep":
        return EP(beta=cfg.beta, kind=cfg.ep_kind, n_points=cfg.n_points, correction=cfg.correction)
    if cfg.estimator == "implicit":
        return ImplicitAdjoint()
    if cfg.estimator == "bptt":
        return BPTT()
    return EnergyEP(beta=cfg.beta)


def build_relaxation(cfg: TrainConfig) -> EulerRelaxation:
    if cfg.refine_steps > 0:
        return RefinedEulerRelaxation(eps=cfg.eps, T1=cfg.T1, T2=cfg.T2, tol=cfg.tol,
                                      stop_at_tol=cfg.stop_at_tol, refine_steps=cfg.refine_steps)
    return EulerRelaxation(eps=cfg.eps, T1=cfg.T1, T2=cfg.T2, tol=cfg.tol, stop_at_tol=cfg.stop_at_tol)


def build_digital(cfg: TrainConfig, data: Dataset | None = None) -> RunParts:
    """The idealized digital emulator run described by ``cfg``."""
    data = data if data is not None else load_task(cfg.task, **task_options(cfg))
    model = build_model(cfg, data, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0))
    return RunParts(
        model=model, cost=make_cost(cfg.cost), relaxation=build_relaxation(cfg),
        estimator=build_estimator(cfg),
        updater=stability.stabilized(OptaxUpdater(stability.build_optimizer(cfg)), cfg),
        data=data, label="digital",
    )


def task_options(cfg: TrainConfig) -> dict:
    """Keyword arguments of ``load_task`` for ``cfg.task`` (the sequence tasks' sizes)."""
    if cfg.task == "parity":
        return {"bits": cfg.bits}
    if cfg.task == "charlm":
        return {"text_path": cfg.text_path, "seq_len": cfg.seq_len}
    return {}


def make_train_step(parts: RunParts, gate: bool):
    """A jit-compiled ``(model, state, x, y, key) -> (model, state, metrics)``.

    On a chip the metrics also hold the step's estimated ``energy_J`` and ``latency_s``
    (:func:`analogeq.energy.train_step_breakdown`)."""
    from analogeq.energy import step_pulses, train_step_breakdown
    from analogeq.hardware.chip import Chip

    cost, relaxation, estimator, updater = parts.cost, parts.relaxation, parts.estimator, parts.updater

    @eqx.filter_jit
    def step(model, state, xb, yb, key):
        k_est, k_write = jax.random.split(key)
        est = estimator.estimate(model, cost, relaxation, xb, yb, gate=gate, key=k_est)
        old_state = state
        new_model, state = updater.update(model, est.grads, state, k_write, estimate=est)
        y = jax.vmap(model.readout)(est.free.state)
        metrics = {
            "loss": jnp.mean(jax.vmap(cost)(y, yb)),
            "train_acc": stability.scored_accuracy(y, yb),
            "free_residual_max": jnp.max(est.free.residual),
            "free_steps_mean": jnp.mean(est.free.steps.astype(jnp.float32)),
            "unconverged": jnp.sum(~est.free.converged),
            "nudged_residual_max": jnp.max(est.nudged_residual),
        }
        if isinstance(model, Chip):
            cost_of_step = train_step_breakdown(model, estimator, est,
                                                step_pulses(model, new_model, old_state, state))
            metrics.update(energy_J=cost_of_step["energy_J"], latency_s=cost_of_step["latency_s"])
        return new_model, state, metrics

    return step


def evaluate(model, cost: AbstractCost, relaxation: AbstractRelaxation, xs, ys, key=None) -> dict:
    """Free phase on a data set: accuracy, mean cost, how many samples did not converge and the
    mean settle time (units of ``tau``). ``key`` drives the realization's noise."""
    free = _eval_free(model, relaxation, jnp.asarray(xs), key)
    y = jax.vmap(model.readout)(free.state)
    ys = jnp.asarray(ys)
    return {
        "test_acc": float(stability.scored_accuracy(y, ys)),
        "test_loss": float(jnp.mean(jax.vmap(cost)(y, ys))),
        "test_unconverged": int(jnp.sum(~free.converged)),
        "test_residual_max": float(jnp.max(free.residual)),
        "settle_time_tau": float(jnp.mean(free.time)),
    }


@eqx.filter_jit
def _eval_free(model, relaxation, xs, key):
    return free_phase(model, relaxation, xs, key)


@eqx.filter_jit
def _probe(model, cost, relaxation, estimator, xs, ys, key):
    ours = estimator.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    exact_est = WithReadoutGradient(ImplicitAdjoint()) if isinstance(estimator, WithReadoutGradient) else ImplicitAdjoint()
    exact = exact_est.estimate(model, cost, relaxation, xs, ys, gate=False, key=key)
    return ours.grads, exact.grads


def gradient_probe(model, cost, relaxation, estimator, xs, ys, key=None) -> dict:
    """Cosine and relative error of the run's gradient against the implicit adjoint of the
    same field (the chip's own field on an analog run), on the same noise draw; on the Euler
    emulator also against BPTT through the ``T1``-step unroll (``grad_cosine_bptt``)."""
    from analogeq.diagnostics.probe import bptt_probe

    g, ref = _probe(model, cost, relaxation, estimator, jnp.asarray(xs), jnp.asarray(ys), key)
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


def train(
    cfg: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
    parts: RunParts | None = None,
    label: str | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train as ``cfg`` says; ``analogeq train`` calls this.

    Args:
        cfg: the run's configuration.
        out_dir: where ``metrics.jsonl``, ``config.toml``, ``summary.json`` and the checkpoint go
            (nothing is written when ``None``).
        resume: continue from the checkpoint in ``out_dir`` (same configuration except
            :data:`RESUMABLE_CHANGES`); the continuation is bit-identical to an uninterrupted run.
        progress: show a progress bar.
        parts: pre-built run parts; default :func:`build_digital`, or the chip of
            ``cfg.hardware`` (:func:`analogeq.hardware.run.build_analog`).
        label: the run's name in the progress bar and summary (default ``parts.label``).
        log: where one-line messages go (default: nowhere).
    """
    if parts is None:
        if cfg.hardware:
            from analogeq.hardware.run import build_analog

            parts = build_analog(cfg, cfg.hardware)
        else:
            parts = build_digital(cfg)
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

    step_fn = (stability.make_stable_train_step(parts, cfg) if isinstance(parts.updater, stability.StabilizedUpdater)
               else make_train_step(parts, cfg.gate))
    # Noise draws (read noise, thermal noise, stochastic writes) belong to the chip instance too,
    # so two chips trained from the same seed see different noise.
    base_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1), cfg.chip_seed)
    probe_n = min(64, len(data.y_train))
    probe_x, probe_y = data.x_train[:probe_n], data.y_train[:probe_n]

    def record(rec):
        rec = _jsonable(rec)
        history.append(rec)
        if out is not None:
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")

    eval_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 3), cfg.chip_seed)

    def do_eval(k, m):
        m = stability.ema_model(m, state)  # the parameter EMA when the run keeps one
        rec = {"kind": "eval", "step": k,
               **evaluate(m, parts.cost, parts.relaxation, data.x_test, data.y_test, eval_key)}
        exact_run = isinstance(getattr(parts.estimator, "inner", parts.estimator), ImplicitAdjoint)
        if (parts.estimator is not None and not exact_run
                and (k % cfg.probe_every == 0 or k == cfg.steps)):
            rec.update(gradient_probe(m, parts.cost, parts.relaxation, parts.estimator, probe_x,
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
                                  jnp.asarray(data.y_train[idx]), jax.random.fold_in(base_key, k))
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
