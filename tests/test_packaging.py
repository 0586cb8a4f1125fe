"""Presets ship with the package: a wheel built from the checkout, installed outside it, finds
the chip presets, the device presets and the SPICE library through importlib.resources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Run by the installed package, from a folder outside the checkout.
PROBE = """
import json
import analogeq
from analogeq.devices.presets import DEVICE_DIR, available_devices, load_device
from analogeq.hardware import ChipConfig, available_presets, device_models_dir
from analogeq.spice.library import library_path, library_text
print(json.dumps({
    "file": analogeq.__file__,
    "presets": available_presets(),
    "presets_dir": str(device_models_dir()),
    "realistic_levels": ChipConfig.preset("realistic").crossbar.n_levels,
    "devices": available_devices(),
    "devices_dir": str(DEVICE_DIR),
    "pcm": type(load_device("pcm").device).__name__,
    "library": str(library_path()),
    "library_has_subckt": ".subckt aeq_dac" in library_text().lower(),
}))
"""


def _copy_source(dst: Path) -> Path:
    """The files a wheel is built from, copied so the build leaves nothing in the checkout."""
    src = dst / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("analogeq", "device_models", "circuits"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    return src


@pytest.mark.slow  # builds a wheel in an isolated build environment: 35-45 s here
def test_installed_wheel_finds_presets_and_spice_library(tmp_path):
    src = _copy_source(tmp_path)
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    build = subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (wheel,) = wheels.glob("analogeq-*.whl")
    inst = subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert inst.returncode == 0, inst.stderr[-2000:]

    env = {k: v for k, v in os.environ.items()
           if k not in ("ANALOGEQ_DEVICE_MODELS", "ANALOGEQ_CIRCUITS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    run = subprocess.run([sys.executable, "-c", PROBE], cwd=elsewhere, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])

    installed = site / "analogeq"
    assert Path(got["file"]).is_relative_to(installed), got["file"]
    for key in ("presets_dir", "devices_dir", "library"):
        assert Path(got[key]).is_relative_to(installed), (key, got[key])
    assert got["presets"] == sorted(p.stem for p in (ROOT / "device_models").glob("*.toml"))
    assert {"ideal", "realistic"} <= set(got["presets"]) and got["realistic_levels"] == 64
    assert got["devices"] == sorted(p.stem for p in (ROOT / "device_models" / "devices").glob("*.toml"))
    assert "pcm" in got["devices"] and got["pcm"]
    assert got["library_has_subckt"]
    # The installed files are the checkout's, byte for byte.
    assert (installed / "circuits" / "analogeq.lib").read_bytes() == (ROOT / "circuits" / "analogeq.lib").read_bytes()
    assert (installed / "device_models" / "realistic.toml").read_bytes() == \
        (ROOT / "device_models" / "realistic.toml").read_bytes()


def test_checkout_finds_the_top_level_folders():
    """Imported from the repository, the data folders are the top-level ones (what a user edits)."""
    from analogeq.devices.presets import DEVICE_DIR
    from analogeq.hardware import device_models_dir
    from analogeq.package_data import data_dir
    from analogeq.spice.library import library_path

    if not Path(__import__("analogeq").__file__).resolve().is_relative_to(ROOT):
        pytest.skip("analogeq is imported from an installation, not from this checkout")
    assert data_dir("device_models") == ROOT / "device_models" == device_models_dir()
    assert DEVICE_DIR == ROOT / "device_models" / "devices"
    assert library_path() == ROOT / "circuits" / "analogeq.lib"
    with pytest.raises(ValueError, match=r"unknown data folder 'runs'"):
        data_dir("runs")
