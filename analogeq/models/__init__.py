"""Vector fields: one module per model family."""

from analogeq.models.base import AbstractConservativeModel, AbstractModel
from analogeq.models.layered import HopfieldNetwork, LeakyNetwork
from analogeq.models.nonlinearity import rho, rho_prime

__all__ = [
    "AbstractConservativeModel",
    "AbstractModel",
    "HopfieldNetwork",
    "LeakyNetwork",
    "rho",
    "rho_prime",
]
