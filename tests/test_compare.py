import json

import numpy as np

from analogeq.cli import main
from analogeq.compare import compare, format_compare
from analogeq.config import TrainConfig


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


def test_monte_carlo_spreads_over_mismatched_chips(tmp_path, capsys):
    rc = main(["compare", "--hardware", "realistic", "--n-chips", "3", "--train-steps", "0",
               "--hidden", "16", "--out", str(tmp_path), "--no-progress"])
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert np.ptp(report["monte_carlo"]["fixed_point_error"]["values"]) > 0
    assert "training" not in report
    assert "Monte Carlo over 3 chips" in capsys.readouterr().out
    assert main(["compare", "--hardware", "nonexistent", "--out", str(tmp_path)]) == 2


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
