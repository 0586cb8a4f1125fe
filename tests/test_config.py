"""TrainConfig in sections on the one spec base (analogeq.spec): flat names kept, every field
validated the same way, TOML in tables, earlier flat files and [train] tables still read."""

from __future__ import annotations

import dataclasses
import math
import re

import pytest

from analogeq.config import SECTIONS, OptimizerOptions, TrainConfig
from analogeq.spec import ConfigError, Field

FIELDS = {name: TrainConfig.spec(name) for name in TrainConfig.field_names()}


def _bad_values(spec: Field) -> list:
    """Wrong types, non-finite values and values just outside the bounds of one field."""
    if spec.kind == "bool":
        return [1, "no", "true", None]
    if spec.kind == "choice":
        return ["bogus", 3, True, None]
    if spec.kind == "str":
        return [5, True, ["a"]]
    if spec.kind == "ints":
        return [[0], [], "12", [1.5], [True], [spec.le + 1], [1] * (spec.max_len + 1)]
    bad = [True, "1", None, [1]]
    if spec.kind == "int":
        bad += [1.5, 2.0, float("nan")]
        if spec.ge is not None:
            bad.append(int(spec.ge) - 1)
        if spec.le is not None:
            bad.append(int(spec.le) + 1)
        return bad
    bad += [math.nan, math.inf, -math.inf]
    for bound, step in ((spec.gt, 0.0), (spec.ge, -1e-9), (spec.lt, 0.0), (spec.le, 1e-9)):
        if bound is not None:
            bad.append(bound + step * max(1.0, abs(bound)))
    return bad


BAD = [(name, v) for name, spec in FIELDS.items() for v in _bad_values(spec)]


def test_every_field_has_help_unit_and_a_section():
    assert len(FIELDS) == 54 and len(BAD) > 250
    for name, spec in FIELDS.items():
        assert len(spec.doc) > 8, name
        assert sum(name in cls.field_names() for cls in SECTIONS.values()) == 1, name
    assert list(SECTIONS) == ["model", "task", "estimator", "optimizer", "stability", "run"]
    # the dataclass fields come in section order, so --help lists them that way
    order = [f.name for f in dataclasses.fields(TrainConfig)]
    assert order == [n for cls in SECTIONS.values() for n in cls.field_names()]


@pytest.mark.parametrize(("name", "bad"), BAD, ids=[f"{n}={b!r}" for n, b in BAD])
def test_bad_value_is_one_line_naming_the_dotted_field(name, bad):
    section = next(s for s, cls in SECTIONS.items() if name in cls.field_names())
    with pytest.raises(ConfigError) as e:
        TrainConfig(**{name: bad})
    msg = str(e.value)
    assert "\n" not in msg and f"{section}.{name}" in msg, msg
    assert "got" in msg or "choose one of" in msg, msg


def test_flat_access_replace_and_sections():
    cfg = TrainConfig(lr=1e-3, hidden=[32, 16], T1=100)
    assert cfg.lr == 1e-3 and cfg.hidden == (32, 16) and cfg.model == "leaky"
    assert cfg.replace(lr=0.5).lr == 0.5 and cfg.lr == 1e-3
    assert dataclasses.replace(cfg, beta=0.1).beta == 0.1
    opt = cfg.section("optimizer")
    assert opt == OptimizerOptions(lr=1e-3) and opt.steps == 1500
    assert cfg.section("estimator").T1 == 100
    assert TrainConfig.from_sections(optimizer=opt, model={"hidden": [32, 16]}, estimator={"T1": 100}) == cfg
    assert hash(cfg) == hash(TrainConfig(lr=1e-3, hidden=(32, 16), T1=100))
    with pytest.raises(ConfigError, match=r"unknown training option\(s\) \['lrr'\]"):
        cfg.replace(lrr=1.0)
    with pytest.raises(ConfigError, match=r"unknown section 'chip'"):
        cfg.section("chip")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert cfg.to_dict()["hidden"] == [32, 16] and len(cfg.to_dict()) == 54
    assert cfg.to_sections()["optimizer"]["lr"] == 1e-3


def test_toml_in_sections_round_trips(tmp_path):
    cfg = TrainConfig(hidden=(32, 16), beta=0.02, stop_at_tol=True, ep_kind="holomorphic", n_points=4,
                      text_path='dir "q"\\x.txt')
    text = cfg.to_toml(tmp_path / "c.toml")
    assert [ln for ln in text.splitlines() if ln.startswith("[")] == [f"[{s}]" for s in SECTIONS]
    assert re.search(r"^lr = 0\.002  # learning rate$", text, re.M)
    assert TrainConfig.from_toml(tmp_path / "c.toml") == cfg


def test_earlier_layouts_still_load(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('task = "digits"\nhidden = [16]\nlr = 0.01\nstop_at_tol = true\n')
    assert TrainConfig.from_toml(flat) == TrainConfig(hidden=(16,), lr=0.01, stop_at_tol=True)
    train = tmp_path / "train.toml"
    train.write_text("[train]\nbeta = 0.1\nsteps = 3\n")
    assert TrainConfig.from_toml(train) == TrainConfig(beta=0.1, steps=3)
    mixed = tmp_path / "mixed.toml"
    mixed.write_text('model = "hopfield"\n[optimizer]\nlr = 0.1\n')
    assert TrainConfig.from_toml(mixed) == TrainConfig(model="hopfield", lr=0.1)


@pytest.mark.parametrize(("text", "match"), [
    ("lr = true\n", r"optimizer\.lr must be a finite real number, > 0 .*got True \(bool\)"),
    ('gate = "no"\n', r"estimator\.gate must be a bool .*got 'no' \(str\)"),
    ("hardware = 5\n", r"run\.hardware must be a string .*got 5 \(int\)"),
    ('asymmetry = "high"\n', r"model\.asymmetry must be a finite real number, in \[0, 1\]"),
    ("seed = 99999999999999999999999\n", r"run\.seed must be an integer in 0\.\.4294967295"),
    ("T1 = 1000000000\n", r"estimator\.T1 must be an integer in 1\.\.1000000 "),
    ("eps = 5.0\n", r"estimator\.eps must be in \(0, 2\)"),
    ("lr = inf\n", r"optimizer\.lr must be finite"),
    ("lr = 1" + "0" * 400 + "\n", r"optimizer\.lr must be > 0 \(learning rate\); got 1000"),
    ("[chip]\nn_levels = 4\n", r"unknown section \[chip\]; allowed sections: model, task"),
    ("lr = 0.1\n[train]\nbeta = 0.1\n", r"keys beside the \[train\] table: \['lr'\]"),
    ("[model]\nlr = 0.1\n", r"unknown key 'model\.lr' in section \[model\] \(lr belongs in \[optimizer\]\)"),
    ('model = "leaky"\n[model]\nmodel = "leaky"\n', r"invalid TOML"),
    ("lr = 0.1\n[optimizer]\nlr = 0.2\n", r"optimizer\.lr is given twice"),
    ("bogus = 1\n", r"unknown training option\(s\) \['bogus'\]"),
    ("train = 3\n", r"\[train\] must be a table"),
    ("[model\n", r"invalid TOML: Expected"),
])
def test_file_errors_name_the_file_and_the_field(tmp_path, text, match):
    path = tmp_path / "cfg.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        TrainConfig.from_toml(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
    assert re.search(match, msg), msg


def test_missing_file_and_directory_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"is a directory; expected a training config TOML file"):
        TrainConfig.from_toml(tmp_path)
    with pytest.raises(ConfigError, match=r"nope\.toml: no such file"):
        TrainConfig.from_toml(tmp_path / "nope.toml")


def test_combinations_are_checked():
    with pytest.raises(ConfigError, match=r"estimator\.n_points must be >= 2 for ep_kind 'holomorphic'"):
        TrainConfig(ep_kind="holomorphic", n_points=1)
    with pytest.raises(ConfigError, match=r"model\.d_model \(30\) must be divisible by model\.n_heads \(4\)"):
        TrainConfig(model="eqtransformer", task="parity", cost="token_cross_entropy", d_model=30)
    with pytest.raises(ConfigError, match=r"hardware realizes the 'leaky' model only"):
        TrainConfig(hardware="realistic", model="hopfield")
    with pytest.raises(ConfigError, match=r"holomorphic' needs complex nudges"):
        TrainConfig(hardware="realistic", ep_kind="holomorphic", n_points=4)
    # options of the Euler emulator that a continuous-time chip settle would silently ignore
    with pytest.raises(ConfigError, match=r"estimator\.refine_steps: a chip settles in continuous time"):
        TrainConfig(hardware="realistic", refine_steps=10)
    with pytest.raises(ConfigError, match=r"cannot honour the Euler emulator's t2_chunks = 4"):
        TrainConfig(hardware="realistic", t2_chunks=4)
    assert TrainConfig(refine_steps=10, t2_chunks=4).t2_chunks == 4  # the emulator honours both


def test_options_feed_the_command_line():
    from analogeq.cli import build_parser

    opts = {name: (default, doc) for name, default, doc, _ in TrainConfig.options()}
    assert len(opts) == 54 and opts["lr"] == (2e-3, "learning rate")
    help_text = " ".join(build_parser()._subparsers._group_actions[0].choices["train"].format_help().split())
    for name in ("lr", "hidden", "stop_at_tol", "jacreg_ema"):
        assert "--" + name.replace("_", "-") in help_text
    assert "learning rate (default: 0.002)" in help_text
