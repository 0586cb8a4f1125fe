"""A realized chip: the leaky-integrator network built from crossbar tiles and RC neurons.

Physics (per neuron ``i``; voltages in units of ``v_unit``, time in units of ``tau = C/g_leak``):
the tile currents ``I = sum_j (G+_ij - G-_ij) u_j`` enter a transimpedance stage with feedback
conductance ``G_ref`` whose output drives the RC node, so

    tau dv_i/dt = -v_i + sum_j W_ij u_j + b_i,      W = (G+ - G-) / G_ref,

with presynaptic outputs ``u_j = (1 + gamma_j) R tanh((v_j + o_j) / R)`` from the nonlinearity
circuit (rails ``R = rail / v_unit``, gain error ``gamma_j``, offset ``o_j``) and inputs from the
DAC. With an amplifier pole the stage output ``y`` is an extra state,
``tau_a dy/dt = sum_j W_ij u_j + b_i - y`` and ``tau dv/dt = -v + y``. With every non-ideality
off this is exactly :class:`analogeq.models.LeakyNetwork`.
"""

from __future__ import annotations


import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array

from analogeq.hardware.config import ChipConfig
from analogeq.hardware.constants import K_B
from analogeq.hardware.converters import quantize
from analogeq.hardware.tile import Tile  # re-exported: Chip's tiles
from analogeq.models.layered import LeakyNetwork, _Layered


class Chip(_Layered):
    """A chip instance: tiles for forward weights, feedback and biases, plus neuron mismatch.

    Attributes:
        forward: tiles ``W_l`` (shape ``(n_{l+1}, n_l)``).
        feedback: tiles ``B_l`` (shape ``(n_{l+1}, n_{l+2})``).
        biases: one-column tiles driven by ``v_unit`` (shape ``(n_{l+1},)``).
        offset: input-referred offset of each neuron's nonlinearity (units of ``v_unit``).
        gain: gain of each neuron's nonlinearity (1 = nominal).
        config: the hardware description.
    """

    forward: tuple[Tile, ...]
    feedback: tuple[Tile, ...]
    biases: tuple[Tile, ...]
    offset: Array
    gain: Array
    config: ChipConfig  # a pytree: its numbers are traced, its switches static

    @property
    def n_neurons(self) -> int:
        return sum(self.sizes[1:])

    @property
    def has_pole(self) -> bool:
        return self.config.neuron.amp_pole_tau > 0

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (self.n_neurons * (2 if self.has_pole else 1),)

    @property
    def tau(self) -> float:
        """Neuron time constant ``C / g_leak`` [s]."""
        return self.config.neuron.tau

    def tiles(self) -> tuple[Tile, ...]:
        return self.forward + self.feedback + self.biases

    def map_tiles(self, f) -> Chip:
        """The chip with tile ``k`` (in :meth:`tiles` order) replaced by ``f(k, tile)``."""
        new = [f(k, t) for k, t in enumerate(self.tiles())]
        nf, nb = len(self.forward), len(self.feedback)
        return eqx.tree_at(lambda c: (c.forward, c.feedback, c.biases), self,
                           (tuple(new[:nf]), tuple(new[nf:nf + nb]), tuple(new[nf + nb:])))

    def voltages(self, s: Array) -> Array:
        """Node voltages (units of ``v_unit``) from a state that may include amplifier outputs."""
        return s[: self.n_neurons]

    def readout(self, s: Array) -> Array:
        return self.voltages(s)[-self.sizes[-1]:]

    def rho(self, v: Array) -> Array:
        """Outputs of the nonlinearity circuits for node voltages ``v`` (all neurons)."""
        r = self.config.neuron.rail / self.config.neuron.v_unit
        return self.gain * r * jnp.tanh((v + self.offset) / r)

    def dac(self, x: Array) -> Array:
        p, vu = self.config.periphery, self.config.neuron.v_unit
        return quantize(x * vu, p.dac_bits, p.dac_range) / vu

    def tile_inputs(self, x: Array, v: Array) -> tuple[Array, ...]:
        """What drives each tile's columns (units of ``v_unit``), in :meth:`tiles` order, for
        input ``x`` and node voltages ``v``: the DAC output into the first forward tile, the
        presynaptic nonlinearity outputs into the others and the feedback tiles, and the unit
        bias line (``1``, i.e. ``v_unit``) into the bias tiles."""
        u = self.layers(self.rho(v))
        below = [self.dac(x)] + u[:-1]
        one = jnp.ones((1,), v.dtype)
        return tuple(below) + tuple(u[1:]) + (one,) * len(u)

    def drive(self, v: Array, x: Array) -> Array:
        """``sum_j W_ij u_j + b_i`` for every neuron (units of ``v_unit``): each layer's forward,
        bias and feedback tile read (:meth:`Tile.read`) onto its neurons' nodes."""
        cb, vu = self.config.crossbar, self.config.neuron.v_unit
        inputs = self.tile_inputs(x, v)
        n, nf = len(self.forward), len(self.feedback)
        fwd, fb, bias = inputs[:n], inputs[n:n + nf], inputs[n + nf:]
        out = []
        for l in range(n):
            d = self.forward[l].read(fwd[l], cb, v_unit=vu) + self.biases[l].read(bias[l], cb, v_unit=vu)
            if l < nf:
                d = d + self.feedback[l].read(fb[l], cb, v_unit=vu)
            out.append(d)
        return jnp.concatenate(out)

    def force(self, s: Array, x: Array) -> Array:
        v = self.voltages(s)
        d = self.drive(v, x)
        if not self.has_pole:
            return -v + d
        y = s[self.n_neurons:]
        ratio = self.config.neuron.amp_pole_tau / self.tau
        return jnp.concatenate([-v + y, (d - y) / ratio])

    def jvp_force(self, s: Array, x: Array, w: Array) -> Array:
        """``J w`` through forward tile reads (:meth:`Tile.read`) of the presynaptic output
        changes ``rho_hw'(v) w_v``, ``rho_hw' = gain (1 - tanh^2((v + offset) / R))``: the DAC
        input and the bias lines do not move. With an amplifier pole the stage output's row is
        ``(D w_v - w_y) tau / tau_a`` and the node's ``-w_v + w_y``."""
        cb, n = self.config.crossbar, self.n_neurons
        v, dv = self.voltages(s), w[:n]
        r = self.config.neuron.rail / self.config.neuron.v_unit
        du = self.layers(self.gain * (1 - jnp.tanh((v + self.offset) / r) ** 2) * dv)
        out = []
        for l in range(len(self.forward)):
            d = self.forward[l].read(du[l - 1], cb) if l > 0 else jnp.zeros_like(du[0])
            if l < len(self.feedback):
                d = d + self.feedback[l].read(du[l + 1], cb)
            out.append(d)
        dd = jnp.concatenate(out)
        if not self.has_pole:
            return -dv + dd
        dy = w[n:]
        ratio = self.config.neuron.amp_pole_tau / self.tau
        return jnp.concatenate([-dv + dy, (dd - dy) / ratio])

    def vjp_force(self, s: Array, x: Array, w: Array) -> Array:
        """``J^T w`` through transposed tile reads (:meth:`Tile.read_t`, rows driven by the
        drive's adjoint, columns sensed), times ``rho_hw'(v)``. With an amplifier pole the
        drive's adjoint is ``w_y tau / tau_a``, the node part ``-w_v + rho_hw' D^T (...)`` and
        the stage output's ``w_v - w_y tau / tau_a``."""
        cb, n = self.config.crossbar, self.n_neurons
        v, a = self.voltages(s), w[:n]
        ratio = self.config.neuron.amp_pole_tau / self.tau if self.has_pole else 1.0
        c = self.layers(w[n:] / ratio if self.has_pole else a)
        g = [jnp.zeros_like(cl) for cl in c]
        for l in range(len(self.forward)):
            if l > 0:
                g[l - 1] = g[l - 1] + self.forward[l].read_t(c[l], cb)
            if l < len(self.feedback):
                g[l + 1] = g[l + 1] + self.feedback[l].read_t(c[l], cb)
        r = self.config.neuron.rail / self.config.neuron.v_unit
        gv = self.gain * (1 - jnp.tanh((v + self.offset) / r) ** 2) * jnp.concatenate(g)
        if not self.has_pole:
            return -a + gv
        return jnp.concatenate([-a + gv, a - w[n:] / ratio])

    def init_state(self, x: Array) -> Array:
        return jnp.zeros(self.state_shape, self.offset.dtype)

    def update_adjoint(self, a: Array) -> Array:
        """With an amplifier pole the adjoint's amplifier part is exactly ``(tau_a / tau)``
        times its node part at the fixed point (the stage output ``y`` enters the cost only
        through ``v``: ``lambda_v - lambda_y tau / tau_a = 0``), so the update uses the node
        contrast, which the ADC reads at 10x the amplitude for ``tau_a = 0.1 tau``."""
        if not self.has_pole:
            return a
        a_v = a[: self.n_neurons]
        return jnp.concatenate([a_v, (self.config.neuron.amp_pole_tau / self.tau) * a_v])

    def local_signals(self, x: Array, s: Array, a: Array) -> tuple[tuple[Array, Array], ...]:
        """The rank-one factors of one sample's update, per tile in :meth:`tiles` order.

        For input ``x``, state ``s`` and adjoint ``a`` (as in ``g = a^T dF/dtheta``), tile
        ``k`` gets ``(inp_k, d_k)`` with ``dL/dW_k = outer(d_k, inp_k)`` in weight units:
        ``inp`` is what drives the tile's columns (DAC output, presynaptic nonlinearity outputs,
        or 1 for a bias column) and ``d`` the adjoint of the rows' drive. These are the signals
        a crossbar's periphery has for a pulsed rank-one update.
        """
        n = self.n_neurons
        drive_adjoint = a[n:] / (self.config.neuron.amp_pole_tau / self.tau) if self.has_pole else a[:n]
        d = self.layers(drive_adjoint)
        rows = d + d[: len(self.feedback)] + d  # the layer each tile (tiles() order) drives
        return tuple(zip(self.tile_inputs(x, self.voltages(s)), rows))

    def for_settle(self) -> Chip:
        """The chip with each tile's wires solved once (:meth:`Tile.with_wires`): a settle's
        conductances are fixed, so its reads are matrix products with the tiles' transfer
        matrices. The chip itself with ideal wires."""
        if not self.config.crossbar.wired:
            return self
        return self.map_tiles(lambda k, t: t.with_wires(self.config.crossbar))

    def update_gradient(self, xs: Array, states: Array, weighted: Array):
        """The gradient the chip's update senses: with ideal wires the exact force gradient;
        with IR drop each device's row adjoint times the voltage across it
        (:meth:`Tile.sensed_gradient`), which leaves out how a device's conductance moves the
        other devices' voltages -- the chip's exact gradient (autodiff through the wire
        networks) is :func:`analogeq.ep.force_gradient`."""
        cb = self.config.crossbar
        if not cb.wired:
            return super().update_gradient(xs, states, weighted)
        signals = jax.vmap(self.local_signals)(xs, states, weighted)
        sensed = [t.sensed_gradient(inp, d, cb) for t, (inp, d) in zip(self.tiles(), signals)]
        zero = jax.tree_util.tree_map(jnp.zeros_like, eqx.filter(self, eqx.is_inexact_array))
        return zero.map_tiles(lambda k, t: eqx.tree_at(lambda u: (u.g_pos, u.g_neg), t, sensed[k]))

    @property
    def read_noise_per_sample(self) -> bool:
        """``crossbar.read_noise_scope == "sample"``: one read-noise draw per sample."""
        return self.config.crossbar.read_noise_scope == "sample"

    def sample_phase(self, key) -> Chip:
        sigma = self.config.crossbar.read_noise
        if not self.config.crossbar.on("read_noise"):  # a static switch; the amplitude is traced
            return self
        keys = jax.random.split(key, len(self.tiles()))
        return self.map_tiles(lambda k, t: t.with_read_noise(keys[k], sigma))

    def noise(self):
        """White-noise amplitude per state (units of ``v_unit`` per ``sqrt(tau)``).

        Node: the leak conductance's Johnson noise (two-sided PSD ``2 k T g_leak``) gives
        ``sqrt(2 k T / C) / v_unit``, so an isolated node has variance ``kT / C``. Crossbar:
        each row's devices (PSD ``2 k T sum G``) through the ``1/G_ref`` stage give
        ``sqrt(2 k T sum_j G_ij / tau) / (G_ref v_unit)``, entering the node (or the amplifier);
        with per-tile gains each tile's devices count with its gain squared
        (:meth:`Tile.noise_conductance`).
        """
        cfg = self.config
        kt = K_B * cfg.noise.temperature
        if not cfg.noise.on("temperature") or not (cfg.neuron.kTC_noise or cfg.crossbar.thermal_noise):
            return None
        vu, n = cfg.neuron.v_unit, self.n_neurons
        node = jnp.full((n,), jnp.sqrt(2 * kt / cfg.neuron.C) / vu if cfg.neuron.kTC_noise else 0.0,
                        self.offset.dtype)
        xbar = jnp.zeros((n,), self.offset.dtype)
        if cfg.crossbar.thermal_noise:
            rows = []
            for l in range(len(self.sizes) - 1):
                g = [self.forward[l], self.biases[l]] + ([self.feedback[l]] if l < len(self.feedback) else [])
                rows.append(sum(t.noise_conductance(cfg.crossbar) for t in g))
            gsum = jnp.concatenate(rows)
            xbar = jnp.sqrt(2 * kt * gsum / self.tau) / (cfg.crossbar.G_ref * vu)
        if not self.has_pole:
            return jnp.sqrt(node**2 + xbar**2)
        ratio = cfg.neuron.amp_pole_tau / self.tau
        return jnp.concatenate([node, xbar / ratio])

    def as_model(self) -> LeakyNetwork:
        """The network the chip's conductances currently encode (ignoring circuit mismatch)."""
        return self._as_network(lambda t: t.weights(self.config.crossbar), self)

    def weight_gradient(self, grads: Chip) -> LeakyNetwork:
        """A chip gradient (w.r.t. conductances) in weight units, shaped like :meth:`as_model`:
        ``dL/dW = G_ref dL/dG+ = -G_ref dL/dG-`` (the average of both; :meth:`Tile.weight_gradient`)."""
        cb = self.config.crossbar
        pairs = lambda ts, gs: tuple(t.weight_gradient(g, cb) for t, g in zip(ts, gs))
        return LeakyNetwork(self.sizes, key=None, parameters=(
            pairs(self.forward, grads.forward), pairs(self.feedback, grads.feedback),
            pairs(self.biases, grads.biases)))

    def _as_network(self, f, chip) -> LeakyNetwork:
        params = tuple(tuple(f(t) for t in ts) for ts in (chip.forward, chip.feedback, chip.biases))
        return LeakyNetwork(self.sizes, key=None, parameters=params)
