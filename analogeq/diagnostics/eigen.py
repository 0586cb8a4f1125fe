"""Leading eigenvalues of the relaxation's linearization at a state, matrix-free.

At a state ``s`` the field ``F`` has Jacobian ``J = dF/ds`` (units of 1/``tau``). The explicit
Euler map ``s <- s + eps F(s)`` has Jacobian ``M = I + eps J``; its eigenvalues ``lambda`` and
the continuous-time eigenvalues ``mu`` of ``J`` are related by ``mu = (lambda - 1) / eps``.

* Euler criterion: the fixed point of the Euler map is stable iff every ``|lambda| < 1``, so the
  eigenvalues of ``M`` **largest in magnitude** decide it.
* Continuous criterion: the fixed point of ``tau ds/dt = F`` is stable iff every ``Re mu < 0``,
  so the eigenvalues of ``J`` with the **largest real part** decide it.

Both sets are computed with ARPACK (:func:`scipy.sparse.linalg.eigs`) on a
:class:`~scipy.sparse.linalg.LinearOperator` whose matvec is a JAX ``jvp`` of the flattened
field (the state may be any array shape, e.g. ``(T, d)`` tokens). ARPACK needs ``k < n - 1``;
smaller states, or ``method="dense"``, use the dense Jacobian from ``jax.jacfwd`` and
:func:`numpy.linalg.eig`. Only ``model.force`` (or any ``field(s)``) is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jaxtyping import Array
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigs

METHODS = ("auto", "arpack", "dense")


@dataclass(frozen=True)
class Spectrum:
    """Leading eigenvalues at one state.

    Attributes:
        eps: the Euler step the ``M`` eigenvalues refer to (units of ``tau``).
        lam: eigenvalues of ``M = I + eps J`` largest in magnitude, sorted by ``|lambda|``
            descending (dimensionless, Euler multipliers per step).
        mu_euler: ``(lam - 1) / eps`` (units of 1/``tau``): the continuous eigenvalues of the
            modes that decide Euler stability.
        mu: eigenvalues of ``J`` with the largest real part, sorted by ``Re mu`` descending
            (units of 1/``tau``): the modes that decide continuous-time stability.
        n: dimension of the flattened state.
        method: ``"arpack"`` or ``"dense"``.
        converged: ``False`` when ARPACK returned only part of the requested eigenvalues.
    """

    eps: float
    lam: np.ndarray
    mu_euler: np.ndarray
    mu: np.ndarray
    n: int
    method: str
    converged: bool = True

    @property
    def spectral_radius(self) -> float:
        """``max |lambda(M)|``: the Euler map contracts near the state iff it is < 1."""
        return float(np.max(np.abs(self.lam))) if self.lam.size else float("nan")

    @property
    def max_real(self) -> float:
        """``max Re mu(J)`` (1/``tau``): the continuous system is stable iff it is < 0."""
        return float(np.max(self.mu.real)) if self.mu.size else float("nan")

    def to_dict(self) -> dict:
        """JSON-ready record (complex numbers as ``[re, im]`` pairs)."""
        pairs = lambda z: [[float(v.real), float(v.imag)] for v in z]
        return {"eps": self.eps, "n": self.n, "method": self.method, "converged": self.converged,
                "spectral_radius_M": self.spectral_radius, "max_re_mu": self.max_real,
                "lambda_M": pairs(self.lam), "mu_euler": pairs(self.mu_euler), "mu": pairs(self.mu)}


def flat_field(field: Callable[[Array], Array], s: Array):
    """``(f, s_flat)``: the field as a map of flat real vectors ``R^n -> R^n`` and the flat state.

    Args:
        field: ``s -> F(s)`` on states shaped like ``s`` (any array or pytree of arrays).
        s: the state (state units).
    """
    s_flat, unravel = ravel_pytree(s)

    def f(v):
        return ravel_pytree(field(unravel(v)))[0]

    return f, s_flat


@eqx.filter_jit
def _jvp_flat(field, s, v):
    f, s_flat = flat_field(field, s)
    return jax.jvp(f, (s_flat,), (v.astype(s_flat.dtype),))[1]


@eqx.filter_jit
def _jacfwd_flat(field, s):
    f, s_flat = flat_field(field, s)
    return jax.jacfwd(f)(s_flat)


def jacobian_matvec(field: Callable[[Array], Array], s: Array) -> tuple[Callable, int, np.dtype]:
    """A NumPy matvec ``v -> J v`` (``J = dF/ds`` at ``s``, units 1/``tau``) on flat vectors, with
    the state dimension ``n`` and dtype. Each product is one jit-compiled ``jvp``; pass the field
    as a pytree (``equinox.Partial(model.force, x=x)``) to reuse the compilation across inputs
    and models of the same structure."""
    s_flat, _ = ravel_pytree(s)
    dtype = np.dtype(s_flat.dtype)

    def matvec(v):
        v = np.asarray(v).reshape(-1)
        if np.iscomplexobj(v):
            re = _jvp_flat(field, s, jnp.asarray(v.real))
            im = _jvp_flat(field, s, jnp.asarray(v.imag))
            return np.asarray(re, np.float64) + 1j * np.asarray(im, np.float64)
        return np.asarray(_jvp_flat(field, s, jnp.asarray(v)), np.float64)

    return matvec, int(s_flat.size), dtype


def dense_jacobian(field: Callable[[Array], Array], s: Array) -> np.ndarray:
    """The full ``n x n`` Jacobian ``dF/ds`` at ``s`` (units 1/``tau``) from ``jax.jacfwd``."""
    return np.asarray(_jacfwd_flat(field, s), np.float64)


def _check(k, eps, method):
    if not (isinstance(k, int) and k >= 1):
        raise ValueError(f"k (number of leading eigenvalues) must be an integer >= 1; got {k!r}")
    if not eps > 0:
        raise ValueError(f"eps (Euler step, units of tau) must be > 0; got {eps!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}; got {method!r}")


def _arpack(op, n, k, which, v0, tol, maxiter):
    try:
        vals = eigs(op, k=k, which=which, v0=v0, tol=tol, maxiter=maxiter, return_eigenvectors=False)
        return np.asarray(vals), True
    except ArpackNoConvergence as e:
        return np.asarray(e.eigenvalues), False


def leading_eigenvalues(
    field: Callable[[Array], Array],
    s: Array,
    eps: float,
    k: int = 6,
    *,
    method: str = "auto",
    seed: int = 0,
    tol: float = 1e-10,
    maxiter: int | None = None,
    euler: bool = True,
) -> Spectrum:
    """The ``k`` leading eigenvalues of ``M = I + eps J`` (by magnitude) and of ``J`` (by real
    part) at state ``s``.

    Args:
        field: ``s -> F(s)`` (units of state per ``tau``), e.g. ``equinox.Partial(model.force, x=x)``.
        s: the state to linearize at (a fixed point, or the last state of a relaxation).
        eps: Euler step (units of ``tau``, > 0) for the ``M`` eigenvalues.
        k: how many eigenvalues of each kind (>= 1; capped at ``n``).
        method: ``"arpack"`` (matrix-free, needs ``k < n - 1``), ``"dense"`` (``jacfwd`` +
            ``numpy.linalg.eig``) or ``"auto"`` (ARPACK when ``k < n - 1``, else dense).
        seed: seed of ARPACK's starting vector (results are deterministic for a seed).
        tol: ARPACK's relative accuracy (0: machine precision).
        maxiter: ARPACK's iteration cap (``None``: ``10 n``).
        euler: also compute the ``M`` eigenvalues; ``False`` for the continuous criterion alone
            (``lam`` and ``mu_euler`` empty), which spares ARPACK the stiff modes that lead
            ``M`` (e.g. a chip's amplifier pole).
    """
    _check(k, eps, method)
    matvec, n, _ = jacobian_matvec(field, s)
    k = min(k, n)
    use_dense = method == "dense" or (method == "auto" and k >= n - 1)
    if method == "arpack" and k >= n - 1:
        raise ValueError(f"ARPACK needs k < n - 1; got k={k} for a state of n={n} entries: "
                         "lower k or use method='dense'")
    if use_dense:
        mu_all = np.linalg.eigvals(dense_jacobian(field, s))
        lam_all = 1.0 + eps * mu_all
        lam = lam_all[np.argsort(-np.abs(lam_all), kind="stable")][:k]
        mu = mu_all[np.argsort(-mu_all.real, kind="stable")][:k]
        return Spectrum(eps=float(eps), lam=lam, mu_euler=(lam - 1.0) / eps, mu=mu, n=n, method="dense")

    v0 = np.random.default_rng(seed).standard_normal(n)
    j_op = LinearOperator((n, n), matvec=matvec, dtype=np.float64)
    m_op = LinearOperator((n, n), matvec=lambda v: np.asarray(v).reshape(-1) + eps * matvec(v),
                          dtype=np.float64)
    lam, ok_m = _arpack(m_op, n, k, "LM", v0, tol, maxiter) if euler else (np.zeros(0, complex), True)
    mu, ok_j = _arpack(j_op, n, k, "LR", v0, tol, maxiter)
    lam = lam[np.argsort(-np.abs(lam), kind="stable")]
    mu = mu[np.argsort(-mu.real, kind="stable")]
    return Spectrum(eps=float(eps), lam=lam, mu_euler=(lam - 1.0) / eps, mu=mu, n=n,
                    method="arpack", converged=bool(ok_m and ok_j))
