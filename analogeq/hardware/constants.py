"""Physical constants (SI, exact values of the 2019 SI redefinition)."""

K_B: float = 1.380649e-23
"""Boltzmann constant [J/K] (exact)."""

Q_E: float = 1.602176634e-19
"""Elementary charge [C] (exact)."""

__all__ = ["K_B", "Q_E"]
