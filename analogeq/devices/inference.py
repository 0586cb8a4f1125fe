"""Inference-time physics of programmed devices: PCM programming noise, power-law drift with a
per-device exponent, 1/f read noise and global drift compensation (aihwkit's PCM inference
model, Nandakumar et al. 2019, calibrated on the 1M-device array of Joshi et al. 2020).

Conductances here are normalized, ``gh = G / G_max`` of the array (dimensionless, in [0, 1]);
the model's physical scale is ``g_max`` (25 uS for aihwkit's PCM), so a noise given in uS is
divided by ``g_max`` to act on ``gh``. Time ``t`` is seconds after programming.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, PRNGKeyArray

_TINY = 1e-12


class PCMInference(eqx.Module):
    """aihwkit's PCM inference noise model (Nandakumar et al., Joshi et al. 2020).

    Attributes:
        g_max: conductance of a fully SET device [S] (25 uS).
        prog_coeff: ``(c0, c1, c2)``: programming noise ``sigma = (g_max/25 uS)(c0 + c1 gh +
            c2 gh^2)`` [uS].
        t0: drift reference time [s]: drift starts after ``t0``.
        nu_mu, nu_mu_clip: mean drift exponent ``clip(a ln gh + b, lo, hi)``.
        nu_sigma, nu_sigma_clip: its device-to-device spread ``clip(a ln gh + b, lo, hi)``.
        read_q, read_q_max: 1/f read noise ``Q_s = min(q / gh^p, q_max)``.
        t_read: read duration ``t_r`` [s].
    """

    g_max: float = eqx.field(static=True, default=25e-6)
    prog_coeff: tuple[float, float, float] = eqx.field(static=True, default=(0.26348, 1.9650, -1.1731))
    t0: float = eqx.field(static=True, default=20.0)
    nu_mu: tuple[float, float] = eqx.field(static=True, default=(-0.0155, 0.0244))
    nu_mu_clip: tuple[float, float] = eqx.field(static=True, default=(0.049, 0.1))
    nu_sigma: tuple[float, float] = eqx.field(static=True, default=(-0.0125, -0.0059))
    nu_sigma_clip: tuple[float, float] = eqx.field(static=True, default=(0.008, 0.045))
    read_q: tuple[float, float] = eqx.field(static=True, default=(0.0088, 0.65))
    read_q_max: float = eqx.field(static=True, default=0.2)
    t_read: float = eqx.field(static=True, default=250e-9)

    def __check_init__(self):
        for name in ("g_max", "t0", "t_read"):
            if not getattr(self, name) > 0:
                raise ValueError(f"inference.{name} must be > 0; got {getattr(self, name)!r}")

    def programming_sigma(self, gh: Array) -> Array:
        """Std of the programming error of a device targeted at ``gh`` (normalized units)."""
        c0, c1, c2 = self.prog_coeff
        gh = jnp.clip(gh, 0.0, 1.0)
        sigma_us = (self.g_max / 25e-6) * (c0 + c1 * gh + c2 * gh**2)
        return jnp.maximum(sigma_us, 0.0) * 1e-6 / self.g_max

    def program(self, gh: Array, key: PRNGKeyArray) -> Array:
        """Programmed conductances (normalized) for targets ``gh``: one noisy write each."""
        noisy = gh + self.programming_sigma(gh) * jax.random.normal(key, jnp.shape(gh), jnp.result_type(gh))
        return jnp.clip(noisy, 0.0, None)

    def drift_exponents(self, gh: Array, key: PRNGKeyArray) -> Array:
        """Per-device drift exponents ``nu ~ |N(mu(gh), sigma(gh))|`` (dimensionless)."""
        lg = jnp.log(jnp.maximum(gh, _TINY))
        mu = jnp.clip(self.nu_mu[0] * lg + self.nu_mu[1], *self.nu_mu_clip)
        sd = jnp.clip(self.nu_sigma[0] * lg + self.nu_sigma[1], *self.nu_sigma_clip)
        return jnp.abs(mu + sd * jax.random.normal(key, jnp.shape(gh), jnp.result_type(gh)))

    def drift(self, gh: Array, nu: Array, t: float) -> Array:
        """Conductances ``t`` seconds after programming: ``gh (t / t0)^(-nu)`` for ``t > t0``."""
        factor = jnp.where(t > self.t0, (jnp.maximum(t, self.t0) / self.t0) ** (-nu), 1.0)
        return gh * factor

    def read_noise(self, gh: Array, t: float, key: PRNGKeyArray) -> Array:
        """One read at time ``t`` [s]: ``gh + gh Q_s sqrt(ln((t + t_r) / (2 t_r))) xi``."""
        q, p = self.read_q
        qs = jnp.minimum(q / jnp.maximum(gh, _TINY) ** p, self.read_q_max)
        scale = jnp.sqrt(jnp.log(jnp.maximum((t + self.t_read) / (2 * self.t_read), 1.0)))
        noisy = gh + gh * qs * scale * jax.random.normal(key, jnp.shape(gh), jnp.result_type(gh))
        return jnp.clip(noisy, 0.0, None)


def compensation_factor(reference: Array, now: Array) -> Array:
    """Global drift compensation (aihwkit ``GlobalDriftCompensation``): the scalar ``alpha``
    with ``alpha sum |y_now| = sum |y_ref|``, from the outputs of one calibration read (e.g. an
    all-ones input) right after programming (``reference``) and now."""
    return jnp.sum(jnp.abs(reference)) / jnp.maximum(jnp.sum(jnp.abs(now)), _TINY)
