"""Stability diagnostics: leading eigenvalues of the relaxation's linearization, a verdict
(stable / Euler artifact / continuous Hopf), limit-cycle detection under Euler and in continuous
time, the ``analogeq diagnose`` report of a trained run, and the stability probe the training
loop records at its evaluations (:mod:`analogeq.diagnostics.stability_probe`)."""

from analogeq.diagnostics.continuous import continuous_check, continuous_trace, settle
from analogeq.diagnostics.eigen import (
    Spectrum,
    dense_jacobian,
    jacobian_matvec,
    leading_eigenvalues,
)
from analogeq.diagnostics.limit_cycle import CycleReport, Trace, detect, euler_trace
from analogeq.diagnostics.probe import bptt_gradient, bptt_probe
from analogeq.diagnostics.report import (
    DiagnoseOptions,
    diagnose,
    diagnose_input,
    format_verdicts,
    plot_spectrum,
)
from analogeq.diagnostics.verdict import LABELS, Verdict, classify, verdict

__all__ = [
    "LABELS",
    "CycleReport",
    "DiagnoseOptions",
    "Spectrum",
    "Trace",
    "Verdict",
    "bptt_gradient",
    "bptt_probe",
    "classify",
    "continuous_check",
    "continuous_trace",
    "dense_jacobian",
    "detect",
    "diagnose",
    "diagnose_input",
    "euler_trace",
    "format_verdicts",
    "jacobian_matvec",
    "leading_eigenvalues",
    "plot_spectrum",
    "settle",
    "verdict",
]
