"""Validated hardware config (analogeq.hardware): validation, presets, TOML round trip."""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib

import numpy as np
import pytest

from analogeq.spec import toml_value

from analogeq.hardware import (
    DEVICE_MODELS_ENV,
    K_B,
    SECTIONS,
    ChipConfig,
    ConfigError,
    CircuitConfig,
    CrossbarConfig,
    DynamicsConfig,
    NeuronConfig,
    NoiseConfig,
    PeripheryConfig,
    ReadoutConfig,
    available_presets,
    device_models_dir,
)

PRESETS = ("ideal", "ideal-windowed", "realistic")

# (dotted field, bad value): every field appears at least once (checked below); each field gets
# a wrong type, and numeric fields a non-finite and an out-of-range value.
BAD = [
    # crossbar
    ("crossbar.G_min", -1e-6),
    ("crossbar.G_min", math.nan),
    ("crossbar.G_min", "1e-6"),
    ("crossbar.G_min", 2e-4),  # >= G_max
    ("crossbar.G_max", 0.0),
    ("crossbar.G_max", -1e-4),
    ("crossbar.G_max", math.inf),
    ("crossbar.G_max", True),
    ("crossbar.G_ref", 0.0),
    ("crossbar.G_ref", -1e-4),
    ("crossbar.G_ref", math.inf),
    ("crossbar.G_ref", "auto"),
    ("crossbar.n_levels", 1),
    ("crossbar.n_levels", -4),
    ("crossbar.n_levels", 2.5),
    ("crossbar.n_levels", 16.0),
    ("crossbar.n_levels", "64"),
    ("crossbar.n_levels", True),
    ("crossbar.n_levels", None),
    ("crossbar.prog_noise", -0.01),
    ("crossbar.prog_noise", math.nan),
    ("crossbar.prog_noise", None),
    ("crossbar.d2d_bounds", 1.0),
    ("crossbar.d2d_bounds", -0.1),
    ("crossbar.d2d_bounds", "0.1"),
    ("crossbar.read_noise", -1e-3),
    ("crossbar.read_noise", math.inf),
    ("crossbar.thermal_noise", 1),
    ("crossbar.thermal_noise", "true"),
    ("crossbar.thermal_noise", None),
    ("crossbar.tile_rows", -1),
    ("crossbar.tile_rows", 1 << 17),
    ("crossbar.tile_rows", 2.0),
    ("crossbar.tile_cols", -3),
    ("crossbar.tile_cols", "256"),
    ("crossbar.tile_sum", "adc"),
    ("crossbar.tile_adc_bits", 0),
    ("crossbar.tile_adc_bits", 17),
    ("crossbar.tile_adc_range", 0.0),
    ("crossbar.tile_adc_range", math.inf),
    ("crossbar.tile_gain", "per-tile"),
    ("crossbar.tile_gain", None),
    ("crossbar.gain_headroom", 0.5),
    ("crossbar.gain_headroom", 1e4),
    ("crossbar.gain_headroom", math.nan),
    ("crossbar.r_segment", -1.0),
    ("crossbar.r_segment", 1e5),
    ("crossbar.r_segment", "2.5 Ohm"),
    ("crossbar.r_drive", -0.1),
    ("crossbar.r_drive", math.inf),
    ("crossbar.r_sense", -50.0),
    ("crossbar.r_sense", None),
    ("crossbar.wire_solver", "dense"),
    ("crossbar.wire_sweeps", 0),
    ("crossbar.wire_sweeps", 1001),
    ("crossbar.read_noise", 1e3),  # hundreds of percent per read: a unit mistake
    ("crossbar.prog_noise", 2.0),
    ("crossbar.n_levels", 1 << 20),
    # neuron
    ("neuron.C", -1e-12),
    ("neuron.C", 0.0),
    ("neuron.C", math.nan),
    ("neuron.C", "1pF"),
    ("neuron.g_leak", 0.0),
    ("neuron.g_leak", -1e-4),
    ("neuron.g_leak", math.inf),
    ("neuron.rail", 0.0),
    ("neuron.rail", -1.0),
    ("neuron.rail", None),
    ("neuron.v_unit", 0.0),
    ("neuron.v_unit", -0.5),
    ("neuron.v_unit", math.nan),
    ("neuron.offset_sigma", -1e-3),
    ("neuron.offset_sigma", "1mV"),
    ("neuron.gain_sigma", -0.02),
    ("neuron.gain_sigma", math.inf),
    ("neuron.amp_pole_tau", -1e-9),
    ("neuron.amp_pole_tau", math.nan),
    ("neuron.kTC_noise", 0),
    ("neuron.kTC_noise", "yes"),
    # periphery
    ("periphery.dac_bits", -1),
    ("periphery.dac_bits", 17),
    ("periphery.dac_bits", 8.0),
    ("periphery.dac_bits", "8"),
    ("periphery.dac_range", 0.0),
    ("periphery.dac_range", -1.0),
    ("periphery.dac_range", math.inf),
    ("periphery.adc_bits", -2),
    ("periphery.adc_bits", 32),
    ("periphery.adc_bits", 7.5),
    ("periphery.adc_range", 0.0),
    ("periphery.adc_range", math.nan),
    ("periphery.sample_hold", 1),
    ("periphery.sample_hold", None),
    ("crossbar.read_noise_scope", "settle"),
    ("crossbar.read_noise_scope", 1),
    ("periphery.contrast_gain", 0.5),
    ("periphery.contrast_gain", math.inf),
    ("periphery.contrast_gain", 2e4),
    ("periphery.contrast_gain", "16"),
    # noise
    ("noise.temperature", -1.0),
    ("noise.temperature", math.inf),
    ("noise.temperature", "300K"),
    ("noise.temperature", None),
    ("noise.temperature", 1e15),  # trains to loss 1e5 if accepted
    # dynamics (realistic base: settle_time = 4e-7 s, average_window = 5e-8 s)
    ("dynamics.settle_time", 0.0),
    ("dynamics.settle_time", -1e-6),
    ("dynamics.settle_time", math.inf),
    ("dynamics.settle_time", 4e-8),  # < average_window
    ("dynamics.settle_time", "adaptive"),
    ("dynamics.steady_tol", 0.0),
    ("dynamics.steady_tol", -1e-6),
    ("dynamics.steady_tol", 1.0),
    ("dynamics.steady_tol", math.nan),
    ("dynamics.average_window", -1e-9),
    ("dynamics.average_window", 1e-5),  # > settle_time
    ("dynamics.average_window", math.inf),
    ("dynamics.average_window", None),
    ("dynamics.sde_dt", 0.0),
    ("dynamics.sde_dt", -1e-9),
    ("dynamics.sde_dt", math.nan),
    ("dynamics.integrator", "rk4"),
    ("dynamics.integrator", 3),
    ("dynamics.nudged_time", 0.0),
    ("dynamics.nudged_time", -1e-9),
    ("dynamics.nudged_time", math.nan),
    ("dynamics.nudged_time", math.inf),
    ("dynamics.nudged_time", "10 tau"),
    # energy
    ("energy.adc_fom", -1e-15),
    ("energy.adc_fom", math.inf),
    ("energy.adc_fom", "6.5 fJ"),
    ("energy.adc_time", 0.0),
    ("energy.adc_time", -1e-9),
    ("energy.adc_time", math.nan),
    ("energy.adc_share", 0),
    ("energy.adc_share", 1.5),
    ("energy.adc_share", True),
    ("energy.dac_fom", -1e-15),
    ("energy.dac_fom", None),
    ("energy.dac_time", 0.0),
    ("energy.dac_time", math.inf),
    ("energy.pulse_energy", -2e-12),
    ("energy.pulse_energy", math.nan),
    ("energy.pulse_width", 0.0),
    ("energy.pulse_width", -1e-8),
    ("energy.pulse_width", "10 ns"),
    # circuits
    ("circuits.mult_gain_sigma", -0.02),
    ("circuits.mult_gain_sigma", 1.5),  # 150 % gain spread: a percent typed as a number
    ("circuits.mult_gain_sigma", math.nan),
    ("circuits.mult_gain_sigma", "2%"),
    ("circuits.mult_offset_sigma", -1e-3),
    ("circuits.mult_offset_sigma", 20.0),  # tens of volts: a unit mistake (mV as V)
    ("circuits.mult_offset_sigma", math.inf),
    ("circuits.mult_offset_sigma", None),
    ("circuits.mult_noise", -1e-4),
    ("circuits.mult_noise", 11.0),
    ("circuits.mult_noise", math.nan),
    ("circuits.mult_noise", True),
    ("circuits.softmax_gain_sigma", -0.05),
    ("circuits.softmax_gain_sigma", 2.0),
    ("circuits.softmax_gain_sigma", math.inf),
    ("circuits.softmax_gain_sigma", "0.05"),
    ("circuits.norm_gain_sigma", -0.02),
    ("circuits.norm_gain_sigma", 1.01),
    ("circuits.norm_gain_sigma", math.nan),
    ("circuits.norm_gain_sigma", None),
    ("circuits.gelu_rails", 1),
    ("circuits.gelu_rails", "true"),
    ("circuits.gelu_rails", None),
]


def _all_fields() -> set[str]:
    return {f"{name}.{key}" for name, cls in SECTIONS.items() for key in cls.field_names()}


@pytest.fixture
def realistic() -> ChipConfig:
    return ChipConfig.preset("realistic")


def test_bad_table_covers_every_field():
    assert {path for path, _ in BAD} == _all_fields()


@pytest.mark.parametrize(("path", "bad"), BAD, ids=[f"{p}={b!r}" for p, b in BAD])
def test_replace_rejects_bad_value(realistic, path, bad):
    with pytest.raises(ValueError, match=re.escape(path)):
        realistic.replace(**{path: bad})


@pytest.mark.parametrize(("path", "bad"), BAD, ids=[f"{p}={b!r}" for p, b in BAD])
def test_constructor_rejects_bad_value(realistic, path, bad):
    section, key = path.split(".")
    kwargs = dataclasses.asdict(getattr(realistic, section))
    kwargs = {k: v for k, v in kwargs.items() if k in SECTIONS[section].field_names()}
    kwargs[key] = bad
    with pytest.raises(ConfigError, match=re.escape(path)):
        SECTIONS[section](**kwargs)


@pytest.mark.parametrize(("path", "bad"), BAD, ids=[f"{p}={b!r}" for p, b in BAD])
def test_from_dict_rejects_bad_value(realistic, path, bad):
    section, key = path.split(".")
    d = realistic.to_dict()
    d[section][key] = bad
    with pytest.raises(ValueError, match=re.escape(path)):
        ChipConfig.from_dict(d)


def test_messages_say_what_is_allowed():
    with pytest.raises(ValueError, match=r"neuron\.C must be > 0 F .*got -1e-12"):
        NeuronConfig(C=-1e-12)
    msg = r"crossbar\.G_min must be < crossbar\.G_max \(got G_min=0\.0001 S, G_max=1e-05 S\)"
    with pytest.raises(ValueError, match=msg):
        CrossbarConfig(G_min=1e-4, G_max=1e-5)
    with pytest.raises(ValueError, match=r"crossbar\.n_levels must be an integer.*>= 2.*2\.5"):
        CrossbarConfig(n_levels=2.5)
    with pytest.raises(ValueError, match=r"periphery\.adc_bits must be 0 .* 1\.\.16"):
        PeripheryConfig(adc_bits=17)
    with pytest.raises(ValueError, match=r"crossbar\.d2d_bounds must be in \[0, 1\)"):
        CrossbarConfig(d2d_bounds=1.5)
    with pytest.raises(ValueError, match=r"must be finite"):
        NoiseConfig(temperature=math.nan)


def test_valid_edge_values_accepted():
    CrossbarConfig(G_min=0.0, n_levels=2, d2d_bounds=0.999)
    PeripheryConfig(dac_bits=1, adc_bits=16)
    NeuronConfig(amp_pole_tau=0.0, offset_sigma=0.0)
    DynamicsConfig(settle_time=1e-6, average_window=1e-6)
    NoiseConfig(temperature=0)


def test_numpy_scalars_coerced_to_python():
    cb = CrossbarConfig(G_max=np.float32(1e-4), n_levels=np.int64(16), thermal_noise=np.bool_(True))
    assert type(cb.G_max) is float and type(cb.n_levels) is int and cb.thermal_noise is True
    assert type(NoiseConfig(temperature=300).temperature) is float


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load_and_validate(name):
    assert name in available_presets()
    cfg = ChipConfig.preset(name)
    assert isinstance(cfg, ChipConfig)
    assert ChipConfig.preset(f"{name}.toml") == cfg
    hash(cfg)


def test_ideal_preset_is_the_default_chip():
    ideal = ChipConfig.preset("ideal")
    assert ideal == ChipConfig.ideal() == ChipConfig()
    cb, n, p = ideal.crossbar, ideal.neuron, ideal.periphery
    assert cb.n_levels == 0 and cb.prog_noise == cb.d2d_bounds == cb.read_noise == 0
    assert not cb.thermal_noise and not n.kTC_noise and ideal.noise.temperature == 0
    assert n.offset_sigma == n.gain_sigma == n.amp_pole_tau == 0
    assert ideal.circuits == CircuitConfig() and not ideal.circuits.gelu_rails
    assert ChipConfig.preset("ideal-windowed").circuits == CircuitConfig()
    assert n.rail_units == 1.0  # the circuit's tanh is the model's rho
    assert p.dac_bits == p.adc_bits == 0
    assert ideal.dynamics.adaptive and ideal.dynamics.average_window == 0
    assert cb.w_max == 1.0


def test_realistic_preset_numbers():
    cfg = ChipConfig.preset("realistic")
    assert cfg.neuron.tau == pytest.approx(10e-9, rel=1e-12)
    assert cfg.tau == cfg.neuron.tau
    assert 1.0 / cfg.neuron.g_leak == pytest.approx(10e3)
    cb = cfg.crossbar
    assert (cb.G_min, cb.G_max, cb.n_levels) == (1e-6, 1e-4, 64)
    assert cb.G_ref == pytest.approx(99e-6) and cb.w_max == pytest.approx(1.0)
    assert (cb.prog_noise, cb.d2d_bounds, cb.read_noise) == (0.005, 0.1, 0.01)
    assert cfg.neuron.C == 1e-12 and cfg.neuron.rail == 1.0
    assert (cfg.neuron.offset_sigma, cfg.neuron.gain_sigma) == (1e-3, 0.02)
    assert (cfg.periphery.dac_bits, cfg.periphery.adc_bits) == (8, 8)
    assert cfg.noise.temperature == 300.0
    assert cfg.noise.kT == pytest.approx(4.14e-21, rel=1e-3)  # k_B (exact, SI 2019) x 300 K
    assert math.sqrt(cfg.noise.kT / cfg.neuron.C) == pytest.approx(64e-6, rel=0.01)
    c = cfg.circuits
    assert (c.mult_gain_sigma, c.mult_offset_sigma, c.softmax_gain_sigma, c.norm_gain_sigma) == (
        0.02, 2e-3, 0.05, 0.02)
    assert c.mult_noise == pytest.approx(math.sqrt(cfg.noise.kT / cfg.neuron.C), rel=0.01)  # kT/C of 1 pF
    # a weak-inversion exponentiator: log gain = sigma(V_T) / (n U_T), 2 mV / (1.5 kT/q) at 300 K
    assert c.softmax_gain_sigma == pytest.approx(c.mult_offset_sigma / (1.5 * cfg.noise.kT / 1.602176634e-19),
                                                 rel=0.05)
    assert c.gelu_rails


@pytest.mark.parametrize("name", PRESETS)
def test_preset_files_are_explicit_and_commented(name):
    """Every required field is spelled out in the preset, and every value carries a comment."""
    path = device_models_dir() / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    for section, cls in SECTIONS.items():
        required = {k for k in cls.field_names() if not cls.spec(k).optional}
        assert required <= set(data[section]), (section, required - set(data[section]))
    for line in path.read_text().splitlines():
        if re.match(r"^\s*[A-Za-z_]\w*\s*=", line):
            assert "#" in line, f"{name}.toml: value without a comment: {line!r}"


@pytest.mark.parametrize("name", PRESETS)
def test_toml_round_trip(tmp_path, name):
    cfg = ChipConfig.preset(name)
    out = tmp_path / "chip.toml"
    text = cfg.to_toml(out)
    assert out.read_text() == text
    back = ChipConfig.from_toml(out)
    assert back == cfg
    assert back.to_dict() == cfg.to_dict()
    assert ChipConfig.from_dict(cfg.to_dict()) == cfg


def test_toml_round_trip_awkward_values(tmp_path):
    cfg = ChipConfig.preset("realistic").replace(
        **{
            "crossbar.G_ref": 1.2345678901234567e-05,
            "crossbar.G_min": 3.3e-7,
            "neuron.C": 1e-15 / 3,
            "noise.temperature": 77,
            "dynamics.settle_time": None,
        }
    )
    out = tmp_path / "chip.toml"
    cfg.to_toml(out)
    back = ChipConfig.from_toml(out)
    assert back == cfg
    assert back.crossbar.G_ref == 1.2345678901234567e-05
    assert back.dynamics.settle_time is None


def test_circuits_section_round_trips_and_sweeps(tmp_path):
    """[circuits] is a chip section like the others: dotted replace, TOML round trip, and as a
    pytree its mismatch and noise amplitudes are leaves while gelu_rails and whether each
    amplitude is zero stay static."""
    import jax

    cfg = ChipConfig.ideal().replace(**{"circuits.mult_gain_sigma": 0.02, "circuits.gelu_rails": True,
                                        "circuits.mult_noise": 1.0 / 3 * 1e-4})
    assert cfg.circuits == CircuitConfig(mult_gain_sigma=0.02, gelu_rails=True, mult_noise=1e-4 / 3)
    assert ChipConfig.ideal().circuits == CircuitConfig()  # original untouched
    out = tmp_path / "chip.toml"
    text = cfg.to_toml(out)
    assert "[circuits]" in text and "gelu_rails = true" in text
    back = ChipConfig.from_toml(out)
    assert back == cfg and back.circuits.mult_noise == 1e-4 / 3
    out.write_text("[circuits]\nsoftmax_gain_sigma = 0.05\n")  # a partial section takes ideal defaults
    assert ChipConfig.from_toml(out) == ChipConfig().replace(**{"circuits.softmax_gain_sigma": 0.05})
    leaves, tree = jax.tree_util.tree_flatten(cfg.circuits)
    assert leaves == [0.02, 0.0, 1e-4 / 3, 0.0, 0.0]
    assert tree == jax.tree_util.tree_structure(cfg.circuits.replace(mult_gain_sigma=0.05))  # same program
    assert tree != jax.tree_util.tree_structure(cfg.circuits.replace(mult_gain_sigma=0.0))  # zero: static
    assert tree != jax.tree_util.tree_structure(cfg.circuits.replace(gelu_rails=False))
    traced = jax.tree_util.tree_unflatten(tree, [jax.numpy.asarray(v) for v in leaves])
    assert traced.on("mult_gain_sigma") and not traced.on("softmax_gain_sigma") and traced.gelu_rails
    with pytest.raises(ValueError, match=r"unknown key 'circuits\.mult_gain'.*allowed keys: mult_gain_sigma"):
        cfg.replace(**{"circuits.mult_gain": 0.02})


def test_unknown_preset_lists_available():
    with pytest.raises(ValueError, match=r"unknown preset 'nope'.*ideal.*realistic"):
        ChipConfig.preset("nope")


def test_env_var_overrides_device_models_dir(tmp_path, monkeypatch):
    mine = ChipConfig.preset("realistic").replace(**{"crossbar.n_levels": 8})
    mine.to_toml(tmp_path / "mine.toml")
    monkeypatch.setenv(DEVICE_MODELS_ENV, str(tmp_path))
    assert device_models_dir() == tmp_path
    assert available_presets() == ["mine"]
    assert ChipConfig.preset("mine").crossbar.n_levels == 8
    with pytest.raises(ValueError, match=r"unknown preset 'realistic'.*mine"):
        ChipConfig.preset("realistic")


def test_unknown_key_and_section(tmp_path):
    with pytest.raises(ValueError, match=r"crossbar\.G_maxx.*allowed keys: G_min, G_max, G_ref"):
        ChipConfig.from_dict({"crossbar": {"G_maxx": 1e-4}})
    with pytest.raises(ValueError, match=r"unknown section \[xbar\].*crossbar, neuron"):
        ChipConfig.from_dict({"xbar": {}})
    path = tmp_path / "bad.toml"
    path.write_text("[neuron]\nC = 1e-12\ntau = 1e-8\n")
    with pytest.raises(ValueError, match=r"bad\.toml.*neuron\.tau.*allowed keys: C, g_leak"):
        ChipConfig.from_toml(path)
    path.write_text("[neuron]\nC = -1e-12\n")
    with pytest.raises(ValueError, match=r"bad\.toml.*neuron\.C must be > 0 F"):
        ChipConfig.from_toml(path)
    path.write_text("[neuron\nC = 1\n")
    with pytest.raises(ValueError, match=r"invalid TOML"):
        ChipConfig.from_toml(path)
    with pytest.raises(ValueError, match=r"section \[neuron\] must be a table"):
        ChipConfig.from_dict({"neuron": 3})


def test_partial_dict_takes_ideal_defaults():
    cfg = ChipConfig.from_dict({"crossbar": {"n_levels": 32}})
    assert cfg == ChipConfig().replace(**{"crossbar.n_levels": 32})
    assert ChipConfig.from_dict({}) == ChipConfig()


def test_replace(realistic):
    swept = realistic.replace(**{"crossbar.n_levels": 16, "neuron.C": 2e-12})
    assert swept.crossbar.n_levels == 16 and swept.neuron.tau == pytest.approx(20e-9)
    assert realistic.crossbar.n_levels == 64  # original untouched
    assert swept.periphery == realistic.periphery
    assert realistic.replace() == realistic
    with pytest.raises(ValueError, match=r"crossbar\.n_levels"):
        realistic.replace(**{"crossbar.n_levels": 1})
    with pytest.raises(ValueError, match=r"unknown key 'crossbar\.levels'.*allowed keys"):
        realistic.replace(**{"crossbar.levels": 16})
    with pytest.raises(ValueError, match=r"unknown config field 'xbar\.n_levels'"):
        realistic.replace(**{"xbar.n_levels": 16})
    # whole sections: instance replaces, mapping updates
    assert realistic.replace(noise=NoiseConfig()).noise.temperature == 0.0
    assert realistic.replace(neuron={"C": 5e-12}).neuron.g_leak == realistic.neuron.g_leak
    with pytest.raises(ValueError, match=r"neuron must be replaced by a NeuronConfig"):
        realistic.replace(neuron=3)
    # section-level replace
    assert realistic.crossbar.replace(n_levels=4).n_levels == 4
    with pytest.raises(ValueError, match=r"crossbar\.read_noise"):
        realistic.crossbar.replace(read_noise=-1.0)


def test_G_ref_default_tracks_range_explicit_does_not(realistic):
    wider = realistic.replace(**{"crossbar.G_max": 2e-4})
    assert wider.crossbar.G_ref == pytest.approx(2e-4 - 1e-6)
    pinned = realistic.replace(**{"crossbar.G_ref": 1e-4}).replace(**{"crossbar.G_max": 2e-4})
    assert pinned.crossbar.G_ref == 1e-4 and pinned.crossbar.w_max == pytest.approx(1.99)
    assert "G_ref" in pinned.to_dict()["crossbar"] and "G_ref" not in wider.to_dict()["crossbar"]
    # back to derived with None
    assert pinned.replace(**{"crossbar.G_ref": None}).crossbar.G_ref == pytest.approx(2e-4 - 1e-6)


def test_configs_are_frozen_and_hashable(realistic):
    with pytest.raises(dataclasses.FrozenInstanceError):
        realistic.neuron.C = 2e-12  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        realistic.crossbar = CrossbarConfig()  # type: ignore[misc]
    assert hash(realistic) == hash(ChipConfig.preset("realistic"))
    assert len({realistic, ChipConfig.preset("realistic"), ChipConfig()}) == 2


def test_chip_accepts_section_mappings_and_rejects_junk():
    assert ChipConfig(neuron={"C": 2e-12}).neuron == NeuronConfig(C=2e-12)
    with pytest.raises(ValueError, match=r"crossbar must be a CrossbarConfig"):
        ChipConfig(crossbar=NeuronConfig())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"chip config must be a mapping"):
        ChipConfig.from_dict([("crossbar", {})])  # type: ignore[arg-type]


def test_constants_and_aliases():
    assert K_B == 1.380649e-23
    assert ReadoutConfig is DynamicsConfig
    assert list(SECTIONS) == [f.name for f in dataclasses.fields(ChipConfig)]


def test_public_classes_document_units():
    for cls in (*SECTIONS.values(), ChipConfig):
        assert cls.__doc__ and len(cls.__doc__) > 40
    for name, cls in SECTIONS.items():
        for key in cls.field_names():
            assert key in cls.__doc__, f"{name}.{key} undocumented"


# Bounds that span two sections (in units of tau = C / g_leak = 10 ns on the realistic chip):
# each was a hang or an overflow before it was checked.
CROSS = [
    ("dynamics.settle_time", 10.0, r"dynamics\.settle_time must be <= 100000 tau = 0\.001 s.*got 10"),
    ("dynamics.sde_dt", 1e-20, r"dynamics\.sde_dt: a settle would take 4e\+13 steps.*1,000,000"),
    ("neuron.amp_pole_tau", 1.0, r"neuron\.amp_pole_tau must be <= 100000 tau"),
]


@pytest.mark.parametrize(("path", "bad", "match"), CROSS, ids=[c[0] for c in CROSS])
def test_sizes_that_drive_work_are_bounded(realistic, tmp_path, path, bad, match):
    with pytest.raises(ConfigError, match=match):
        realistic.replace(**{path: bad})
    section, key = path.split(".")
    d = realistic.to_dict()
    d[section][key] = bad
    f = tmp_path / "chip.toml"
    f.write_text("".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in table.items())
                         for name, table in d.items()))
    with pytest.raises(ConfigError, match=r"chip\.toml: " + match):
        ChipConfig.from_toml(f)


def test_largest_allowed_sizes_are_accepted(realistic):
    tau = realistic.tau
    ok = realistic.replace(**{"dynamics.settle_time": 1e4 * tau, "dynamics.sde_dt": 1e-2 * tau,
                              "noise.temperature": 1000.0, "crossbar.read_noise": 1.0})
    assert ok.dynamics.settle_time == pytest.approx(1e-4)
    # Euler-Maruyama's default step is half the amplifier pole: a 1e-6 tau pole is too fast for
    # a 40 tau window, the exact-decay default step does not depend on the pole.
    with pytest.raises(ConfigError, match=r"neuron\.amp_pole_tau \(euler-maruyama"):
        realistic.replace(**{"dynamics.integrator": "euler-maruyama", "neuron.amp_pole_tau": 1e-6 * tau})
    assert realistic.replace(**{"neuron.amp_pole_tau": 1e-6 * tau}).neuron.amp_pole_tau == 1e-6 * tau


def test_file_errors_are_one_line_naming_the_file(tmp_path):
    for path, match in [(tmp_path, r"is a directory; expected a chip config TOML file"),
                        (tmp_path / "nope.toml", r"nope\.toml: no such file")]:
        with pytest.raises(ConfigError, match=match):
            ChipConfig.from_toml(path)
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe[crossbar]")
    with pytest.raises(ConfigError, match=r"bin\.toml: invalid TOML: not UTF-8"):
        ChipConfig.from_toml(bad)
    top = tmp_path / "top.toml"
    top.write_text("hardware = 5\n")
    with pytest.raises(ConfigError, match=r"top\.toml: unknown key 'hardware' in chip config"):
        ChipConfig.from_toml(top)
