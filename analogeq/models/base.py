"""The vector-field interface every model and every realization shares.

A model is an immutable Equinox module whose array fields are its trainable parameters.
It defines the relaxation ``tau ds/dt = F_theta(s; x)`` (``force``), how outputs are read
from the state (``readout``) and, when the field is conservative, its energy.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array


def _real_linear(apply, v: Array) -> Array:
    """A real linear map applied to a real or complex ``v`` (real and imaginary parts apart)."""
    if jnp.iscomplexobj(v):
        return apply(jnp.real(v)) + 1j * apply(jnp.imag(v))
    return apply(v)


class AbstractModel(eqx.Module):
    """A vector field ``F_theta(s; x)`` with a readout.

    States are arrays of shape ``state_shape`` (dimensionless neuron values; an analog
    realization maps them to volts). Inputs ``x`` are clamped, never relaxed. ``force`` must be
    written with operations that accept complex states (holomorphic EP evaluates it at complex
    nudges) and must not branch on the state's values.
    """

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]:
        """Shape of one sample's state."""

    @abc.abstractmethod
    def force(self, s: Array, x: Array) -> Array:
        """``F_theta(s; x)``, same shape as ``s`` (units of state per ``tau``)."""

    @abc.abstractmethod
    def readout(self, s: Array) -> Array:
        """Outputs (predictions or logits) read from the state; must be linear in ``s``."""

    def jvp_force(self, s: Array, x: Array, v: Array) -> Array:
        """``J v`` with ``J = dF/ds`` at the real state ``s`` (units of state per ``tau`` per
        unit of ``v``; ``v`` shaped like ``s``, real or complex: ``J`` is real, so
        ``J (a + ib) = J a + i J b``). The default differentiates :meth:`force` (forward mode);
        a model that knows its Jacobian's structure overrides it and :meth:`vjp_force` (the
        AsymEP correction ``(J - J^T) v`` of a nudged phase then costs two plain products)."""
        return _real_linear(lambda u: jax.jvp(lambda z: self.force(z, x), (s,), (u,))[1], v)

    def vjp_force(self, s: Array, x: Array, v: Array) -> Array:
        """``J^T v`` with ``J = dF/ds`` at the real state ``s`` (as :meth:`jvp_force`); the
        default differentiates :meth:`force` (reverse mode)."""
        return _real_linear(lambda u: jax.vjp(lambda z: self.force(z, x), s)[1](u)[0], v)

    @property
    def explicit_jacobian(self) -> bool:
        """Whether :meth:`jvp_force` and :meth:`vjp_force` are the model's own (analytic)
        products rather than autodiff of :meth:`force`."""
        cls = type(self)
        return cls.jvp_force is not AbstractModel.jvp_force and cls.vjp_force is not AbstractModel.vjp_force

    def init_state(self, x: Array) -> Array:
        """Initial state of the free phase for input ``x`` (zeros by default)."""
        del x
        return jnp.zeros(self.state_shape)

    def sample_phase(self, key) -> "AbstractModel":
        """The field as realized during one settle (e.g. with that phase's read noise drawn from
        ``key``). Digital models are the same every time."""
        del key
        return self

    @property
    def read_noise_per_sample(self) -> bool:
        """Whether all phases of a sample share one read-noise draw
        (:func:`analogeq.ep.base.phase_keys`); a chip says so with
        ``crossbar.read_noise_scope = "sample"``. Digital models draw none."""
        return False

    def for_settle(self) -> "AbstractModel":
        """The field as a settle's loop evaluates it: what stays constant over one settle
        computed once (e.g. a chip's IR-drop transfer matrices). The model itself by default."""
        return self

    def update_gradient(self, xs: Array, states: Array, weighted: Array):
        """The parameter gradient an update is built from, ``sum_b a_b^T dF(s_b; x_b)/dtheta``
        as the hardware forms it from the per-sample adjoints ``weighted`` at ``states``
        (:func:`analogeq.ep.force_gradient`, exact, by default; a chip may sense an
        approximation of it, e.g. device voltages under IR drop)."""
        from analogeq.ep.gradients import force_gradient

        return force_gradient(self, xs, states, weighted)

    def noise(self):
        """Additive white noise on the state (state units per ``sqrt(tau)``), or ``None``."""
        return None

    def update_adjoint(self, a: Array) -> Array:
        """The adjoint the update is built from, given an estimate ``a`` of one sample's.

        A realization may rebuild parts of it from components that relate to them exactly at
        the fixed point but are read with more signal; the default uses ``a`` as it is."""
        return a

    def correction_force(self, s: Array, x: Array) -> Array:
        """The field whose Jacobian's antisymmetric part the AsymEP correction of a nudged phase
        removes (units of state per ``tau``; :class:`~analogeq.ep.term.NudgedTerm`): the force
        itself by default. A realization with fast internal stages (an amplifier pole) returns
        the node field with those stages at their adiabatic values and zero on their rows, so
        the correction acts on the nodes, where the nudge acts: the nodes' part of the adjoint
        is the same (it is the adjoint of the reduced field), and the correction leaves out the
        ``tau / tau_a``-large couplings that no time step of the nudged settle could follow."""
        return self.force(s, x)

    @property
    def reduced_correction(self) -> bool:
        """Whether :meth:`correction_force` differs from :meth:`force` (a model overrides it)."""
        return type(self).correction_force is not AbstractModel.correction_force

    def check_input(self, x: Array) -> None:
        """Raise ``ValueError`` naming the expected shape when ``x`` does not fit the model."""


class AbstractConservativeModel(AbstractModel):
    """A model whose force is ``F = -grad_s E``; classic energy-based EP applies."""

    @abc.abstractmethod
    def energy(self, s: Array, x: Array) -> Array:
        """Scalar energy ``E_theta(s; x)`` with ``force == -grad_s energy``."""
