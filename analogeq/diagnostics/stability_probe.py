"""The stability probe of a training run: leading eigenvalues at the free states the run reaches.

At an evaluation the loop settles the free phase of a few probe samples with the run's own
relaxation (the digital Euler emulator or a chip in continuous time), and linearizes the
model's field ``F`` at each sample's final state -- converged or not, the state the run
actually reaches -- to read the eigenvalues ``mu`` of ``J = dF/dz`` (units 1/``tau``). The
record says whether a collapse of the run is

* a Hopf bifurcation (``continuous-hopf``: a complex pair with ``Re mu > 0``) or a real
  instability (``continuous-real``) of the field itself, which every realization shares;
* an Euler artifact (``euler-artifact``: ``Re mu < 0`` but ``|1 + eps mu| > 1``), which only
  the Euler emulator has: on a chip, which relaxes in continuous time, it does not apply;
* neither (``stable``), so a failure must lie elsewhere (the read path, the estimator).

States up to :data:`DENSE_MAX` entries use the dense Jacobian (``jax.jacfwd``), larger ones
matrix-free ARPACK (:func:`~analogeq.diagnostics.eigen.leading_eigenvalues`). The Jacobian is taken in the
run's dtype, the eigenvalues in NumPy float64.
"""

from __future__ import annotations

import equinox as eqx
import numpy as np

from analogeq.diagnostics.eigen import Spectrum, leading_eigenvalues
from analogeq.diagnostics.verdict import LABELS, is_complex, verdict
from analogeq.emulator import EulerRelaxation
from analogeq.ep.base import free_phase, phase, phase_keys
from analogeq.evaluation import traced

DENSE_MAX = 512
"""Largest flattened state (entries) whose spectrum is computed densely; ARPACK above. The dense
eigenvalue solve grows as ``n^3``: on 2 shared CPU cores a char-LM block's 1024-entry state took
3-10 s per sample with :func:`numpy.linalg.eigvals`, ARPACK's ``k = 6`` leading ones 0.4 s."""
_SEVERITY = {name: i for i, name in enumerate(LABELS)}


def probe_keys(model, key, n_probe: int, n: int):
    """Per-sample keys of the first ``n`` of ``n_probe`` probe samples: the free-phase keys the
    gradient probe's estimator draws (:func:`~analogeq.ep.base.phase_keys`), so both probes
    settle the same noise; ``None`` for a noiseless probe."""
    free, _ = phase_keys(model, key, n_probe)
    return None if free is None else free[:n]


@eqx.filter_jit
def _settle(model, relaxation, xs, keys):
    # As an estimator does: the batch-constant parts once, then the free phase.
    return free_phase(model.for_settle(), relaxation, xs, keys=keys)


def realized_fields(model, xs, keys) -> list:
    """Per sample, the field ``s -> F(s; x)`` of the model as that sample's free phase realized
    it (read noise drawn from its key), as a pytree (:class:`equinox.Partial`)."""
    field = model.for_settle()
    out = []
    for i in range(xs.shape[0]):
        m, _ = phase(field, None if keys is None else keys[i])
        out.append(eqx.Partial(m.force, x=xs[i]))
    return out


def continuous_label(mu: np.ndarray) -> str:
    """The verdict by the continuous criterion alone: the label of the unstable eigenvalue
    with the largest ``Re mu`` (1/``tau``), ``"stable"`` when every ``Re mu <= 0``."""
    top = complex(mu[np.argmax(mu.real)])
    if top.real <= 0:
        return "stable"
    return "continuous-hopf" if is_complex(top) else "continuous-real"


def sample_spectrum(field, s, eps: float, k: int, euler: bool = True) -> Spectrum:
    """Leading eigenvalues at one state: dense up to :data:`DENSE_MAX` entries, else ARPACK
    (for the continuous criterion, ``euler=False``, those of ``J`` alone), and dense after all
    when ARPACK does not converge (the verdict needs the true leaders)."""
    if s.size > DENSE_MAX and k < s.size - 1:
        spectrum = leading_eigenvalues(field, s, eps, k, method="arpack", euler=euler)
        if spectrum.converged and spectrum.mu.size and (spectrum.lam.size or not euler):
            return spectrum
    return leading_eigenvalues(field, s, eps, k, method="dense")


def stability_probe(model, relaxation, xs, key=None, *, n: int = 4, k: int = 6) -> dict:
    """Leading eigenvalues of ``J = dF/dz`` at the free states of the first ``n`` samples.

    Args:
        model: the run's model (a digital field or a chip's realization of it).
        relaxation: the run's relaxation; an :class:`~analogeq.emulator.EulerRelaxation` is
            also judged by the Euler criterion at its ``eps``, anything else (a chip) by the
            continuous criterion only.
        xs: the probe inputs ``(N, ...)`` (the gradient probe's); the first ``n`` are settled.
        key: the evaluation key (``None``: noiseless); split as :func:`probe_keys` says, so the
            run's PRNG streams are not touched.
        n: samples probed.
        k: leading eigenvalues per sample.

    Returns:
        JSON-ready ``{"max_re_mu"`` (max over samples of the largest ``Re mu``, 1/``tau``),
        ``"max_re_mu_im"`` (``|Im|`` of that eigenvalue: the pair's angular frequency, 1/``tau``), ``"verdict"`` (the worst label over
        samples), ``"free_residual_max"`` (of those samples' free phases), ``"nonfinite"``
        (samples whose free state was NaN/inf and could not be linearized)``}``, and for the
        Euler emulator ``"euler_radius"`` (max ``|1 + eps mu|``, dimensionless). A probe with
        no finite sample has NaN numbers and a ``None`` verdict with ``"verdict_reason"``.
    """
    keys = probe_keys(model, key, xs.shape[0], min(n, xs.shape[0]))
    xs = xs[:n]
    args = traced((model, relaxation))
    free = _settle(*args, xs, keys)
    states = np.asarray(free.state)
    residual = np.asarray(free.residual, np.float64)
    euler = isinstance(relaxation, EulerRelaxation)
    eps = float(relaxation.eps) if euler else 1.0  # mu does not depend on eps
    fields = realized_fields(model, xs, keys)
    spectra = [sample_spectrum(f, free.state[i], eps, k, euler)
               for i, f in enumerate(fields) if np.all(np.isfinite(states[i]))]
    return _record(spectra, euler, float(np.max(residual)), len(fields) - len(spectra))


def _record(spectra: list[Spectrum], euler: bool, residual_max: float, nonfinite: int) -> dict:
    """The probe's record from the finite samples' spectra (see :func:`stability_probe`)."""
    nan = float("nan")
    rec = {"free_residual_max": residual_max, "nonfinite": nonfinite}
    if not spectra:
        rec.update(max_re_mu=nan, max_re_mu_im=nan, verdict=None,
                   verdict_reason="no probe sample reached a finite free state")
        return {**rec, "euler_radius": nan} if euler else rec
    tops = [complex(sp.mu[0]) for sp in spectra]  # sorted by Re mu, descending
    top = max(tops, key=lambda z: z.real)
    labels = [verdict(sp).label if euler else continuous_label(sp.mu) for sp in spectra]
    rec.update(max_re_mu=top.real, max_re_mu_im=abs(top.imag),
               verdict=max(labels, key=_SEVERITY.__getitem__))
    if euler:
        rec["euler_radius"] = max(sp.spectral_radius for sp in spectra)
    return rec
