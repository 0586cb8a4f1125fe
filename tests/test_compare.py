import json

import numpy as np
import pytest

from analogeq.cli import main
from analogeq.assembly import build_digital
from analogeq.compare import compare, format_compare, trained_monte_carlo
from analogeq.config import TrainConfig


@pytest.mark.slow  # ~100 s cold, mostly compilation; the ideal chip against the emulator is also test_chip's
def test_compare_ideal_chip_agrees_with_emulator(tmp_path):
    cfg = TrainConfig(hidden=(16,), steps=3, eval_every=3, T1=200, tol=1e-6, stop_at_tol=True)
    report = compare(cfg, "ideal", tmp_path, n_chips=3, progress=False)
    init = report["at_init"]
    assert init["fixed_point_error"] < 1e-4
    assert init["cos_analog_ep_vs_digital_ep"] > 0.9999
    assert init["cos_analog_ep_vs_chip_exact"] > 0.999
    mc = report["monte_carlo"]
    assert len(mc["test_acc"]["values"]) == 3
    # ideal chips are identical whatever the key
    assert np.ptp(mc["fixed_point_error"]["values"]) < 1e-6
    assert set(report["training"]) == {"digital emulator", "analog chip (ideal)"}
    assert "digital emulator" in format_compare(report)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["at_init"]["tau_s"] == init["tau_s"]
    for f in ("monte_carlo.png", "learning_curves.png"):
        assert (tmp_path / f).stat().st_size > 1000
    # The trained models across chips: ideal instances are all the same chip, so the chip-trained
    # weights, read back and programmed onto each, score what the trained chip scored.
    mct = report["monte_carlo_trained"]
    assert set(mct) == {"chip-trained", "emulator-trained"}
    trained_acc = report["training"]["analog chip (ideal)"]["final_test_acc"]
    assert report["monte_carlo_setup"]["trained_chip_final_test_acc"] == trained_acc
    for name, per in mct.items():
        assert set(per) == {"test_acc", "test_loss", "settle_time_s", "test_unconverged"}
        assert len(per["test_acc"]["values"]) == 3
        assert np.ptp(per["test_acc"]["values"]) == 0 and np.ptp(per["test_loss"]["values"]) < 1e-6
    n_test = 360  # digits test set: one sample's flip is the tolerance of a re-programmed chip
    assert abs(mct["chip-trained"]["test_acc"]["mean"] - trained_acc) <= 1 / n_test + 1e-9
    digital_acc = report["training"]["digital emulator"]["final_test_acc"]
    assert abs(mct["emulator-trained"]["test_acc"]["mean"] - digital_acc) <= 2 / n_test + 1e-9
    assert saved["monte_carlo_trained"]["chip-trained"]["test_acc"]["values"] == mct["chip-trained"]["test_acc"]["values"]
    assert "Monte Carlo of the trained model over 3 chips, chip-trained weights" in format_compare(report)


@pytest.mark.slow  # ~200 s cold (three chip programs compiled); test_montecarlo covers the vmapped instances
def test_monte_carlo_spreads_over_mismatched_chips(tmp_path, capsys):
    rc = main(["compare", "--hardware", "realistic", "--n-chips", "3", "--train-steps", "0",
               "--hidden", "16", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert np.ptp(report["monte_carlo"]["fixed_point_error"]["values"]) > 0
    assert "training" not in report
    assert "Monte Carlo over 3 chips" in capsys.readouterr().out
    setup = report["monte_carlo_setup"]
    assert (setup["n_chips"], setup["mode"], setup["local_devices"], setup["device"]) == (3, "vmap", 1, None)
    # The trained-model Monte Carlo runs on the same instances with the same test noise: the
    # initial model evaluated by it scores exactly what the initial-model Monte Carlo reported.
    cfg = TrainConfig.from_dict(report["config"])
    again = trained_monte_carlo(cfg, "realistic", {"initial": build_digital(cfg).model}, n_chips=3)
    # (the same count of correct samples per chip; the initial-model report's mean is float32)
    np.testing.assert_allclose(again["initial"]["test_acc"]["values"],
                               report["monte_carlo"]["test_acc"]["values"], rtol=1e-6)


def test_compare_refuses_unknown_hardware_and_late_host_devices(tmp_path, capsys):
    import jax

    assert main(["compare", "--hardware", "nonexistent", "--out", str(tmp_path)]) == 2
    assert "nonexistent" in capsys.readouterr().err
    jax.devices()  # JAX now runs with one CPU device: asking for two is a one-line error
    assert main(["compare", "--host-devices", "2", "--out", str(tmp_path), "--train-steps", "0"]) == 2
    assert "ANALOGEQ_HOST_DEVICES=2" in capsys.readouterr().err


def test_chip_training_via_cli_resumes_exactly(tmp_path):
    import jax

    from analogeq.checkpoint import load_checkpoint
    from analogeq.assembly import build_analog

    hw = tmp_path / "chip.toml"
    hw.write_text('[crossbar]\nn_levels = 32\nread_noise = 0.01\nd2d_bounds = 0.1\n'
                  '[dynamics]\nsettle_time = 2e-7\nsteady_tol = 1e-3\n')
    args = ["train", "--hardware", str(hw), "--hidden", "16", "--optimizer", "sgd", "--lr", "0.1",
            "--eval-every", "2", "--checkpoint-every", "2", "--no-progress"]
    assert main(args + ["--steps", "4", "--out", str(tmp_path / "full")]) == 0
    assert main(args + ["--steps", "2", "--out", str(tmp_path / "split")]) == 0
    assert main(args + ["--steps", "4", "--out", str(tmp_path / "split"), "--resume"]) == 0
    cfg = TrainConfig.from_toml(tmp_path / "full" / "config.toml")
    parts = build_analog(cfg, str(hw))
    state_like = (parts.model, parts.updater.init(parts.model))
    (full, _), _ = load_checkpoint(tmp_path / "full", state_like)
    (split, _), _ = load_checkpoint(tmp_path / "split", state_like)
    for a, b in zip(jax.tree_util.tree_leaves(full), jax.tree_util.tree_leaves(split)):
        np.testing.assert_array_equal(a, b)
    # the chip was really written (conductances moved), so the equality above is not vacuous
    assert not np.array_equal(full.forward[0].g_pos, parts.model.forward[0].g_pos)
