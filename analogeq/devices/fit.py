"""Fit a pulsed device model to measured up/down pulse traces (``analogeq devices fit``).

Method (per device, all its cycles together):

1. **One-step fit.** For every reading followed by a pulse, the model predicts the next
   reading, ``w[t+1] = clip(w[t] +- step(w[t]), b_min, b_max)``, with the model's own update
   (:mod:`analogeq.devices.fit_models` builds the model from the parameter vector);
   ``scipy.optimize.least_squares`` (trust-region reflective, Jacobian by ``jax.jacfwd``,
   float64) minimises the sum of squared prediction errors. One step at a time rather than a
   simulated trace because cycle-to-cycle noise makes a measured trace a random walk around
   any simulation, while each step's expectation is the model's step.
2. **Cycle-to-cycle noise.** The model multiplies each step by ``(1 + dw_min_std xi)``, so the
   one-step errors ``e`` have variance ``dw_min_std^2 step^2``:
   ``dw_min_std = sqrt(sum e^2 / sum step^2)`` over the steps the bounds did not clip
   (read noise of the instrument adds to it; it is not separated).
3. **Device-to-device spread.** Each device gets its own parameters; the preset's means and
   ``*_dtod`` spreads are those of the per-device values, inverted through the model's
   sampling rules (:meth:`~analogeq.devices.pulsed.AbstractPulsedDevice.sample`), e.g.
   ``w_max = mean(b_max)``, ``w_max_dtod = std(b_max) / w_max``, ``dw_min = max(mean D+, mean D-)``,
   ``up_down = (mean D+ - mean D-) / dw_min``. Shape parameters the model holds global
   (ExponentialStep's ``A``, ``gamma``; PiecewiseStep's nodes) are averaged over devices.
4. **Model selection** (``model="auto"``): every family of
   :data:`~analogeq.devices.fit_models.FAMILIES` is fitted and the one with the smallest
   Bayesian information criterion ``BIC = n ln(RSS / n) + k ln(n)`` wins (``n`` one-step
   residuals, ``k`` fitted numbers over all devices; Schwarz, Ann. Stat. 6(2):461, 1978).
   ``RSS / n`` is floored at ``(1e-6 x the weight range)^2``, far below any instrument's
   resolution, so that exact fits of noise-free data tie and the penalty picks the simplest.

References: the update rules are aihwkit's pulsed devices (Rasch et al., AICAS 2021); aihwkit's
``aihwkit.utils.fitting.fit_measurements`` fits them to measured responses the same way (one
device model, least squares on the responses).
"""

from __future__ import annotations

import contextlib
import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analogeq.devices.fit_models import _EXP, FAMILIES, free_run, one_step, steps, x64
from analogeq.devices.traces import Traces, read_traces
from analogeq.spec import ConfigError

__all__ = ["MODELS", "DeviceFit", "fit_traces"]

MODELS = ("auto", *FAMILIES)
"""Values of ``model``: ``"auto"`` (best by BIC) or one family's class name."""
FLOOR = 1e-6
"""Residual floor of the BIC, relative to the data's weight range."""
_SPREAD = 10.0  # largest *_dtod a preset accepts


def _one_blas_thread():
    """One BLAS thread while fitting: the least-squares steps are SVDs of tall, thin matrices,
    where OpenBLAS's threads only wait on each other (measured on a busy 2-core machine: one
    device's fit 11.3 s with the default threads, 0.34 s with one)."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _bound_starts(wb, s, wa) -> list[tuple[float, float]]:
    """Candidate ``(b_min, b_max)`` to start from: the readings' extremes (where a hard bound
    clips, the plateau is the bound) and the soft-bounds regression of the step on ``w``
    (up ``dw = D+ - (D+ / b_max) w``, down ``|dw| = D- - (D- / b_min) w``), whose bounds lie
    beyond the data when the steps shrink towards them."""
    lo, hi = float(min(wb.min(), wa.min())), float(max(wb.max(), wa.max()))
    span = hi - lo
    edges = (min(lo, 0.0) - 1e-9 * span, max(hi, 0.0) + 1e-9 * span)
    soft = []
    for sign, edge in ((1, hi), (-1, lo)):
        x, dy = wb[s == sign], np.abs((wa - wb)[s == sign])
        slope, d = np.polyfit(x, dy, 1) if np.ptp(x) > 0 else (0.0, float(dy.mean()))
        bound = -d / slope if slope * sign < 0 and d > 0 else edge + sign * span
        soft.append(sign * min(max(sign * bound, sign * edge + 1e-3 * span, 1e-3 * span), 1e3))
    return [edges, (soft[1], soft[0])]


def _bucket(n: int) -> int:
    """Padded length (a power of two >= 1024), so one compilation serves every device of
    up to 1024 steps (and the example file and the tests share it)."""
    return max(1024, 1 << (n - 1).bit_length())


def _pad(x, n, fill=0.0):
    return np.concatenate([x, np.full(n - len(x), fill, dtype=np.asarray(x).dtype)])


def _fit_device(name: str, nodes: int, pairs, floor: float) -> dict:
    """Least-squares fit of family ``name`` to one device's one-step pairs, from each start of
    :func:`_bound_starts` until one reaches the residual ``floor`` (rms, weight units)."""
    from scipy.optimize import least_squares

    wb, s, wa = pairs
    n = len(wb)
    m = _bucket(n)
    args = (_pad(wb, m), _pad(s > 0, m, False), _pad(wa, m), _pad(np.ones(n), m))
    res_fn, jac_fn = one_step(name, nodes)
    fam = FAMILIES[name]
    lo, hi = fam.bounds(nodes)
    best = None
    for x0 in [x for b in _bound_starts(wb, s, wa) for x in fam.starts(b, nodes, pairs)]:
        x0 = np.clip(x0, lo + 1e-9 * (hi - lo), hi - 1e-9 * (hi - lo))
        # Padded rows are sliced off: the trust-region step is an SVD whose cost grows with them.
        r = least_squares(lambda th: np.asarray(res_fn(th, *args))[:n], x0,
                          jac=lambda th: np.asarray(jac_fn(th, *args))[:n], bounds=(lo, hi), method="trf",
                          x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=200)
        if best is None or r.cost < best.cost:
            best = r
        if 2 * best.cost / n < floor**2:
            break
    theta = best.x
    resid = np.asarray(res_fn(theta, *args))[:n]
    step = np.asarray(steps(name, nodes)(theta, wb, s > 0))
    unclipped = (wb + step > theta[0]) & (wb + step < theta[1]) & (step != 0)
    c2c = math.sqrt(np.sum(resid[unclipped] ** 2) / np.sum(step[unclipped] ** 2)) if unclipped.any() else 0.0
    return {"theta": theta, "rss": float(np.sum(resid**2)), "n": n, "max_abs": float(np.max(np.abs(resid))),
            "c2c": c2c, "converged": bool(best.success), "nfev": int(best.nfev)}


def _spread(x: np.ndarray, ref: float) -> float:
    """Relative device-to-device spread ``std(x) / |ref|`` (0 for one device)."""
    if len(x) < 2 or ref == 0:
        return 0.0
    return float(min(np.std(x, ddof=1) / abs(ref), _SPREAD))


def _pair_stats(up: np.ndarray, down: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, asymmetry and their spreads from per-device ``(up, down)`` values under the sampling
    rule ``up = m (g + r + min(ud, 0))``, ``down = m (g - r - max(ud, 0))``, ``g = 1 + s_g xi``,
    ``r = s_r xi'``: returns ``(m, ud, s_g, s_r)``."""
    mu, md = float(np.mean(up)), float(np.mean(down))
    m = max(mu, md)
    if m == 0:
        return 0.0, 0.0, 0.0, 0.0
    return m, (mu - md) / m, _spread((up + down) / 2, m), _spread((up - down) / 2, m)


def _preset_params(name: str, nodes: int, thetas: np.ndarray, c2c: float) -> dict:
    """The preset's ``[params]`` from the per-device vectors (rows) of family ``name``."""
    b_min, b_max = thetas[:, 0], thetas[:, 1]
    if name == "PiecewiseStep":
        s_up, s_dn = thetas[:, 2:2 + nodes], thetas[:, 2 + nodes:]
        d_up, d_dn = s_up.mean(axis=1), s_dn.mean(axis=1)
    else:
        d_up, d_dn = thetas[:, 2], thetas[:, 3]
    dw_min, up_down, dw_dtod, ud_dtod = _pair_stats(d_up, d_dn)
    w_max, w_min = float(b_max.mean()), float(b_min.mean())
    p = {"dw_min": dw_min, "dw_min_dtod": dw_dtod, "dw_min_std": min(c2c, _SPREAD), "w_max": w_max,
         "w_min": w_min, "w_max_dtod": _spread(b_max, w_max), "w_min_dtod": _spread(b_min, w_min),
         "up_down": float(np.clip(up_down, -1.0, 1.0)), "up_down_dtod": ud_dtod}
    if name == "PowerStep":
        gamma, gud, g_dtod, gud_dtod = _pair_stats(thetas[:, 4], thetas[:, 5])
        p.update(gamma=gamma, gamma_up_down=gud, gamma_dtod=g_dtod, gamma_up_down_dtod=gud_dtod)
    elif name == "ExponentialStep":
        mean = thetas[:, 4:8].mean(axis=0)
        p.update(A_up=float(mean[0]), gamma_up=float(mean[1]), A_down=float(mean[2]), gamma_down=float(mean[3]),
                 a=float(_EXP.a), b=float(_EXP.b))
    elif name == "PiecewiseStep":
        p.update(v_up=[float(v) for v in (s_up / d_up[:, None]).mean(axis=0)],
                 v_down=[float(v) for v in (s_dn / d_dn[:, None]).mean(axis=0)])
    return p


@dataclass(frozen=True)
class DeviceFit:
    """The result of :func:`fit_traces`.

    Attributes:
        model: the chosen family (a class name of :mod:`analogeq.devices.pulsed`).
        params: the preset's ``[params]`` (weight units), ready for
            :class:`~analogeq.devices.presets.DevicePreset`.
        per_device: ``{label: {parameter: value}}`` of the chosen family (weight units;
            ``c2c`` the device's own cycle-to-cycle estimate).
        candidates: ``{family: {"bic", "rss", "n", "k", "rms", "max_abs", "converged",
            "per_device"}}`` for every family fitted.
        provenance: source file, its SHA-256, date (UTC), value column and conductance map,
            node count, method and criterion.
        traces: the data that was fitted.
        nodes: PiecewiseStep's node count of the fit.
    """

    model: str
    params: dict
    per_device: dict
    candidates: dict
    provenance: dict
    traces: Traces = field(repr=False)
    nodes: int = 5

    def theta(self, label: str) -> np.ndarray:
        """The fitted vector of device ``label`` (order of ``fit_models.FAMILIES[model].names``)."""
        names = FAMILIES[self.model].names(self.nodes)
        return np.array([self.per_device[label][k] for k in names])

    def simulate(self, label: str) -> list[np.ndarray]:
        """Noise-free model traces of device ``label``, one per measured cycle, each started at
        the cycle's first reading and driven by its pulse directions (weight units, same length
        as the cycle)."""
        with x64():
            run = free_run(self.model, self.nodes)
            out = []
            for c in self.traces.devices[label]:
                m = _bucket(len(c.signs))
                w = np.asarray(run(self.theta(label), c.w[0], _pad(c.signs[1:], m, 0)))
                out.append(np.concatenate([[c.w[0]], w[:len(c.signs) - 1]]))
        return out

    def preset(self, name: str = "fitted"):
        """The fit as a validated :class:`~analogeq.devices.presets.DevicePreset` (what
        ``load_device`` returns for the TOML :meth:`write` writes)."""
        import tomllib

        from analogeq.devices.fit_output import preset_text
        from analogeq.devices.presets import DevicePreset

        return DevicePreset.from_dict(tomllib.loads(preset_text(self, name)), default_name=name)

    def write(self, out: str | Path, name: str) -> dict:
        """Write ``NAME.toml`` (the preset, with the provenance), ``NAME.json`` (every number of
        the fit) and ``NAME.png`` (data vs fit) into the folder ``out``; returns their paths."""
        from analogeq.devices.fit_output import write_fit

        return write_fit(self, out, name)

    def trace_errors(self) -> dict:
        """``{"rms", "max_abs"}`` of the noise-free model traces against the data (weight units)."""
        err = np.concatenate([sim - c.w for label in self.traces.devices
                              for sim, c in zip(self.simulate(label), self.traces.devices[label])])
        return {"rms": float(np.sqrt(np.mean(err**2))), "max_abs": float(np.max(np.abs(err)))}


def fit_traces(path: str | Path, model: str = "auto", nodes: int = 5) -> DeviceFit:
    """Fit a pulsed device model to the traces in a CSV file (format: docs/device-fitting.md,
    :func:`analogeq.devices.traces.read_traces`).

    Args:
        path: the trace CSV.
        model: ``"auto"`` (fit every family, keep the one with the smallest Bayesian
            information criterion ``BIC = n ln(RSS / n) + k ln(n)`` over the ``n`` one-step
            residuals of all devices, ``k`` fitted numbers; see the module docstring) or one of
            ``SoftBounds``, ``ExponentialStep``, ``PowerStep``, ``PiecewiseStep``.
        nodes: PiecewiseStep's node count, 2..32.

    Returns:
        :class:`DeviceFit`; its :meth:`~DeviceFit.write` writes the preset TOML, the JSON and
        the plot, :meth:`~DeviceFit.preset` gives the preset itself.

    Raises:
        ConfigError: a bad file (one line naming the file, line, column, value and what is
            allowed) or a bad ``model`` / ``nodes``.
    """
    if model not in MODELS:
        raise ConfigError(f"model {model!r} unknown; choose one of {', '.join(MODELS)}")
    if isinstance(nodes, bool) or not isinstance(nodes, int) or not 2 <= nodes <= 32:
        raise ConfigError(f"nodes must be an integer in [2, 32]; got {nodes!r}")
    traces = read_traces(path)
    labels = list(traces.devices)
    pairs = {label: traces.pairs(label) for label in labels}
    span = max(float(np.ptp(np.concatenate([c.w for cs in traces.devices.values() for c in cs]))), 1e-300)
    candidates, fits = {}, {}
    with x64(), _one_blas_thread():
        for name in (FAMILIES if model == "auto" else [model]):
            fits[name] = {label: _fit_device(name, nodes, pairs[label], FLOOR * span) for label in labels}
            rss = sum(f["rss"] for f in fits[name].values())
            n = sum(f["n"] for f in fits[name].values())
            k = len(FAMILIES[name].names(nodes)) * len(labels)
            names = FAMILIES[name].names(nodes)
            candidates[name] = {
                "bic": n * math.log(max(rss / n, (FLOOR * span) ** 2)) + k * math.log(n),
                "rss": rss, "n": n, "k": k, "rms": math.sqrt(rss / n),
                "max_abs": max(f["max_abs"] for f in fits[name].values()),
                "converged": all(f["converged"] for f in fits[name].values()),
                "per_device": {label: {**dict(zip(names, map(float, f["theta"]))), "c2c": f["c2c"]}
                               for label, f in fits[name].items()}}
    best = min(candidates, key=lambda m: candidates[m]["bic"])
    chosen = fits[best]
    n_steps = np.array([chosen[label]["n"] for label in labels], dtype=float)
    c2c = float(np.sqrt(np.sum(n_steps * np.array([chosen[label]["c2c"] for label in labels]) ** 2) / n_steps.sum()))
    thetas = np.stack([chosen[label]["theta"] for label in labels])
    provenance = {
        "source": str(traces.path), "sha256": traces.sha256,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "value_column": traces.unit, "rows": traces.n_rows, "devices": len(labels),
        "cycles": sum(len(c) for c in traces.devices.values()),
        "conductance_map": None if traces.g_mid is None else {"g_mid_S": traces.g_mid, "g_half_S": traces.g_half,
                                                              "rule": "w = (G - g_mid) / g_half"},
        "model_requested": model, "nodes": nodes,
        "criterion": "BIC = n ln(max(RSS/n, (1e-6 range)^2)) + k ln(n) over one-step residuals",
        "method": "scipy.optimize.least_squares (trf, jax.jacfwd Jacobian, float64) on one-step predictions "
                  "w[t+1] = clip(w[t] +- step(w[t])) per device; c2c = sqrt(sum e^2 / sum step^2); "
                  "d2d = spread of the per-device parameters"}
    return DeviceFit(model=best, params=_preset_params(best, nodes, thetas, c2c),
                     per_device=candidates[best]["per_device"], candidates=candidates, provenance=provenance,
                     traces=traces, nodes=nodes)
