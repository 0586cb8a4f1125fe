"""Matrix-free Jacobian products of a real field, applied to real or complex vectors."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array


def complexify(apply: Callable[[Array], Array]) -> Callable[[Array], Array]:
    """Extend a real linear map to complex vectors: ``L(u + iv) = L u + i L v``."""

    def f(v):
        if jnp.iscomplexobj(v):
            return apply(jnp.real(v)) + 1j * apply(jnp.imag(v))
        return apply(v)

    return f


def jacobian_products(field: Callable[[Array], Array], point: Array):
    """``(v -> J v, v -> J^T v)`` with ``J = dF/ds`` at ``point``, linearized once."""
    _, jvp = jax.linearize(field, point)
    transpose = jax.linear_transpose(jvp, point)
    return complexify(jvp), complexify(lambda v: transpose(v)[0])


def antisymmetric_product(field: Callable[[Array], Array], point: Array, v: Array) -> Array:
    """``(J - J^T) v = 2 A v`` at ``point`` (one jvp and one vjp, nothing stored)."""
    jv, jtv = jacobian_products(field, point)
    return jv(v) - jtv(v)
