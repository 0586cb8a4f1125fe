"""Many chips at once: a model realized on K chip instances and evaluated in one call.

A chip instance is everything :func:`~analogeq.hardware.realize.realize` draws from a key (device
bounds, programming error, quantization, neuron offset and gain mismatch) and, with pulsed
devices, the device-to-device spreads :func:`~analogeq.hardware.pulsed.attach_devices` draws.
A Monte Carlo over instances (the process-variation analysis of Pelgrom et al., IEEE JSSC 24,
1433, 1989, applied to crossbar weights as in Rasch et al., "A flexible and fast PyTorch toolkit
for simulating training and inference on analog crossbar arrays", AICAS 2021) maps one pure
per-chip function over the chip keys:

- ``"vmap"``: one ``jax.vmap`` over the keys, one compiled program;
- ``"shard"``: the keys split over the local devices (a 1-D :class:`jax.sharding.Mesh` over
  ``jax.devices()``, :func:`jax.shard_map`), each device running the ``vmap`` of its share;
- ``"loop"``: one compiled per-chip program called once per key from Python (the reference).

The three give the same per-chip numbers: each chip's randomness comes only from its own key,
and a vmapped batch element is computed by the same operations as an unbatched call.

Several devices on a CPU: XLA exposes one host device unless asked for more before JAX starts
its backend (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, or
:func:`use_host_devices`; ``analogeq compare --host-devices N`` and the environment variable
``ANALOGEQ_HOST_DEVICES`` do this for the command line). On a 2-core machine two host devices
keep both cores busy where XLA's one-device thread pool keeps about 1.7 busy.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from analogeq.costs import AbstractCost
from analogeq.ep import free_phase
from analogeq.evaluation import traced
from analogeq.hardware.chip import Chip
from analogeq.hardware.config import ChipConfig
from analogeq.hardware.dynamics import ChipRelaxation
from analogeq.hardware.pulsed import attach_devices, device_hardware
from analogeq.hardware.realize import realize
from analogeq.models import LeakyNetwork
from analogeq.stability import scored_accuracy
from analogeq.streams import device_key

MODES = ("auto", "vmap", "shard", "loop")
HOST_DEVICES_ENV = "ANALOGEQ_HOST_DEVICES"
_AXIS = "chips"


# --------------------------------------------------------------------------- host devices
def _backend_started() -> bool:
    from jax._src import (
        xla_bridge,  # no public query; the private flag is stable since 0.4
    )

    return bool(getattr(xla_bridge, "_backends", None))


def use_host_devices(n: int | str | None = None) -> int:
    """Ask XLA for ``n`` CPU devices (default: ``$ANALOGEQ_HOST_DEVICES``; ``None`` and unset:
    leave JAX's default). Must run before JAX's first computation in the process; afterwards
    a request that differs from the device count JAX already has is an error.

    Returns the number of host devices requested (``0`` when none was).
    """
    if n is None:
        n = os.environ.get(HOST_DEVICES_ENV) or None
    if n is None:
        return 0
    try:
        n = int(n)
    except ValueError:
        raise ValueError(f"{HOST_DEVICES_ENV} / --host-devices = {n!r}: expected an integer >= 1") from None
    if n < 1:
        raise ValueError(f"{HOST_DEVICES_ENV} / --host-devices = {n}: expected an integer >= 1")
    if _backend_started():
        have = len(jax.devices("cpu"))
        if have != n:
            raise ValueError(f"--host-devices {n}: JAX already started with {have} CPU device(s); "
                             f"set {HOST_DEVICES_ENV}={n} or XLA_FLAGS=--xla_force_host_platform_"
                             f"device_count={n} before the process starts")
        return n
    flag = "--xla_force_host_platform_device_count"
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(flag)]
    os.environ["XLA_FLAGS"] = " ".join([*flags, f"{flag}={n}"])
    jax.config.update("jax_num_cpu_devices", n)  # JAX >= 0.4.38 reads this, older ones XLA_FLAGS
    return n


# --------------------------------------------------------------------------- chip instances
def chip_hardware(hw: ChipConfig, device=None) -> ChipConfig:
    """The hardware a chip instance is realized on: ``hw``, or with a pulsed ``device`` the
    transimpedance gain that makes one device weight unit one chip weight unit
    (:func:`~analogeq.hardware.pulsed.device_hardware`)."""
    return hw if device is None else device_hardware(hw, device)


def deployable(model, hw: ChipConfig) -> LeakyNetwork:
    """The network to program: a :class:`Chip`'s weights read back (:meth:`Chip.as_model`), a
    :class:`LeakyNetwork` as it is; weights beyond the crossbar range ``+-w_max`` (a digitally
    trained model can leave it) clipped to it, as a write-verify loop saturates there."""
    net = model.as_model() if isinstance(model, Chip) else model
    if not isinstance(net, LeakyNetwork):
        raise TypeError(f"a chip realizes a LeakyNetwork or a Chip's weights; got {type(model).__name__}")
    limit = hw.crossbar.w_max
    clip = lambda ws: tuple(jnp.clip(w, -limit, limit) for w in ws)
    return LeakyNetwork(net.sizes, key=None, parameters=(clip(net.weights), clip(net.feedback), clip(net.biases)))


def instance(model: LeakyNetwork, hw: ChipConfig, key, device=None) -> Chip:
    """Chip instance ``key`` of ``model`` on ``hw`` (already :func:`chip_hardware`): realized
    from ``key`` and, with a pulsed ``device``, devices attached from ``fold_in(key, 1)``: the
    same key derivation as :class:`~analogeq.streams.Streams` (``chip``, ``devices``), so the
    instance of ``Streams.of(cfg).chip`` is the chip :func:`~analogeq.assembly.build_analog`
    trains."""
    chip = realize(model, hw, key)
    return chip if device is None else attach_devices(chip, device, device_key(key))


def chip_streams(key):
    """``(k_chip, k_probe, k_test)`` of Monte Carlo chip ``key``: the instance, the noise of a
    gradient probe on it, the noise of its test-set evaluation. Every per-chip function derives
    its keys here, so chip ``i`` is the same instance (and sees the same test noise) in the
    initial-model and the trained-model Monte Carlo of a report."""
    return tuple(jax.random.split(key, 3))


class ChipEvaluation(eqx.Module):
    """Per-chip evaluation ``(key, model, xs, ys) -> metrics``: chip instance ``k_chip`` of the
    model, free phase on ``xs`` with noise from ``k_test`` (:func:`chip_streams`), read out and
    scored.

    Metrics (scalars): ``test_acc``, ``test_loss``, ``settle_time_s`` (mean over samples,
    seconds), ``test_unconverged`` (samples whose settle did not reach ``steady_tol``).
    """

    relaxation: ChipRelaxation
    cost: AbstractCost
    device: eqx.Module | None = None

    def __call__(self, key, model, xs, ys) -> dict:
        k_chip, _, k_test = chip_streams(key)
        chip = instance(model, self.relaxation.config, k_chip, self.device)
        free = free_phase(chip, self.relaxation, xs, k_test)
        y = jax.vmap(chip.readout)(free.state)
        return {
            "test_acc": scored_accuracy(y, ys),
            "test_loss": jnp.mean(jax.vmap(self.cost)(y, ys)),
            "settle_time_s": jnp.mean(free.time) * self.relaxation.tau,
            "test_unconverged": jnp.sum(~free.converged),
        }


# --------------------------------------------------------------------------- mapping over keys
def resolve_mode(mode: str = "auto") -> str:
    """``auto``: ``shard`` when JAX has more than one local device, else ``vmap``."""
    if mode not in MODES:
        raise ValueError(f"Monte Carlo mode {mode!r}: choose one of {list(MODES)}")
    if mode == "auto":
        return "shard" if jax.local_device_count() > 1 else "vmap"
    return mode


@eqx.filter_jit
def _one(fn, item, args):
    return fn(item, *args)


def _batched(fn, items, args, batch_size):
    """``fn`` over ``items``: one vmap, or ``batch_size`` chips vmapped at a time in a scan."""
    f = lambda k: fn(k, *args)
    return jax.vmap(f)(items) if batch_size is None else jax.lax.map(f, items, batch_size=batch_size)


@eqx.filter_jit
def _vmapped(fn, items, args, batch_size):
    return _batched(fn, items, args, batch_size)


@eqx.filter_jit
def _sharded(fn, items, args, n_devices: int, batch_size):
    mesh = Mesh(np.asarray(jax.local_devices()[:n_devices]), (_AXIS,))
    dynamic, static = eqx.partition((fn, args), eqx.is_array)

    def local(ks, dyn):  # this device's share of the chips, vmapped as in "vmap"
        f, a = eqx.combine(dyn, static)
        return _batched(f, ks, a, batch_size)

    # Replicated operands and per-chip outputs only: no cross-device value to check.
    return jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(_AXIS), PartitionSpec()),
                         out_specs=PartitionSpec(_AXIS), check_vma=False)(items, dynamic)


def map_over(fn: Callable, items, *args, mode: str = "auto", batch_size: int | None = None,
             to_host: bool = True):
    """``fn(item, *args)`` for every chip's ``item``, stacked along a leading axis: the one
    mapping behind :func:`map_chips` (Monte Carlo evaluation) and
    :func:`analogeq.fleet.train_chips` (K chips trained by one step).

    Args:
        fn: a pure per-chip function (see :func:`map_chips`).
        items: a pytree whose array leaves hold one entry per chip along axis 0 (chip keys,
            or a stacked model and optimizer state).
        args: the same for every chip, replicated on every device.
        mode, batch_size: see :func:`map_chips`.
        to_host: return NumPy arrays (``True``) or JAX arrays left where they were computed
            (``False``: a training loop feeds them to the next step without a copy).
    """
    mode = resolve_mode(mode)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"Monte Carlo batch_size = {batch_size}: expected None or an integer >= 1")
    items = jax.tree.map(jnp.asarray, items)
    # A chip's hardware numbers as traced arguments: one program per structure, for any levels,
    # noise amplitudes or temperature (as the training step, analogeq.evaluation.traced).
    fn, args = traced((fn, args))
    n = jax.tree.leaves(items)[0].shape[0]
    stack = (lambda *v: np.stack([np.asarray(x) for x in v])) if to_host else (lambda *v: jnp.stack(v))
    if mode == "loop":
        rows = [_one(fn, jax.tree.map(operator.itemgetter(i), items), args) for i in range(n)]
        return jax.tree.map(stack, *rows)
    host = (lambda t: jax.tree.map(np.asarray, t)) if to_host else (lambda t: t)
    if mode == "vmap":
        return host(_vmapped(fn, items, args, batch_size))
    n_dev = jax.local_device_count()
    pad = -n % n_dev  # shard_map splits evenly: repeat the last chip, drop its copies after
    if pad:
        items = jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), items)
    # Placed as the program splits them (a no-op for a previous call's output): a training loop
    # that feeds the output back then calls one compiled program, not one per input placement.
    mesh = Mesh(np.asarray(jax.local_devices()[:n_dev]), (_AXIS,))
    items = jax.device_put(items, NamedSharding(mesh, PartitionSpec(_AXIS)))
    out = _sharded(fn, items, args, n_dev, batch_size)
    return host(jax.tree.map(lambda v: v[:n], out) if pad else out)


def map_chips(fn: Callable, keys, *args, mode: str = "auto", batch_size: int | None = None) -> dict:
    """``fn(key, *args)`` for every chip key, stacked along a leading axis (host arrays).

    Args:
        fn: a pure per-chip function (an :class:`equinox.Module` or a module-level function, so
            its compiled program is reused across calls); array leaves of ``fn`` and ``args`` are
            traced, the rest static.
        keys: chip keys, shape ``(K, 2)`` (``jax.random.split``).
        args: the same for every chip (model, data), replicated on every device.
        mode: ``"vmap"``, ``"shard"``, ``"loop"`` or ``"auto"`` (:func:`resolve_mode`).
        batch_size: chips vmapped together in ``vmap`` and ``shard`` (on each device); the rest
            are scanned over (:func:`jax.lax.map`). ``None``: all at once. A settle draws its
            noise in bulk, so memory grows with chips x samples x steps; on a CPU a few chips at
            a time can run faster than all of them.
    """
    return map_over(fn, jnp.asarray(keys), *args, mode=mode, batch_size=batch_size)


def evaluate_chips(model, hw: ChipConfig, keys, xs, ys, cost: AbstractCost, *, device=None,
                   mode: str = "auto", batch_size: int | None = None) -> dict:
    """Evaluate ``model`` on one chip instance per key (:class:`ChipEvaluation`).

    Args:
        model: a :class:`LeakyNetwork`, or a trained :class:`Chip` whose weights are read back
            and programmed onto the other instances (:func:`deployable`).
        hw: the chip's hardware description (without the device's ``G_ref``; added here).
        keys: chip keys, shape ``(K, 2)``.
        xs, ys: the evaluation set (inputs, integer labels).
        cost: the run's cost (for ``test_loss``).
        device: a pulsed device (:mod:`analogeq.devices`) under every crosspoint, or ``None``.
        mode, batch_size: see :func:`map_chips`.

    Returns:
        ``{metric: array of shape (K,)}`` (host arrays).
    """
    hw = chip_hardware(hw, device)
    fn = ChipEvaluation(ChipRelaxation(hw), cost, device)
    return map_chips(fn, keys, deployable(model, hw), jnp.asarray(xs), jnp.asarray(ys), mode=mode,
                     batch_size=batch_size)


def distribution(values) -> dict:
    """``{"mean", "std", "min", "max", "values"}`` of per-chip numbers (the report's format)."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()),
            "max": float(v.max()), "values": v.tolist()}
