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


def linearization(field: Callable[[Array], Array], point: Array):
    """``(jvp, transpose)``: ``J = dF/ds`` at ``point`` as two pytrees
    (:class:`jax.tree_util.Partial`), ``jvp(v) = J v`` and ``transpose(v) = (J^T v,)``, for real
    ``v``. Being pytrees they can be stored in an equinox module (a nudged term) and carried
    through ``vmap``/``while_loop`` without linearizing again."""
    _, jvp = jax.linearize(field, point)
    return jvp, jax.linear_transpose(jvp, point)


def products(jvp, transpose):
    """``(v -> J v, v -> J^T v)`` on real or complex ``v`` from a :func:`linearization`."""
    return complexify(jvp), complexify(lambda v: transpose(v)[0])


def jacobian_products(field: Callable[[Array], Array], point: Array):
    """``(v -> J v, v -> J^T v)`` with ``J = dF/ds`` at ``point``, linearized once."""
    return products(*linearization(field, point))


def antisymmetric_product(field: Callable[[Array], Array], point: Array, v: Array) -> Array:
    """``(J - J^T) v = 2 A v`` at ``point`` (one jvp and one vjp, nothing stored)."""
    jv, jtv = jacobian_products(field, point)
    return jv(v) - jtv(v)
