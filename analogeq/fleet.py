"""Many chips trained at once: K chip instances of one run, trained by one compiled step.

A designer asks how the *trained* accuracy spreads over fabricated chips (process variation,
Pelgrom et al., IEEE JSSC 24, 1433, 1989; for analog crossbars Rasch et al., AICAS 2021). The
answer needs K trainings that differ only in the chip: :func:`train_chips` builds the run's
parts once per chip seed (:func:`~analogeq.assembly.build_analog`, so chip ``i`` is the chip a
single run with ``chip_seed = chip_seeds[i]`` builds, bit for bit) and stacks what differs per
chip along a leading axis: the chip's arrays (conductances, device spreads, mismatch), the
updater's state and arrays (a pulsed updater's key), the step's noise key. One step maps the
single-chip step (:func:`analogeq.training._train_step`, the program ``analogeq train`` runs)
over that axis with :func:`analogeq.montecarlo.map_over`: ``vmap`` (one program), ``shard``
(the chips split over the local devices, e.g. ``--host-devices 2`` on a 2-core CPU) or
``loop`` (the reference). Every chip sees the same batch, as the K single runs would.

Chip ``i`` of a K-chip run is the single run with ``chip_seed = chip_seeds[i]``: the same
instance, the same training and evaluation noise (:class:`~analogeq.streams.Streams`), the
same batches. ``tests/test_train_chips.py`` checks its model and history against the single
run (loop: bit-identical; vmap and shard: equal to float32 rounding, since a batched program
may fuse and reduce in another order).

The chip seeds are seeds, not keys split from one chip key: a chip of a K-chip run can be
reproduced, inspected or resumed on its own with ``analogeq train --chip-seed``, and a sweep's
``[sweep] chips`` list maps onto it directly.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from analogeq.checkpoint import (
    METRICS,
    STATE,
    MetricsLog,
    load_checkpoint,
    remove_checkpoint,
    save_checkpoint,
)
from analogeq.config import TrainConfig
from analogeq.ep import compare_gradients, free_phase
from analogeq.evaluation import free_scores, traced
from analogeq.jsonio import sanitize, write_json, write_text_atomic
from analogeq.montecarlo import distribution, map_over, resolve_mode
from analogeq.streams import Streams
from analogeq.training import (
    WEIGHT_GROWTH_LIMIT,
    RunParts,
    TrainingInterrupted,
    TrainResult,
    _check_resumable,
    _log_gated,
    _raw,
    _split_keys,
    _train_step,
    divergence,
    interrupted_message,
    summarize,
    total_steps,
)

SPREAD_FIELDS = ("final_test_acc", "best_test_acc", "final_loss", "grad_cosine_final",
                 "grad_cosine_mean", "unconverged_train_samples", "energy_per_step_J")
"""Per-chip summary fields whose spread over chips :func:`train_chips` reports."""
MAX_CHIPS = 4096


# --------------------------------------------------------------------------- stacking
@dataclass(frozen=True)
class Stacked:
    """K pytrees of one structure (one per chip), split into what differs per chip and what
    all share.

    Attributes:
        treedef: the common tree structure.
        flags: per leaf, whether it is a per-chip array (stacked) or shared.
        arrays: the per-chip array leaves, each with a leading axis of length K.
        shared: the other leaves (a chip's hardware numbers, static settings), as in chip 0.
    """

    treedef: object
    flags: tuple[bool, ...]
    arrays: list
    shared: list

    @classmethod
    def of(cls, trees: list, what: str) -> Stacked:
        """Stack ``trees``; their structure and non-array leaves must agree (``what`` names
        them in the error)."""
        flat = [jax.tree_util.tree_flatten(t) for t in trees]
        leaves0, treedef = flat[0]
        flags = tuple(eqx.is_array(x) for x in leaves0)
        for i, (leaves, td) in enumerate(flat[1:], start=1):
            same = td == treedef and all(
                f or _same(a, b) for f, a, b in zip(flags, leaves0, leaves))
            if not same:
                raise ValueError(f"{what} of chip {i} differs from chip 0's in more than its "
                                 "arrays; the chips of one run must share their settings")
        arrays = [jnp.stack([leaves[j] for leaves, _ in flat]) for j, f in enumerate(flags) if f]
        shared = [x for x, f in zip(leaves0, flags) if not f]
        return cls(treedef, flags, arrays, shared)

    def traced_shared(self) -> list:
        """:attr:`shared` with a chip's hardware numbers as traced scalars
        (:func:`~analogeq.evaluation.traced`), so one compiled step serves every value."""
        leaves = jax.tree_util.tree_leaves(traced(jax.tree_util.tree_unflatten(self.treedef, self._merge(
            [a[0] for a in self.arrays], self.shared))))
        return [x for x, f in zip(leaves, self.flags) if not f]

    def _merge(self, arrays, shared) -> list:
        a, s = iter(arrays), iter(shared)
        return [next(a) if f else next(s) for f in self.flags]

    def build(self, arrays, shared=None):
        """The tree of one chip from its array leaves (and ``shared``, default :attr:`shared`)."""
        return jax.tree_util.tree_unflatten(self.treedef, self._merge(arrays, self.shared if shared is None else shared))

    def chip(self, i: int, arrays=None):
        """Chip ``i``'s tree (from ``arrays``, default :attr:`arrays`)."""
        return self.build([a[i] for a in (self.arrays if arrays is None else arrays)])


def _same(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 -- objects without a truth value of ==: compare identity
        return a is b


def _per_chip(tree, flags) -> list:
    """The per-chip array leaves of ``tree`` (a model or state of the stacked structure)."""
    leaves = jax.tree_util.tree_leaves(tree)
    return [x for x, f in zip(leaves, flags) if f]


# --------------------------------------------------------------------------- per-chip programs
class ChipTrainStep(eqx.Module):
    """One chip's training step ``((model, state, updater arrays), key), x, y -> ((model,
    state arrays), metrics)``: :func:`analogeq.training._train_step` on the chip rebuilt from
    its arrays and the shared leaves. Mapped over chips by :func:`~analogeq.montecarlo.map_over`."""

    treedefs: tuple = eqx.field(static=True)
    flags: tuple = eqx.field(static=True)
    shared: tuple
    cost: eqx.Module
    relaxation: eqx.Module
    estimator: eqx.Module
    hooks: tuple
    gate: bool = eqx.field(static=True)

    def __call__(self, item, xb, yb):
        arrays, key = item
        model, state, updater = (_rebuild(td, fl, a, s) for td, fl, a, s in
                                 zip(self.treedefs, self.flags, arrays, self.shared))
        new_model, new_state, metrics = _train_step(model, state, xb, yb, key, self.cost, self.relaxation,
                                                    self.estimator, updater, self.hooks, self.gate)
        return (_per_chip(new_model, self.flags[0]), _per_chip(new_state, self.flags[1])), metrics


class ChipEvaluate(eqx.Module):
    """One chip's evaluation ``(model arrays, key), xs, ys -> metrics``: the numbers of
    :func:`analogeq.evaluation.evaluate` in one traced program."""

    treedef: object = eqx.field(static=True)
    flags: tuple = eqx.field(static=True)
    shared: list
    cost: eqx.Module
    relaxation: eqx.Module

    def __call__(self, item, xs, ys):
        arrays, key = item
        model = _rebuild(self.treedef, self.flags, arrays, self.shared)
        return free_scores(model, self.cost, free_phase(model, self.relaxation, xs, key), ys)


class ChipProbe(eqx.Module):
    """One chip's gradient probe ``(model arrays, key), xs, ys -> (ours, exact)``: the run's
    estimator and the exact reference on the same noise draw, as the per-chip leaves of the
    gradient (the shared hardware numbers carry no gradient)."""

    treedef: object = eqx.field(static=True)
    flags: tuple = eqx.field(static=True)
    shared: list
    cost: eqx.Module
    relaxation: eqx.Module
    estimator: eqx.Module
    exact: eqx.Module
    grad_flags: tuple = eqx.field(static=True)  # per-chip leaves, ``None`` counted as a leaf

    def __call__(self, item, xs, ys):
        arrays, key = item
        model = _rebuild(self.treedef, self.flags, arrays, self.shared)
        ours = self.estimator.estimate(model, self.cost, self.relaxation, xs, ys, gate=False, key=key)
        ref = self.exact.estimate(model, self.cost, self.relaxation, xs, ys, gate=False, key=key)
        return _grad_leaves(ours.grads, self.grad_flags), _grad_leaves(ref.grads, self.grad_flags)


def _rebuild(treedef, flags, arrays, shared):
    a, s = iter(arrays), iter(shared)
    return jax.tree_util.tree_unflatten(treedef, [next(a) if f else next(s) for f in flags])


def _is_none(x) -> bool:
    return x is None


def _grad_leaves(grads, flags) -> list:
    """The gradient's leaves at the model's per-chip leaves (``None`` where it has none);
    ``flags`` as :attr:`Stacked.flags` but with the model's ``None`` fields counted as leaves
    (a gradient holds ``None`` where the model does)."""
    leaves = jax.tree_util.tree_leaves(grads, is_leaf=_is_none)
    if len(leaves) != len(flags):
        raise ValueError("the estimator's gradient does not have the model's structure")
    return [x for x, f in zip(leaves, flags) if f]


def _hold(keep, new, old):
    """``old`` for the chips in ``keep`` (diverged: frozen at their last good step), else ``new``."""
    return jnp.where(keep.reshape(keep.shape + (1,) * (new.ndim - 1)), old, new)


@eqx.filter_jit
def _step_keys(train_keys, k):
    return jax.vmap(lambda t: jax.random.fold_in(t, k))(train_keys)


@eqx.filter_jit
def _leaf_scales(arrays):
    """Per chip, the largest ``|x|`` of each inexact per-chip leaf, shape ``(K, leaves)``."""
    xs = [x for x in arrays if jnp.issubdtype(x.dtype, jnp.inexact)]
    if not xs:
        return jnp.zeros((arrays[0].shape[0] if arrays else 0, 0))
    return jnp.stack([jnp.max(jnp.abs(x).reshape(x.shape[0], -1), axis=1).astype(jnp.float32) for x in xs], axis=1)


# --------------------------------------------------------------------------- results
@dataclass
class ChipsResult:
    """A K-chip training: ``runs[i]`` is chip ``i``'s :class:`~analogeq.training.TrainResult`
    (model, history, summary, updater state: what the single run with ``chip_seeds[i]``
    returns); ``summary`` holds the spread over chips (:data:`SPREAD_FIELDS`, each
    ``{"mean", "std", "min", "max", "values"}``) and the per-chip summaries."""

    runs: list[TrainResult]
    summary: dict
    chip_seeds: tuple[int, ...]

    @property
    def histories(self) -> list[list[dict]]:
        """Every chip's metrics records (``runs[i].history``), in chip order."""
        return [r.history for r in self.runs]


def chip_seeds_of(cfg: TrainConfig, n_chips: int = 1, chip_seeds=None) -> tuple[int, ...]:
    """The chip seeds of a K-chip run: ``chip_seeds`` when given, else ``cfg.chip_seed + i``
    for ``i < n_chips``. Raises one line for a bad count or list."""
    if chip_seeds is None:
        if isinstance(n_chips, bool) or not isinstance(n_chips, int) or not 1 <= n_chips <= MAX_CHIPS:
            raise ValueError(f"n_chips / --chips = {n_chips!r}: expected an integer in [1, {MAX_CHIPS}]")
        seeds = tuple(cfg.chip_seed + i for i in range(n_chips))
    else:
        seeds = tuple(chip_seeds)
        if (not seeds or len(seeds) > MAX_CHIPS or len(set(seeds)) != len(seeds)
                or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
            raise ValueError(f"chip_seeds = {list(seeds)!r}: expected 1 to {MAX_CHIPS} distinct integers")
    bad = [s for s in seeds if not 0 <= s <= 2**32 - 1]
    if bad:
        raise ValueError(f"chip seeds {bad}: each must lie in [0, {2**32 - 1}]")
    return seeds


def _final_loss(history) -> float:
    train = [r for r in history if r["kind"] == "train"]
    v = train[-1].get("loss") if train else None
    return float("nan") if v is None else float(v)


def spread_summary(summaries: list[dict], histories: list[list[dict]], chip_seeds, seconds: float,
                   steps_run: int, label: str, mode: str) -> dict:
    """The summary of a K-chip run: the spread over chips of :data:`SPREAD_FIELDS` and the
    per-chip summaries (``chips``). ``steps_per_second`` counts steps of all chips together."""
    rows = [{**s, "final_loss": _final_loss(h)} for s, h in zip(summaries, histories)]
    spread = {k: distribution([r.get(k, float("nan")) for r in rows]) for k in SPREAD_FIELDS}
    return {
        "label": label, "n_chips": len(chip_seeds), "chip_seeds": list(chip_seeds), "mode": mode,
        "status": "diverged" if any(s["status"] == "diverged" for s in summaries) else "completed",
        "diverged_chips": [c for c, s in zip(chip_seeds, summaries) if s["status"] == "diverged"],
        "seconds": seconds,
        "chip_steps_per_second": steps_run * len(chip_seeds) / seconds if seconds > 0 and steps_run > 0 else float("nan"),
        "spread": spread,
        "chips": [{"chip_seed": c, **r} for c, r in zip(chip_seeds, rows)],
    }


# --------------------------------------------------------------------------- the loop
def build_chips(cfg: TrainConfig, chip_seeds, hardware=None, data=None) -> list[RunParts]:
    """The parts of each chip's run: :func:`~analogeq.assembly.build_analog` with
    ``chip_seed`` set, on the same data (loaded once)."""
    from analogeq.assembly import build_analog, load_data

    hardware = hardware if hardware is not None else cfg.hardware
    if not hardware:
        raise ValueError("training several chips (--chips / n_chips > 1) needs a chip: set hardware "
                         "(--hardware PRESET|FILE); the digital emulator has no chip instances")
    if cfg.model == "eqtransformer":
        raise ValueError("training several chips at once (--chips / n_chips > 1) stacks layered chips; "
                         "train the eqtransformer's chip instances one run each (--chip-seed)")
    data = data if data is not None else load_data(cfg)
    return [build_analog(cfg.replace(chip_seed=s), hardware, data) for s in chip_seeds]


def train_chips(cfg: TrainConfig, out_dir: str | Path | None = None, *, n_chips: int = 1,
                chip_seeds=None, hardware=None, data=None, mode: str = "auto",
                batch_size: int | None = None, resume: bool = False, progress: bool = True,
                label: str | None = None, log=None) -> ChipsResult:
    """Train ``cfg`` on K chip instances at once (``analogeq train --chips K``).

    Args:
        cfg: the run's configuration; chip ``i`` trains as ``cfg.replace(chip_seed=chip_seeds[i])``.
        out_dir: where ``metrics.jsonl`` (every chip's records, each with ``"chip"``: its
            seed), ``config.toml``, ``summary.json`` (spread and per-chip summaries),
            ``chips.csv`` (one row per chip), ``curves.csv`` (every chip's evaluations),
            ``learning_curves.png`` and the checkpoint go (nothing is written when ``None``).
        n_chips: K, the number of chips (chip seeds ``cfg.chip_seed .. cfg.chip_seed + K - 1``).
        chip_seeds: explicit chip seeds instead of ``n_chips``.
        hardware: the chip (default ``cfg.hardware``; a chip is required).
        data: the data set (default: ``cfg.task``'s).
        mode, batch_size: how the step maps over chips (:func:`analogeq.montecarlo.map_over`:
            ``vmap``, ``shard`` over the local devices, ``loop``; ``auto`` shards when JAX has
            several devices).
        resume: continue from the checkpoint in ``out_dir`` (same configuration and chip seeds;
            the continuation equals the uninterrupted run bit for bit).
        progress, label, log: as for :func:`analogeq.training.fit`.

    A chip whose step diverges (:func:`analogeq.training.divergence`) stops there (its last
    good model is kept, its history ends with the ``diverged`` record, as its single run's
    would); the others continue. Returns a :class:`ChipsResult`.
    """
    seeds = chip_seeds_of(cfg, n_chips, chip_seeds)
    mode = resolve_mode(mode)
    if cfg.ema > 0:
        raise ValueError("a chip run cannot honour ema; set ema = 0 with --hardware")
    chips = build_chips(cfg, seeds, hardware, data)
    parts = chips[0]
    K = len(seeds)
    label = label or f"{parts.label} x{K}"
    data, log = parts.data, log or (lambda msg: None)
    out = Path(out_dir) if out_dir is not None else None
    total = total_steps(cfg, data)

    models = Stacked.of([p.model for p in chips], "the chip")
    states = Stacked.of([p.updater.init(p.model) for p in chips], "the updater state")
    updaters = Stacked.of([p.updater for p in chips], "the updater")
    t_cost, t_relax, t_est, t_hooks = traced((parts.cost, parts.relaxation, parts.estimator, tuple(parts.hooks)))
    step_fn = ChipTrainStep(treedefs=(models.treedef, states.treedef, updaters.treedef),
                            flags=(models.flags, states.flags, updaters.flags),
                            shared=(models.traced_shared(), states.traced_shared(), updaters.traced_shared()),
                            cost=t_cost, relaxation=t_relax, estimator=t_est, hooks=t_hooks, gate=cfg.gate)
    m_shared = models.traced_shared()
    eval_fn = ChipEvaluate(models.treedef, models.flags, m_shared, t_cost, t_relax)
    probe_fn = None
    if parts.probe is not None:
        est, exact = traced(parts.probe)
        grad_flags = tuple(eqx.is_array(x) for x in jax.tree_util.tree_leaves(parts.model, is_leaf=_is_none))
        probe_fn = ChipProbe(models.treedef, models.flags, m_shared, t_cost, t_relax, est, exact, grad_flags)

    streams = [Streams(cfg.seed, s) for s in seeds]
    train_keys = jnp.stack([s.train for s in streams])
    eval_keys = jnp.stack([s.eval for s in streams])
    probe_n = min(64, len(data.y_train))
    probe_x, probe_y = jnp.asarray(data.x_train[:probe_n]), jnp.asarray(data.y_train[:probe_n])
    # As a single run: the validation split (when the data set holds one) during training, the
    # test set once at the end.
    split, x_eval, y_eval = data.eval_split
    x_eval, y_eval = jnp.asarray(x_eval), jnp.asarray(y_eval)
    mapped = {"mode": mode, "batch_size": batch_size}

    m_arr, s_arr = models.arrays, states.arrays
    scales0 = np.asarray(_leaf_scales(m_arr), dtype=np.float64)  # (K, leaves)
    finite0 = np.isfinite(scales0)
    limits = [WEIGHT_GROWTH_LIMIT * max(1.0, float(np.max(scales0[i][finite0[i]], initial=0.0))) for i in range(K)]
    histories: list[list[dict]] = [[] for _ in range(K)]
    diverged: dict[int, dict] = {}  # chip index -> its diverged record
    start, mlog = 0, None

    if resume:
        if out is None:
            raise ValueError("resume needs the run's output directory (out_dir)")

        def check(meta):
            _check_resumable(cfg, meta, out, total)
            if meta.get("chip_seeds") != list(seeds):
                raise ValueError(f"cannot resume from {out / STATE}: it holds chips "
                                 f"{meta.get('chip_seeds')!r}, this run trains {list(seeds)!r}")

        (m_arr, s_arr), meta = load_checkpoint(out, (m_arr, s_arr), legacy=False, check=check)
        start = meta["step"]
        mlog, records = MetricsLog.resume(out / METRICS, meta)
        index = {s: i for i, s in enumerate(seeds)}
        for rec in records:
            rec = dict(rec)
            i = index[rec.pop("chip")]
            histories[i].append(rec)
            if rec["kind"] == "diverged":
                diverged[i] = rec
        log(f"resumed {K} chips from step {start} in {out}")
    elif out is not None:
        out.mkdir(parents=True, exist_ok=True)
        remove_checkpoint(out)
        for name in ("summary.json", "chips.csv", "curves.csv"):
            (out / name).unlink(missing_ok=True)
        mlog = MetricsLog.create(out / METRICS)
    if out is not None:
        write_text_atomic(out / "config.toml", cfg.to_toml())

    def record(i, rec):
        rec = sanitize(_raw(rec))
        histories[i].append(rec)
        if mlog is not None:
            mlog.append({"chip": seeds[i], **rec})
        return rec

    def do_eval(k, arrays, alive):
        ev = map_over(eval_fn, (arrays, eval_keys), x_eval, y_eval, **mapped)
        probe = None
        if probe_fn is not None and (k % cfg.probe_every == 0 or k == total):
            probe = map_over(probe_fn, (arrays, eval_keys), probe_x, probe_y, **mapped)
        for i in alive:
            rec = {"kind": "eval", "step": k, **({"split": split} if split != "test" else {}),
                   **_split_keys({n: v[i].item() for n, v in ev.items()}, split)}
            if probe is not None:
                ours, ref = ([None if g is None else g[i] for g in gs] for gs in probe)
                overall = compare_gradients(ours, ref)["overall"]
                rec.update({"grad_cosine": overall["cosine"], "grad_rel_error": overall["rel_error"]})
            record(i, rec)

    def checkpoint(step, arrays, mark):
        mlog.sync()
        save_checkpoint(out, arrays, {"step": step, "config": cfg.to_dict(), "chip_seeds": list(seeds), **mark})

    if not resume:
        do_eval(0, m_arr, range(K))
    good = (start, m_arr, s_arr, mlog.mark() if mlog else None)
    saved = start if resume else -1
    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start, disable=not progress, desc=label, unit="step")
    try:
        for k in range(start, total):
            alive = [i for i in range(K) if i not in diverged]
            if not alive:
                break
            idx = data.batch_indices(k, cfg.batch_size, cfg.seed)
            xb, yb = jnp.asarray(data.x_train[idx]), jnp.asarray(data.y_train[idx])
            keys = _step_keys(train_keys, k)
            (new_m, new_s), metrics = map_over(step_fn, ((m_arr, s_arr, updaters.arrays), keys), xb, yb,
                                               **mapped, to_host=False)
            metrics = {n: np.asarray(v) for n, v in metrics.items()}
            scales = np.asarray(_leaf_scales(new_m))
            stop = []
            for i in alive:
                m = {n: v[i].item() for n, v in metrics.items()}
                why = divergence(m, scales[i], finite0[i], limits[i], cfg.gate, len(idx))
                rec = record(i, {"kind": "train", "step": k + 1, **m})
                if why is not None:
                    diverged[i] = record(i, {"kind": "diverged", "step": k + 1, **why})
                    log(f"chip {seeds[i]}, step {k + 1}: diverged in the {why['phase']} phase: {why['reason']}")
                    stop.append(i)
                else:
                    _log_gated(rec, cfg.gate, lambda msg, c=seeds[i]: log(f"chip {c}: {msg}"))
            frozen = sorted(diverged)
            if frozen:  # a diverged chip keeps its last good model and state, as its single run
                keep = jnp.asarray([i in diverged for i in range(K)])
                new_m = [_hold(keep, a, b) for a, b in zip(new_m, m_arr)]
                new_s = [_hold(keep, a, b) for a, b in zip(new_s, s_arr)]
            m_arr, s_arr = list(new_m), list(new_s)
            done = k + 1
            alive = [i for i in range(K) if i not in diverged]
            if alive and (done % cfg.eval_every == 0 or done == total):
                do_eval(done, m_arr, alive)
            if mlog is not None and (done % cfg.checkpoint_every == 0 or done == total):
                checkpoint(done, (m_arr, s_arr), mlog.mark())
                saved = done
            good = (done, m_arr, s_arr, mlog.mark() if mlog else None)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        step, m_good, s_good, mark = good
        if mlog is not None and step > saved and step > 0:
            checkpoint(step, (m_good, s_good), mark)
            saved = step
        raise TrainingInterrupted(interrupted_message(step, saved, out if mlog is not None else None)) from None
    bar.close()
    seconds = time.perf_counter() - t0
    if data.has_validation:  # every chip's last good model, scored once on the test set
        ev = map_over(eval_fn, (m_arr, eval_keys), jnp.asarray(data.x_test), jnp.asarray(data.y_test), **mapped)
        for i in range(K):
            d = diverged.get(i)
            record(i, {"kind": "test", "step": d["step"] - 1 if d else good[0],
                       "test_samples": len(data.y_test), **{n: v[i].item() for n, v in ev.items()}})
    runs = []
    for i in range(K):
        d = diverged.get(i)
        steps_run = (d["step"] - 1 if d else total) - start
        s = summarize(histories[i], f"{parts.label} [chip {seeds[i]}]", seconds, steps_run, d)
        runs.append(TrainResult(model=models.chip(i, m_arr), history=histories[i], summary=s,
                                state=states.chip(i, s_arr)))
    summary = spread_summary([r.summary for r in runs], histories, seeds, seconds, total - start,
                             label, mode)
    if out is not None:
        write_outputs(out, summary, histories, seeds)
    return ChipsResult(runs=runs, summary=summary, chip_seeds=seeds)


# --------------------------------------------------------------------------- files
CURVE_FIELDS = ("chip_seed", "step", "test_acc", "test_loss", "grad_cosine", "loss")


def write_outputs(out: Path, summary: dict, histories, chip_seeds) -> list[Path]:
    """``summary.json``, ``chips.csv`` (per-chip summary rows), ``curves.csv`` (every chip's
    evaluations with the training loss of that step) and ``learning_curves.png``."""
    files = [write_json(out / "summary.json", summary)]
    cols = ["chip_seed", "status", *SPREAD_FIELDS, "steps"]
    files.append(_write_csv(out / "chips.csv", cols, summary["chips"]))
    rows = []
    for c, hist in zip(chip_seeds, histories):
        loss = {r["step"]: r.get("loss") for r in hist if r["kind"] == "train"}
        rows += [{"chip_seed": c, "step": r["step"], "test_acc": r.get("test_acc"), "test_loss": r.get("test_loss"),
                  "grad_cosine": r.get("grad_cosine"), "loss": loss.get(r["step"])}
                 for r in hist if r["kind"] == "eval"]
    files.append(_write_csv(out / "curves.csv", CURVE_FIELDS, rows))
    files.append(plot_chip_curves(histories, chip_seeds, out / "learning_curves.png", summary["label"]))
    return files


def _write_csv(path: Path, cols, rows) -> Path:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None or (isinstance(r.get(k), float) and not math.isfinite(r[k]))
                        else r.get(k)) for k in cols})
    return write_text_atomic(path, buf.getvalue())


def _band(histories, kind, key):
    """Steps every chip recorded, and the per-chip values there (chips x steps)."""
    series = [{r["step"]: r[key] for r in h if r["kind"] == kind and r.get(key) is not None} for h in histories]
    steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return np.asarray(steps), np.asarray([[s[k] for k in steps] for s in series], dtype=np.float64)


def plot_chip_curves(histories, chip_seeds, path, title: str = "") -> Path:
    """Test accuracy, training loss and (when probed) gradient cosine of every chip against the
    step (thin lines), with the mean over chips and a +-1 std band (the spread a designer
    reads)."""
    import matplotlib.pyplot as plt

    from analogeq.plots import save_figure

    panels = [("eval", "test_acc", "test accuracy"), ("train", "loss", "training cost"),
              ("eval", "grad_cosine", "cos(EP update, exact gradient)")]
    panels = [p for p in panels if any(p[1] in r for h in histories for r in h if r["kind"] == p[0])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (kind, key, name) in zip(axes[0], panels):
        for c, h in zip(chip_seeds, histories):
            pts = [(r["step"], r[key]) for r in h if r["kind"] == kind and r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), lw=0.7, alpha=0.5, color="tab:blue")
        steps, vals = _band(histories, kind, key)
        if steps.size:
            mean, std = vals.mean(axis=0), vals.std(axis=0)
            ax.plot(steps, mean, color="black", lw=1.6, label=f"mean of {len(chip_seeds)} chips")
            ax.fill_between(steps, mean - std, mean + std, color="tab:orange", alpha=0.35, label="+-1 std")
        ax.set(xlabel="training step", ylabel=name, title=name)
        if key == "loss":
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)
