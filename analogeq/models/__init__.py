"""Vector fields: one module per model family."""

from analogeq.models.base import AbstractConservativeModel, AbstractModel
from analogeq.models.layered import HopfieldNetwork, LeakyNetwork
from analogeq.models.nonlinearity import rho, rho_prime
from analogeq.models.transformer import EqTransformer

__all__ = [
    "AbstractConservativeModel",
    "AbstractModel",
    "EqTransformer",
    "HopfieldNetwork",
    "LeakyNetwork",
    "rho",
    "rho_prime",
]
