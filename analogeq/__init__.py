"""analogeq: co-design analog in-memory hardware that learns on-chip with Equilibrium Propagation."""

from analogeq.costs import AbstractCost, CrossEntropy, SquaredError, TokenCrossEntropy, make_cost
from analogeq.emulator import AbstractRelaxation, EulerRelaxation, RelaxResult, residual
from analogeq.ep import (
    BPTT, EP, AbstractEstimator, EnergyEP, Estimate, ImplicitAdjoint, compare_gradients,
    force_gradient, free_phase,
)
from analogeq.models import AbstractConservativeModel, AbstractModel, EqTransformer, HopfieldNetwork, LeakyNetwork
from analogeq.ep.recipe import AdaptiveEP, RefinedEulerRelaxation, WithReadoutGradient

from analogeq import diagnostics

__version__ = "0.1.0"

__all__ = [
    "AbstractConservativeModel", "AbstractCost", "AbstractEstimator", "AbstractModel",
    "AbstractRelaxation", "BPTT", "CrossEntropy", "EP", "EnergyEP", "Estimate", "EulerRelaxation",
    "HopfieldNetwork", "ImplicitAdjoint", "LeakyNetwork", "RelaxResult", "SquaredError",
    "AdaptiveEP", "EqTransformer", "RefinedEulerRelaxation", "TokenCrossEntropy", "WithReadoutGradient",
    "compare_gradients", "diagnostics", "force_gradient", "free_phase", "make_cost", "residual",
]
