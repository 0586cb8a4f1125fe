"""Stability report of a model at a few inputs, and of a saved training run.

For each input ``x`` the field ``F(s) = model.force(s, x)`` is

1. relaxed in continuous time to its fixed point ``s*`` (or the last state reached),
2. linearized there: the leading eigenvalues of ``M = I + eps J`` and of ``J``
   (:func:`~analogeq.diagnostics.eigen.leading_eigenvalues`) and a verdict
   (:func:`~analogeq.diagnostics.verdict.verdict`),
3. relaxed from ``model.init_state(x)`` by explicit Euler at ``eps`` for many steps and in
   continuous time, each checked for a residual floor and an oscillation
   (:func:`~analogeq.diagnostics.limit_cycle.detect`).

Only ``model.force``, ``model.init_state`` and ``model.state_shape`` are used, so any
:class:`~analogeq.models.AbstractModel` works: a digital network, a :class:`~analogeq.hardware.Chip`
(its amplifier-pole states included; its read noise and thermal noise are left out, the
programmed conductances are linearized) or a token block with a ``(T, d)`` state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.diagnostics.continuous import continuous_check, settle
from analogeq.diagnostics.eigen import METHODS, leading_eigenvalues
from analogeq.diagnostics.limit_cycle import detect, euler_trace
from analogeq.diagnostics.verdict import _SEVERITY, verdict


@dataclass(frozen=True)
class DiagnoseOptions:
    """Settings of :func:`diagnose`.

    Attributes:
        k: leading eigenvalues of each kind (>= 1).
        method: eigenvalue method (``auto`` | ``arpack`` | ``dense``).
        euler_steps: explicit-Euler steps of the limit-cycle check (>= 8).
        t_max: continuous-time horizon of the limit-cycle check (units of ``tau``).
        n_samples: samples of the continuous trace (>= 8).
        settle_t_max: horizon of the fixed-point solve (units of ``tau``).
        settle_max_steps: solver step budget of the fixed-point solve.
        fixed_point_tol: relative residual ``|F|/|s|`` at which the fixed-point solve stops.
        tol: relative residual under which a relaxation counts as converged (``None``: the
            run's ``tol``, in :func:`analogeq.run_diagnostics.diagnose_run`).
        seed: seed of the projection vectors and ARPACK's start vector.
    """

    k: int = 6
    method: str = "auto"
    euler_steps: int = 4000
    t_max: float = 400.0
    n_samples: int = 2000
    settle_t_max: float = 2000.0
    settle_max_steps: int = 200_000
    fixed_point_tol: float = 1e-9
    tol: float | None = 1e-6
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.k, int) and self.k >= 1):
            raise ValueError(f"k must be an integer >= 1; got {self.k!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}; got {self.method!r}")
        for name in ("euler_steps", "n_samples", "settle_max_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 8):
                raise ValueError(f"{name} must be an integer >= 8; got {v!r}")
        for name in ("t_max", "settle_t_max", "fixed_point_tol", "tol"):
            v = getattr(self, name)
            if name == "tol" and v is None:  # diagnose_run fills in the run's own tol
                continue
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")


def to_float64(tree):
    """Every floating array leaf of ``tree`` cast to float64 (needs ``jax_enable_x64``)."""
    if not jax.config.jax_enable_x64:
        raise ValueError("float64 diagnostics need jax_enable_x64: call "
                         "jax.config.update('jax_enable_x64', True) first")
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64) if eqx.is_inexact_array(a) and not jnp.iscomplexobj(a) else a, tree)


def diagnose_input(model, x, eps: float, options: DiagnoseOptions = DiagnoseOptions(), *, key) -> dict:
    """The stability record of ``model`` at one input ``x`` with Euler step ``eps`` (units of
    ``tau``): fixed point, spectrum, verdict, Euler and continuous-time relaxation outcomes.

    Raises:
        ValueError: when the fixed-point solve produces a non-finite state.
    """
    if not eps > 0:
        raise ValueError(f"eps (Euler step, units of tau) must be > 0; got {eps!r}")
    o = options
    field = eqx.Partial(model.force, x=x)  # a pytree: one compilation serves every input
    s0 = model.init_state(x)
    if tuple(jnp.shape(s0)) != tuple(model.state_shape):
        raise ValueError(f"init_state returned shape {tuple(jnp.shape(s0))}, but state_shape is "
                         f"{tuple(model.state_shape)}")
    s_star, res, t_fp, solver_ok = settle(field, s0, o.settle_t_max, tol=o.fixed_point_tol,
                                          max_steps=o.settle_max_steps)
    if not (bool(jnp.all(jnp.isfinite(s_star))) and np.isfinite(res)):
        raise ValueError("the continuous-time relaxation to the fixed point produced a non-finite "
                         "state or force (NaN/inf) from init_state: the field diverges or is "
                         "undefined there; nothing to linearize")
    spec = leading_eigenvalues(field, s_star, eps, o.k, method=o.method, seed=o.seed)
    v = verdict(spec)
    k_euler, k_cont = jax.random.split(key)
    euler = detect(euler_trace(field, s0, eps, o.euler_steps, key=k_euler), o.tol)
    cont = continuous_check(field, s0, o.t_max, o.tol, key=k_cont, n_samples=o.n_samples)
    return {
        "fixed_point": {"residual": res, "time_tau": t_fp, "reached": res <= 10 * o.fixed_point_tol,
                        "solver_ok": solver_ok,
                        "norm": float(jnp.linalg.norm(jnp.ravel(s_star)))},
        "spectrum": spec.to_dict(),
        "verdict": v.to_dict(),
        "euler": euler.to_dict(),
        "continuous": cont.to_dict(),
    }


def diagnose(model, xs, eps: float, options: DiagnoseOptions = DiagnoseOptions(), *, key) -> dict:
    """:func:`diagnose_input` for each input in ``xs`` (leading axis), plus the overall verdict
    (the worst label over the inputs) and the options used."""
    keys = jax.random.split(key, len(xs))
    per = [diagnose_input(model, x, eps, options, key=k) for x, k in zip(xs, keys)]
    worst = max(per, key=lambda r: (_SEVERITY[r["verdict"]["label"]], r["verdict"]["max_re_mu"]))
    return {
        "eps": float(eps),
        "state_shape": list(model.state_shape),
        "model": type(model).__name__,
        "options": asdict(options),
        "overall": {
            "label": worst["verdict"]["label"],
            "max_re_mu": max(r["verdict"]["max_re_mu"] for r in per),
            "spectral_radius_M": max(r["verdict"]["spectral_radius_M"] for r in per),
            "euler_outcomes": sorted({r["euler"]["outcome"] for r in per}),
            "continuous_outcomes": sorted({r["continuous"]["outcome"] for r in per}),
        },
        "inputs": per,
    }


def _fmt(v, spec=".3g"):
    return "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def format_verdicts(report: dict) -> str:
    """A short text table: one row per input (fixed-point residual, leading ``mu``, ``max Re mu``,
    ``max |lambda(M)|``, verdict, Euler and continuous outcomes with periods in ``tau``)."""
    head = f"{'input':>5}  {'fp resid':>9}  {'leading mu (1/tau)':>22}  {'max Re mu':>9}  " \
           f"{'|lam(M)|':>8}  {'verdict':>15}  {'Euler':>22}  {'continuous':>22}"
    rows = [head, "-" * len(head)]
    for i, r in enumerate(report["inputs"]):
        mu = complex(*r["verdict"]["mu"])

        def outcome(c):
            p = c.get("period_tau")
            return c["outcome"] + (f" T={p:.3g}" if p is not None and np.isfinite(p) else "")

        rows.append(
            f"{i:>5}  {_fmt(r['fixed_point']['residual'], '.1e'):>9}  "
            f"{f'{mu.real:+.4f}{mu.imag:+.4f}i':>22}  {r['verdict']['max_re_mu']:>+9.4f}  "
            f"{r['verdict']['spectral_radius_M']:>8.4f}  {r['verdict']['label']:>15}  "
            f"{outcome(r['euler']):>22}  {outcome(r['continuous']):>22}")
    o = report["overall"]
    rows.append(f"overall: {o['label']} (eps = {report['eps']} tau; max Re mu = {o['max_re_mu']:+.4g} / tau, "
                f"max |lambda(M)| = {o['spectral_radius_M']:.4g})")
    return "\n".join(rows)


def plot_spectrum(report: dict, path: str | Path) -> Path:
    """The eigenvalues ``mu`` (1/``tau``) of every input in the complex plane, with the Euler
    stability disk ``|1 + eps mu| <= 1`` and the line ``Re mu = 0``; written as a PNG."""
    from analogeq.plots import plt, save_figure

    eps = report["eps"]
    fig, ax = plt.subplots(figsize=(6, 5))
    th = np.linspace(0, 2 * np.pi, 400)
    ax.fill(-1 / eps + np.cos(th) / eps, np.sin(th) / eps, color="tab:green", alpha=0.12,
            label=f"Euler stable |1 + eps mu| <= 1 (eps = {eps:g})")
    ax.axvline(0.0, color="k", lw=1, label="Re mu = 0 (continuous boundary)")
    for i, r in enumerate(report["inputs"]):
        mu = np.array([complex(*z) for z in r["spectrum"]["mu"]])
        me = np.array([complex(*z) for z in r["spectrum"]["mu_euler"]])
        ax.plot(mu.real, mu.imag, "o", ms=5, mfc="none", color=f"C{i % 10}",
                label=f"input {i}: largest Re mu (J)")
        ax.plot(me.real, me.imag, "x", ms=5, color=f"C{i % 10}", label=f"input {i}: largest |lambda(M)|")
    ax.set(xlabel="Re mu (1/tau)", ylabel="Im mu (1/tau)",
           title=f"Leading eigenvalues; verdict: {report['overall']['label']}")
    ax.set_aspect("equal", adjustable="datalim")  # the stability disk is a circle
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")
    return save_figure(fig, path)
