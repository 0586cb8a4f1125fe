"""Classify a fixed point's stability from its leading eigenvalues.

For a continuous eigenvalue ``mu`` (units 1/``tau``) and Euler step ``eps`` (units of ``tau``):

* ``continuous-hopf``: ``Re mu > 0`` for a complex pair -- the continuous system itself
  oscillates (a Hopf bifurcation has happened); every realization, the chip included, cycles.
* ``continuous-real``: ``Re mu > 0`` for a real eigenvalue -- the fixed point is a saddle or has
  passed a pitchfork/fold; the relaxation leaves it without oscillating.
* ``euler-artifact``: ``Re mu < 0`` but ``|1 + eps mu| > 1`` -- stable in continuous time, yet
  explicit Euler at this ``eps`` amplifies the mode (an oscillation for a complex pair, a
  period-2 flip for a real ``mu < -2/eps``). A smaller ``eps`` or continuous-time relaxation
  converges.
* ``stable``: ``Re mu < 0`` and ``|1 + eps mu| <= 1``.

Eigenvalues within ``margin`` of a boundary are classified by the strict inequalities above and
reported with their numbers, so a marginal case is visible in the record.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analogeq.diagnostics.eigen import Spectrum

LABELS = ("stable", "euler-artifact", "continuous-real", "continuous-hopf")
"""The verdicts of :func:`classify`, from benign to worst (see the module docstring)."""
# Severity order used for the overall verdict (later = worse).
_SEVERITY = {name: i for i, name in enumerate(LABELS)}


def is_complex(mu: complex, rel: float = 1e-8) -> bool:
    """Whether ``mu`` belongs to a complex-conjugate pair (``|Im mu| > rel max(1, |mu|)``)."""
    return abs(complex(mu).imag) > rel * max(1.0, abs(complex(mu)))


def classify(mu: complex, eps: float) -> str:
    """The label of one continuous eigenvalue ``mu`` (1/``tau``) at Euler step ``eps`` (``tau``).

    Returns one of :data:`LABELS`.
    """
    if not eps > 0:
        raise ValueError(f"eps (Euler step, units of tau) must be > 0; got {eps!r}")
    mu = complex(mu)
    if mu.real > 0:
        return "continuous-hopf" if is_complex(mu) else "continuous-real"
    if abs(1.0 + eps * mu) > 1.0:
        return "euler-artifact"
    return "stable"


@dataclass(frozen=True)
class Verdict:
    """Overall stability verdict of one state.

    Attributes:
        label: the worst label over the leading eigenvalues (one of :data:`LABELS`).
        mu: the eigenvalue responsible (1/``tau``): the largest ``Re mu`` when the continuous
            system is unstable, else the mode with the largest ``|1 + eps mu|``.
        euler_factor: ``|1 + eps mu|`` of that eigenvalue (Euler growth per step).
        max_re_mu: ``max Re mu`` over ``J``'s leading eigenvalues (1/``tau``).
        spectral_radius: ``max |lambda(M)|`` (dimensionless).
        oscillatory: whether the responsible eigenvalue is a complex pair.
        period_tau: ``2 pi / |Im mu|`` (units of ``tau``; ``inf`` for a real ``mu``).
    """

    label: str
    mu: complex
    euler_factor: float
    max_re_mu: float
    spectral_radius: float
    oscillatory: bool
    period_tau: float

    def to_dict(self) -> dict:
        """JSON-ready record."""
        return {"label": self.label, "mu": [self.mu.real, self.mu.imag],
                "euler_factor": self.euler_factor, "max_re_mu": self.max_re_mu,
                "spectral_radius_M": self.spectral_radius, "oscillatory": self.oscillatory,
                "period_tau": self.period_tau}


def verdict(spectrum: Spectrum) -> Verdict:
    """Overall verdict from a :class:`Spectrum`: continuous instability (``Re mu > 0`` among
    ``J``'s leading eigenvalues) first, then Euler instability (``|lambda(M)| > 1``), else stable."""
    eps = spectrum.eps
    candidates = [complex(m) for m in spectrum.mu] + [complex(m) for m in spectrum.mu_euler]
    if not candidates:
        raise ValueError("the spectrum holds no eigenvalues (ARPACK returned none); raise maxiter")
    labels = [classify(m, eps) for m in candidates]
    worst = max(_SEVERITY[lb] for lb in labels)
    if worst >= _SEVERITY["continuous-real"]:
        mu = max((m for m, lb in zip(candidates, labels) if _SEVERITY[lb] >= _SEVERITY["continuous-real"]),
                 key=lambda m: m.real)
    else:
        mu = max(candidates, key=lambda m: abs(1.0 + eps * m))
    label = classify(mu, eps)
    osc = is_complex(mu)
    return Verdict(
        label=label, mu=mu, euler_factor=float(abs(1.0 + eps * mu)),
        max_re_mu=float(max(m.real for m in candidates)), spectral_radius=spectrum.spectral_radius,
        oscillatory=osc, period_tau=float(2 * np.pi / abs(mu.imag)) if osc else float("inf"),
    )
