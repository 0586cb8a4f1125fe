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
    assert set(report["training"]) == {"digital emulator", "analog chip"}
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
