"""Is an oscillation of the Euler emulator real? The equilibrium-transformer block diagnosed at
the emulator's Euler step and, realized as the analog block, in continuous time.

An explicit-Euler step can invent a limit cycle that the continuous system does not have: the
Euler map ``z <- z + eps F(z)`` is unstable where an eigenvalue ``mu`` of ``J = dF/dz`` has
``|1 + eps mu| > 1`` although ``Re mu < 0``. A Hopf bifurcation of the field itself has
``Re mu > 0`` (Strogatz, *Nonlinear Dynamics and Chaos*, 2nd ed. 2015, ch. 8).
"""

from __future__ import annotations

import dataclasses
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from analogeq.diagnostics.continuous import settle
from analogeq.diagnostics.report import DiagnoseOptions, diagnose, to_float64
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.sections import CircuitConfig
from analogeq.hardware.transformer import realize_transformer
from analogeq.models.transformer import EqTransformer

__all__ = ["continuous_verdict", "format_verdict"]


def continuous_verdict(block: EqTransformer, xs, hardware: str | ChipConfig = "ideal", *,
                       eps: float | None = None, tol: float = 1e-6,
                       circuits: CircuitConfig | None = None, chip_key=None, options=None,
                       seed: int = 0) -> dict:
    """Does a cycle (or divergence) the Euler emulator sees exist in continuous time on the
    analog block?

    The digital block is diagnosed at Euler step ``eps`` (:func:`analogeq.diagnostics.diagnose`:
    a long Euler relaxation from ``init_state``, eigenvalues of ``I + eps J``); the analog block
    realized on ``hardware`` is diagnosed in continuous time (its fixed point by Tsit5, the
    leading eigenvalues of its Jacobian, a continuous-time limit-cycle check), all in float64.

    Args:
        block: the digital :class:`EqTransformer` (a trained run's model:
            :func:`analogeq.run_diagnostics.analog_verdict` reads it from a run directory).
        xs: token ids ``(N, T)``.
        hardware: a preset name, a TOML path or a :class:`ChipConfig`.
        eps: the emulator's Euler step (units of ``tau``); required.
        tol: convergence residual of the diagnosis when ``options`` does not set one.
        circuits: replaces the chip's ``circuits`` section (the non-idealities of the block's
            multipliers, softmax, normalization and GELU rails) to study one effect;
            ``None``: the chip's own section.
        chip_key: PRNG key of the chip instance (default ``PRNGKey(seed)``).
        options: :class:`analogeq.diagnostics.DiagnoseOptions` (default: ``tol``).
        seed: seed of the projections and start vectors.

    Returns:
        ``{"eps", "hardware", "inputs": [{"euler_outcome", "euler_period_tau",
        "euler_spectral_radius_M", "digital_max_re_mu", "analog_continuous_outcome",
        "analog_max_re_mu", "analog_label", "analog_fixed_point_residual",
        "analog_vs_digital_fixed_point", "euler_sustained"}], "euler_cycles", "euler_fails",
        "continuous_converges", "answer", "digital", "analog"}`` where ``digital`` and ``analog``
        are the full :func:`diagnose` reports. An Euler run counts as failing (``euler_fails``)
        when it did not converge and the Euler map is unstable at the fixed point
        (``max |lambda(M)| > 1``); ``euler_cycles`` when it then settled on a limit cycle;
        ``continuous_converges`` when every analog relaxation converged with all ``Re mu < 0``.
        ``answer`` says in words whether an Euler cycle/divergence is an artifact of the step size.
    """
    jax.config.update("jax_enable_x64", True)
    if not isinstance(block, EqTransformer):
        raise TypeError(f"continuous_verdict needs an EqTransformer; got {type(block).__name__}")
    if eps is None:
        raise ValueError("eps (the Euler step of the emulator, units of tau) is required with a block")
    if not (isinstance(eps, numbers.Real) and eps > 0):
        raise ValueError(f"eps (Euler step, units of tau) must be > 0; got {eps!r}")
    if xs is None:
        raise ValueError("xs (token ids, shape (N, T)) is required with a block")
    config = ChipConfig.load(hardware)
    options = options or DiagnoseOptions(tol=tol)
    if options.tol is None:
        options = dataclasses.replace(options, tol=tol)
    block = to_float64(block)
    xs = jnp.asarray(np.asarray(xs), jnp.int32)
    key = jax.random.PRNGKey(seed)
    chip = realize_transformer(block, config, jax.random.PRNGKey(seed) if chip_key is None else chip_key,
                               circuits=circuits)
    digital = diagnose(block, xs, float(eps), options, key=key)
    analog = diagnose(chip, xs, float(eps), options, key=key)
    rows = []
    for x, rd, ra in zip(xs, digital["inputs"], analog["inputs"]):
        zd, _, _, _ = settle(eqx.Partial(block.force, x=x), block.init_state(x), options.settle_t_max,
                             tol=options.fixed_point_tol)
        za, _, _, _ = settle(eqx.Partial(chip.force, x=x), chip.init_state(x), options.settle_t_max,
                             tol=options.fixed_point_tol)
        za = chip.nodes(za)
        rows.append({
            "euler_outcome": rd["euler"]["outcome"], "euler_period_tau": rd["euler"]["period_tau"],
            "euler_spectral_radius_M": rd["verdict"]["spectral_radius_M"],
            "digital_max_re_mu": rd["verdict"]["max_re_mu"],
            "analog_continuous_outcome": ra["continuous"]["outcome"],
            "analog_max_re_mu": ra["verdict"]["max_re_mu"], "analog_label": ra["verdict"]["label"],
            "analog_fixed_point_residual": ra["fixed_point"]["residual"],
            "analog_vs_digital_fixed_point": float(jnp.linalg.norm(za - zd) / jnp.linalg.norm(zd)),
        })
    for r in rows:
        # an Euler "cycle" whose linearization contracts (|lambda(M)| < 1) is a slowly decaying
        # oscillation that outlived the Euler window, not a sustained cycle
        r["euler_sustained"] = r["euler_outcome"] != "converged" and r["euler_spectral_radius_M"] > 1.0
    cycles = any(r["euler_outcome"] == "limit-cycle" and r["euler_sustained"] for r in rows)
    fails = any(r["euler_sustained"] for r in rows)
    slow = any(r["euler_outcome"] != "converged" and not r["euler_sustained"] for r in rows)
    converges = all(r["analog_continuous_outcome"] == "converged" and r["analog_max_re_mu"] < 0 for r in rows)
    if not fails:
        answer = ("Euler converges at this eps" if not slow else
                  "Euler has not converged within its window but its fixed point is stable "
                  "(max |lambda(M)| < 1: a slowly decaying transient, not a cycle)") + "; " + (
            "the analog block converges in continuous time" if converges else
            "the analog block does NOT converge in continuous time (its non-idealities change the field)")
    elif converges:
        answer = ("Euler " + ("cycles" if cycles else "diverges") + " at this eps (max |lambda(M)| > 1), "
                  "but the analog block converges in continuous time (all Re mu < 0): an Euler "
                  "artifact of the step size")
    else:
        answer = ("Euler " + ("cycles" if cycles else "diverges") + " and the analog block does not "
                  "converge in continuous time either: the instability is in the field itself")
    return {"eps": float(eps), "hardware": hardware if isinstance(hardware, str) else "ChipConfig",
            "inputs": rows, "euler_cycles": cycles, "euler_fails": fails,
            "continuous_converges": converges, "answer": answer, "digital": digital, "analog": analog}


def format_verdict(out: dict) -> str:
    """A short text table of :func:`continuous_verdict`: per input the Euler outcome (period in
    ``tau``), ``max |lambda(M)|``, the analog continuous-time outcome, its ``max Re mu``
    (1/``tau``) and the analog-vs-digital fixed-point distance, then the answer."""
    head = (f"{'input':>5}  {'Euler (digital)':>24}  {'max|lam(M)|':>11}  {'analog continuous':>17}  "
            f"{'max Re mu':>9}  {'|z_a - z_d|/|z_d|':>17}")
    rows = [head, "-" * len(head)]
    for i, r in enumerate(out["inputs"]):
        p = r["euler_period_tau"]
        e = r["euler_outcome"] + (f" T={p:.3g}" if p is not None and np.isfinite(p) else "")
        rows.append(f"{i:>5}  {e:>24}  {r['euler_spectral_radius_M']:>11.4f}  "
                    f"{r['analog_continuous_outcome']:>17}  {r['analog_max_re_mu']:>+9.4f}  "
                    f"{r['analog_vs_digital_fixed_point']:>17.3e}")
    rows.append(f"eps = {out['eps']} tau, hardware {out['hardware']}: {out['answer']}")
    return "\n".join(rows)
