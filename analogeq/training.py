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

import math
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
from analogeq.checkpoint import (
    METRICS,
    STATE,
    CheckpointError,
    MetricsLog,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from analogeq.config import TrainConfig
from analogeq.costs import AbstractCost
from analogeq.data import Dataset
from analogeq.emulator import AbstractRelaxation
from analogeq.ep import AbstractEstimator, compare_gradients
from analogeq.evaluation import evaluate, traced, untraced
from analogeq.jsonio import (
    sanitize,
    write_json,
    write_text_atomic,
)
from analogeq.streams import Streams
from analogeq.updaters import AbstractUpdater

# Fields that may change between a checkpoint and its resumption.
RESUMABLE_CHANGES = {"steps", "epochs", "eval_every", "probe_every", "checkpoint_every"}


def steps_per_epoch(cfg: TrainConfig, data: Dataset) -> int:
    """Training steps in one pass over ``data``'s training set: ``n_train // batch_size`` (the
    remainder of each epoch's permutation is dropped, see :meth:`Dataset.batch_indices`)."""
    n = len(data.y_train)
    if not 1 <= cfg.batch_size <= n:
        raise ValueError(f"optimizer.batch_size must lie in [1, {n}] (training set size of "
                         f"{data.name!r}); got {cfg.batch_size}")
    return n // cfg.batch_size


def total_steps(cfg: TrainConfig, data: Dataset) -> int:
    """The run's number of training steps: ``epochs * steps_per_epoch`` when ``cfg.epochs > 0``,
    else ``cfg.steps``."""
    return cfg.epochs * steps_per_epoch(cfg, data) if cfg.epochs > 0 else cfg.steps


def _split_keys(scores: dict, split: str) -> dict:
    """``evaluate``'s ``test_*`` numbers renamed ``val_*`` for the validation split."""
    if split == "test":
        return scores
    return {f"val_{k[5:]}" if k.startswith("test_") else k: v for k, v in scores.items()}


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
    (``Estimate.metrics``) and of each hook in ``parts.hooks``.

    The returned callable binds the parts to the module-level compiled step :func:`_train_step`,
    whose compilation cache is keyed by the parts' structure (their static fields, the arrays'
    shapes and dtypes), not by this call: parts of equal structure (another ``train()`` on the
    same parts, another chip seed) reuse one executable. A chip's numeric hardware values
    (levels, noise amplitudes, temperature, ranges, conductances) are traced arguments
    (:data:`analogeq.hardware.sections.TRACED_FIELDS`), so a sweep over them reuses it too;
    switching one on or off (zero vs nonzero) compiles once more. Static fields compare by
    value, so a part rebuilt with equal settings also hits the cache (optax optimizers, which
    compare by identity, are memoized by :func:`analogeq.stability.build_optimizer`)."""
    cost, relaxation, estimator, updater = parts.cost, parts.relaxation, parts.estimator, parts.updater
    hooks = tuple(parts.hooks)

    def step(model, state, xb, yb, key):
        # Hardware numbers enter as traced arrays; the caller gets its own configs back.
        args = traced((model, state, cost, relaxation, estimator, updater, hooks))
        new_model, new_state, metrics = _train_step(*args[:2], xb, yb, key, *args[2:], gate)
        return untraced(new_model, model), untraced(new_state, state), metrics

    return step


@eqx.filter_jit
def _train_step(model, state, xb, yb, key, cost, relaxation, estimator, updater, hooks, gate):
    """The body of :func:`make_train_step`'s step. Module level, so its compilation cache
    outlives one ``make_train_step`` call: the key is the static structure of every argument
    (the parts' static fields, the arrays' shapes and dtypes, ``gate``); a chip's numbers,
    passed through :func:`~analogeq.evaluation.traced`, are arrays, not part of the key."""
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


def _probe(model, cost, relaxation, estimator, exact, xs, ys, key):
    args = traced((model, cost, relaxation, estimator, exact))
    g, ref = _probe_jit(*args, xs, ys, key)
    return untraced(g, model), untraced(ref, model)


@eqx.filter_jit
def _probe_jit(model, cost, relaxation, estimator, exact, xs, ys, key):
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


def stab_probe(model, relaxation, xs, key=None) -> dict:
    """The stability probe (:func:`analogeq.diagnostics.stability_probe.stability_probe`) with
    its fields prefixed ``stab_``: leading eigenvalues of ``dF/dz`` at the free states the run
    reaches on the first probe samples, and the verdict (stable / Euler artifact / Hopf)."""
    from analogeq.diagnostics.stability_probe import stability_probe

    return {f"stab_{k}": v for k, v in stability_probe(model, relaxation, jnp.asarray(xs), key).items()}


@dataclass
class TrainResult:
    """Final model, every metrics record, a summary (see :func:`summarize`) and the updater's
    final state (for a pulsed chip: the per-device pulse counters, ``state["pulses"]``).

    When the run diverged (``summary["status"] == "diverged"``), ``model`` and ``state`` are
    those of the last step before the divergence."""

    model: eqx.Module
    history: list[dict]
    summary: dict
    state: object = None

    @property
    def diverged(self) -> bool:
        """Whether the run stopped on a divergence (see :func:`divergence`)."""
        return self.summary.get("status") == "diverged"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`fit`; the last completed step was checkpointed first and the
    message says where and how to resume."""


def interrupted_message(step: int, saved: int, out) -> str:
    """What a Ctrl-C after ``step`` completed steps says, with ``saved`` the last checkpointed
    step and ``out`` the output folder (``None``: nothing is written)."""
    if out is None:
        return f"interrupted after step {step}; nothing was saved (no output directory)"
    if saved <= 0:
        return "interrupted before the first training step completed; nothing to resume: start the run again"
    return f"interrupted: step {saved} is checkpointed in {out}; continue with the same command and --resume"


LOSS_LIMIT = 1e6
"""Mean training loss above which a run counts as exploding (the costs of :mod:`analogeq.costs`
are O(1) on a working network; a relaxation running away with Euler steps past the stability
limit gives 1e20 and more)."""
WEIGHT_GROWTH_LIMIT = 1e6
"""Largest parameter magnitude, relative to the largest initial one (at least 1), above which a
run counts as exploding."""


def _num(v) -> float:
    """A metrics value as a float (``None``, a non-finite number written as JSON ``null``: NaN)."""
    return float("nan") if v is None else float(v)


def _raw(d: dict) -> dict:
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in d.items()}


def _jsonable(d: dict) -> dict:
    return sanitize(_raw(d))


_REASONS = {
    "final_test_acc": "no evaluation recorded", "best_test_acc": "no evaluation recorded",
    "grad_cosine_mean": "no gradient probe recorded (exact estimator, or no evaluation)",
    "grad_cosine_min": "no gradient probe recorded (exact estimator, or no evaluation)",
    "grad_cosine_final": "no gradient probe recorded (exact estimator, or no evaluation)",
    "steps_per_second": "no training step ran",
    "final_val_acc": "no validation evaluation recorded", "best_val_acc": "no validation evaluation recorded",
    "energy_per_step_J": "no step reported an energy estimate (the digital emulator has no energy model)",
    "latency_per_step_s": "no step reported a latency estimate (the digital emulator has no energy model)",
}


def summarize(history: list[dict], label: str, seconds: float, steps_run: int,
              diverged: dict | None = None) -> dict:
    """Final/best test accuracy, gradient-probe statistics, throughput and, on a chip, the mean
    estimated energy and latency per training step (NaN for the digital emulator, with a
    ``<field>_reason`` beside every NaN). ``status`` is ``"completed"`` or ``"diverged"``, and
    ``diverged`` then holds the step, phase and reason (see :func:`divergence`).

    A run on a data set with a validation split (its periodic ``eval`` records hold ``val_*``
    numbers, a final ``test`` record the test set's) also reports ``final_val_acc``,
    ``best_val_acc`` and ``test_samples``; its ``final_test_acc`` (and ``best_test_acc``, the
    same single number) is that of the final evaluation on the test set."""
    evals = [r for r in history if r["kind"] == "eval"]
    train = [r for r in history if r["kind"] == "train"]
    tests = [r for r in history if r["kind"] == "test"]
    scored = [r for r in history if r["kind"] in ("eval", "test") and "test_acc" in r]
    acc = np.array([_num(r.get("test_acc")) for r in scored])
    cos = [_num(r["grad_cosine"]) for r in evals if "grad_cosine" in r]
    energy = [_num(r["energy_J"]) for r in train if "energy_J" in r]
    latency = [_num(r["latency_s"]) for r in train if "latency_s" in r]
    nan = float("nan")
    s = {
        "label": label,
        "status": "diverged" if diverged else "completed",
        "final_test_acc": float(acc[-1]) if acc.size else nan,
        "best_test_acc": float(np.nanmax(acc)) if np.isfinite(acc).any() else nan,
        "grad_cosine_mean": float(np.mean(cos)) if cos else nan,
        "grad_cosine_min": float(np.min(cos)) if cos else nan,
        "grad_cosine_final": cos[-1] if cos else nan,
        "unconverged_train_samples": int(sum(r.get("unconverged") or 0 for r in train)),
        "nudged_failed_train_samples": int(sum(r.get("nudged_failed") or 0 for r in train)),
        "steps": train[-1]["step"] if train else 0,
        "seconds": seconds,
        "steps_per_second": steps_run / seconds if seconds > 0 and steps_run > 0 else nan,
        "energy_per_step_J": float(np.mean(energy)) if energy else nan,
        "latency_per_step_s": float(np.mean(latency)) if latency else nan,
    }
    # Why a field is NaN: nothing to compute it from (the reason of _REASONS), or the records
    # held non-finite values (a diverged run).
    if tests or any("val_acc" in r for r in evals):
        val = np.array([_num(r.get("val_acc")) for r in evals if "val_acc" in r])
        s["final_val_acc"] = float(val[-1]) if val.size else nan
        s["best_val_acc"] = float(np.nanmax(val)) if np.isfinite(val).any() else nan
        s["test_samples"] = int(tests[-1]["test_samples"]) if tests else 0
    empty = {"final_test_acc": not scored, "best_test_acc": not scored, "grad_cosine_mean": not cos,
             "grad_cosine_min": not cos, "grad_cosine_final": not cos, "steps_per_second": True,
             "energy_per_step_J": not energy, "latency_per_step_s": not latency,
             "final_val_acc": not evals, "best_val_acc": not evals}
    for k, v in list(s.items()):
        if isinstance(v, float) and not math.isfinite(v):
            s[f"{k}_reason"] = _REASONS[k] if empty.get(k) else "non-finite values in the metrics"
    if any("stab_verdict" in r for r in evals):
        s.update(stab_summary(evals))
    if diverged:
        s["steps"] = diverged["step"] - 1  # the steps completed before it
        s["diverged"] = {k: diverged[k] for k in ("step", "phase", "reason")}
    return s


def stab_summary(evals: list[dict]) -> dict:
    """Over the stability probes of a run's evaluations: the worst verdict
    (``stab_verdict_worst``, by the severity of :data:`analogeq.diagnostics.verdict.LABELS`)
    and the largest ``Re mu`` (``stab_max_re_mu_max``, 1/``tau``), each ``None``/NaN with a
    ``_reason`` when no probe had a finite one."""
    from analogeq.diagnostics.verdict import LABELS

    labels = [r["stab_verdict"] for r in evals if r.get("stab_verdict") in LABELS]
    mu = np.array([_num(r.get("stab_max_re_mu")) for r in evals if "stab_verdict" in r])
    out = {"stab_verdict_worst": max(labels, key=LABELS.index) if labels else None,
           "stab_max_re_mu_max": float(np.nanmax(mu)) if np.isfinite(mu).any() else float("nan")}
    if not labels:
        out["stab_verdict_worst_reason"] = "no stability probe reached a finite free state"
    if not np.isfinite(out["stab_max_re_mu_max"]):
        out["stab_max_re_mu_max_reason"] = "non-finite values in the metrics"
    return out


def _leaf_scales(model):
    # Only the arrays go in: a chip's hardware numbers (Python numbers in its config) would be
    # static arguments, and every new value would compile this again.
    return _leaf_scales_jit(eqx.filter(model, eqx.is_inexact_array))


@eqx.filter_jit
def _leaf_scales_jit(model):
    leaves = jax.tree_util.tree_leaves(model)
    return jnp.stack([jnp.max(jnp.abs(x)).astype(jnp.float32) for x in leaves]) if leaves else jnp.zeros(0)


def divergence(metrics: dict, scales, finite_at_start, weight_limit: float, gate: bool,
               batch: int) -> dict | None:
    """Whether a training step diverged; ``None`` if not, else ``{"phase", "residual",
    "value", "reason"}``.

    Checked in order: a non-finite free phase (``phase "free"``); failed nudged phases
    (``"nudged"``: with the gate, only when every sample of the batch failed, since the gate
    leaves failed samples out of the update; without it, when one was non-finite); a
    non-finite loss or one above :data:`LOSS_LIMIT` (``"free"`` when free phases were also
    unconverged, i.e. the relaxation ran away, else ``"loss"``); a parameter that became
    non-finite or grew past ``weight_limit`` (``"update"``). ``residual`` is the residual
    ``|F|/|s|`` of the failed phase (the free phase's for ``loss`` and ``update``), ``value``
    the offending loss or parameter magnitude.

    Args:
        metrics: the step's metrics (host floats).
        scales: the largest ``|x|`` of each inexact leaf of the updated model.
        finite_at_start: per leaf, whether it was finite in the initial model (a chip may hold
            infinite constants, which are not parameters going non-finite).
        weight_limit: largest allowed parameter magnitude.
        gate: whether failed samples are left out of the update (``TrainConfig.gate``).
        batch: samples in the batch.
    """
    free_r, nudged_r = _num(metrics.get("free_residual_max")), _num(metrics.get("nudged_residual_max"))
    loss, unconverged = _num(metrics.get("loss")), int(metrics.get("unconverged") or 0)
    nf = metrics.get("nudged_failed")
    if not math.isfinite(free_r):
        return {"phase": "free", "residual": free_r, "value": loss,
                "reason": "the free phase produced a non-finite state (NaN/inf); lower eps, the "
                          "gain or the learning rate"}
    if nf is None:  # an estimator that does not count failures: any non-finite one is fatal
        failed = not math.isfinite(nudged_r)
        count = "some"
    else:
        failed = (int(nf) >= batch) if gate else not math.isfinite(nudged_r)
        count = f"{int(nf)} of {batch}"
    if failed:
        return {"phase": "nudged", "residual": nudged_r, "value": loss,
                "reason": f"the nudged phases failed on {count} samples (max residual "
                          f"{nudged_r:.3g}): " + ("none was left to learn from; " if gate else
                          "the gate is off, so they entered the update; ")
                          + "lower beta, eps or the gain"}
    if not (math.isfinite(loss) and loss <= LOSS_LIMIT):
        if unconverged:
            return {"phase": "free", "residual": free_r, "value": loss,
                    "reason": f"the training loss is {loss:.3g} (limit {LOSS_LIMIT:g}) with "
                              f"{unconverged} of {batch} free phases unconverged: the relaxation "
                              "runs away; lower eps or the gain"}
        return {"phase": "loss", "residual": free_r, "value": loss,
                "reason": f"the training loss is {loss:.3g} (limit {LOSS_LIMIT:g}); lower the "
                          "learning rate"}
    scales = np.asarray(scales, dtype=np.float64)[np.asarray(finite_at_start, dtype=bool)]
    wmax = float(np.max(scales)) if scales.size else 0.0
    if not (math.isfinite(wmax) and wmax <= weight_limit):
        what = "non-finite" if not math.isfinite(wmax) else f"{wmax:.3g} (limit {weight_limit:.3g})"
        return {"phase": "update", "residual": free_r, "value": wmax,
                "reason": f"the update made the largest parameter magnitude {what}; lower the "
                          "learning rate"}
    return None


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

    Every step's metrics are appended to ``metrics.jsonl`` (strict JSON: a non-finite number is
    ``null`` with a ``<field>_reason``). A step that diverges (:func:`divergence`) ends the
    run: a ``{"kind": "diverged", "step", "phase", "residual", ...}`` record, a summary with
    ``"status": "diverged"`` and the last good model in the result. Ctrl-C checkpoints the last
    completed step and raises :class:`TrainingInterrupted`.

    Args:
        parts: the run's parts (:mod:`analogeq.assembly`).
        cfg: the run's configuration (steps, batches, seeds, book-keeping).
        out_dir: where ``metrics.jsonl``, ``config.toml``, ``summary.json`` and the checkpoint go
            (nothing is written when ``None``). A fresh run removes an old checkpoint there first.
        resume: continue from the checkpoint in ``out_dir`` (same configuration except
            :data:`RESUMABLE_CHANGES`); the checkpoint and the part of ``metrics.jsonl`` it was
            written after are verified by hash, later records are dropped, and the continuation
            is bit-identical to an uninterrupted run.
        progress: show a progress bar.
        label: the run's name in the progress bar and summary (default ``parts.label``).
        log: where one-line messages go (default: nowhere).
    """
    label = label or parts.label
    data, log = parts.data, log or (lambda msg: None)
    total, per_epoch = total_steps(cfg, data), steps_per_epoch(cfg, data)
    split, x_eval, y_eval = data.eval_split
    out = Path(out_dir) if out_dir is not None else None
    model, state, start, history = parts.model, parts.updater.init(parts.model), 0, []
    scales0 = np.asarray(_leaf_scales(parts.model), dtype=np.float64)
    finite0 = np.isfinite(scales0)
    weight_limit = WEIGHT_GROWTH_LIMIT * max(1.0, float(np.max(scales0[finite0], initial=0.0)))
    mlog = None
    if resume:
        if out is None:
            raise ValueError("resume needs the run's output directory (out_dir)")
        (model, state), meta = load_checkpoint(out, (model, state), legacy=False,
                                               check=lambda meta: _check_resumable(cfg, meta, out, total))
        start = meta["step"]
        mlog, history = MetricsLog.resume(out / METRICS, meta)
        log(f"resumed from step {start} in {out}")
    elif out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_checkpoint(out)  # never pair an old run's checkpoint with this run's log
        (out / "summary.json").unlink(missing_ok=True)
        mlog = MetricsLog.create(out / METRICS)
    if out is not None:
        write_text_atomic(out / "config.toml", cfg.to_toml())

    step_fn = make_train_step(parts, cfg.gate)
    streams = Streams.of(cfg)
    probe_n = min(64, len(data.y_train))
    probe_x, probe_y = data.x_train[:probe_n], data.y_train[:probe_n]

    def record(rec):
        rec = _jsonable(rec)
        history.append(rec)
        if mlog is not None:
            mlog.append(rec)
        return rec

    eval_key = streams.eval

    def do_eval(k, m):
        m = stability.ema_model(m, state)  # the parameter EMA when the run keeps one
        scores = evaluate(m, parts.cost, parts.relaxation, x_eval, y_eval, eval_key)
        rec = {"kind": "eval", "step": k, **({"split": split} if split != "test" else {}),
               **_split_keys(scores, split)}
        if k % cfg.probe_every == 0 or k == total:
            if parts.probe is not None:
                rec.update(gradient_probe(m, parts.cost, parts.relaxation, parts.probe, probe_x,
                                          probe_y, eval_key))
            if cfg.model == "eqtransformer":  # digital or chip: is a collapse Hopf, Euler or read?
                rec.update(stab_probe(m, parts.relaxation, probe_x, eval_key))
        return record(rec)

    def checkpoint(step, m, st, mark):
        mlog.sync()  # the log is durable before a checkpoint claims it
        save_checkpoint(out, (m, st), {"step": step, "config": cfg.to_dict(), **mark})

    if not resume:  # a checkpoint is only ever written after the step-0 evaluation
        do_eval(0, model)
    # The last completed step, what Ctrl-C checkpoints, and the step of the checkpoint on disk.
    good = (start, model, state, mlog.mark() if mlog else None)
    saved = start if resume else -1
    diverged = None
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start, disable=not progress, desc=label, unit="step")
    acc_key = "val_acc" if split != "test" else "test_acc"
    last_acc = next((_num(r.get(acc_key)) for r in reversed(history) if r["kind"] == "eval"), float("nan"))
    try:
        for k in range(start, total):
            idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
            new_model, new_state, m = step_fn(model, state, jnp.asarray(data.x_train[idx]),
                                              jnp.asarray(data.y_train[idx]), streams.step(k))
            m = _raw(m)
            why = divergence(m, _leaf_scales(new_model), finite0, weight_limit, cfg.gate, len(idx))
            rec = record({"kind": "train", "step": k + 1, **m})
            if why is not None:
                diverged = record({"kind": "diverged", "step": k + 1, **why})
                log(f"step {k + 1}: diverged in the {why['phase']} phase: {why['reason']}")
                break
            model, state = new_model, new_state
            _log_gated(rec, cfg.gate, log)
            done = k + 1
            if done % cfg.eval_every == 0 or done == total:
                last_acc = _num(do_eval(done, model)[acc_key])
            # tqdm adds step/total and the ETA; the postfix is redrawn with the bar's own refresh.
            bar.set_postfix({"epoch": f"{k // per_epoch + 1}/{-(-total // per_epoch)}",
                             "loss": f"{_num(rec['loss']):.3f}", acc_key: f"{last_acc:.3f}"}, refresh=False)
            if mlog is not None and (done % cfg.checkpoint_every == 0 or done == total):
                checkpoint(done, model, state, mlog.mark())
                saved = done
            good = (done, model, state, mlog.mark() if mlog else None)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        step, m_good, s_good, mark = good
        if mlog is not None and step > saved and step > 0:
            checkpoint(step, m_good, s_good, mark)
            saved = step
        raise TrainingInterrupted(interrupted_message(step, saved, out if mlog is not None else None)) from None
    bar.close()
    seconds = time.perf_counter() - t0
    if data.has_validation:  # the held-out test set is scored once, on the final model
        m = stability.ema_model(model, state)
        record({"kind": "test", "step": good[0], "test_samples": len(data.y_test),
                **evaluate(m, parts.cost, parts.relaxation, data.x_test, data.y_test, eval_key)})
    summary = summarize(history, label, seconds, (diverged["step"] - 1 if diverged else total) - start,
                        diverged)
    if out is not None:
        write_json(out / "summary.json", summary)
    return TrainResult(model=model, history=history, summary=summary, state=state)


def _log_gated(rec: dict, gate: bool, log) -> None:
    """One line for a step with samples left out (or, gate off, used anyway)."""
    what = "left out of the update" if gate else "used anyway (gate off)"
    if rec.get("unconverged"):
        log(f"step {rec['step']}: {rec['unconverged']} samples did not converge "
            f"(max residual {_num(rec['free_residual_max']):.2e}); {what}")
    if rec.get("nudged_failed"):
        log(f"step {rec['step']}: the nudged phases of {rec['nudged_failed']} samples failed "
            f"(max residual {_num(rec['nudged_residual_max']):.2e}); {what}")


def _check_resumable(cfg: TrainConfig, meta: dict, out: Path, total: int | None = None) -> None:
    """Refuse a checkpoint written with another configuration or past the run's ``total``
    steps (default ``cfg.steps``)."""
    total = cfg.steps if total is None else total
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    now = cfg.to_dict()
    # A field added after the checkpoint was written held its default then.
    saved = {**TrainConfig().to_dict(), **saved} if saved else saved
    diff = sorted(k for k in now if k not in RESUMABLE_CHANGES and now[k] != saved.get(k))
    if diff:
        raise ValueError(
            f"cannot resume from {out / STATE}: it was written with a different configuration in "
            + ", ".join(f"{k} (checkpoint {saved.get(k)!r}, now {now[k]!r})" for k in diff)
        )
    if meta["step"] > total:
        raise CheckpointError(
            f"{out / STATE}: the checkpoint is at step {meta['step']}, beyond steps = {total}"
            + (f" (epochs = {cfg.epochs})" if cfg.epochs > 0 else "")
            + f"; resume with steps >= {meta['step']} (--steps {meta['step']} finishes the run as it was"
            + (", with --epochs 0)" if cfg.epochs > 0 else ")"))
