"""Structured terms: the field a relaxation settles, together with what it is built from.

Every relaxation receives a term instead of an opaque callable, as diffrax's solvers receive an
``ODETerm``: it evaluates the field with ``term(s)`` and it can read what the field is made of.
A relaxation written in JAX only calls it; one that is not (ngspice) builds its circuit from the
fields -- the nudging branches from ``term.betas`` and ``term.target``, the AsymEP correction
from ``term.model`` linearized at ``term.s_star``.

* :class:`FreeTerm` -- the free phase, ``F(s; x)`` of one realized model and input.
* :class:`NudgedTerm` -- the ``K`` nudged phases on one stacked state ``(K, *shape)``:
  ``F(s_k; x) - beta_k dC/ds(s_k) [- 2 A (s_k - s*)]`` (Scellier & Bengio 2017, Front. Comput.
  Neurosci. 11:24), with ``A = (J - J^T)/2``, ``J = dF/ds``: the correction turns the nudged
  phase's linearization into ``J^T``, so the nudged displacement is the adjoint of a field that
  is not a gradient (Laborieux & Zenke 2024, ICLR, "Improving equilibrium propagation without
  weight symmetry through Jacobian homeostasis"). Complex ``beta_k`` give holomorphic EP
  (Laborieux & Zenke 2022, NeurIPS).

Two classes rather than one with empty ``betas``: a free phase has no cost, target or held state,
and a relaxation that treats the phases differently (a circuit simulator, a chunked recorder)
dispatches on the type.
"""

from __future__ import annotations

import abc
from functools import partial
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from analogeq.costs import AbstractCost, cost_grad_s
from analogeq.ep.linear import antisymmetric_product, linearization, products
from analogeq.models.base import AbstractModel

CORRECTIONS = ("none", "asym", "asym-tracking")
"""Nudged-phase corrections: none, AsymEP at ``s*``, AsymEP at the nudged states' mean
(common-mode tracking)."""


class AbstractTerm(eqx.Module):
    """A field ``ds/dt = term(s)`` (state units per ``tau``) of a realized model at an input.

    Attributes:
        model: the field as realized for this phase (read noise already drawn).
        x: the clamped input.
        noise: additive white noise on the state (state units per ``sqrt(tau)``, broadcast to
            the state), or ``None`` for a noiseless phase; a relaxation that cannot add noise
            refuses a term that has it.
    """

    model: eqx.AbstractVar[Any]
    x: eqx.AbstractVar[Array]
    noise: eqx.AbstractVar[Array | None]

    def force(self, s: Array) -> Array:
        """The model's own field ``F(s; x)`` at one (unstacked) state."""
        return self.model.force(s, self.x)

    @abc.abstractmethod
    def __call__(self, s: Array) -> Array:
        """The field at ``s`` (state units per ``tau``)."""


class FreeTerm(AbstractTerm):
    """The free phase's field ``F(s; x)`` (module docstring)."""

    model: Any
    x: Array
    noise: Array | None = None

    def __call__(self, s: Array) -> Array:
        return self.force(s)


class NudgedTerm(AbstractTerm):
    """The ``K`` nudged fields on a stacked state ``(K, *shape)`` (module docstring).

    Attributes:
        model, x, noise: as :class:`AbstractTerm`.
        cost: the cost whose gradient ``dC/ds`` nudges the state.
        target: the sample's target (a label or an array shaped like the readout).
        s_star: the free equilibrium the nudged phases start from, as the relaxation holds it.
        betas: the nudges ``beta_k`` (real, or complex for holomorphic EP), one per phase.
        correction: one of :data:`CORRECTIONS`.
        jacobian: ``J = dF/ds`` at ``s*`` linearized once when the term is built (the pair of
            :func:`analogeq.ep.linear.linearization`, pytrees) for ``correction="asym"`` on a
            model without its own Jacobian products, else ``None``; a relaxation's loop then
            applies ``2 A`` without re-linearizing each step. A model with
            :attr:`~analogeq.models.base.AbstractModel.explicit_jacobian` (a layered network, a
            chip: a forward and a transposed crossbar read) applies ``(J - J^T) v`` with its
            :meth:`~analogeq.models.base.AbstractModel.jvp_force` and ``vjp_force`` instead.
    """

    model: Any
    x: Array
    cost: AbstractCost
    target: Array
    s_star: Array
    betas: tuple = eqx.field(static=True)
    correction: str = eqx.field(static=True)
    noise: Array | None
    jacobian: tuple | None

    def __init__(self, model, x, cost, target, s_star, betas, correction: str = "none", noise=None):
        if correction not in CORRECTIONS:
            raise ValueError(f"NudgedTerm: unknown correction {correction!r}; choose one of {CORRECTIONS}")
        if len(betas) < 1:
            raise ValueError("NudgedTerm: betas must hold at least one nudge beta_k; got none")
        self.model, self.x, self.cost, self.target = model, x, cost, target
        self.s_star = s_star
        self.betas = tuple(betas)
        self.correction = correction
        self.noise = noise
        stored = correction == "asym" and not self._explicit
        self.jacobian = linearization(self._correction_force, s_star) if stored else None

    @property
    def complex_nudges(self) -> bool:
        """Whether any ``beta_k`` is complex (holomorphic EP: the stacked state is complex)."""
        return any(complex(b).imag != 0 for b in self.betas)

    def initial_state(self) -> Array:
        """``s*`` repeated for every nudge, ``(K, *shape)`` (complex for complex nudges)."""
        dtype = jnp.result_type(self.s_star.dtype, jnp.complex64) if self.complex_nudges else self.s_star.dtype
        return jnp.broadcast_to(self.s_star.astype(dtype), (len(self.betas),) + self.s_star.shape)

    def cost_gradient(self, s: Array) -> Array:
        """``dC/ds`` at one state (holomorphic in ``s``)."""
        return cost_grad_s(self.model, self.cost, s, self.target)

    def correction_field(self, stack: Array) -> Array:
        """``2 A (s_k - s*)`` for every phase (zero without a correction), ``(K, *shape)``."""
        v = stack - self.s_star
        if self.correction == "none":
            return jnp.zeros_like(v)
        if self.correction == "asym":
            if self.jacobian is not None:
                jv, jtv = products(*self.jacobian)
                return jax.vmap(lambda u: jv(u) - jtv(u))(v)
            return jax.vmap(partial(self.antisymmetric_product, self.s_star))(v)
        # Common-mode tracking: A re-linearized at the nudged states' mean (for one nudge, the
        # midpoint of the nudged and the free state).
        mean = jnp.mean(stack, axis=0)
        mid = mean if len(self.betas) > 1 else (mean + self.s_star) / 2
        mid = jnp.real(mid).astype(self.s_star.dtype)
        return jax.vmap(partial(self.antisymmetric_product, mid))(v)

    @property
    def _explicit(self) -> bool:
        """The correction comes from the model's analytic :meth:`~analogeq.models.base.AbstractModel.jvp_force`
        and ``vjp_force`` (of its full force)."""
        m = self.model
        return isinstance(m, AbstractModel) and m.explicit_jacobian and not m.reduced_correction

    def _correction_force(self, s: Array) -> Array:
        """The field the correction is taken of
        (:meth:`~analogeq.models.base.AbstractModel.correction_force`; the force of a model
        that is not an :class:`~analogeq.models.base.AbstractModel`)."""
        if isinstance(self.model, AbstractModel):
            return self.model.correction_force(s, self.x)
        return self.force(s)

    def antisymmetric_product(self, point: Array, v: Array) -> Array:
        """``(J - J^T) v = 2 A v`` with ``J`` the Jacobian of the correction's field
        (:meth:`~analogeq.models.base.AbstractModel.correction_force`, the force unless the
        model reduces it) at the real state ``point``: from the model's analytic
        ``jvp_force`` and ``vjp_force`` where it has them, autodiff otherwise."""
        if self._explicit:
            return self.model.jvp_force(point, self.x, v) - self.model.vjp_force(point, self.x, v)
        return antisymmetric_product(self._correction_force, point, v)

    def __call__(self, stack: Array) -> Array:
        b = jnp.asarray(self.betas, dtype=stack.dtype).reshape((-1,) + (1,) * self.s_star.ndim)
        out = jax.vmap(self.force)(stack) - b * jax.vmap(self.cost_gradient)(stack)
        if self.correction != "none":
            out = out - self.correction_field(stack)
        return out
