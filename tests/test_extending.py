"""docs/extending.md, done from outside the package: a device model (one file + one TOML), an
estimator (one file) and a task (one file), each written into ``tmp_path`` and imported from
there, with no file of ``analogeq`` edited. Each test checks the extension's numbers (closed
form, order in beta, what the loop does with it), not only that it runs."""

import dataclasses
import importlib
import re
import sys
import textwrap
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import analogeq as aq
from analogeq.config import TrainConfig
from analogeq.data import TASKS, load_task, register_task
from analogeq.devices.presets import load_device
from analogeq.hardware import ChipConfig, realize
from analogeq.hardware.pulsed import PulsedUpdater, attach_devices, device_hardware

ROOT = Path(__file__).resolve().parents[1]
FILE_BLOCK = re.compile(r"^```(?:python|toml)\n# ([\w.-]+\.(?:py|toml))\n(.*?)^```$", re.M | re.S)


def doc_files() -> dict[str, str]:
    """The files docs/extending.md shows, by name: every code block whose first line is
    ``# NAME.py`` or ``# NAME.toml`` (so the page and this test cannot drift apart)."""
    text = (ROOT / "docs" / "extending.md").read_text()
    return {m.group(1): m.group(2) for m in FILE_BLOCK.finditer(text)}


FILES = doc_files()
DEVICE_PY, DEVICE_TOML = FILES["my_device.py"], FILES["my-device.toml"]
ESTIMATOR_PY, TASK_PY = FILES["my_estimator.py"], FILES["my_task.py"]
NOISE_FREE = {"dw_min_dtod": 0.0, "dw_min_std": 0.0, "w_max_dtod": 0.0, "w_min_dtod": 0.0,
              "up_down_dtod": 0.0}


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """Write files into ``tmp_path``, put it on ``sys.path`` and import modules from there; the
    modules and any task they register are removed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    imported, tasks = [], dict(TASKS)

    def write(name: str, text: str):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip())
        return path

    def load(module: str):
        imported.append(module)
        return importlib.import_module(module)

    yield write, load
    for module in imported:
        sys.modules.pop(module, None)
    TASKS.clear()
    TASKS.update(tasks)


# ---------------------------------------------------------------------------- a device model
def _saturating(w, n, d, b_max, b_min, k):
    """NumPy closed form: ``|n|`` noise-free pulses of the saturating step, clipped each time."""
    w = np.array(w, dtype=np.float64)
    for p in range(int(np.max(np.abs(n), initial=0))):
        up = w + d * np.exp(-k * np.maximum(w, 0.0) / b_max)
        down = w - d * np.exp(-k * np.maximum(-w, 0.0) / -b_min)
        w = np.where(p < np.abs(n), np.clip(np.where(n > 0, up, down), b_min, b_max), w)
    return w


def test_device_model_from_one_file_and_one_toml(outside, leaky):
    write, _ = outside
    write("my_device.py", DEVICE_PY)
    toml = write("my-device.toml", DEVICE_TOML)

    preset = load_device(toml)
    assert type(preset.device).__name__ == "SaturatingStep" and type(preset.device).__module__ == "my_device"
    assert (preset.device.k, preset.device.dw_min, preset.device.dw_min_std) == (1.5, 0.01, 0.2)
    assert set(preset.sources) == set(preset.params)
    device = dataclasses.replace(preset.device, **NOISE_FREE)  # closed forms need a noise-free device

    # 100 up pulses then 100 down from 0 against the closed form (noise-free device).
    st = device.sample(jax.random.PRNGKey(0), (1,), jnp.float64)
    signs = jnp.concatenate([jnp.ones(100, jnp.int32), -jnp.ones(100, jnp.int32)])
    tr = np.asarray(device.trace(jnp.zeros(1, jnp.float64), st, signs, jax.random.PRNGKey(1)))[:, 0]
    w, ref = 0.0, []
    for s in np.asarray(signs):
        w = float(_saturating(w, s, 0.01, 1.0, -1.0, 1.5))
        ref.append(w)
    np.testing.assert_allclose(tr, ref, rtol=1e-12, atol=1e-15)
    # Steps shrink as exp(-k w): dw/dn = dw_min e^{-k w} gives w(n) ~ ln(1 + k dw_min n) / k.
    assert tr[99] == pytest.approx(np.log(1 + 1.5 * 0.01 * 100) / 1.5, abs=0.01)

    # On a chip: every crosspoint is the new device, and a deterministic update sends
    # round(-lr g / dw_min) pulses through its step (checked against the closed form).
    cfg = ChipConfig.preset("realistic").replace(**{
        "noise.temperature": 0.0, "crossbar.read_noise": 0.0, "crossbar.prog_noise": 0.0,
        "crossbar.n_levels": 0, "periphery.adc_bits": 0})
    hw = device_hardware(cfg, device)
    chip = attach_devices(realize(leaky, hw, jax.random.PRNGKey(0)), device, jax.random.PRNGKey(1))
    lr = 0.1  # gradients ~N(0, 1) in weight units: up to the 31-pulse cap per update
    upd = PulsedUpdater(device=device, update_scheme="deterministic", optimizer=optax.sgd(lr), lr=lr,
                        key=jax.random.PRNGKey(0))
    leaves, tree = jax.tree_util.tree_flatten(eqx.filter(chip, eqx.is_inexact_array))
    grads = jax.tree_util.tree_unflatten(tree, [
        jax.random.normal(jax.random.PRNGKey(i), x.shape, x.dtype) / hw.crossbar.G_ref
        for i, x in enumerate(leaves)])
    new, state = upd.update(chip, grads, upd.init(chip), jax.random.PRNGKey(1))
    g = chip.weight_gradient(grads)
    g_ref = hw.crossbar.G_ref
    for t0, t1, gw in zip(chip.tiles(), new.tiles(), jax.tree_util.tree_leaves((g.weights, g.feedback, g.biases))):
        n = np.clip(np.round(-lr * np.asarray(gw) / device.dw_min), -31, 31)
        expected = _saturating(np.asarray(t0.weight(g_ref)), n, 0.01, 1.0, -1.0, 1.5)
        np.testing.assert_allclose(np.asarray(t1.weight(g_ref)), expected, atol=1e-12)
    assert sum(int(jnp.sum(c)) for c in state["pulses"]) > 1000


def test_device_model_path_errors_name_the_file_and_the_value(outside):
    write, _ = outside
    bad = write("bad.toml", DEVICE_TOML.replace("my_device:SaturatingStep", "no_such_module:X"))
    with pytest.raises(ValueError, match=r"bad\.toml: model 'no_such_module:X' cannot be loaded"):
        load_device(bad)
    write("not_a_device.py", "class X:\n    pass\n")
    bad = write("bad2.toml", DEVICE_TOML.replace("my_device:SaturatingStep", "not_a_device:X"))
    with pytest.raises(ValueError, match="not a subclass of analogeq.devices.pulsed.AbstractDevice"):
        load_device(bad)


@pytest.mark.slow
def test_device_model_trains_on_the_chip_by_config(outside, tmp_path):
    """The TOML path in ``TrainConfig.device`` (= ``--device``): three steps on the ideal chip."""
    write, _ = outside
    write("my_device.py", DEVICE_PY)
    toml = write("my-device.toml", DEVICE_TOML)
    cfg = TrainConfig(hidden=(8,), steps=3, batch_size=8, hardware="ideal", device=str(toml),
                      update="mixed", optimizer="sgd", lr=0.1, beta=0.2, correction="asym-tracking",
                      gate=False, eval_every=3, probe_every=100)
    res = aq.train(cfg, progress=False)
    rec = [r for r in res.history if r["kind"] == "train"]
    assert len(rec) == 3 and all(np.isfinite(r["loss"]) for r in rec)
    assert _pulses(res.state) > 0  # the updates went into the devices as pulses


def _pulses(state) -> int:
    """Total pulse count held anywhere in an updater state (``state["pulses"]``)."""
    if isinstance(state, dict):
        own = sum(int(jnp.sum(c)) for c in state["pulses"]) if "pulses" in state else 0
        return own + sum(_pulses(v) for k, v in state.items() if k != "pulses")
    if isinstance(state, (tuple, list)):
        return sum(_pulses(v) for v in state)
    return 0


# ---------------------------------------------------------------------------- an estimator
def test_estimator_from_one_file_is_second_order(outside, leaky, batch, tight):
    write, load = outside
    write("my_estimator.py", ESTIMATOR_PY)
    RichardsonEP = load("my_estimator").RichardsonEP
    cost = aq.SquaredError()

    # Its claim, O(beta^2): against the implicit adjoint, far better than one-sided EP.
    exact = aq.ImplicitAdjoint().estimate(leaky, cost, tight, *batch).grads

    def rel_error(estimator):
        g = estimator.estimate(leaky, cost, tight, *batch).grads
        return aq.compare_gradients(g, exact)["overall"]["rel_error"]

    rich = {beta: rel_error(RichardsonEP(beta=beta)) for beta in (1e-2, 1e-3)}
    one_sided = rel_error(aq.EP(beta=1e-2, kind="one-sided", correction="asym"))
    print("relative error vs implicit adjoint: Richardson", rich, "one-sided at 1e-2", one_sided)
    assert rich[1e-2] < 0.1 * one_sided          # measured 1.8e-4 against 1.0e-2
    assert rich[1e-2] / rich[1e-3] > 30          # second order: x100 ideally (first order: x10)
    assert rich[1e-3] < 1e-5                     # measured 1.9e-6


def test_custom_estimator_drives_the_training_loop(outside):
    write, load = outside
    write("my_estimator.py", ESTIMATOR_PY)
    RichardsonEP = load("my_estimator").RichardsonEP
    # One SGD step moves the model by exactly -lr times the custom estimator's gradient.
    cfg = TrainConfig(hidden=(8,), steps=1, batch_size=8, optimizer="sgd", lr=0.5, eval_every=1,
                      probe_every=100)
    parts = aq.with_parts(aq.build_parts(cfg), estimator=RichardsonEP(beta=0.1), probe=None)
    res = aq.train(cfg, progress=False, parts=parts)
    idx = parts.data.batch_indices(0, cfg.batch_size, cfg.seed)
    xb, yb = jnp.asarray(parts.data.x_train[idx]), jnp.asarray(parts.data.y_train[idx])

    def moved(estimator):
        g = estimator.estimate(parts.model, parts.cost, parts.relaxation, xb, yb, gate=cfg.gate).grads
        return jax.tree_util.tree_map(lambda p, d: p - cfg.lr * d, parts.model, g)

    def gap(a, b):
        la, lb = jax.tree_util.tree_leaves(eqx.filter(a, eqx.is_inexact_array)), \
            jax.tree_util.tree_leaves(eqx.filter(b, eqx.is_inexact_array))
        return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(la, lb))

    step = gap(res.model, parts.model)
    assert step > 1e-3
    assert gap(res.model, moved(RichardsonEP(beta=0.1))) < 1e-3 * step
    assert gap(res.model, moved(aq.EP(beta=0.1, kind="one-sided"))) > 1e-2 * step


# ---------------------------------------------------------------------------- a task
def test_task_from_one_file(outside):
    write, load = outside
    write("my_task.py", TASK_PY)
    load_xor = load("my_task").load_xor
    assert TASKS["xor"] is load_xor
    register_task("xor", load_xor)  # a re-import registers the same loader again: a no-op

    data = load_task("xor", n=256)
    assert data.x_train.shape == (204, 2) and data.x_test.shape == (52, 2) and data.n_classes == 2
    np.testing.assert_array_equal(data.y_train, (np.sign(data.x_train[:, 0]) * np.sign(data.x_train[:, 1]) < 0))

    # TrainConfig validates task against TASKS, so the new name trains through the usual path.
    cfg = TrainConfig(task="xor", hidden=(8,), steps=200, batch_size=32, lr=0.02, eval_every=200,
                      probe_every=1000)
    res = aq.train(cfg, progress=False)
    assert res.model.weights[0].shape == (8, 2) and res.model.weights[-1].shape == (2, 8)
    evals = [r for r in res.history if r["kind"] == "eval"]
    print("xor test accuracy:", [(r["step"], r["test_acc"]) for r in evals])
    assert evals[-1]["test_acc"] >= 0.95 > evals[0]["test_acc"]


def test_task_registry_errors():
    with pytest.raises(ValueError, match="'digits' is a built-in task"):
        register_task("digits", lambda: None)
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        register_task("my task", lambda: None)
    try:
        register_task("returns-nothing", lambda: None)
        with pytest.raises(TypeError, match="task 'returns-nothing': its loader returned NoneType"):
            load_task("returns-nothing")
        with pytest.raises(ValueError, match="already registered"):
            register_task("returns-nothing", lambda: 1)
    finally:
        TASKS.pop("returns-nothing", None)
