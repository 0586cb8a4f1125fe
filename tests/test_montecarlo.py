"""Many chips at once: one vmap, sharded over host devices and a loop give the same chips."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import analogeq as aq
from analogeq.assembly import build_analog
from analogeq.costs import make_cost
from analogeq.devices.presets import load_device
from analogeq.montecarlo import (
    chip_hardware,
    deployable,
    distribution,
    evaluate_chips,
    instance,
    resolve_mode,
    use_host_devices,
)
from analogeq.streams import Streams

F64 = jnp.float64

# The per-chip identity check, shared by the in-process and the two-device test: a float64
# network on the realistic chip (mismatch, programming error, read, thermal and kT/C noise),
# five chips (odd, so the sharded run pads), six test samples.
IDENTITY = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import analogeq as aq
    from analogeq.costs import make_cost
    from analogeq.montecarlo import evaluate_chips

    def identity_runs(modes, device=None, batch_size=None):
        hw = aq.ChipConfig.load("realistic")
        model = aq.LeakyNetwork((8, 8, 4), key=jax.random.PRNGKey(0), asymmetry=0.3, dtype=jnp.float64)
        xs = jax.random.uniform(jax.random.PRNGKey(1), (6, 8), jnp.float64)
        ys = jnp.array([0, 1, 2, 3, 0, 1])
        keys = jax.random.split(jax.random.PRNGKey(5), 5)
        return {m: evaluate_chips(model, hw, keys, xs, ys, make_cost("squared_error"), device=device, mode=m,
                                  batch_size=batch_size) for m in modes}
""")


def _identity_runs(modes, device=None):
    scope = {}
    exec(IDENTITY, scope)  # noqa: S102 -- the same code the subprocess test runs
    return scope["identity_runs"](modes, device)


def _assert_identical(runs, ref="vmap"):
    for mode, per in runs.items():
        assert set(per) == {"test_acc", "test_loss", "settle_time_s", "test_unconverged"}
        for k, v in per.items():
            assert v.shape == (5,)
            np.testing.assert_array_equal(v, runs[ref][k], err_msg=f"{mode} vs {ref}: {k}")
    # not vacuous: the five instances differ (mismatch and noise), and the settles are finite
    assert np.ptp(runs[ref]["test_loss"]) > 1e-4
    assert np.all(np.isfinite(runs[ref]["test_loss"]))


@pytest.mark.slow  # two compiles of the realistic settle: 25-100 s on 2 shared cores
def test_vmap_and_loop_give_identical_chips_with_pulsed_devices():
    device = load_device("ecram-tang2018").device
    _assert_identical(_identity_runs(("vmap", "loop"), device))


@pytest.mark.slow
def test_sharded_over_two_host_devices_gives_identical_chips(tmp_path):
    script = tmp_path / "identity.py"
    script.write_text(IDENTITY + textwrap.dedent("""
        from analogeq.montecarlo import resolve_mode
        assert len(jax.devices()) == 2 and resolve_mode("auto") == "shard", jax.devices()
        runs = identity_runs(("vmap", "shard", "loop"))
        # two chips vmapped at a time, the rest scanned (5 chips: a remainder on each path)
        runs.update({m + "2": r for m, r in identity_runs(("vmap", "shard"), batch_size=2).items()})
        np.savez(__import__("sys").argv[1], **{f"{m}.{k}": v for m, per in runs.items() for k, v in per.items()})
    """))
    env = {**os.environ, "ANALOGEQ_HOST_DEVICES": "2", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # ANALOGEQ_HOST_DEVICES alone must reach XLA: the script imports analogeq.cli's startup path
    code = f"from analogeq.montecarlo import use_host_devices; use_host_devices(); exec(open({str(script)!r}).read())"
    out = tmp_path / "runs.npz"
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env, timeout=900)
    saved = np.load(out)
    runs = {m: {k.split(".", 1)[1]: saved[k] for k in saved.files if k.startswith(m + ".")}
            for m in ("vmap", "shard", "loop", "vmap2", "shard2")}
    _assert_identical(runs)


def test_instance_of_the_runs_chip_key_is_the_chip_it_trains():
    cfg = aq.TrainConfig(hidden=(8,), hardware="realistic", device="ecram-tang2018", update="mixed", gate=False)
    parts = build_analog(cfg, "realistic")
    device = load_device(cfg.device).device
    hw = chip_hardware(aq.ChipConfig.load("realistic"), device)
    init = aq.build_digital(cfg).model
    chip = instance(init, hw, Streams.of(cfg).chip, device)
    for a, b in zip(jax.tree_util.tree_leaves(chip), jax.tree_util.tree_leaves(parts.model)):
        np.testing.assert_array_equal(a, b)


def test_deployable_reads_a_chip_back_and_clips_to_the_crossbar_range():
    hw = aq.ChipConfig.load("realistic")
    model = aq.LeakyNetwork((4, 6, 3), key=jax.random.PRNGKey(0), dtype=F64)
    chip = aq.realize(model, hw, jax.random.PRNGKey(1))
    back = deployable(chip, hw)
    np.testing.assert_array_equal(back.weights[0], chip.as_model().weights[0])
    big = aq.LeakyNetwork(model.sizes, key=None, parameters=(
        tuple(3 * w for w in model.weights), model.feedback, model.biases))
    w = deployable(big, hw).weights[0]
    limit = hw.crossbar.w_max
    assert float(jnp.max(jnp.abs(w))) == pytest.approx(limit)
    inside = jnp.abs(3 * model.weights[0]) < limit
    np.testing.assert_array_equal(w[inside], (3 * model.weights[0])[inside])
    with pytest.raises(TypeError, match="LeakyNetwork"):
        deployable(aq.HopfieldNetwork((4, 6, 3), key=jax.random.PRNGKey(0)), hw)


def test_bad_inputs_fail_in_one_line():
    with pytest.raises(ValueError, match="expected an integer >= 1"):
        use_host_devices("two")
    with pytest.raises(ValueError, match="expected an integer >= 1"):
        use_host_devices(0)
    jax.devices()  # the backend is running: asking for another count now is an error
    with pytest.raises(ValueError, match="JAX already started with"):
        use_host_devices(len(jax.devices("cpu")) + 1)
    assert use_host_devices(len(jax.devices("cpu"))) == len(jax.devices("cpu"))
    with pytest.raises(ValueError, match="choose one of"):
        resolve_mode("pmap")
    with pytest.raises(ValueError, match="batch_size = 0"):
        aq.map_chips(lambda k: k, jnp.zeros((2, 2), jnp.uint32), batch_size=0)
    d = distribution([1.0, 3.0])
    assert (d["mean"], d["std"], d["min"], d["max"], d["values"]) == (2.0, 1.0, 1.0, 3.0, [1.0, 3.0])


def test_evaluate_chips_scores_a_trained_chip_on_other_instances():
    # The ideal chip: every instance is the same, so a chip's weights read back and programmed
    # onto K instances score what the model does, on every instance.
    hw = aq.ChipConfig.load("ideal")
    model = aq.LeakyNetwork((8, 8, 4), key=jax.random.PRNGKey(0), dtype=F64)
    xs = jax.random.uniform(jax.random.PRNGKey(1), (6, 8), F64)
    ys = jnp.array([0, 1, 2, 3, 0, 1])
    chip = aq.realize(model, hw, jax.random.PRNGKey(9))
    keys = jax.random.split(jax.random.PRNGKey(5), 3)
    per = evaluate_chips(chip, hw, keys, xs, ys, make_cost("squared_error"), mode="vmap")
    free = aq.free_phase(model, aq.EulerRelaxation(eps=0.5, T1=5000, tol=1e-12, stop_at_tol=True), xs)
    y = jax.vmap(model.readout)(free.state)
    want_loss = float(jnp.mean(jax.vmap(make_cost("squared_error"))(y, ys)))
    np.testing.assert_allclose(per["test_loss"], want_loss, rtol=1e-4)
    np.testing.assert_array_equal(per["test_acc"], np.mean(np.argmax(np.asarray(y), -1) == np.asarray(ys)))
    assert np.all(per["test_unconverged"] == 0)
