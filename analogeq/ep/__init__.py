"""EP estimators, exact references and gradient comparison."""

from analogeq.ep.base import AbstractEstimator, AbstractForceFormEstimator, Estimate, free_phase
from analogeq.ep.estimators import CORRECTIONS, EP, KINDS, ImplicitAdjoint, nudged_phases
from analogeq.ep.gradients import compare_gradients, force_gradient, global_norm, tree_cosine
from analogeq.ep.references import BPTT, EnergyEP, euler_unroll

__all__ = [
    "AbstractEstimator", "AbstractForceFormEstimator", "BPTT", "CORRECTIONS", "EP", "Estimate",
    "EnergyEP", "ImplicitAdjoint", "KINDS", "compare_gradients", "euler_unroll", "force_gradient",
    "free_phase", "global_norm", "nudged_phases", "tree_cosine",
]
