"""Layered equilibrium networks: clamped input, hidden layers and output neurons.

The state is the concatenation of every non-input layer, ``s = [h_1, ..., h_L]``, and the
readout is the last layer. Two flavours share the layout:

* :class:`HopfieldNetwork` -- conservative, the Scellier--Bengio energy
  ``E = 1/2 |s|^2 - sum_l rho(s_{l+1})^T W_l rho(s_l) - sum_l b_l^T rho(s_{l+1})``
  with ``rho(s_0) = x``; its force ``-grad_s E`` carries a ``rho'(s)`` factor.
* :class:`LeakyNetwork` -- the leaky integrator ``F_l = -s_l + W_{l-1} rho(s_{l-1})
  + B_l rho(s_{l+1}) + b_l`` with feedback ``B_l`` independent of ``W_l^T``; this is what an
  amplifier-based crossbar computes and it is non-conservative even when ``B_l = W_l^T``.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

from analogeq.models.base import AbstractConservativeModel, AbstractModel
from analogeq.models.nonlinearity import rho, rho_prime


def _check_sizes(sizes: tuple[int, ...]) -> tuple[int, ...]:
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2 or any(n < 1 for n in sizes):
        raise ValueError(
            f"sizes must list at least an input and an output layer, each >= 1 neuron; got {sizes}"
        )
    return sizes


def _init_weights(key: PRNGKeyArray, sizes: tuple[int, ...], gain: float, dtype) -> list[Array]:
    keys = jax.random.split(key, len(sizes) - 1)
    return [
        gain * jax.random.normal(k, (n_out, n_in), dtype) / jnp.sqrt(n_in)
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:])
    ]


class _Layered(AbstractModel):
    """Shared layout of the layered networks: splitting the flat state into layers."""

    sizes: tuple[int, ...] = eqx.field(static=True)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (sum(self.sizes[1:]),)

    @property
    def n_inputs(self) -> int:
        return self.sizes[0]

    @property
    def n_outputs(self) -> int:
        return self.sizes[-1]

    def layers(self, s: Array) -> list[Array]:
        """Split a flat state into its layers ``[h_1, ..., h_L]``."""
        bounds = [0]
        for n in self.sizes[1:]:
            bounds.append(bounds[-1] + n)
        return [s[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def readout(self, s: Array) -> Array:
        """The output layer's state (predictions for squared error, logits for cross-entropy)."""
        return s[-self.sizes[-1]:]

    def check_input(self, x: Array) -> None:
        if tuple(x.shape) != (self.sizes[0],):
            raise ValueError(
                f"each input x must have shape ({self.sizes[0]},) for sizes={self.sizes}; "
                f"got a sample of shape {tuple(x.shape)}"
            )


class LeakyNetwork(_Layered):
    """Leaky-integrator layered network ``F = -s + W rho(s) + b`` with independent feedback.

    Fields: ``weights[l]`` (shape ``(n_{l+1}, n_l)``) feed layer ``l`` forward,
    ``feedback[l]`` (shape ``(n_{l+1}, n_{l+2})``) carries layer ``l+2`` back to ``l+1``,
    ``biases[l]`` (shape ``(n_{l+1},)``).
    """

    weights: tuple[Array, ...]
    feedback: tuple[Array, ...]
    biases: tuple[Array, ...]

    def __init__(
        self,
        sizes,
        *,
        key: PRNGKeyArray,
        asymmetry: float = 0.5,
        gain: float = 0.5,
        dtype=jnp.float32,
        parameters: tuple | None = None,
    ):
        """Random initialization, or given ``parameters = (weights, feedback, biases)``.

        Args:
            sizes: neurons per layer, input first (e.g. ``(64, 128, 10)``).
            key: PRNG key.
            asymmetry: ``alpha`` in ``[0, 1]``; feedback starts as ``(1 - alpha) W^T + alpha V``
                with ``V`` independent of ``W`` (0: symmetric, 1: unrelated).
            gain: weight scale; entries are ``N(0, gain^2 / fan_in)``.
            parameters: explicit ``(weights, feedback, biases)`` tuples (``key`` is then unused).
        """
        self.sizes = _check_sizes(sizes)
        if parameters is not None:
            self.weights, self.feedback, self.biases = (tuple(p) for p in parameters)
            return
        if not 0.0 <= asymmetry <= 1.0:
            raise ValueError(f"asymmetry must lie in [0, 1]; got {asymmetry}")
        if gain <= 0:
            raise ValueError(f"gain must be > 0; got {gain}")
        kw, kv = jax.random.split(key)
        weights = _init_weights(kw, self.sizes, gain, dtype)
        indep = _init_weights(kv, self.sizes[1:], gain, dtype)
        self.weights = tuple(weights)
        self.feedback = tuple(
            (1.0 - asymmetry) * w.T + asymmetry * v.T for w, v in zip(weights[1:], indep)
        )
        self.biases = tuple(jnp.zeros((n,), dtype) for n in self.sizes[1:])

    def force(self, s: Array, x: Array) -> Array:
        h = self.layers(s)
        r = [rho(hl) for hl in h]
        below = [x] + r[:-1]
        out = []
        for l, hl in enumerate(h):
            drive = self.weights[l] @ below[l] + self.biases[l]
            if l + 1 < len(h):
                drive = drive + self.feedback[l] @ r[l + 1]
            out.append(-hl + drive)
        return jnp.concatenate(out)

    def jvp_force(self, s: Array, x: Array, v: Array) -> Array:
        """``J v`` layer by layer: ``-v_l + W_{l-1} (rho'(s_{l-1}) v_{l-1})
        + B_l (rho'(s_{l+1}) v_{l+1})`` (the clamped input and the biases do not move)."""
        h, dv = self.layers(s), self.layers(v)
        du = [rho_prime(hl) * d for hl, d in zip(h, dv)]
        out = []
        for l, d in enumerate(dv):
            o = -d
            if l > 0:
                o = o + self.weights[l] @ du[l - 1]
            if l + 1 < len(h):
                o = o + self.feedback[l] @ du[l + 1]
            out.append(o)
        return jnp.concatenate(out)

    def vjp_force(self, s: Array, x: Array, v: Array) -> Array:
        """``J^T v = -v + rho'(s) (W^T v)``: layer ``l`` collects ``W_l^T v_l`` from the layer it
        feeds and ``B_{l-2}^T v_{l-2}`` from the layer it feeds back to."""
        h, a = self.layers(s), self.layers(v)
        g = [jnp.zeros_like(al) for al in a]
        for l, al in enumerate(a):
            if l > 0:
                g[l - 1] = g[l - 1] + al @ self.weights[l]
            if l + 1 < len(h):
                g[l + 1] = g[l + 1] + al @ self.feedback[l]
        return jnp.concatenate([-al + rho_prime(hl) * gl for hl, al, gl in zip(h, a, g)])


class HopfieldNetwork(_Layered, AbstractConservativeModel):
    """Conservative layered network (Scellier & Bengio 2017): ``F = -grad_s E``.

    Fields: ``weights[l]`` (shape ``(n_{l+1}, n_l)``), symmetric by construction (layer
    ``l+1`` feeds back through ``weights[l].T``), and ``biases[l]``.
    """

    weights: tuple[Array, ...]
    biases: tuple[Array, ...]

    def __init__(self, sizes, *, key: PRNGKeyArray, gain: float = 0.5, dtype=jnp.float32):
        """Random initialization; ``sizes`` and ``gain`` as in :class:`LeakyNetwork`."""
        self.sizes = _check_sizes(sizes)
        if gain <= 0:
            raise ValueError(f"gain must be > 0; got {gain}")
        self.weights = tuple(_init_weights(key, self.sizes, gain, dtype))
        self.biases = tuple(jnp.zeros((n,), dtype) for n in self.sizes[1:])

    def energy(self, s: Array, x: Array) -> Array:
        h = self.layers(s)
        r = [x] + [rho(hl) for hl in h]
        e = 0.5 * jnp.sum(s * s)
        for l in range(len(h)):
            e = e - r[l + 1] @ self.weights[l] @ r[l] - self.biases[l] @ r[l + 1]
        return e

    def force(self, s: Array, x: Array) -> Array:
        h = self.layers(s)
        r = [x] + [rho(hl) for hl in h]
        out = []
        for l, hl in enumerate(h):
            drive = self.weights[l] @ r[l] + self.biases[l]
            if l + 1 < len(h):
                drive = drive + self.weights[l + 1].T @ r[l + 2]
            out.append(-hl + rho_prime(hl) * drive)
        return jnp.concatenate(out)
