"""Device presets and the ``devices`` / ``drift`` commands."""

import json

import pytest

from analogeq.cli import main
from analogeq.devices.presets import DevicePreset, available_devices, load_device

PRESETS = ["ag-asi-neurosim", "ecram-symmetric-256", "ecram-tang2018", "gokmen-vlasov", "ideal", "pcm",
           "reram-gong2018"]


def test_every_named_preset_ships_and_cites_every_number():
    assert available_devices() == PRESETS
    for name in PRESETS:
        p = load_device(name)
        assert set(p.params) <= set(p.sources) and p.description
    assert load_device("pcm").inference is not None


def test_preset_files_are_validated(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "ConstantStep"\n[params]\ndw_min = 0.01\n')
    with pytest.raises(ValueError, match="lacks \\['dw_min'\\]"):
        DevicePreset.from_toml(bad)
    bad.write_text('model = "Magic"\n')
    with pytest.raises(ValueError, match="model 'Magic' unknown"):
        DevicePreset.from_toml(bad)
    bad.write_text('model = "ConstantStep"\n[params]\ngamma = 1.0\n[sources]\ngamma = "x"\n')
    with pytest.raises(ValueError, match="has no parameter"):
        DevicePreset.from_toml(bad)


def test_devices_show_plots_the_response_with_spread(tmp_path, capsys):
    assert main(["devices", "list"]) == 0
    assert "reram-gong2018" in capsys.readouterr().out
    assert main(["devices", "show", "gokmen-vlasov", "--n-devices", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "Gokmen & Vlasov 2016: d2d 30 %" in out
    assert (tmp_path / "gokmen-vlasov.png").stat().st_size > 10_000
    rec = json.loads((tmp_path / "gokmen-vlasov.json").read_text())
    assert rec["params"]["dw_min"] == 0.0016
    assert main(["devices", "show", "nope"]) == 2


def test_drift_command_evaluates_a_trained_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--hidden", "8", "--steps", "3", "--eval-every", "3", "--probe-every", "3",
                 "--out", str(run), "--no-progress"]) == 0
    assert main(["drift", str(run), "--times", "1", "2592000", "--n-test", "16", "--compare",
                 "--hardware", "ideal"]) == 0
    rec = json.loads((run / "drift" / "drift.json").read_text())
    comp, raw = rec["records"]["compensated"], rec["records"]["raw"]
    assert [r["t_s"] for r in comp] == [1.0, 2592000.0]
    assert comp[0]["compensation"] == pytest.approx(1.0, abs=0.05)   # before t0 nothing drifted
    assert comp[1]["compensation"] > 1.3 and raw[1]["compensation"] == 1.0
    assert (run / "drift" / "drift.png").exists() and (run / "drift" / "drift.csv").exists()
