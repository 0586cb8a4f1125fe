"""EP estimators, exact references and gradient comparison."""

from analogeq.ep.base import AbstractEstimator, AbstractForceFormEstimator, Estimate, free_phase
from analogeq.ep.estimators import CORRECTIONS, EP, KINDS, ImplicitAdjoint, nudged_phases
from analogeq.ep.gradients import compare_gradients, force_gradient, global_norm, tree_cosine
from analogeq.ep.references import BPTT, EnergyEP, euler_unroll
from analogeq.ep.term import AbstractTerm, FreeTerm, NudgedTerm

__all__ = [
    "AbstractEstimator", "AbstractForceFormEstimator", "AbstractTerm", "BPTT", "CORRECTIONS", "EP",
    "Estimate", "EnergyEP", "FreeTerm", "ImplicitAdjoint", "KINDS", "NudgedTerm", "compare_gradients",
    "euler_unroll", "force_gradient", "free_phase", "global_norm", "nudged_phases", "tree_cosine",
]
