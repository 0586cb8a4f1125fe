"""Fuzz test of every input surface (issue 13): the CLI flags of each subcommand, training TOML,
chip TOML (every section and field), device presets (every model's parameters), sweep files,
SPICE export options and damaged run folders.

Each case runs ``analogeq.cli.main`` in this process and must end either valid (exit 0) or
with exactly one line of error text (exit 2) that names the field, with no traceback, within a
time limit; every JSON file it leaves behind must be strict JSON (no NaN/Infinity). The cases
are the hand-written table ``tests/fuzz_cases.toml`` plus generated families (every field
crossed with values of the wrong type, non-finite numbers and overflowing literals); Hypothesis
property tests then draw random values for the same validators. Nothing trains or compiles:
valid training commands stop at ``--dry-run``.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analogeq import cli_types
from analogeq.cli import main
from analogeq.config import TrainConfig
from analogeq.devices.presets import PARAMS, DevicePreset
from analogeq.hardware.config import SECTIONS, ChipConfig
from analogeq.spec import ConfigError
from analogeq.sweep.spec import SweepSpec

CASES_FILE = Path(__file__).with_name("fuzz_cases.toml")
CASE_SECONDS = 30  # generous: a validation error takes milliseconds; a hang is what this catches


# ------------------------------------------------------------------ generated families
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _train_flag_cases() -> list[dict]:
    """Every TrainConfig flag with values no field accepts."""
    cases = []
    for name in TrainConfig.field_names():
        spec = TrainConfig.spec(name)
        flag = _flag(name)
        if spec.kind == "real":
            bad = ["nan", "-inf", "1e400", "abc"]
        elif spec.kind in ("int", "ints"):
            bad = ["1.5", "99999999999999999999999", "0x10"]
        elif spec.kind == "bool":
            bad = [f"{flag}=maybe"]
        elif spec.kind == "choice":
            bad = ["no-such-" + name, ""]
        else:  # hardware, device, text_path: a value the loader must refuse
            bad = ["{tmp}"] if name in ("hardware", "device") else []
        if spec.kind in ("real", "int") and not spec.also:  # just outside each bound
            step = 1 if spec.kind == "int" else 0.5
            bad += [repr(v) for v in (spec.gt, spec.lt) if v is not None]
            bad += [repr(spec.ge - step)] if spec.ge is not None else []
            bad += [repr(spec.le + step)] if spec.le is not None else []
        for v in bad:
            argv = ["train", v, "--dry-run"] if spec.kind == "bool" else ["train", flag, v, "--dry-run"]
            if name == "device":
                argv[1:1] = ["--hardware", "ideal"]
            cases.append({"id": f"flag-{name}-{v or 'empty'}", "argv": argv, "expect": "error",
                          "field": [flag, name]})
    return cases


_WRONG = {  # TOML literals of the wrong type or not finite, per field kind
    "real": ["true", '"x"', "nan", "inf"],
    "int": ["true", "1.5", "99999999999999999999"],
    "ints": ["true", "[0]", '["a"]', "[]", "[1.5]"],
    "bool": ['"no"', "1"],
    "choice": ['"no-such-value"', "1"],
    "str": ["5", "[1]"],
}


def _train_toml_cases() -> list[dict]:
    """Every TrainConfig field in a TOML file (flat and as its [section] table) with wrong values."""
    cases = []
    for name in TrainConfig.field_names():
        kind = TrainConfig.spec(name).kind
        for v in _WRONG[kind]:
            cases.append({"id": f"toml-{name}={v}", "argv": ["train", "--config", "{tmp}/c.toml", "--dry-run"],
                          "expect": "error", "field": name, "files": {"c.toml": f"{name} = {v}\n"}})
    return cases


def _chip_cases() -> list[dict]:
    """Every chip section.field with wrong values, unknown keys per section."""
    cases = []
    for section, cls in SECTIONS.items():
        for key in cls.field_names():
            spec = cls.spec(key)
            for v in _WRONG[spec.kind][:3]:
                cases.append({"id": f"chip-{section}.{key}={v}",
                              "argv": ["train", "--hardware", "{tmp}/chip.toml", "--dry-run"],
                              "expect": "error", "field": key,
                              "files": {"chip.toml": f"[{section}]\n{key} = {v}\n"}})
        cases.append({"id": f"chip-{section}-unknown-key", "argv": ["train", "--hardware", "{tmp}/chip.toml", "--dry-run"],
                      "expect": "error", "field": "bogus_key",
                      "files": {"chip.toml": f"[{section}]\nbogus_key = 1.0\n"}})
    return cases


def _device_cases() -> list[dict]:
    """Every parameter of every device model with wrong values (and an unknown parameter); the
    parameters the pulsed models share are tried on ConstantStep only."""
    cases = []
    shared = set(PARAMS["ConstantStep"].field_names())
    for model, cls in PARAMS.items():
        names = list(cls.field_names()) + (["v_up", "v_down"] if model == "PiecewiseStep" else [])
        if model != "ConstantStep":
            names = [n for n in names if n not in shared or model == "NeuroSimDevice"]
        for key in names:
            kind = "list" if key in ("v_up", "v_down") else cls.spec(key).kind
            values = {"list": ["[nan, 1.0]", "[-1.0, 1.0]", '"x"'], "real": ["nan", "true", '"high"', "1e300"],
                      "int": ["0", "1.5", "true"], "bool": ['"yes"', "1"]}[kind]
            for v in values:
                text = f'model = "{model}"\n[params]\n{key} = {v}\n[sources]\n{key} = "test"\n'
                cases.append({"id": f"device-{model}.{key}={v}",
                              "argv": ["train", "--hardware", "ideal", "--device", "{tmp}/d.toml", "--dry-run"],
                              "expect": "error", "field": key, "files": {"d.toml": text}})
        text = f'model = "{model}"\n[params]\nbogus = 1.0\n[sources]\nbogus = "test"\n'
        cases.append({"id": f"device-{model}-unknown", "expect": "error", "field": "bogus", "files": {"d.toml": text},
                      "argv": ["train", "--hardware", "ideal", "--device", "{tmp}/d.toml", "--dry-run"]})
    return cases


def _all_cases() -> list[dict]:
    table = tomllib.loads(CASES_FILE.read_text())["case"]
    return table + _train_flag_cases() + _train_toml_cases() + _chip_cases() + _device_cases()


CASES = _all_cases()
PARAMS_ = [pytest.param(c, id=c["id"], marks=[pytest.mark.slow] if c.get("slow") else []) for c in CASES]


def test_the_case_table_is_large_and_well_formed():
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 300
    for c in CASES:
        assert c["expect"] in ("ok", "error") and isinstance(c["argv"], list)
        assert c["expect"] == "ok" or c.get("field"), c["id"]


# ------------------------------------------------------------------ running one case
@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A small, valid run folder (config.toml, checkpoint, metrics log) built without training."""
    import jax

    from analogeq.assembly import build_parts
    from analogeq.checkpoint import save_checkpoint

    jax.devices()  # the platform warning (if any) is printed now, not inside a case
    d = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(hidden=(4,), steps=1, batch_size=4, T1=5, T2=2, eval_every=1, probe_every=1,
                      checkpoint_every=1)
    parts = build_parts(cfg)
    (d / "config.toml").write_text(cfg.to_toml())
    (d / "metrics.jsonl").write_text("")
    save_checkpoint(d, (parts.model, parts.updater.init(parts.model)), {"step": 0, "config": cfg.to_dict()})
    return d


class _Timeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: int):
    def fire(signum, frame):
        raise _Timeout(f"case did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _reject_constant(name):
    raise ValueError(f"non-finite JSON constant {name}")


def _strict_json(path: Path) -> None:
    text = path.read_text()
    docs = text.splitlines() if path.suffix == ".jsonl" else [text]
    for doc in docs:
        if doc.strip():
            json.loads(doc, parse_constant=_reject_constant)


def _prepare(case: dict, tmp: Path, run_folder: Path) -> list[str]:
    sub = {"{tmp}": str(tmp), "{run}": str(tmp / "run")}

    def fill(s: str) -> str:
        for k, v in sub.items():
            s = s.replace(k, v)
        return s

    if any("{run}" in a for a in case["argv"]):
        shutil.copytree(run_folder, tmp / "run")
        for name, text in case.get("damage", {}).items():
            (tmp / "run" / name).write_text(text)
        for name, n in case.get("truncate", {}).items():
            p = tmp / "run" / name
            p.write_bytes(p.read_bytes()[:n])
        for name in case.get("remove", []):
            (tmp / "run" / name).unlink()
    for name, text in case.get("files", {}).items():
        (tmp / name).write_text(fill(text))
    if "sweep_cache" in case:
        spec = SweepSpec.from_toml(tmp / "s.toml")
        (tmp / "o" / "runs").mkdir(parents=True)
        for r in spec.runs():
            (tmp / "o" / "runs" / f"{r.key}.json").write_text(case["sweep_cache"])
    return [fill(a) for a in case["argv"]]


@pytest.fixture
def restore_x64():
    import jax

    before = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", before)  # spice commands switch float64 on


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", PARAMS_)
def test_input_ends_valid_or_in_one_line_naming_the_field(case, tmp_path, run_folder, capsys, monkeypatch,
                                                          restore_x64):
    argv = _prepare(case, tmp_path, run_folder)
    before = _snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)  # default output folders land in the case's folder
    capsys.readouterr()
    with _time_limit(CASE_SECONDS):
        rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, err
    if case["expect"] == "ok":
        assert rc == 0 and "error" not in err, (rc, err)
    else:
        lines = err.strip().splitlines()
        assert rc == 2, (rc, out, err)
        assert len(lines) == 1 and lines[0].startswith("analogeq") and ": error: " in lines[0], err
        fields = case["field"] if isinstance(case["field"], list) else [case["field"]]
        assert any(f in lines[0] for f in fields), f"{lines[0]!r} names none of {fields}"
    # what the command wrote (new or changed files; the damaged inputs are the case's own)
    written = [p for p, data in _snapshot(tmp_path).items() if before.get(p) != data]
    for p in written:
        if p.suffix in (".json", ".jsonl"):
            _strict_json(p)
        elif p.suffix == ".cir":
            assert "nan" not in p.read_text().lower().replace("=", " ").split(), p


# ------------------------------------------------------------------ property tests
_scalar = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70), st.booleans(),
    st.text(max_size=8), st.none())
_value = st.one_of(_scalar, st.lists(_scalar, max_size=3), st.dictionaries(st.text(max_size=3), _scalar, max_size=2))
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _finite_and_typed(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, (list, tuple)):
        return all(_finite_and_typed(x) for x in obj)
    if isinstance(obj, dict):
        return all(_finite_and_typed(x) for x in obj.values())
    return True


@PROPERTY
@given(text=st.text(max_size=12), lo=st.floats(-1e6, 0), hi=st.floats(1, 1e6))
def test_number_flag_parses_a_finite_number_in_range_or_refuses(text, lo, hi):
    parse = cli_types.number(lo, hi)
    try:
        v = parse(text)
    except Exception as e:  # noqa: BLE001 -- the only allowed failure is argparse's type error
        assert type(e).__name__ == "ArgumentTypeError" and "must be" in str(e)
    else:
        assert math.isfinite(v) and lo <= v <= hi


@PROPERTY
@given(text=st.one_of(st.text(max_size=25), st.integers(-(2**80), 2**80).map(str)))
def test_seed_flag_fits_a_prng_key_or_refuses(text):
    try:
        v = cli_types.seed(text)
    except Exception as e:  # noqa: BLE001
        assert type(e).__name__ == "ArgumentTypeError"
    else:
        assert 0 <= v <= cli_types.SEED_MAX


@PROPERTY
@given(changes=st.dictionaries(st.sampled_from(TrainConfig.field_names()), _value, min_size=1, max_size=3))
def test_training_config_is_valid_or_names_a_field(changes):
    try:
        cfg = TrainConfig.from_dict(changes)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and any(k in msg for k in changes), msg
    except ValueError as e:  # cross-field rules (e.g. hardware needs the leaky model) are ValueErrors too
        assert "\n" not in str(e)
    else:
        assert _finite_and_typed(cfg.to_dict())


@PROPERTY
@given(section=st.sampled_from(list(SECTIONS)), data=st.data())
def test_chip_config_is_valid_or_names_a_field(section, data):
    keys = SECTIONS[section].field_names()
    table = data.draw(st.dictionaries(st.sampled_from(keys), _value, min_size=1, max_size=3))
    try:
        chip = ChipConfig.from_dict({section: table})
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and any(k in msg for k in table), msg
    else:
        assert _finite_and_typed(chip.to_dict())


@PROPERTY
@given(model=st.sampled_from(sorted(PARAMS)), data=st.data())
def test_device_preset_is_valid_or_names_a_parameter(model, data):
    keys = list(PARAMS[model].field_names())
    params = data.draw(st.dictionaries(st.sampled_from(keys), _value, min_size=1, max_size=3))
    d = {"model": model, "params": params, "sources": {k: "test" for k in params}}
    try:
        preset = DevicePreset.from_dict(d)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and any(k in msg for k in params), msg
    else:
        json.dumps(preset.params, allow_nan=False)  # what 'devices show' writes is strict JSON


@PROPERTY
@given(head=st.dictionaries(st.sampled_from(["name", "seeds", "chips", "metrics"]), _value, max_size=3),
       dist=st.sampled_from(["uniform", "log_uniform", "int_uniform", "choice"]),
       bounds=st.lists(_scalar, max_size=3))
def test_sweep_spec_is_valid_or_names_the_problem(head, dist, bounds):
    d = {"sweep": head, "train": {"steps": 1}, "random": {"samples": 2, "lr": {dist: bounds}}}
    try:
        spec = SweepSpec.from_dict(d)
    except ValueError as e:
        msg = str(e)
        assert "\n" not in msg and (any(k in msg for k in head) or "lr" in msg), msg
    else:
        for p in spec.points():
            assert _finite_and_typed(dict(p))


# ------------------------------------------------------------------ the error path itself
def _raise(exc):
    def cmd(args):
        raise exc

    return cmd


def test_a_bug_is_one_line_with_the_debug_hint_and_debug_shows_the_traceback(monkeypatch, capsys):
    import analogeq.cli as cli

    monkeypatch.setattr(cli, "cmd_demo", _raise(RuntimeError("boom\nsecond line")))
    build = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with_func(build(), "demo", cli.cmd_demo))
    assert cli.main(["demo", "--steps", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["analogeq demo: internal error: RuntimeError: boom second line "
                   "(run 'analogeq --debug ...' for the traceback)"]
    assert cli.main(["--debug", "demo", "--steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("analogeq demo: internal error")


def test_user_errors_and_interrupts(monkeypatch, capsys):
    import analogeq.cli as cli

    build = cli.build_parser
    for exc, rc, text in [(FileNotFoundError(2, "No such file or directory", "x.toml"), 2,
                           "analogeq demo: error: No such file or directory: x.toml"),
                          (ValueError("lr must be > 0"), 2, "analogeq demo: error: lr must be > 0"),
                          (KeyboardInterrupt(), 130, "analogeq demo: interrupted")]:
        monkeypatch.setattr(cli, "build_parser", lambda e=exc: _with_func(build(), "demo", _raise(e)))
        assert cli.main(["demo"]) == rc
        assert capsys.readouterr().err.strip().splitlines() == [text]


def _with_func(parser, command, func):
    """``parser`` with ``command``'s handler replaced."""
    sub = next(a for a in parser._actions if a.dest == "command")
    sub.choices[command].set_defaults(func=func)
    return parser


# ------------------------------------------------------------------ time limits of external work
def test_ngspice_run_past_its_limit_is_stopped_and_named(tmp_path):
    import time

    from analogeq.spice import runner
    from analogeq.spice.netlist import Netlist

    if not runner.available():
        pytest.skip("ngspice is not installed")
    rc = ("* RC low-pass\nV1 in 0 DC 1\nR1 in v1 1k\nC1 v1 0 1u\n.options reltol=1e-9\n"
          ".tran {step} {stop} 0 {step} uic\n.end\n")
    slow = Netlist(text=rc.format(step="1e-9", stop="10"), state_nodes=("v1",), v_unit=1.0, tau=1e-3,
                   t_stop=10.0, analyses=("tran",))  # 1e10 steps: hours
    t0 = time.perf_counter()
    with pytest.raises(runner.SpiceTimeout, match=r"time limit of 0\.5 s on the netlist .*slow\.cir"):
        runner.run_netlist(slow, tmp_path / "slow.cir", timeout=0.5)
    assert time.perf_counter() - t0 < 10
    assert runner.default_timeout(slow) > 1e4  # the default limit scales with the steps
    fast = Netlist(text=rc.format(step="1e-5", stop="5e-3"), state_nodes=("v1",), v_unit=1.0, tau=1e-3,
                   t_stop=5e-3, analyses=("tran",))
    assert runner.default_timeout(fast) == runner.MIN_TIMEOUT
    res = runner.run_netlist(fast, tmp_path / "fast.cir")  # the session still works after a halt
    assert res.tran["v1"][-1] == pytest.approx(1 - math.exp(-5), rel=1e-3)
    with runner.time_limit(0.5), pytest.raises(runner.SpiceTimeout):
        runner.run_netlist(slow, tmp_path / "slow.cir")


def test_unreachable_scheduler_fails_within_the_connect_limit(tmp_path, monkeypatch):
    import importlib
    import time

    execute = importlib.import_module("analogeq.sweep.execute")
    monkeypatch.setattr(execute, "CONNECT_TIMEOUT", 2.0)
    spec = SweepSpec.from_dict({"train": {"steps": 1, "hidden": [4]}})
    t0 = time.perf_counter()
    with pytest.raises(ConnectionError, match="cannot reach a Dask scheduler at 'tcp://127.0.0.1:9' within 2 s"):
        execute.execute(spec, tmp_path, scheduler="tcp://127.0.0.1:9", progress=False, log=lambda m: None)
    assert time.perf_counter() - t0 < 15
    with pytest.raises(ValueError, match="workers must be an integer in 0..256"):
        execute.execute(spec, tmp_path, workers=-1, progress=False, log=lambda m: None)


_FLAGS = [_flag(n) for n in TrainConfig.field_names() if TrainConfig.spec(n).kind != "bool"]
_TEXT = st.one_of(st.sampled_from(["0", "-1", "1", "0.5", "1e-3", "nan", "inf", "1e400", "3", "64", "adam", "sgd",
                                   "ideal", "leaky", "", "99999999999999999999"]),
                  st.text(alphabet="0123456789.-+eE", max_size=8), st.integers(-(2**40), 2**40).map(str))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from(_FLAGS), _TEXT), min_size=1, max_size=4))
def test_any_train_command_line_parses_or_fails_in_one_line(pairs, capsys):
    argv = ["train"] + [f"{flag}={value}" for flag, value in pairs] + ["--dry-run"]
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if rc == 0:  # the configuration printed is complete and reads back as the same one
        cfg = TrainConfig.from_dict(tomllib.loads(out))
        assert cfg == TrainConfig.from_dict(tomllib.loads(cfg.to_toml()))
    else:
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and lines[0].startswith("analogeq train: error: "), (argv, err)
