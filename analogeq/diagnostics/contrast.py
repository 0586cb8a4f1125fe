"""Where an EP gradient on a chip loses its accuracy: the nudged contrast against the ADC step
and the noise floor, per layer, and the conductances sitting at their bounds.

Force-form EP reads the adjoint as a finite difference of two settled readouts, for centered
nudges ``a = -(read(s_+) - read(s_-)) / (2 beta)`` (Scellier & Bengio 2017, Front. Comput.
Neurosci. 11:24; Laborieux et al. 2021, Front. Neurosci. 15:633674 for the centered form). On a
chip each readout passes an ADC of step ``LSB = 2 adc_range / (2**adc_bits - 1)`` [V] and
carries thermal noise, so the estimate is only as good as the contrast ``s_+ - s_-`` is large
against both. :func:`contrast_report` measures, on one batch and one noise draw (the draw the
run's estimator would see with the same ``key``):

* the contrast ``delta = s_+ - s_-`` (one-sided: ``s_beta - s*``) of the node voltages as
  settled (before the ADC), per layer, and what the exact adjoint predicts it to be
  (``-2 beta lambda``; one-sided ``-beta lambda``; ``lambda`` the implicit adjoint of the
  chip's own field at the same free state);
* the ADC step and two noise floors: the spread of the difference of two free settles with
  independent noise keys (read noise and thermal noise), and of two contrasts with independent
  nudged-phase keys (what repeats in ``s_+ - s_-``);
* the cosine of the adjoint as read (through the ADC) and as settled (before it) with
  ``lambda``, per layer, and the parameter-gradient cosine of each with the exact gradient: the
  difference is what the ADC costs;
* the fraction of free and nudged node voltages outside the ADC range (clipped) and of inputs
  outside the DAC range.

:func:`bound_fraction` gives the fraction of programmable devices within a tolerance of their
own conductance bounds.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from analogeq.ep import ImplicitAdjoint
from analogeq.ep.base import free_phase, phase_keys
from analogeq.ep.estimators import nudged_phases
from analogeq.ep.gradients import compare_gradients, force_gradient
from analogeq.evaluation import traced, untraced

__all__ = ["bound_fraction", "contrast_report"]


def _span(betas) -> tuple[float, bool]:
    """``(readout difference per unit beta lambda, centered?)`` of a chip's real nudges."""
    if any(complex(b).imag != 0 for b in betas):
        raise ValueError("contrast_report: holomorphic (complex) nudges have no chip readout; use "
                         "ep_kind 'centered' or 'one-sided'")
    if len(betas) == 2 and float(betas[0]) == -float(betas[1]):
        return 2.0 * abs(float(betas[0])), True
    if len(betas) == 1:
        return float(betas[0]), False
    raise ValueError(f"contrast_report: nudges {betas} are neither one-sided nor centered")


def _redraw(keys, r: int):
    """Per-sample nudged keys for another nudged settle: new relaxation noise and, unless the
    sample's phases share one (stacked ``(read, relaxation)`` pairs), new read noise."""
    fold = jax.vmap(lambda k: jax.random.fold_in(k, r))
    return keys.at[:, 1].set(fold(keys[:, 1])) if keys.ndim == 3 else fold(keys)


@eqx.filter_jit
def _measure(model, cost, relaxation, estimator, xs, ys, key, repeats):
    betas = estimator.nudges()
    k_free, _ = jax.random.split(key)
    free_keys, keys = phase_keys(model, key, xs.shape[0])  # the draws estimator.estimate(..., key) uses
    free = free_phase(model, relaxation, xs, keys=free_keys)
    free_alt = free_phase(model, relaxation, xs, jax.random.fold_in(k_free, 1))

    def nudged(x, t, s, k):
        return nudged_phases(model, cost, relaxation, x, t, relaxation.hold(s), betas,
                             estimator.correction, k)

    n1 = jax.vmap(nudged)(xs, ys, free.state, keys)
    n2 = jax.vmap(nudged)(xs, ys, free.state, _redraw(keys, 1))
    lam, _ = jax.vmap(lambda x, t, s: ImplicitAdjoint().contrast(model, cost, relaxation, x, t, s))(
        xs, ys, free.state)

    b = jnp.asarray(betas, xs.dtype).reshape((1, -1, 1))

    def adjoint(states, difference):
        return -jnp.mean(difference(states, relaxation.hold(free.state)[:, None]) / b, axis=1)

    exact = jnp.subtract
    a_read = adjoint(n1.state, relaxation.read_difference)
    for r in range(2, repeats + 1):  # more nudged settles of each sample, each its own draws
        more = jax.vmap(nudged)(xs, ys, free.state, _redraw(keys, r))
        a_read = a_read + (adjoint(more.state, relaxation.read_difference) - a_read) / r
    a_raw = adjoint(n1.state, exact)
    a_raw2 = adjoint(n2.state, exact)
    at = relaxation.read(free.state)
    n = xs.shape[0]

    def grad(a):
        return force_gradient(model, xs, at, jax.vmap(model.update_adjoint)(a) / n)

    def per_sample(a):
        def one(x, s, ai):
            g = force_gradient(model, x[None], s[None], model.update_adjoint(ai)[None])
            return ravel_pytree(eqx.filter(g, eqx.is_inexact_array))[0]
        return jax.vmap(one)(xs, at, a)

    g_i, e_i = per_sample(lam), per_sample(a_read) - per_sample(lam)
    g_mean, e_mean = jnp.mean(g_i, axis=0), jnp.mean(e_i, axis=0)
    samples = {"grad_norm_mean": jnp.linalg.norm(g_mean), "grad_norm_rms": jnp.sqrt(jnp.mean(jnp.sum(g_i**2, 1))),
               "err_norm_mean": jnp.linalg.norm(e_mean), "err_norm_rms": jnp.sqrt(jnp.mean(jnp.sum(e_i**2, 1)))}
    return {"samples": samples, "free": free.state, "free_alt": free_alt.state, "nudged": n1.state,
            "lam": lam, "a_read": a_read, "a_raw": a_raw, "a_raw2": a_raw2,
            "free_residual": free.residual, "nudged_residual": n1.residual,
            "g_read": grad(a_read), "g_raw": grad(a_raw), "g_exact": grad(lam)}


def _cos(a, b) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a.ravel() @ b.ravel() / (na * nb)) if na > 0 and nb > 0 else float("nan")


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else float("nan")


def contrast_report(chip, cost, relaxation, estimator, xs, ys, key, repeats: int = 1) -> dict:
    """The nudged contrast of ``estimator`` on ``chip`` against the ADC step and the noise
    floors, per layer, for one batch (module docstring).

    Args:
        chip: a :class:`~analogeq.hardware.Chip` (node voltages are its first ``n_neurons``
            states; with an amplifier pole the rest are the stage outputs, not reported).
        cost, relaxation: the run's cost and :class:`~analogeq.hardware.ChipRelaxation`.
        estimator: a force-form :class:`~analogeq.ep.EP` with real nudges (its ``beta``,
            ``kind`` and ``correction`` are used).
        xs, ys: a batch of inputs ``(B, ...)`` and targets.
        key: noise key; the free and nudged settles are those ``estimator.estimate`` draws with
            it, the second free settle and second contrast use keys folded from it.
        repeats: nudged settles per sample whose read adjoints are averaged (each with its own
            read-noise and thermal draws): what repeating the nudged phases and averaging their readouts buys. ``cos_read``,
            ``grad_*_read`` and the per-sample statistics use the average; the settled
            contrast and the noise floors are those of one settle.

    Returns:
        ``{"lsb", "adc_range", "beta", "centered", "layers": [...], "overall": {...}}``. Voltages
        in units of ``v_unit`` (V at ``v_unit = 1 V``); ``lsb`` is ``nan`` for an ideal ADC.
        Each layer holds ``rms_contrast`` (settled ``s_+ - s_-``), ``rms_contrast_exact``
        (``2 beta |lambda|`` rms; one-sided ``beta``), ``noise_free_settle`` (std of the
        difference of two free settles), ``noise_contrast`` (std of the difference of two
        contrasts), ``frac_below_lsb`` (settled contrasts smaller than one ADC step),
        ``cos_read`` / ``cos_settled`` (adjoint through / before the ADC vs ``lambda``),
        ``adc_clip_free`` / ``adc_clip_nudged`` (fraction of node voltages beyond
        ``adc_range``). ``overall`` holds ``grad_cos_read``, ``grad_cos_settled`` and their
        ``grad_rel_error_*`` (parameter gradients from the read and the settled contrast vs the
        exact gradient at the same states), the adjoint cosines over all layers, the largest
        free and nudged residuals, ``dac_clip`` (inputs beyond ``dac_range``) and the per-sample
        view of the gradient error: ``coherence`` ``= |mean_b g_b| / rms_b |g_b|`` of the exact
        per-sample gradients ``g_b`` (1: every sample pulls the same way; ``1/sqrt(B)``:
        unrelated), ``sample_rel_error`` ``= rms_b |e_b| / rms_b |g_b|`` of the per-sample errors
        ``e_b`` (read minus exact), ``error_mean_vs_independent`` ``= |mean_b e_b| / (rms_b |e_b|
        / sqrt(B))`` (about 1 for errors independent between samples, larger for a shared bias)
        and ``grad_cos_predicted_independent`` ``= 1 / sqrt(1 + sample_rel_error^2 / (B
        coherence^2))``, the batch cosine that independent zero-mean errors of that size give.
    """
    span, centered = _span(estimator.nudges())
    xs, ys = jnp.asarray(xs), jnp.asarray(ys)
    args = traced((chip, cost, relaxation, estimator))
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"contrast_report: repeats must be an integer >= 1; got {repeats!r}")
    out = _measure(*args, xs, ys, key, repeats)
    g = {k: untraced(out[k], chip) for k in ("g_read", "g_raw", "g_exact")}
    smp = {k: float(v) for k, v in out.pop("samples").items()}
    out = {k: np.asarray(v, np.float64) for k, v in out.items() if not k.startswith("g_")}
    per = chip.n_neurons
    v = {k: out[k][..., :per] for k in ("free", "free_alt", "lam", "a_read", "a_raw", "a_raw2")}
    nudged_v = out["nudged"][..., :per]
    # The readout difference of one sample: centered s_+ - s_- = -2 beta a; one-sided -beta a.
    delta = -span * v["a_raw"]
    delta2 = -span * v["a_raw2"]
    exact = -span * v["lam"]
    p = chip.config.periphery
    adc_range = float(p.adc_range) / float(chip.config.neuron.v_unit)
    # the contrast's read step: the ADC's, divided by the difference amplifier's gain
    lsb = 2 * adc_range / (2 ** p.adc_bits - 1) / p.contrast_gain if p.adc_bits > 0 else float("nan")
    bounds = np.cumsum([0, *chip.sizes[1:]])
    layers = []
    for lo, hi in itertools.pairwise(bounds):
        sl = (Ellipsis, slice(int(lo), int(hi)))
        d = delta[sl]
        layers.append({
            "size": int(hi - lo),
            "rms_contrast": _rms(d),
            "rms_contrast_exact": _rms(exact[sl]),
            "noise_free_settle": float(np.std(v["free"][sl] - v["free_alt"][sl])),
            "noise_contrast": float(np.std(d - delta2[sl])),
            "frac_below_lsb": float(np.mean(np.abs(d) < lsb)) if p.adc_bits > 0 else 0.0,
            "cos_read": _cos(v["a_read"][sl], v["lam"][sl]),
            "cos_settled": _cos(v["a_raw"][sl], v["lam"][sl]),
            "adc_clip_free": float(np.mean(np.abs(v["free"][sl]) >= adc_range)) if p.adc_bits > 0 else 0.0,
            "adc_clip_nudged": float(np.mean(np.abs(nudged_v[sl]) >= adc_range)) if p.adc_bits > 0 else 0.0,
        })
    read = compare_gradients(g["g_read"], g["g_exact"])["overall"]
    raw = compare_gradients(g["g_raw"], g["g_exact"])["overall"]
    dac = float(p.dac_range) / float(chip.config.neuron.v_unit)
    n = xs.shape[0]
    coherence = smp["grad_norm_mean"] / smp["grad_norm_rms"]
    sample_err = smp["err_norm_rms"] / smp["grad_norm_rms"]
    return {
        "lsb": lsb, "adc_range": adc_range, "beta": span / (2 if centered else 1),
        "centered": centered, "layers": layers,
        "overall": {
            "grad_cos_read": read["cosine"], "grad_rel_error_read": read["rel_error"],
            "grad_cos_settled": raw["cosine"], "grad_rel_error_settled": raw["rel_error"],
            "cos_read": _cos(v["a_read"], v["lam"]), "cos_settled": _cos(v["a_raw"], v["lam"]),
            "free_residual_max": float(np.max(out["free_residual"])),
            "nudged_residual_max": float(np.max(out["nudged_residual"])),
            "dac_clip": float(np.mean(np.abs(np.asarray(xs)) > dac)) if p.dac_bits > 0 else 0.0,
            "coherence": coherence, "sample_rel_error": sample_err,
            "error_mean_vs_independent": smp["err_norm_mean"] / (smp["err_norm_rms"] / np.sqrt(n)),
            "grad_cos_predicted_independent": 1 / np.sqrt(1 + sample_err**2 / (n * coherence**2)),
        },
    }


def bound_fraction(chip, tol: float = 0.02) -> dict:
    """Fraction of a chip's programmable devices within ``tol`` of their own window
    ``[lo, hi]`` from either bound (``min(G - lo, hi - G) <= tol (hi - lo)``), overall and per
    tile (in :meth:`~analogeq.hardware.Chip.tiles` order); devices with a zero-width window (the
    fixed reference device of a pulsed pair) are not counted.

    Args:
        chip: a :class:`~analogeq.hardware.Chip`.
        tol: distance from a bound as a fraction of the device's window (dimensionless, in
            ``[0, 0.5]``). At 64 levels one level is ``1/63 = 0.016`` of the window.

    Returns:
        ``{"overall", "at_lower", "at_upper", "per_tile"}``, fractions in ``[0, 1]``.
    """
    if not 0.0 <= tol <= 0.5:
        raise ValueError(f"bound_fraction: tol must be in [0, 0.5] (a fraction of the device window); got {tol!r}")
    lo_n = up_n = total = 0
    per_tile = []
    for t in chip.tiles():
        g = np.stack([np.asarray(t.g_pos, np.float64), np.asarray(t.g_neg, np.float64)])
        lo, hi = np.asarray(t.lo, np.float64), np.asarray(t.hi, np.float64)
        width = hi - lo
        live = width > 0
        at_lo = live & (g - lo <= tol * width)
        at_hi = live & (hi - g <= tol * width)
        n = int(np.sum(live))
        per_tile.append(float(np.sum(at_lo | at_hi) / n) if n else 0.0)
        lo_n, up_n, total = lo_n + int(np.sum(at_lo)), up_n + int(np.sum(at_hi)), total + n
    frac = lambda k: k / total if total else 0.0
    return {"overall": frac(lo_n + up_n), "at_lower": frac(lo_n), "at_upper": frac(up_n),
            "per_tile": per_tile}
