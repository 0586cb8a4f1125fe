"""Thermal noise in an exported netlist: ngspice transient random current sources.

A conductance ``G`` at temperature ``T`` has Johnson-Nyquist current noise of one-sided power
spectral density ``S = 4 k_B T G`` [A^2/Hz] (Johnson 1928; Nyquist 1928, Phys. Rev. 32:110). In
ngspice it is an independent current source in parallel with the conductance that draws a
Gaussian value of rms ``NA`` every ``NT`` seconds (a breakpoint). Independent samples of variance
``NA^2`` spaced ``NT`` have the one-sided density ``2 NA^2 NT`` up to ``1/(2 NT)``, so

    NA = sqrt(S / (2 NT)) = sqrt(2 k_B T G / NT).

Two source kinds (Ngspice User's Manual, section 4.1.7 "Transient noise source" and 4.1.8
"Random voltage source"; section 15.3.10 "Transient noise analysis (at low frequency)"):

* ``trrandom`` (default): ``I n+ n- DC 0 trrandom(2 NT 0 NA 0)``, the value held for ``NT``
  (density shaped by ``sinc^2(f NT)``). Its draws come from ngspice's combined Tausworthe
  generator, which ``.options seed`` reseeds at every netlist load: the waveforms are
  reproducible.
* ``trnoise``: ``I n+ n- DC 0 trnoise(NA NT 0 0)``, linear between samples (``sinc^4(f NT)``).
  Its draws come from ngspice's Wallace pool generator, which is seeded with the process id when
  the library loads (ngspice ``src/frontend/trannoise/wallace.c``, ``initw``) and which
  ``.options seed`` does not reseed: the waveforms differ between processes. Measured here
  (ngspice 39, 64 RC nodes x 200 tau, ``NT = 0.02 tau``): the node variance scattered with a
  standard deviation of 2.0 % between fresh processes (1.6x the batch-means standard error) and
  drifted by +4 to +7 % over five consecutive runs in one process; the same measurement at
  800 tau scattered by 2.6 %. The rms of the samples themselves drifted by -3.0 % to +3.5 %
  over eight runs in one process. Use it to compare with netlists that use ``trnoise``.

The sampling shapes the density; behind an RC node of time constant ``tau`` this changes the node
variance by the factor :func:`interpolation_factor` (``NT = 0.02 tau``: 0.9907 for ``trnoise``,
0.9934 for ``trrandom``), which the noise validation states next to ``kT/C``.

Which sources an exported chip carries (:class:`NoiseSpec`): the leak conductance of every
neuron (the ``kT/C`` noise of the node) and every crossbar device (a source across each device
resistor, into the column's virtual ground). This is the noise model of
:meth:`analogeq.hardware.Chip.noise` (two-sided ``2 k T G`` there is one-sided ``4 k T G`` here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from analogeq.hardware.constants import K_B


def _num(v: float) -> str:
    """A number as ngspice reads it back exactly (Python's shortest round-trip repr)."""
    return repr(float(v))


SOURCES = ("trrandom", "trnoise")


@dataclass(frozen=True)
class NoiseSpec:
    """Which thermal noise sources a netlist carries and how they are sampled.

    Attributes:
        temperature: noise temperature [K] (> 0).
        leak: a ``4 k T g_leak`` current source across each neuron's leak resistor (``kT/C``).
        devices: a ``4 k T G`` current source across every crossbar device.
        step: sample spacing ``NT`` of every source, in units of the neuron time constant
            ``tau`` (in ``[1e-4, 0.5]``); the ``.tran`` step is at most this. Default ``0.02``.
        seed: ngspice's random seed (``.options seed``; a positive integer). It makes
            ``trrandom`` sources reproducible, not ``trnoise`` (module docstring).
        source: ``"trrandom"`` (held samples, seeded; default) or ``"trnoise"`` (linear
            between samples, seeded by ngspice's process id).
    """

    temperature: float = 300.0
    leak: bool = True
    devices: bool = True
    step: float = 0.02
    seed: int = 1
    source: str = "trrandom"

    def __post_init__(self) -> None:
        if not (isinstance(self.temperature, (int, float)) and math.isfinite(self.temperature)
                and self.temperature > 0):
            raise ValueError(f"NoiseSpec.temperature must be a finite number > 0 K; got {self.temperature!r}")
        if not (isinstance(self.step, (int, float)) and 1e-4 <= self.step <= 0.5):
            raise ValueError(f"NoiseSpec.step must be in [1e-4, 0.5] (units of tau); got {self.step!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 1 <= self.seed < 2**31):
            raise ValueError(f"NoiseSpec.seed must be an integer in [1, 2^31); got {self.seed!r}")
        if self.source not in SOURCES:
            raise ValueError(f"NoiseSpec.source must be one of {', '.join(SOURCES)}; got {self.source!r}")
        if not (self.leak or self.devices):
            raise ValueError("NoiseSpec: switch on leak and/or devices (or pass noise=None for none)")

    def source_line(self, name: str, n_plus: str, n_minus: str, conductance: float, nt: float) -> str:
        """:func:`noise_source` at this spec's temperature and source kind (``nt`` in seconds)."""
        return noise_source(name, n_plus, n_minus, conductance, self.temperature, nt, self.source)

    @classmethod
    def of_chip(cls, config, step: float = 0.02, seed: int = 1, source: str = "trrandom") -> NoiseSpec | None:
        """The noise a chip config describes (``noise.temperature``, ``neuron.kTC_noise``,
        ``crossbar.thermal_noise``), or ``None`` when it has none."""
        t = float(config.noise.temperature)
        leak, dev = bool(config.neuron.kTC_noise), bool(config.crossbar.thermal_noise)
        if t <= 0 or not (leak or dev):
            return None
        return cls(temperature=t, leak=leak, devices=dev, step=step, seed=seed, source=source)


def noise_amplitude(conductance: float, temperature: float, nt: float) -> float:
    """rms ``NA`` [A] of a random current source sampled every ``nt`` [s] that realizes the
    Johnson noise ``4 k_B T G`` of ``conductance`` [S] at ``temperature`` [K] (module docstring)."""
    return math.sqrt(2.0 * K_B * temperature * conductance / nt)


def noise_source(name: str, n_plus: str, n_minus: str, conductance: float, temperature: float,
                 nt: float, source: str = "trrandom") -> str:
    """One ngspice line: a current source ``name`` from ``n_plus`` to ``n_minus`` with the
    Johnson noise of ``conductance`` [S] at ``temperature`` [K], sampled every ``nt`` [s], of
    kind ``source`` (``"trrandom"`` or ``"trnoise"``, module docstring)."""
    na = noise_amplitude(conductance, temperature, nt)
    if source == "trrandom":  # type 2: Gaussian of standard deviation NA and mean 0, no delay
        return f"{name} {n_plus} {n_minus} DC 0 trrandom(2 {_num(nt)} 0 {_num(na)} 0)"
    if source == "trnoise":
        return f"{name} {n_plus} {n_minus} DC 0 trnoise({_num(na)} {_num(nt)} 0 0)"
    raise ValueError(f"noise source must be one of {', '.join(SOURCES)}; got {source!r}")


def interpolation_factor(h: float, source: str = "trrandom") -> float:
    """Node variance of an RC node (time constant ``tau``) driven by white noise sampled every
    ``h tau`` by ``source``, relative to the variance under ideal white noise of the same
    density: ``int S sinc^p(f h) |H|^2 df / int S |H|^2 df`` (``sinc(z) = sin(pi z)/(pi z)``;
    ``p = 2`` for ``trrandom``'s held samples, ``p = 4`` for ``trnoise``'s linear interpolation;
    ``H`` the RC's response). ``h = 0.02``: 0.9934 (``trrandom``), 0.9907 (``trnoise``)."""
    import numpy as np
    import scipy.integrate

    if not (h > 0):
        raise ValueError(f"interpolation_factor: h must be > 0 (units of tau); got {h!r}")
    if source not in SOURCES:
        raise ValueError(f"interpolation_factor: source must be one of {', '.join(SOURCES)}; got {source!r}")
    p = 2 if source == "trrandom" else 4
    f = lambda x: np.sinc(x * h) ** p / (1 + (2 * np.pi * x) ** 2)  # noqa: E731
    # Split at the sinc's zeros' scale so quad resolves the tail.
    edges = [0.0, 1.0, 10.0, 1.0 / h, 10.0 / h, np.inf]
    edges = sorted(set(edges))
    total = sum(scipy.integrate.quad(f, a, b, limit=400)[0] for a, b in zip(edges[:-1], edges[1:]))
    return float(4.0 * total)  # ideal: 2 int_0^inf 1/(1 + (2 pi x)^2) dx = 1/2


def noise_options_line(noise: NoiseSpec) -> str:
    """The ``.options`` line that seeds ngspice's Tausworthe generator (``trrandom``'s draws)."""
    return f".options seed={noise.seed}"
