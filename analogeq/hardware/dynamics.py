"""Continuous-time relaxation of a chip with diffrax.

Time is integrated in units of ``tau = C / g_leak``; :class:`RelaxResult.time` is in those
units and :meth:`ChipRelaxation.seconds` converts. Without noise the chip is an ODE solved
adaptively (Tsit5 with a PID controller), either until the steady-state event
``|F(s)| <= steady_tol |s|`` or over a fixed settle window (the readout time). With noise it is
an SDE integrated by Euler--Maruyama with a fixed step over the settle window, and the readout
is the average of the state over the last ``average_window``.
"""

from __future__ import annotations

import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax

from analogeq.emulator import AbstractRelaxation, RelaxResult, check_finite, residual, term_noise
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.converters import quantize


class ChipRelaxation(AbstractRelaxation):
    """How a chip settles and is read (periphery included).

    Attributes:
        config: the hardware description (dynamics, neuron time constants, ADC).
        max_time: horizon of the adaptive steady-state solve (units of ``tau``).
        rtol, atol: tolerances of the adaptive ODE solver (``None``: derived from
            ``dynamics.steady_tol`` so the solver can reach the residual it is asked for).
        max_steps: solver step budget per settle.
    """

    config: ChipConfig = eqx.field(static=True)
    max_time: float = eqx.field(static=True, default=2000.0)
    rtol: float | None = eqx.field(static=True, default=None)
    atol: float | None = eqx.field(static=True, default=None)
    max_steps: int = eqx.field(static=True, default=4096)

    @property
    def tau(self) -> float:
        return self.config.neuron.tau

    def _controller(self):
        rtol = self.rtol if self.rtol is not None else min(1e-6, 1e-2 * self.config.dynamics.steady_tol)
        atol = self.atol if self.atol is not None else 1e-2 * rtol
        return diffrax.PIDController(rtol=rtol, atol=atol)

    def seconds(self, t_tau):
        """Convert a time in units of ``tau`` to seconds."""
        return t_tau * self.tau

    def sde_dt(self) -> float:
        """SDE step in units of ``tau``."""
        dyn, nc = self.config.dynamics, self.config.neuron
        if dyn.sde_dt is not None:
            return dyn.sde_dt / self.tau
        fastest = min(1.0, nc.amp_pole_tau / self.tau) if nc.amp_pole_tau > 0 else 1.0
        return fastest / 2

    def read(self, state):
        """The ADC's view of a state: voltages quantized over ``+-adc_range``."""
        p, vu = self.config.periphery, self.config.neuron.v_unit
        return quantize(state * vu, p.adc_bits, p.adc_range) / vu

    def hold(self, state):
        """The free state as the nudged phase sees it: held in analog (sample-and-hold) or
        stored through the ADC and written back."""
        return state if self.config.periphery.sample_hold else self.read(state)

    def free(self, term, s0, key=None):
        return check_finite(self._settle(term, s0, key, term_noise(term)), "chip free phase")

    def nudged(self, term, s0, key=None):
        return check_finite(self._settle(term, s0, key, term_noise(term)), "chip nudged phase")

    def _settle(self, field, s0, key, noise) -> RelaxResult:
        if jnp.iscomplexobj(s0):
            raise ValueError("an analog chip relaxes real voltages: holomorphic (complex) nudges "
                             "need the digital emulator; use ep_kind 'centered' or 'one-sided'")
        if noise is not None:
            if key is None:
                raise ValueError("the chip has noise on (temperature > 0): pass a PRNG key")
            return self._sde(field, s0, key, noise)
        return self._ode(field, s0)

    def _window(self):
        dyn = self.config.dynamics
        t1 = dyn.settle_time / self.tau
        if dyn.average_window == 0:
            return t1, diffrax.SaveAt(t1=True)
        t0 = t1 - dyn.average_window / self.tau
        n = max(2, min(64, int(round(dyn.average_window / self.tau / 0.05)) + 1))
        return t1, diffrax.SaveAt(ts=jnp.linspace(t0, t1, n))

    def _ode(self, field, s0) -> RelaxResult:
        dyn = self.config.dynamics
        term = diffrax.ODETerm(lambda t, y, args: field(y))
        controller = self._controller()
        if dyn.adaptive:
            norm = lambda y: jnp.sqrt(jnp.sum(y**2))  # noqa: E731
            event = diffrax.Event(diffrax.steady_state_event(rtol=dyn.steady_tol, atol=0.0, norm=norm))
            sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, self.max_time, 0.05, s0,
                                      stepsize_controller=controller, event=event,
                                      max_steps=self.max_steps, throw=False)
            state, t_end = sol.ys[-1], sol.ts[-1]
        else:
            t1, saveat = self._window()
            sol = diffrax.diffeqsolve(term, diffrax.Tsit5(), 0.0, t1, 0.05, s0, saveat=saveat,
                                      stepsize_controller=controller, max_steps=self.max_steps,
                                      throw=False)
            state, t_end = jnp.mean(sol.ys, axis=0), jnp.asarray(t1, s0.dtype)
        return self._result(field, state, sol, t_end)

    def trajectory(self, field, s0, ts):
        """Noise-free ODE solution at times ``ts`` (units of ``tau``), shape ``(len(ts), *s0.shape)``."""
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, args: field(y)), diffrax.Tsit5(), 0.0, ts[-1], 0.05, s0,
            saveat=diffrax.SaveAt(ts=ts), stepsize_controller=self._controller(),
            max_steps=self.max_steps,
        )
        return sol.ys

    def _sde(self, field, s0, key, noise) -> RelaxResult:
        dyn = self.config.dynamics
        if dyn.settle_time is None:
            raise ValueError("noisy dynamics need a finite settle window: set dynamics.settle_time")
        shape = s0.shape
        sigma = jnp.broadcast_to(noise, shape).ravel().astype(s0.dtype)
        dt = self.sde_dt()
        t1, saveat = self._window()
        bm = diffrax.UnsafeBrownianPath(shape=jax.ShapeDtypeStruct((s0.size,), s0.dtype), key=key)
        terms = diffrax.MultiTerm(
            diffrax.ODETerm(lambda t, y, args: field(y.reshape(shape)).ravel()),
            diffrax.ControlTerm(lambda t, y, args: lineax.DiagonalLinearOperator(sigma), bm),
        )
        sol = diffrax.diffeqsolve(terms, diffrax.Euler(), 0.0, t1, dt, s0.ravel(), saveat=saveat,
                                  max_steps=int(math.ceil(t1 / dt)) + 16, throw=False,
                                  adjoint=diffrax.ForwardMode())
        state = jnp.mean(sol.ys, axis=0).reshape(shape)
        return self._result(field, state, sol, jnp.asarray(t1, s0.dtype))

    def _result(self, field, state, sol, t_end) -> RelaxResult:
        r = residual(state, field(state))
        finished = (sol.result == diffrax.RESULTS.successful) | (sol.result == diffrax.RESULTS.event_occurred)
        # The event fires on the solver's step-end estimate; allow that small slack.
        ok = finished & (r <= 1.5 * self.config.dynamics.steady_tol)
        return RelaxResult(state=state, steps=sol.stats["num_steps"], residual=r, converged=ok,
                           time=t_end)
