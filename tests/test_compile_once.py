"""Compile once per run structure: the training step, the evaluation and the gradient probe are
module-level compiled functions, so runs of the same structure reuse one executable.

Compilations are counted with a :mod:`jax.monitoring` listener on JAX's
``/jax/core/compile/backend_compile_duration`` event. JAX records it around every hand-over of a
lowered program to the backend (``pxla`` wraps ``compiler.compile_or_get_cached`` in it), i.e.
once per in-process cache miss of any jitted function or eager primitive, whether XLA then
compiles or the persistent compilation cache supplies the executable. A cache hit in the
in-process jit caches records nothing, so "zero new events" is exactly "nothing was traced,
lowered or compiled again". Counting the event, not wrapping ``jax.jit``, also sees programs
compiled inside equinox's ``filter_jit`` and diffrax.
"""

from __future__ import annotations

import contextlib
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from analogeq.assembly import build_analog, train
from analogeq.config import TrainConfig
from analogeq.evaluation import evaluate
from analogeq.hardware import ChipConfig, ChipRelaxation, realize
from analogeq.streams import Streams
from analogeq.training import make_train_step

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
_compiles = [0]


def _on_duration(event: str, duration: float, **kwargs) -> None:
    if event == BACKEND_COMPILE:
        _compiles[0] += 1


jax.monitoring.register_event_duration_secs_listener(_on_duration)


class _Counter:
    n = 0


@contextlib.contextmanager
def count_compilations():
    """Number of programs handed to the XLA backend inside the block (``.n`` after it)."""
    c, start = _Counter(), _compiles[0]
    try:
        yield c
    finally:
        c.n = _compiles[0] - start


# A tiny noisy, quantized chip: read noise, levels, programming error and offsets on, a fixed settle window (fixed-step
# exact-decay integrator), so every hardware number the sweep changes is used by the step.
SMALL = dict(hidden=(8,), batch_size=4, steps=1, eval_every=1, probe_every=1, gate=False,
             hardware="ideal", n_train=64, n_test=32)
HW = ChipConfig().replace(**{"crossbar.n_levels": 16, "crossbar.read_noise": 0.01,
                             "crossbar.prog_noise": 0.02, "neuron.offset_sigma": 0.02,
                             "neuron.amp_pole_tau": 0.0, "dynamics.settle_time": 1e-8})


def _cfg(**kw):
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in {**SMALL, **kw}.items() if k in fields})


def _step_once(parts, cfg, model=None):
    model = parts.model if model is None else model
    idx = parts.data.batch_indices(0, cfg.batch_size, cfg.seed)
    step = make_train_step(parts, cfg.gate)  # a new closure each call, as train() makes one
    new_model, _, metrics = step(model, parts.updater.init(model), jnp.asarray(parts.data.x_train[idx]),
                                 jnp.asarray(parts.data.y_train[idx]), Streams.of(cfg).step(0))
    return new_model, {k: float(v) for k, v in metrics.items()}


def _evaluate(parts, model=None):
    model = parts.model if model is None else model
    return evaluate(model, parts.cost, parts.relaxation, parts.data.x_test, parts.data.y_test,
                    jax.random.PRNGKey(1))


def test_train_step_and_evaluation_compile_once_across_calls_and_chip_seeds():
    cfg = _cfg()
    parts = build_analog(cfg, HW)
    with count_compilations() as first:
        _, m0 = _step_once(parts, cfg)
        e0 = _evaluate(parts)
    print(f"\nfirst step + evaluation: {first.n} compilations")
    assert first.n >= 2  # the step and the free phase were compiled here

    with count_compilations() as again:
        _, m1 = _step_once(parts, cfg)  # another make_train_step closure, same parts
        e1 = _evaluate(parts)
    assert again.n == 0
    assert m1 == m0 and e1 == e0  # the same executable on the same inputs

    # Another chip instance of the same structure: new mismatch and programming draws.
    chips = [realize(parts.model.as_model(), HW, jax.random.PRNGKey(s)) for s in (11, 12)]
    with count_compilations() as seeds:
        results = [(_step_once(parts, cfg, chip)[1], _evaluate(parts, chip)) for chip in chips]
    print(f"2 more chip seeds: {seeds.n} compilations")
    assert seeds.n == 0
    # ... which are different chips: the step's loss differs from chip to chip.
    assert results[0][0]["loss"] != results[1][0]["loss"] != m0["loss"]


def test_train_compiles_once_across_train_calls():
    """Two ``train()`` calls on the same parts (evaluation, gradient probe, one step): the second
    compiles nothing."""
    cfg = _cfg()
    parts = build_analog(cfg, HW)
    with count_compilations() as first:
        r0 = train(cfg, progress=False, parts=parts)
    with count_compilations() as second:
        r1 = train(cfg, progress=False, parts=parts)
    print(f"\ntrain(): first {first.n} compilations, second {second.n}")
    assert first.n > 0 and second.n == 0
    losses = [[r["loss"] for r in res.history if r["kind"] == "train"] for res in (r0, r1)]
    assert len(losses[0]) == cfg.steps and losses[1] == losses[0]


POINTS = [(levels, noise) for levels in (16, 64, 256) for noise in (0.01, 0.02)]


def test_numeric_hardware_sweep_compiles_once():
    """Levels x read noise, 6 points of one structure (the numbers are traced arguments of the
    compiled step and free phase): after the first point no compilation."""
    cfg = _cfg()
    base = build_analog(cfg, HW)
    counts, losses = [], []
    for levels, noise in POINTS:
        hw = HW.replace(**{"crossbar.n_levels": levels, "crossbar.read_noise": noise})
        chip = realize(base.model.as_model(), hw, Streams.of(cfg).chip)
        parts = dataclasses.replace(base, model=chip, relaxation=ChipRelaxation(hw))
        with count_compilations() as c:
            losses.append(_step_once(parts, cfg)[1]["loss"])
            _evaluate(parts)
        counts.append(c.n)
    print(f"\ncompilations per sweep point: {counts}; losses {losses}")
    assert counts[1:] == [0] * (len(POINTS) - 1)
    # The numbers are arguments, not constants baked in at the first point: each point's step
    # computes with its own levels and read noise.
    assert len(set(losses)) == len(POINTS)


def test_switching_a_traced_number_on_compiles_again():
    """Zero vs nonzero is static (read noise off draws nothing): 0 -> 0.01 compiles once more."""
    cfg = _cfg()
    base = build_analog(cfg, HW)
    hw = HW.replace(**{"crossbar.read_noise": 0.0, "crossbar.n_levels": 32})
    parts = dataclasses.replace(base, model=realize(base.model.as_model(), hw, Streams.of(cfg).chip),
                                relaxation=ChipRelaxation(hw))
    with count_compilations() as off:
        _step_once(parts, cfg)
    print(f"\nread noise 0 after 0.01: {off.n} compilations")
    assert off.n > 0


def test_sweep_over_levels_and_read_noise_compiles_once():
    """The sweep machinery (:func:`analogeq.sweep.execute.run_one`, which builds each run's parts
    afresh): 6 numeric hardware points x 2 chip seeds of one structure; after the first run no
    compilation."""
    from analogeq.sweep.execute import run_one
    from analogeq.sweep.spec import SweepSpec

    train_fields = {k: v for k, v in SMALL.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    spec = SweepSpec.from_dict({
        "sweep": {"name": "compile-once", "seeds": [0], "chips": [0, 1]},
        "train": {**train_fields, "hidden": list(SMALL["hidden"])},
        "chip": {"crossbar.prog_noise": 0.02, "neuron.offset_sigma": 0.02,
                 "dynamics.settle_time": 1e-8},
        "grid": {"crossbar.n_levels": [16, 64, 256], "crossbar.read_noise": [0.01, 0.02]},
    })
    counts = []
    for run in spec.runs():
        with count_compilations() as c:
            run_one(run)
        counts.append(c.n)
    print(f"\ncompilations per sweep run (6 points x 2 chips): {counts}")
    assert len(counts) == 12 and counts[1:] == [0] * 11


def test_monte_carlo_over_hardware_numbers_compiles_once():
    """The Monte Carlo's per-chip program (realize, settle, score) takes the hardware numbers
    as arguments too: levels x read noise over 4 chips each, one compilation at the first point."""
    from analogeq.costs import SquaredError
    from analogeq.montecarlo import evaluate_chips

    cfg = _cfg()
    base = build_analog(cfg, HW)
    net, d = base.model.as_model(), base.data
    keys = jax.random.split(jax.random.PRNGKey(5), 4)
    counts, accs = [], []
    for levels, noise in POINTS[:3]:
        hw = HW.replace(**{"crossbar.n_levels": levels, "crossbar.read_noise": noise})
        with count_compilations() as c:
            out = evaluate_chips(net, hw, keys, d.x_test, d.y_test, SquaredError(), mode="vmap")
        counts.append(c.n)
        accs.append(tuple(np.round(out["test_loss"], 7)))
    print(f"\nMonte Carlo compilations per hardware point: {counts}")
    assert counts[0] > 0 and counts[1:] == [0, 0]
    assert len(set(accs)) == 3  # each point computed with its own numbers
