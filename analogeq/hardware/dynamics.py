"""Continuous-time relaxation of a chip.

Time is integrated in units of ``tau = C / g_leak``; :class:`RelaxResult.time` is in those
units and :meth:`ChipRelaxation.seconds` converts. ``dynamics.integrator`` picks how a settle is
integrated:

* ``"exact-decay"`` (default): over a fixed settle window (the readout time), with or without
  noise, the exponential Euler step of :mod:`analogeq.hardware.integrators` -- node leak and
  amplifier pole integrated exactly, the crossbar drive held over a step, the noise with its
  exact per-step Ornstein--Uhlenbeck covariance, so ``kT/C`` is right at any step;
* ``"euler-maruyama"``: diffrax Euler--Maruyama for noisy settles (step: half the fastest time
  constant) and Tsit5 for noise-free ones -- the previous default, kept as a reference;
* ``"tsit5"``: adaptive Tsit5 (noise-free settles only).

A noise-free settle without a window (``settle_time = None``) is always the adaptive Tsit5 solve
(PID controller) until the steady-state event ``|F(s)| <= steady_tol |s|``. With a window the
readout is the average of the state over its last ``average_window``. A nudged phase settles
for ``dynamics.nudged_time`` when set (:meth:`ChipRelaxation.window`), from the held free state.
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
from analogeq.hardware.integrators import DEFAULT_PRE_STEP, DEFAULT_STEP, ExactDecay


class ChipRelaxation(AbstractRelaxation):
    """How a chip settles and is read (periphery included).

    Attributes:
        config: the hardware description (dynamics, neuron time constants, ADC).
        max_time: horizon of the adaptive steady-state solve (units of ``tau``).
        rtol, atol: tolerances of the adaptive ODE solver (``None``: derived from
            ``dynamics.steady_tol`` so the solver can reach the residual it is asked for).
        max_steps: solver step budget per settle.
    """

    config: ChipConfig  # a pytree: its numbers are traced, its switches static
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
        """Step of the fixed-step integrator (units of ``tau``): ``dynamics.sde_dt`` if set, else
        :data:`~analogeq.hardware.integrators.DEFAULT_STEP` for ``"exact-decay"`` (chosen by
        accuracy) or half the fastest time constant for ``"euler-maruyama"``."""
        dyn, nc = self.config.dynamics, self.config.neuron
        if dyn.sde_dt is not None:
            return dyn.sde_dt / self.tau
        if dyn.integrator == "exact-decay":
            return DEFAULT_STEP
        fastest = min(1.0, nc.amp_pole_tau / self.tau) if nc.amp_pole_tau > 0 else 1.0
        return fastest / 2

    def decay_matrix(self) -> tuple[tuple[float, ...], ...]:
        """The linear decay ``A`` of one neuron's states (units of ``1/tau``): ``[[-1]]`` for the
        RC node, ``[[-1, 1], [0, -tau/tau_a]]`` for (node, amplifier output) with a pole. The
        chip's field is ``A s`` plus the crossbar drive (:meth:`analogeq.hardware.Chip.force`)."""
        nc = self.config.neuron
        if nc.amp_pole_tau > 0:
            return ((-1.0, 1.0), (0.0, -self.tau / nc.amp_pole_tau))
        return ((-1.0,),)

    def window(self, nudged: bool = False) -> tuple[float | None, float]:
        """``(settle window, readout average)`` [s] of a free (``nudged=False``) or a nudged
        settle: a nudged phase settles for ``dynamics.nudged_window`` (``nudged_time`` capped
        at ``settle_time``) and is read as the average over the last ``average_window`` of its
        window, clipped to it. The settle window is ``None`` in adaptive mode."""
        dyn = self.config.dynamics
        if not nudged or dyn.nudged_window == dyn.settle_time:
            return dyn.settle_time, dyn.average_window
        return dyn.nudged_window, min(dyn.average_window, dyn.nudged_window)

    def exact_decay(self, nudged: bool = False) -> ExactDecay:
        """The exact-decay integrator of this chip's fixed settle window (needs ``settle_time``)
        for a free or a nudged settle (:meth:`window`)."""
        settle, average = self.window(nudged)
        return ExactDecay(decay=self.decay_matrix(), step=self.sde_dt(), pre_step=self.pre_step(nudged),
                          settle=settle / self.tau, window=average / self.tau)

    def pre_step(self, nudged: bool = False) -> float:
        """Exact-decay step before the readout window (units of ``tau``): ``dynamics.sde_dt``
        if set (one step throughout), else
        :data:`~analogeq.hardware.integrators.DEFAULT_PRE_STEP` when the readout is a window
        average and :data:`~analogeq.hardware.integrators.DEFAULT_STEP` when it is the final
        state (whose instantaneous value the step sets)."""
        if self.config.dynamics.sde_dt is not None or self.window(nudged)[1] == 0:
            return self.sde_dt()
        return DEFAULT_PRE_STEP

    def read(self, state):
        """The ADC's view of a state: voltages quantized over ``+-adc_range``."""
        p, vu = self.config.periphery, self.config.neuron.v_unit
        return quantize(state * vu, p.adc_bits, p.adc_range) / vu

    def hold(self, state):
        """The free state as the nudged phase sees it: held in analog (sample-and-hold) or
        stored through the ADC and written back."""
        return state if self.config.periphery.sample_hold else self.read(state)

    def read_difference(self, nudged, held):
        """The EP contrast's numerator as the periphery reads it: two ADC reads, or with a
        difference amplifier (``periphery.contrast_gain = G > 1``) one read of ``G (nudged -
        held)``, whose quantization step is ``1/G`` of the ADC's and which clips at
        ``+-adc_range / G``."""
        p, vu = self.config.periphery, self.config.neuron.v_unit
        if p.contrast_gain == 1:
            return self.read(nudged) - self.read(held)
        return quantize((nudged - held) * (p.contrast_gain * vu), p.adc_bits, p.adc_range) / (p.contrast_gain * vu)

    def free(self, term, s0, key=None):
        return check_finite(self._settle(term, s0, key, term_noise(term), lead=0), "chip free phase")

    def nudged(self, term, s0, key=None):
        # The nudged phases arrive stacked, (K, *state_shape): one leading axis.
        return check_finite(self._settle(term, s0, key, term_noise(term), lead=1, nudged=True),
                            "chip nudged phase")

    def _settle(self, field, s0, key, noise, lead, nudged=False) -> RelaxResult:
        if jnp.iscomplexobj(s0):
            raise ValueError("an analog chip relaxes real voltages: holomorphic (complex) nudges "
                             "need the digital emulator; use ep_kind 'centered' or 'one-sided'")
        integrator = self.config.dynamics.integrator
        if hasattr(field, "model"):
            field = eqx.tree_at(lambda f: f.model, field, field.model.for_settle())
        if noise is not None:
            if key is None:
                raise ValueError("the chip has noise on (temperature > 0): pass a PRNG key")
            if self.config.dynamics.settle_time is None:
                raise ValueError("noisy dynamics need a finite settle window: set dynamics.settle_time")
            if integrator == "tsit5":
                raise ValueError("dynamics.integrator = 'tsit5' integrates noise-free settles only; "
                                 "use 'exact-decay' or 'euler-maruyama' with noise on (temperature > 0)")
            if integrator == "euler-maruyama":
                return self._sde(field, s0, key, noise, nudged)
            return self._exact(field, s0, lead, noise, key, nudged)
        if integrator == "exact-decay" and not self.config.dynamics.adaptive:
            return self._exact(field, s0, lead, None, None, nudged)
        return self._ode(field, s0, nudged)

    def _exact(self, field, s0, lead, noise, key, nudged=False) -> RelaxResult:
        integ = self.exact_decay(nudged)
        state = integ(field, s0, lead=lead, noise=noise, key=key)
        r = residual(state, field(state))
        return RelaxResult(state=state, steps=jnp.asarray(integ.n_steps), residual=r,
                           converged=r <= 1.5 * self.config.dynamics.steady_tol,
                           time=jnp.asarray(integ.settle, s0.dtype))

    def _window(self, nudged=False):
        settle, average = self.window(nudged)
        t1 = settle / self.tau
        if average == 0:
            return t1, diffrax.SaveAt(t1=True)
        t0 = t1 - average / self.tau
        n = max(2, min(64, int(round(average / self.tau / 0.05)) + 1))
        return t1, diffrax.SaveAt(ts=jnp.linspace(t0, t1, n))

    def _ode(self, field, s0, nudged=False) -> RelaxResult:
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
            t1, saveat = self._window(nudged)
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

    def _sde(self, field, s0, key, noise, nudged=False) -> RelaxResult:
        dyn = self.config.dynamics
        if dyn.settle_time is None:
            raise ValueError("noisy dynamics need a finite settle window: set dynamics.settle_time")
        shape = s0.shape
        sigma = jnp.broadcast_to(noise, shape).ravel().astype(s0.dtype)
        dt = self.sde_dt()
        t1, saveat = self._window(nudged)
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
