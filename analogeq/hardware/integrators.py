"""Exact-decay (exponential Euler) integration of a chip's settle, with exact Ornstein--Uhlenbeck
noise.

A chip's state obeys ``ds/dt = A s + D(s) + Sigma^(1/2) xi(t)`` (time in units of ``tau``): ``A``
is the linear decay of each neuron's own states -- the RC leak, and with an amplifier pole the
``2 x 2`` block ``[[-1, 1], [0, -tau/tau_a]]`` acting on (node ``v``, stage output ``y``) -- and
``D`` is the nonlinear drive through the crossbar; ``xi`` is white noise of amplitude ``sigma``
per state. Over a step ``h`` with ``D`` held at its value at the start of the step, the linear
part has the exact solution (Hochbruck & Ostermann 2010, Acta Numerica 19:209, "Exponential
integrators", section 2; the exponential Euler method):

    s' = e^{Ah} s + Phi D + eta,        Phi = int_0^h e^{At} dt,
    eta ~ N(0, Q),                      Q = int_0^h e^{At} Sigma e^{A^T t} dt.

Because ``e^{Ah} - Phi A = I``, the step is ``s' = s + Phi F(s) + eta`` for the full field
``F(s) = A s + D(s)``: it needs the field only (so it serves a nudged field, whose nudge and
AsymEP correction are part of the drive), and its fixed points are exactly the zeros of ``F`` for
any ``h`` (``Phi`` is invertible). The noise covariance is the exact discrete-time covariance of
the Ornstein--Uhlenbeck process (Gillespie 1996, Phys. Rev. E 54:2084, "Exact numerical
simulation of the Ornstein-Uhlenbeck process and its integral"): ``Q = P - e^{Ah} P e^{A^T h}``
with ``P`` the stationary covariance, ``A P + P A^T + Sigma = 0``. An isolated node therefore has
the stationary variance ``sigma^2 / 2`` (``kT/C``) at any step, where Euler--Maruyama gives
``sigma^2 / (2 - h)`` (+33 % at ``h = 0.5``).

Choice of the step (:data:`DEFAULT_STEP`): the linear decay is exact, so the step is limited by
how fast the *drive* changes, i.e. by the drive's Jacobian ``J = dD/ds`` (a fraction of ``tau``
set by its scale), not by the fastest pole. For a mode of ``J`` with eigenvalue ``mu`` the
exponential Euler step settles at the rate ``(1 - mu)(1 - h mu / 2 + O(h^2))`` instead of
``1 - mu`` and is stable for ``-coth(h/2) < mu < 1``. EP networks settle only when their field is
contracting, ``|mu| < 1``, so ``h = 0.25 tau`` keeps the settling-rate error under 12.5 % and the
stability margin at ``coth(0.125) = 8``; fixed points are exact regardless. The readout, a time
average over a window, has the right mean (the fixed point) and the variance of the
continuous-time average times ``(h/2) coth(h/2) = 1 + h^2/12`` (+0.5 % at ``h = 0.25``) for any
linear ``J`` -- the long-time average sees only low frequencies, where the step is exact. The
instantaneous variance of a *coupled* mode is off by ``mu tanh(h/2)`` relative (``0.12 mu``),
that of an isolated node (``kT/C``) is exact.

Before a readout window (:data:`DEFAULT_PRE_STEP`) the step only carries the state to the
window: the fixed points and ``kT/C`` stay exact and the settling-rate error (``h |mu| / 2``)
slows the slowest modes, the conservative side. So a settle read as a window average takes
``0.5 tau`` steps up to the window and ``0.25 tau`` steps in it: the readout's variance factor
``1 + h^2 / 12`` is that of the window's step.

The noise is drawn in bulk, a chunk of steps at a time, and the whole settle is one
``jax.lax.scan``; ``e^{Ah}``, ``Phi`` and the Cholesky factors of ``Q`` are computed once per
settle.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jaxtyping import Array

DEFAULT_STEP = 0.25
"""Default exact-decay step in units of ``tau`` (module docstring): settling-rate error
``h |mu| / 2 <= 12.5 %`` for a contracting drive (``|mu| < 1``), time-averaged readout variance
within ``h^2 / 12 = 0.5 %``, stable up to a drive Jacobian of ``coth(h/2) = 8``."""

DEFAULT_PRE_STEP = 0.5
"""Default exact-decay step [units of ``tau``] *before* a readout window (module docstring):
there the step only has to settle the state, not to read it -- fixed points are exact at any
step, the settling rate is off by at most ``h |mu| / 2 = 25 %`` (a slow mode, ``mu -> 1``,
settles more slowly than on the chip: the error is on the side of an unsettled readout), the
stability margin is ``coth(h/2) = 4`` and an isolated node's ``kT/C`` is exact; the readout's
variance is set by the steps in the window (:data:`DEFAULT_STEP`)."""

MAX_CHUNK = 16
"""Steps whose noise is drawn in one call (bulk draws amortize the PRNG's per-call cost; the
chunk's memory is ``MAX_CHUNK x`` the state's)."""


def default_step(jacobian_scale: float = 1.0, rate_error: float = 0.125) -> float:
    """Exact-decay step [units of ``tau``] whose settling-rate error is ``rate_error`` for a drive
    Jacobian of spectral radius ``jacobian_scale`` (``h = 2 rate_error / jacobian_scale``,
    module docstring); the defaults give :data:`DEFAULT_STEP`."""
    if not (jacobian_scale > 0 and rate_error > 0):
        raise ValueError(f"default_step: jacobian_scale and rate_error must be > 0; got "
                         f"{jacobian_scale!r}, {rate_error!r}")
    return 2.0 * rate_error / jacobian_scale


def step_coefficients(decay, h: float) -> tuple[np.ndarray, np.ndarray]:
    """``(e^{Ah}, Phi = int_0^h e^{At} dt)`` for the decay matrix ``A`` (``(m, m)``, units of
    ``1/tau``) and step ``h`` (units of ``tau``), from one matrix exponential of the augmented
    matrix ``[[A, I], [0, 0]] h`` (Van Loan 1978, IEEE Trans. Autom. Control 23:395). Computed on
    the host in float64 (the decay and the step are structural, fixed per compiled settle)."""
    a = np.asarray(decay, np.float64)
    m = a.shape[0]
    aug = np.zeros((2 * m, 2 * m))
    aug[:m, :m], aug[:m, m:] = a * h, np.eye(m) * h
    ex = scipy.linalg.expm(aug)
    return ex[:m, :m], ex[:m, m:]


def stationary_covariances(decay) -> np.ndarray:
    """``P_j`` (``(m, m, m)``, index ``j`` first): the stationary covariance of
    ``ds = A s dt + e_j dW`` (unit white noise on state ``j`` of the block), solving the
    Lyapunov equation ``A P + P A^T + e_j e_j^T = 0`` (``A`` must be stable)."""
    a = np.asarray(decay, np.float64)
    m = a.shape[0]
    eye = np.eye(m)
    # Row-major vec: vec(A P) = (A kron I) vec(P), vec(P A^T) = (I kron A) vec(P).
    lyap = np.kron(a, eye) + np.kron(eye, a)
    rhs = -np.stack([np.outer(eye[j], eye[j]).ravel() for j in range(m)], axis=1)
    return np.linalg.solve(lyap, rhs).T.reshape(m, m, m)


def step_covariances(decay, h: float) -> np.ndarray:
    """``Q_j = P_j - e^{Ah} P_j e^{A^T h}`` (``(m, m, m)``): the exact covariance that unit white
    noise on block state ``j`` accumulates over a step ``h`` (module docstring)."""
    e, _ = step_coefficients(decay, h)
    p = stationary_covariances(decay)
    return p - np.einsum("ik,jkl,ml->jim", e, p, e)


def _cholesky(q: Array) -> Array:
    """Lower Cholesky factors of PSD ``m x m`` matrices (``m`` in 1, 2) stored as ``(m, m, ...)``;
    closed form so that singular ones (a state without noise) give zeros instead of NaN."""
    if q.shape[0] == 1:
        return jnp.sqrt(jnp.maximum(q, 0.0))
    l00 = jnp.sqrt(jnp.maximum(q[0, 0], 0.0))
    l10 = jnp.where(l00 > 0, q[1, 0] / jnp.where(l00 > 0, l00, 1.0), 0.0)
    l11 = jnp.sqrt(jnp.maximum(q[1, 1] - l10**2, 0.0))
    zero = jnp.zeros_like(l00)
    return jnp.stack([jnp.stack([l00, zero]), jnp.stack([l10, l11])])


def _mix_form(mat):
    """``(diagonal, mirrored off-diagonal)`` of an ``m x m`` matrix (``m`` in 1, 2), each
    ``(m, ...)``: ``M v = d * v + o * v[::-1]`` with ``d = (M00, M11)``, ``o = (M01, M10)``. A
    per-neuron ``2 x 2`` product then needs no concatenation, which XLA's CPU backend fuses
    poorly (3x slower for the noise transform)."""
    m = mat.shape[0]
    diag = [mat[i, i] for i in range(m)]
    off = [mat[i, m - 1 - i] if m == 2 else 0 * mat[i, i] for i in range(m)]
    return jnp.stack(diag), jnp.stack(off)


def _mix(form, v):
    """``M v`` per neuron for ``form = (d, o)`` from :func:`_mix_form` and blocks ``v``
    (``(..., m, N)``)."""
    d, o = form[0], form[1]
    if v.shape[-2] == 1:
        return d * v
    return d * v + o * jnp.flip(v, axis=-2)


class ExactDecay(eqx.Module):
    """One settle by the exact-decay step (module docstring), read as a window average.

    The state ``s`` has ``lead`` leading stack axes (e.g. the ``K`` nudged phases); each
    stacked sample's first axis holds the ``m`` blocks of the decay matrix in order (``m = 1``:
    node voltages; ``m = 2``: node voltages, then amplifier outputs, as
    :attr:`analogeq.hardware.Chip.state_shape`).

    Attributes:
        decay: the decay matrix ``A`` (``m x m``, units of ``1/tau``) as nested tuples; its
            eigenvalues must have negative real parts.
        step: target step ``h`` (units of ``tau``, ``> 0``); the window is cut into equal steps
            of at most ``h`` (:meth:`parts`).
        pre_step: target step before the window (units of ``tau``, ``> 0``; cut the same
            way); ``None`` = :attr:`step`. A longer step there is as accurate for the readout
            (:data:`DEFAULT_PRE_STEP`).
        settle: settle window (units of ``tau``, ``> 0``).
        window: the readout is the time average of the state over the last ``window`` of the
            settle (trapezoid rule on the steps; units of ``tau``, ``0 <= window <= settle``);
            ``0`` = the final state.
    """

    decay: tuple[tuple[float, ...], ...] = eqx.field(static=True)
    step: float = eqx.field(static=True)
    settle: float = eqx.field(static=True)
    window: float = eqx.field(static=True, default=0.0)
    pre_step: float | None = eqx.field(static=True, default=None)

    def __check_init__(self):
        m = len(self.decay)
        if m not in (1, 2) or any(len(row) != m for row in self.decay):
            raise ValueError(f"ExactDecay.decay must be a 1x1 or 2x2 matrix; got {self.decay!r}")
        if not np.all(np.linalg.eigvals(np.asarray(self.decay, np.float64)).real < 0):
            raise ValueError(f"ExactDecay.decay must be stable (eigenvalues with negative real parts: "
                             f"a decay); got {self.decay!r}")
        if not (math.isfinite(self.step) and self.step > 0):
            raise ValueError(f"ExactDecay.step must be a finite number > 0 (units of tau); got {self.step!r}")
        if self.pre_step is not None and not (math.isfinite(self.pre_step) and self.pre_step > 0):
            raise ValueError(f"ExactDecay.pre_step must be None or a finite number > 0 (units of tau); "
                             f"got {self.pre_step!r}")
        if not (math.isfinite(self.settle) and self.settle > 0):
            raise ValueError(f"ExactDecay.settle must be a finite number > 0 (units of tau); "
                             f"got {self.settle!r}")
        if not 0 <= self.window <= self.settle:
            raise ValueError(f"ExactDecay.window must lie in [0, settle={self.settle:g}] (units of tau); "
                             f"got {self.window!r}")

    @property
    def m(self) -> int:
        """States per neuron (1 without an amplifier pole, 2 with one)."""
        return len(self.decay)

    def parts(self) -> tuple[int, int, int]:
        """``(n, n_w, c)``: steps before the window (equal steps of at most :attr:`pre_step`),
        steps in it (of at most :attr:`step`) and the chunk of steps whose noise is drawn at once (it divides both
        counts, so that a chunk lies wholly before or in the window)."""
        pre = self.settle - self.window
        pre_step = self.step if self.pre_step is None else self.pre_step
        n0 = math.ceil(pre / pre_step - 1e-9) if pre > 0 else 0
        w0 = math.ceil(self.window / self.step - 1e-9) if self.window > 0 else 0
        up = lambda n, c: c * math.ceil(n / c)
        cands = range(max(1, MAX_CHUNK // 2), MAX_CHUNK + 1)
        cands = [c for c in (*cands, n0, w0) if 1 <= c <= MAX_CHUNK]
        # Fewest steps, then the largest chunk (the fewest PRNG calls).
        c = min(cands, key=lambda c: (up(n0, c) + up(w0, c), -c))
        return up(n0, c), up(w0, c), c

    @property
    def n_steps(self) -> int:
        """Steps per settle."""
        n, n_w, _ = self.parts()
        return n + n_w

    def __call__(self, field: Callable[[Array], Array], s0: Array, *, lead: int = 0,
                 noise: Array | None = None, key=None) -> Array:
        """Settle ``ds/dt = field(s)`` (plus white noise of amplitude ``noise``, state units per
        ``sqrt(tau)``, broadcast to ``s0``, driven by ``key``) from ``s0`` and return the readout:
        the window average (or the final state when ``window == 0``)."""
        shape, dtype, m = s0.shape, s0.dtype, self.m
        b, per = math.prod(shape[:lead]), math.prod(shape[lead:])
        if per % m:
            raise ValueError(f"ExactDecay: a state of {per} entries per sample does not split into "
                             f"{m} blocks (node voltages, amplifier outputs)")
        if noise is not None and key is None:
            raise ValueError("ExactDecay: noise needs a PRNG key")
        blocks = lambda s: s.reshape(b, m, per // m)
        n, n_w, c = self.parts()
        total = n + n_w
        # Step coefficients before (index 0) and in (index 1) the window.
        hs = (self.settle - self.window) / max(n, 1), self.window / max(n_w, 1)
        phis = jnp.asarray(np.stack([step_coefficients(self.decay, h)[1] for h in hs]), dtype)
        if noise is not None:
            sigma2 = blocks(jnp.broadcast_to(jnp.asarray(noise, dtype), shape)) ** 2
            qs = jnp.asarray(np.stack([step_covariances(self.decay, h) for h in hs]), dtype)
            # Cholesky factors L of each neuron's step covariance sum_j sigma_j^2 Q_j, kept as
            # its diagonal and its mirrored off-diagonal (b, m, N) per part (the ``_mix`` form).
            chols = [_cholesky(sum(q[j][:, :, None, None] * sigma2[:, j] for j in range(m))) for q in qs]
            # (part, diagonal/off-diagonal, b, m, N)
            noise_mix = jnp.stack([jnp.moveaxis(jnp.stack(_mix_form(chol)), 1, 2) for chol in chols])

        def step(carry, inp):
            s, acc = carry
            k, phi, mix, xi = inp
            z, f = blocks(s), blocks(field(s))
            new = jnp.stack([z[:, i] + sum(phi[i, j] * f[:, j] for j in range(m)) for i in range(m)],
                            axis=1)
            if xi is not None:
                new = new + _mix(mix, xi)
            s = new.reshape(shape)
            if acc is not None:
                # Trapezoid weights over the window's grid: 1/2 at its start (the last step
                # before it) and end, 1 inside, 0 before.
                ends = (k == n - 1) | (k == total - 1)
                w = jnp.where(ends, 0.5, jnp.where(k >= n, 1.0, 0.0)).astype(dtype)
                acc = acc + w * s
            return (s, acc), None

        def chunk(carry, inp):
            first, k_chunk = inp
            in_window = first >= n
            phi = jnp.where(in_window, phis[1], phis[0])
            ks = first + jnp.arange(c)
            xi = mix = None
            if noise is not None:
                xi = jax.random.normal(k_chunk, (c, b, m, per // m), dtype)
                mix = jnp.where(in_window, noise_mix[1], noise_mix[0])
            carry, _ = jax.lax.scan(lambda cr, x: step(cr, (x[0], phi, mix, x[1])), carry, (ks, xi))
            return carry, None

        acc0 = None
        if n_w:
            acc0 = (0.5 * s0 if n == 0 else jnp.zeros_like(s0))
        firsts = jnp.arange(0, total, c)
        keys = jax.random.split(key, total // c) if noise is not None else None
        (s, acc), _ = jax.lax.scan(chunk, (s0, acc0), (firsts, keys))
        return s if not n_w else (acc / n_w).astype(dtype)
