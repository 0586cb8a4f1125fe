"""The sections of a :class:`~analogeq.hardware.config.ChipConfig`, one frozen dataclass per
block of the chip, every field validated by :mod:`analogeq.spec` (SI units).

======================  =================================================================
section                 what it describes
======================  =================================================================
``crossbar``            :class:`CrossbarConfig`: differential conductance pairs, levels,
                        programming / read noise, device-to-device bounds
``neuron``              :class:`NeuronConfig`: RC node, nonlinearity circuit (rails, offset,
                        gain mismatch), amplifier pole, ``kT/C`` noise
``periphery``           :class:`PeripheryConfig`: DAC, ADC, sample-and-hold
``noise``               :class:`NoiseConfig`: temperature (sets every thermal noise)
``dynamics``            :class:`DynamicsConfig` (alias ``ReadoutConfig``): settle window,
                        steady-state tolerance, time-averaged readout
``energy``              :class:`EnergyConfig`: energy and time of a conversion and of a
                        programming pulse (for :mod:`analogeq.energy`)
``circuits``            :class:`CircuitConfig`: the equilibrium-transformer block's own
                        circuits (multipliers, softmax exponentiators, normalization, GELU
                        rails); a layered chip has none of them and ignores the section
======================  =================================================================

Every default is the *ideal* chip (every non-ideality off); the ``energy`` section holds
literature costs. Bounds that involve two sections (settle window in units of ``tau``, SDE steps
per settle) are checked by :class:`~analogeq.hardware.config.ChipConfig`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from analogeq.hardware.circuits import CircuitConfig
from analogeq.hardware.constants import K_B
from analogeq.spec import ConfigError, Spec, boolean, choice, integer, real

MAX_LEVELS = 1 << 16

MAX_TILE = 1 << 16
"""Largest physical tile side (lines); larger is a typo (a tile's wires would be centimetres)."""

TILE_SUMS = ("analog", "digital")
TILE_GAINS = ("fixed", "auto")
WIRE_SOLVERS = ("exact", "relax")
"""Most programmable levels per device (16 bits; the finest multi-level cells reported store
a few bits)."""

MAX_TEMPERATURE = 1000.0
"""Highest chip temperature [K] accepted (silicon circuits stop working far below it)."""

__all__ = [
    "MAX_LEVELS",
    "MAX_TEMPERATURE",
    "CircuitConfig",
    "CrossbarConfig",
    "DynamicsConfig",
    "EnergyConfig",
    "IDEAL_CONVERTER_COST_BITS",
    "NeuronConfig",
    "NoiseConfig",
    "PeripheryConfig",
    "ReadoutConfig",
    "SECTIONS",
]


def optreal(default, doc, unit="", **bounds):
    """A :func:`~analogeq.spec.real` that may also be ``None`` (meaning given in ``doc``)."""
    return real(default, doc, unit, optional=True, **bounds)


@dataclass(frozen=True)
class CrossbarConfig(Spec):
    """Crossbar tile of differential conductance pairs.

    A signed weight is a pair of devices, ``W = (G+ - G-) / G_ref`` with each ``G`` in
    ``[G_min, G_max]``.

    Attributes:
        G_min: minimum device conductance [S], ``>= 0``. Default ``0.0``.
        G_max: maximum device conductance [S], ``> G_min``. Default ``1e-4`` (100 uS).
        G_ref: weight scale [S], ``> 0``; default ``None`` -> ``G_max - G_min`` (so ``|W| <= 1``
            maps onto the full conductance range). Left at the default it is re-derived when
            ``G_min`` / ``G_max`` change through :meth:`ChipConfig.replace`.
        n_levels: programmable conductance levels per device, evenly spaced over
            ``[G_min, G_max]``; ``0`` = continuous, else in ``2..65536``. Default ``0``.
        prog_noise: std of the programmed conductance relative to ``G_max - G_min``
            (dimensionless, in ``[0, 1]``), drawn once per programming. Default ``0.0``.
        d2d_bounds: relative std of each device's own ``G_min`` / ``G_max`` (device-to-device
            variation, drawn once per chip), in ``[0, 1)``. Default ``0.0``.
        read_noise: relative std of a device's conductance per MVM read, multiplicative:
            ``G_read = G (1 + read_noise xi)`` (dimensionless, in ``[0, 1]``: beyond 100 % the
            read conductance is as often negative as not). Default ``0.0``.
        read_noise_scope: how often read noise is drawn: ``"phase"`` (a new draw for every
            settle: the free phase and each nudged phase of a sample see independent
            conductance fluctuations) or ``"sample"`` (one draw per sample, shared by its free
            and nudged phases: noise slower than a sample's settles, such as the 1/f read noise
            of PCM over a microsecond). Default ``"phase"``.
        thermal_noise: Johnson current noise of every device, PSD ``4 k_B T G`` [A^2/Hz]
            (temperature from :class:`NoiseConfig`). Default ``False``.
        tile_rows, tile_cols: size of one physical tile, sense lines (neurons) x drive lines
            (inputs); a layer's crossbar larger than that is split over a grid of tiles. ``0``
            = unbounded (a layer is one tile). Default ``0``.
        tile_sum: how the partial outputs of the tiles feeding one neuron add: ``"analog"``
            (their currents summed on the neuron's node) or ``"digital"`` (each tile's output
            digitized by its own ADC, then summed; ADCs of ``tile_adc_bits`` over
            ``+-tile_adc_range``). Default ``"analog"``.
        tile_adc_bits: resolution of a tile's partial-sum ADC (``tile_sum = "digital"``), in
            ``1..16``. Default ``8``.
        tile_adc_range: full scale of a tile's partial-sum ADC, ``+-tile_adc_range`` [V], ``> 0``.
            Default ``1.0``.
        tile_gain: transimpedance gain of each tile: ``"fixed"`` (every tile ``1 / G_ref``) or
            ``"auto"`` (chosen at programming time from the weights the tile holds, so that
            ``gain_headroom`` times its largest ``|w|`` spans the conductance window: a tile of
            small weights uses its levels on them). Default ``"fixed"``.
        gain_headroom: with ``tile_gain = "auto"``, the factor by which the weights of a tile may
            grow past the largest one programmed before its devices reach their bounds, in
            ``[1, 1000]``. Default ``2.0``.
        r_segment: wire resistance of one cell segment of the drive and sense lines [Ohm], in
            ``[0, 1e4]``: with any wire resistance above 0 the read is the solution of each
            physical tile's resistive network (IR drop; :mod:`analogeq.hardware.wires`).
            Default ``0.0`` (ideal wires).
        r_drive: output resistance of a drive line's driver [Ohm], in ``[0, 1e7]``. Default ``0.0``.
        r_sense: resistance from a sense line's last cell to its amplifier's virtual ground
            [Ohm], in ``[0, 1e7]``. Default ``0.0``.
        wire_solver: how the network is solved once per settle: ``"exact"`` (line Gauss-Seidel
            to the dtype's precision, adjoint derivatives) or ``"relax"`` (``wire_sweeps``
            sweeps, with the error bound of :mod:`analogeq.hardware.wires`). Default ``"exact"``.
        wire_sweeps: sweeps of ``wire_solver = "relax"``, in ``1..1000``. Default ``4``.
    """

    _section: ClassVar[str] = "crossbar"

    G_min: float = real(0.0, "minimum device conductance", "S", ge=0.0)
    G_max: float = real(1e-4, "maximum device conductance", "S", gt=0.0)
    G_ref: float | None = optreal(
        None, "weight scale W = (G+ - G-)/G_ref; None = G_max - G_min", "S", gt=0.0
    )
    n_levels: int = integer(0, "programmable conductance levels per device", ge=2, le=MAX_LEVELS,
                            also=(0,), allowed=f"0 (continuous) or >= 2 (at most {MAX_LEVELS})")
    prog_noise: float = real(
        0.0, "relative std of programmed G w.r.t. G_max - G_min", "", ge=0.0, le=1.0
    )
    d2d_bounds: float = real(
        0.0, "device-to-device relative std of each device's G_min/G_max", "", ge=0.0, lt=1.0
    )
    read_noise: float = real(0.0, "relative std of G per MVM read", "", ge=0.0, le=1.0)
    read_noise_scope: str = choice("phase", "how often read noise is drawn: per settle ('phase') "
                                   "or once per sample for all its phases ('sample')", ("phase", "sample"))
    thermal_noise: bool = boolean(False, "Johnson current noise sqrt(4 k_B T G) per device")
    tile_rows: int = integer(0, "sense lines (neurons) of one physical tile; 0 = a layer is one tile",
                             ge=1, le=MAX_TILE, also=(0,), allowed=f"0 (unbounded) or 1..{MAX_TILE}")
    tile_cols: int = integer(0, "drive lines (inputs) of one physical tile; 0 = a layer is one tile",
                             ge=1, le=MAX_TILE, also=(0,), allowed=f"0 (unbounded) or 1..{MAX_TILE}")
    tile_sum: str = choice("analog", "partial outputs of tiles feeding one neuron: analog (currents "
                           "summed on its node) or digital (one ADC per tile, summed digitally)",
                           TILE_SUMS)
    tile_adc_bits: int = integer(8, "resolution of each tile's partial-sum ADC (tile_sum = digital)",
                                 ge=1, le=16)
    tile_adc_range: float = real(1.0, "full scale +-tile_adc_range of a tile's partial-sum ADC", "V",
                                 gt=0.0)
    tile_gain: str = choice("fixed", "transimpedance gain per tile: fixed (1/G_ref) or auto (set at "
                            "programming from the tile's weights, gain_headroom x max|w| spans the "
                            "conductance window)", TILE_GAINS)
    gain_headroom: float = real(2.0, "tile_gain = auto: growth room of a tile's weights past the "
                                "largest programmed |w|", "", ge=1.0, le=1000.0)
    r_segment: float = real(0.0, "wire resistance per cell segment of drive and sense lines (IR drop)",
                            "Ohm", ge=0.0, le=1e4)
    r_drive: float = real(0.0, "output resistance of each drive line's driver", "Ohm", ge=0.0, le=1e7)
    r_sense: float = real(0.0, "resistance from a sense line's end to its amplifier's virtual ground",
                          "Ohm", ge=0.0, le=1e7)
    wire_solver: str = choice("exact", "solve of a tile's wire network: exact (to precision) or relax "
                              "(wire_sweeps line Gauss-Seidel sweeps, bounded error)", WIRE_SOLVERS)
    wire_sweeps: int = integer(4, "line Gauss-Seidel sweeps of wire_solver = relax", ge=1, le=1000)

    _G_ref_auto: bool = field(default=False, init=False, repr=False, compare=False)

    def _check(self) -> None:
        if not self.G_min < self.G_max:
            raise ConfigError(
                f"crossbar.G_min must be < crossbar.G_max "
                f"(got G_min={self.G_min:g} S, G_max={self.G_max:g} S)"
            )
        if self.G_ref is None:
            object.__setattr__(self, "G_ref", self.G_max - self.G_min)
            object.__setattr__(self, "_G_ref_auto", True)

    def _derived(self, key: str) -> bool:
        return key == "G_ref" and self._G_ref_auto

    @property
    def wired(self) -> bool:
        """Whether wire resistance is modelled (a static switch: any of ``r_segment``,
        ``r_drive``, ``r_sense`` nonzero)."""
        return self.on("r_segment") or self.on("r_drive") or self.on("r_sense")

    @property
    def w_max(self) -> float:
        """Largest representable ``|W| = (G_max - G_min) / G_ref`` (dimensionless)."""
        return (self.G_max - self.G_min) / self.G_ref

    @property
    def on_off_ratio(self) -> float:
        """``G_max / G_min`` (dimensionless; ``inf`` when ``G_min == 0``)."""
        return self.G_max / self.G_min if self.G_min > 0 else math.inf


@dataclass(frozen=True)
class NeuronConfig(Spec):
    """Neuron: an RC node followed by a nonlinearity circuit.

    The node obeys ``C dv/dt = -g_leak v + I_in``; ``tau = C / g_leak`` [s]. A state value ``s``
    (dimensionless, as in the model) is the node voltage ``v = s * v_unit``. The nonlinearity
    circuit outputs ``rail * tanh(v / rail)`` [V]: in state units
    ``rho_hw(s) = (rail / v_unit) tanh(s v_unit / rail)``, which is exactly the model's
    ``rho = tanh`` when ``rail == v_unit`` (rails at state +-1).

    Attributes:
        C: node capacitance [F], ``> 0``. Default ``1e-12`` (1 pF).
        g_leak: node leak conductance [S], ``> 0``. Default ``1e-4`` (10 kOhm).
        rail: output rails of the nonlinearity circuit, ``+-rail`` [V], ``> 0``. Default ``1.0``.
        v_unit: voltage that represents state value 1.0 [V], ``> 0``. Default ``1.0``.
        offset_sigma: std of the input-referred offset voltage of each neuron's nonlinearity
            circuit [V], drawn once per chip, in ``[0, 10]``. Default ``0.0``.
        gain_sigma: relative std of each neuron's nonlinearity gain, drawn once per chip
            (dimensionless, in ``[0, 1]``). Default ``0.0``.
        amp_pole_tau: time constant of the amplifier's extra first-order state [s]:
            ``amp_pole_tau dy/dt = rho_hw(v) - y``; ``0`` = no pole (infinite bandwidth),
            ``>= 0`` and at most ``MAX_SETTLE_TAU`` (``1e5``) ``tau``. Default ``0.0``.
        kTC_noise: thermal noise of the node (leak resistor into ``C``, integrated variance
            ``k_B T / C`` [V^2]; temperature from :class:`NoiseConfig`). Default ``False``.
    """

    _section: ClassVar[str] = "neuron"

    C: float = real(1e-12, "node capacitance", "F", gt=0.0)
    g_leak: float = real(1e-4, "node leak conductance", "S", gt=0.0)
    rail: float = real(1.0, "output rails +-rail of the nonlinearity circuit", "V", gt=0.0)
    v_unit: float = real(1.0, "voltage representing state value 1.0", "V", gt=0.0)
    offset_sigma: float = real(
        0.0, "std of the input-referred offset per neuron", "V", ge=0.0, le=10.0
    )
    gain_sigma: float = real(0.0, "relative std of the per-neuron gain", "", ge=0.0, le=1.0)
    amp_pole_tau: float = real(
        0.0, "amplifier pole time constant, 0 = no pole", "s", ge=0.0
    )
    kTC_noise: bool = boolean(False, "kT/C thermal noise of the neuron node")

    @property
    def tau(self) -> float:
        """Node time constant ``C / g_leak`` [s]."""
        return self.C / self.g_leak

    @property
    def rail_units(self) -> float:
        """Rails in state units, ``rail / v_unit`` (dimensionless; 1 = the model's tanh)."""
        return self.rail / self.v_unit


_BITS_ALLOWED = "0 (ideal, no quantization or clipping) or in 1..16"


@dataclass(frozen=True)
class PeripheryConfig(Spec):
    """Converters and sample-and-hold.

    A converter with ``bits > 0`` clips to ``[-range, +range]`` [V] and quantizes to
    ``2**bits`` uniform levels over that interval; ``bits = 0`` is ideal (no quantization, no
    clipping; the range is then unused).

    Attributes:
        dac_bits: input DAC resolution, ``0`` (ideal) or ``1..16``. Default ``0``.
        dac_range: DAC full scale, outputs in ``[-dac_range, dac_range]`` [V], ``> 0``.
            Default ``1.0``.
        adc_bits: read-out ADC resolution, ``0`` (ideal) or ``1..16``. Default ``0``.
        adc_range: ADC full scale, inputs in ``[-adc_range, adc_range]`` [V], ``> 0``.
            Default ``1.0``.
        sample_hold: the free-phase state is held on-chip in an analog sample-and-hold
            (``True``) rather than read out through the ADC and stored digitally (``False``).
            Default ``True``.
        contrast_gain: gain of a difference amplifier that reads each nudged state against the
            held free state before the ADC (dimensionless, ``1..1e4``): the EP contrast is then
            ``quantize(G (s_beta - s*)) / G``, its quantization step ``1/G`` of the ADC's, and it
            clips at ``+-adc_range / G`` (correlated double sampling against the
            sample-and-hold). ``1`` = no difference amplifier: the contrast is the difference
            of two absolute ADC reads. Default ``1.0``.
    """

    _section: ClassVar[str] = "periphery"

    dac_bits: int = integer(0, "input DAC resolution in bits", ge=1, le=16, also=(0,),
                            allowed=_BITS_ALLOWED)
    dac_range: float = real(1.0, "DAC full scale, +-dac_range", "V", gt=0.0)
    adc_bits: int = integer(0, "read-out ADC resolution in bits", ge=1, le=16, also=(0,),
                            allowed=_BITS_ALLOWED)
    adc_range: float = real(1.0, "ADC full scale, +-adc_range", "V", gt=0.0)
    sample_hold: bool = boolean(True, "analog sample-and-hold of the free state")
    contrast_gain: float = real(1.0, "gain of the difference amplifier reading a nudged state "
                                "against the held free state before the ADC (1 = none)", ge=1.0, le=1e4)


@dataclass(frozen=True)
class NoiseConfig(Spec):
    """Chip-wide noise environment. Which noise sources are on is set next to each source
    (``crossbar.thermal_noise``, ``crossbar.read_noise``, ``crossbar.prog_noise``,
    ``neuron.kTC_noise``); the temperature sets the size of every thermal one.

    Attributes:
        temperature: chip temperature [K], in ``[0, MAX_TEMPERATURE]`` = ``[0, 1000]`` (``0`` =
            no thermal noise). Default ``0.0``.
    """

    _section: ClassVar[str] = "noise"

    temperature: float = real(0.0, "chip temperature", "K", ge=0.0, le=MAX_TEMPERATURE)

    @property
    def kT(self) -> float:
        """Thermal energy ``k_B T`` [J]."""
        return K_B * self.temperature


@dataclass(frozen=True)
class DynamicsConfig(Spec):
    """How the analog dynamics are run and read out.

    Attributes:
        settle_time: fixed settle window [s] after which the state is read (the readout time is
            a hardware parameter), ``> 0`` and at most ``MAX_SETTLE_TAU`` (``1e5``) ``tau``;
            ``None`` = integrate adaptively until the steady-state event. Default ``None``.
        steady_tol: relative tolerance of the steady state (dimensionless, in ``(0, 1)``): the
            stopping event in adaptive mode, the convergence check of a fixed window.
            Default ``1e-6``.
        average_window: readout averaged over the last ``average_window`` seconds of the settle
            window (or after the steady-state event) [s], ``>= 0``; ``0`` = instantaneous
            sample. In fixed mode ``average_window <= settle_time``. Default ``0.0``.
        sde_dt: time step [s] of the fixed-step integrators (noisy settles and fixed-window
            noise-free settles), ``> 0``; ``None`` = the integrator's default: ``0.25 tau``
            for ``"exact-decay"`` (chosen by accuracy, see
            :data:`analogeq.hardware.integrators.DEFAULT_STEP`), half the fastest time
            constant (``tau`` or the amplifier pole) for ``"euler-maruyama"``. A settle window
            may take at most ``MAX_SDE_STEPS`` (``1e6``) steps. Default ``None``.
        integrator: how fixed-window and noisy settles are integrated: ``"exact-decay"`` (the
            node leak and amplifier pole integrated exactly, noise with its exact per-step
            Ornstein--Uhlenbeck covariance; :mod:`analogeq.hardware.integrators`),
            ``"euler-maruyama"`` (diffrax Euler--Maruyama for noise, Tsit5 without) or
            ``"tsit5"`` (adaptive Tsit5, noise-free only). Adaptive settles
            (``settle_time = None``) always use Tsit5 to the steady state. Default
            ``"exact-decay"``.
        nudged_time: settle window of each nudged phase [s], which starts from the held free
            state (already at its equilibrium up to ``O(beta)``) and so needs less time than
            the free phase from reset; its readout averages the last ``average_window`` of it
            (clipped to the window). ``> 0``; a nudged phase never settles longer than the free
            one, so the window is ``min(nudged_time, settle_time)`` (a preset's nudged window
            follows a shorter ``settle_time`` set over it), and adaptive settles
            (``settle_time = None``) run every phase to its steady state. ``None`` =
            ``settle_time``. Default ``None``.
    """

    _section: ClassVar[str] = "dynamics"

    settle_time: float | None = optreal(
        None, "fixed settle window; None = adaptive to steady state", "s", gt=0.0
    )
    steady_tol: float = real(1e-6, "relative steady-state tolerance", "", gt=0.0, lt=1.0)
    average_window: float = real(
        0.0, "time-averaged readout window, 0 = instantaneous", "s", ge=0.0
    )
    sde_dt: float | None = optreal(
        None, "fixed time step of the noisy / fixed-window dynamics; None = the integrator's "
        "default (exact-decay 0.25 tau, euler-maruyama half the fastest time constant)", "s", gt=0.0
    )
    integrator: str = choice(
        "exact-decay", "integrator of fixed-window and noisy settles",
        ("exact-decay", "euler-maruyama", "tsit5"),
    )
    nudged_time: float | None = optreal(
        None, "settle window of a nudged phase (from the held free state), capped at "
        "settle_time; None = settle_time",
        "s", gt=0.0
    )

    def _check(self) -> None:
        if self.settle_time is not None and self.average_window > self.settle_time:
            raise ConfigError(
                "dynamics.average_window must be <= dynamics.settle_time (the readout averages "
                "the last average_window seconds of the settle window); "
                f"got average_window={self.average_window:g} s, "
                f"settle_time={self.settle_time:g} s"
            )

    @property
    def adaptive(self) -> bool:
        """Whether the dynamics run adaptively to the steady state (``settle_time is None``)."""
        return self.settle_time is None

    @property
    def nudged_window(self) -> float | None:
        """Settle window of a nudged phase [s]: ``min(nudged_time, settle_time)``, else
        ``settle_time`` (``None`` in adaptive mode)."""
        if self.nudged_time is None or self.settle_time is None:
            return self.settle_time
        return min(self.nudged_time, self.settle_time)


ReadoutConfig = DynamicsConfig
"""Alias of :class:`DynamicsConfig` (the readout timing is part of the dynamics section)."""

IDEAL_CONVERTER_COST_BITS = 8
"""Resolution at which an ideal converter (``bits = 0``) is charged energy: it still converts,
and 8 bits is the resolution of the converters in the realistic preset and in ISAAC."""


@dataclass(frozen=True)
class EnergyConfig(Spec):
    """Energy and time of the chip's conversions and programming pulses (:mod:`analogeq.energy`).

    The dissipation of the crossbar, the leak and the node capacitance follows from the other
    sections (conductances, ``g_leak``, ``C``, ``v_unit``); this section holds what those do not
    determine. A converter of ``b`` bits costs ``fom * 2**b`` per conversion (a Walden-style
    figure of merit taken at the nominal resolution, so the estimate is on the high side of one
    taken with the effective bits); an ideal converter (``bits = 0``) is charged as
    :data:`IDEAL_CONVERTER_COST_BITS` = 8 bits, since it still converts.

    Attributes:
        adc_fom: ADC energy per conversion step [J], ``>= 0``. Default ``6.5e-15``: ISAAC
            (Shafiee et al., ISCA 2016) budgets 16 mW for 8 ADCs of 8 bits at 1.2 GS/s, i.e.
            1.67 pJ per conversion (its ADC is Kull et al., ISSCC 2013, a 3.1 mW 8-bit 1.2 GS/s
            SAR ADC in 32 nm SOI), / 2**8 = 6.5 fJ per step. Murmann's ADC Performance Survey
            (ISSCC/VLSI 1997-2022) puts GS/s designs at tens of fJ per effective step and the
            best slow SAR ADCs below 1 fJ, so this is a mid-range number.
        adc_time: time of one ADC conversion [s], ``> 0``. Default ``8.33e-10`` (1 / 1.2 GS/s,
            the same ADC).
        adc_share: read-out lines of one neuron layer multiplexed onto one ADC, in ``1..2**20``; a layer
            of ``n`` neurons has ``ceil(n / adc_share)`` ADCs and layers convert in parallel.
            Default ``128``: ISAAC shares one ADC among the 128 bit lines of a crossbar.
        dac_fom: DAC energy per conversion step [J], ``>= 0``. Default ``1.33e-15`` (order of
            magnitude): a binary-weighted capacitive DAC switches on average ``1.33 * 2**b``
            unit capacitors' worth of ``C_u V^2`` per conversion (Saberi et al., IEEE TCAS-I 58,
            2011, conventional switching; 1363 ``C_u V^2`` at 10 bits), here with
            ``C_u = 1 fF`` and ``V = 1 V`` (design choice). The power the DAC delivers into the
            crossbar is counted in the crossbar read energy, not here.
        dac_time: time of one DAC conversion [s], ``> 0``; the DACs of a phase convert in
            parallel. Default ``1e-9`` (order of magnitude, design choice: the same ~1 ns scale
            as the ADC conversion).
        pulse_energy: energy of one programming pulse [J], ``>= 0``. Default ``2e-12`` (order of
            magnitude): NeuroSim's write energy ``V_w^2 G t_w`` per pulse (its 1T1R rule,
            without the wire charging) with its IdealDevice pulse ``V_w = 2 V``,
            ``t_w = 10 ns`` on a device in mid range, ``G = 50 uS`` of the 0-100 uS window.
            NeuroSim's Ag:a-Si device (3.2 V, 300 us, 38.5 nS) gives 1.2e-10 J.
        pulse_width: duration of one programming pulse [s], ``> 0``. Default ``1e-8`` (10 ns,
            NeuroSim IdealDevice; its Ag:a-Si device takes 300 us).
    """

    _section: ClassVar[str] = "energy"

    adc_fom: float = real(6.5e-15, "ADC energy per conversion step, E = adc_fom 2^bits", "J",
                           ge=0.0)
    adc_time: float = real(8.33e-10, "time of one ADC conversion", "s", gt=0.0)
    adc_share: int = integer(128, "read-out lines of a layer sharing one ADC", ge=1, le=1 << 20)
    dac_fom: float = real(1.33e-15, "DAC energy per conversion step, E = dac_fom 2^bits", "J",
                           ge=0.0)
    dac_time: float = real(1e-9, "time of one DAC conversion", "s", gt=0.0)
    pulse_energy: float = real(2e-12, "energy of one programming pulse", "J", ge=0.0)
    pulse_width: float = real(1e-8, "duration of one programming pulse", "s", gt=0.0)

    @staticmethod
    def cost_bits(bits: int) -> int:
        """Resolution a conversion is charged at: ``bits``, or
        :data:`IDEAL_CONVERTER_COST_BITS` for an ideal converter (``bits = 0``)."""
        return bits if bits > 0 else IDEAL_CONVERTER_COST_BITS

    def adc_energy(self, bits: int) -> float:
        """Energy of one ADC conversion at ``bits`` resolution [J]."""
        return self.adc_fom * 2.0 ** self.cost_bits(bits)

    def dac_energy(self, bits: int) -> float:
        """Energy of one DAC conversion at ``bits`` resolution [J]."""
        return self.dac_fom * 2.0 ** self.cost_bits(bits)


SECTIONS: dict[str, type[Spec]] = {
    "crossbar": CrossbarConfig,
    "neuron": NeuronConfig,
    "periphery": PeripheryConfig,
    "noise": NoiseConfig,
    "dynamics": DynamicsConfig,
    "energy": EnergyConfig,
    "circuits": CircuitConfig,
}
"""Section name -> section class, in the order of :class:`ChipConfig`'s fields."""



# --------------------------------------------------------------------------------------------
# Sections as JAX pytrees: numbers traced, switches static
# --------------------------------------------------------------------------------------------

TRACED_FIELDS: dict[str, tuple[str, ...]] = {
    "crossbar": ("G_min", "G_max", "G_ref", "n_levels", "prog_noise", "d2d_bounds", "read_noise",
                 "tile_adc_range", "gain_headroom", "r_segment", "r_drive", "r_sense"),
    "neuron": ("rail", "v_unit", "offset_sigma", "gain_sigma"),
    "periphery": ("dac_range", "adc_range"),
    "noise": ("temperature",),
    "dynamics": (),
    "energy": (),
    "circuits": ("mult_gain_sigma", "mult_offset_sigma", "mult_noise", "softmax_gain_sigma",
                 "norm_gain_sigma"),
}
"""Fields of each section that are pytree leaves: a compiled step takes them as traced arrays, so
a new value reuses the compiled program. Everything else is static (part of the program): the
switches (bools such as ``circuits.gelu_rails``, choices, converter bits, ``None`` vs set),
and the numbers that set loop lengths and matrices built at trace time: ``neuron.C`` /
``g_leak`` (their ratio ``tau`` is the unit of every window, so it sets the integrators' step
counts), ``neuron.amp_pole_tau`` (the exact-decay matrix), the ``dynamics`` windows and
tolerances, and the ``energy`` costs.

The rule for a traced number: whether it is zero is static too (``on(name)``), since zero
switches a block off (no read-noise draw, no programming noise, continuous conductances for
``n_levels = 0``). So ``read_noise`` 0.01 -> 0.02 reuses the compiled step, 0 -> 0.01 compiles
once more."""


def _flatten(obj):
    cls = type(obj)
    names = TRACED_FIELDS[cls._section]
    nonzero = obj.__dict__.get("_nonzero")
    if nonzero is None:
        nonzero = tuple(bool(getattr(obj, n) != 0) for n in names)
    static = tuple((n, getattr(obj, n)) for n in cls.field_names() if n not in names)
    aux = (static, nonzero, obj.__dict__.get("_G_ref_auto", False))
    return tuple(getattr(obj, n) for n in names), aux


def _unflatten(cls, aux, leaves):
    import jax

    static, nonzero, g_ref_auto = aux
    obj = object.__new__(cls)  # no validation: the leaves may be tracers or pytree stand-ins
    for name, value in static:
        object.__setattr__(obj, name, value)
    for name, value in zip(TRACED_FIELDS[cls._section], leaves):
        # Hardware numbers are constants of the physics, never trained: gradients stop here, so
        # a gradient over a chip has zeros at its configuration.
        if isinstance(value, jax.core.Tracer) and jax.numpy.issubdtype(value.dtype, jax.numpy.inexact):
            value = jax.lax.stop_gradient(value)
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "_nonzero", nonzero)
    if cls is CrossbarConfig:
        object.__setattr__(obj, "_G_ref_auto", g_ref_auto)
    return obj


def _on(self, name: str) -> bool:
    """Whether the traced field ``name`` is nonzero: a static switch that holds while the value is
    a traced array inside a compiled function (see :data:`TRACED_FIELDS`)."""
    nonzero = self.__dict__.get("_nonzero")
    if nonzero is None:
        return bool(getattr(self, name) != 0)
    return nonzero[TRACED_FIELDS[self._section].index(name)]


def _register() -> None:
    import functools

    import jax

    for cls in SECTIONS.values():
        cls.on = _on
        jax.tree_util.register_pytree_node(cls, _flatten, functools.partial(_unflatten, cls))


_register()
