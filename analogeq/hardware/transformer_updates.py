"""Training the analog equilibrium transformer on its chip: gradients in weight units and writes.

An :class:`~analogeq.hardware.transformer.AnalogEqTransformer` holds two kinds of parameters:

* the crossbar tiles (:data:`~analogeq.hardware.transformer.TILES`: ``W_q, W_k, W_v, W_o,
  W_1, b_1, W_2, b_2``), weights ``W = s gain_t (G+ - G-) / G_ref`` written as conductances;
* the digital parts (:data:`DIGITAL`: the embeddings ``tok``, ``pos``, the layer-norm trims
  ``ln1_g, ln1_b, ln2_g, ln2_b`` and the readout ``W_h``), numbers in the periphery.

A force-form estimator (EP, AsymEP, the implicit adjoint) differentiates the block's force
with respect to every array of the realization, conductances included. :class:`InWeightUnits`
turns that into the gradient with respect to the block's parameters as the read applies them
(:func:`block_gradient`: ``dL/dW = (G_ref / s) dL/dG+``, :meth:`Tile.weight_gradient`), a dict
keyed like :data:`~analogeq.models.transformer.PARAMETER_NAMES`. That is the quantity the chip
measures (a contrast at the nodes times the signals driving each crossbar), the one a digital
block's gradient is compared with, and the one the probe's cosine is taken over (the circuit
mismatch arrays, which have gradients too, are not parameters).

:class:`BlockUpdater` applies it: one optax rule on the weight-unit gradient of every parameter
(so ``warmup`` and ``grad_clip`` act on the block as on the digital one), the tile changes
written as quantized conductance writes (:func:`analogeq.hardware.programming.write_tile`:
levels, stochastic rounding, programming noise, device bounds, each tile's stage gain) and the
digital parts changed as numbers.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import optax

from analogeq.ep.base import AbstractEstimator, Estimate
from analogeq.hardware.programming import ROUNDINGS, write_weights
from analogeq.hardware.transformer import TILES, AnalogEqTransformer
from analogeq.models.transformer import PARAMETER_NAMES
from analogeq.updaters import AbstractUpdater

__all__ = ["DIGITAL", "TRAIN_HEADROOM", "BlockUpdater", "InWeightUnits", "block_gradient",
           "block_parameters"]

DIGITAL = tuple(n for n in PARAMETER_NAMES if n not in TILES)
"""The block's parameters held digitally in the periphery (embeddings, layer-norm trims,
readout)."""

TRAIN_HEADROOM = 2.0
"""Growth room of each tile's weights when a block is realized for training
(:func:`~analogeq.hardware.transformer.realize_transformer`'s ``headroom``): the largest
initial weight sits at half the conductance window, so a weight can double before it reaches a
device bound (the ``gain_headroom`` default of per-tile gains)."""


def _check_chip(chip) -> None:
    if not isinstance(chip, AnalogEqTransformer):
        raise TypeError(f"expected an AnalogEqTransformer (analogeq.hardware.realize_transformer); "
                        f"got {type(chip).__name__}")


def block_parameters(chip: AnalogEqTransformer) -> dict:
    """The block's parameters as the chip applies them (dimensionless weight units), by name in
    :data:`~analogeq.models.transformer.PARAMETER_NAMES` order: each tile's read weights
    (:meth:`AnalogEqTransformer.weight`) and the digital arrays."""
    _check_chip(chip)
    return {n: chip.weight(n) if n in TILES else getattr(chip, n) for n in PARAMETER_NAMES}


def block_gradient(chip: AnalogEqTransformer, grads: AnalogEqTransformer) -> dict:
    """A gradient with respect to the realization's arrays (``grads``, shaped like ``chip``:
    ``dL/dG`` [1/S] on the tiles) as the gradient with respect to :func:`block_parameters`
    (weight units; the digital parts as they are). Gradients of the circuit-mismatch arrays are
    dropped: they are properties of the chip instance, not parameters."""
    _check_chip(chip)
    cb = chip.config.crossbar
    return {n: chip.tiles[n].weight_gradient(grads.tiles[n], cb) if n in TILES else getattr(grads, n)
            for n in PARAMETER_NAMES}


class InWeightUnits(AbstractEstimator):
    """Wraps an estimator run on an :class:`AnalogEqTransformer`: its gradient comes back in
    weight units (:func:`block_gradient`), a dict by parameter name.

    Attributes:
        inner: the wrapped estimator (e.g. ``WithReadoutGradient(EP(...))``).
    """

    inner: AbstractEstimator

    def nudges(self):
        return self.inner.nudges()

    def estimate(self, model, cost, relaxation, xs, targets, *, gate: bool = True, key=None) -> Estimate:
        est = self.inner.estimate(model, cost, relaxation, xs, targets, gate=gate, key=key)
        return eqx.tree_at(lambda e: e.grads, est, block_gradient(model, est.grads))


class BlockUpdater(AbstractUpdater):
    """On-chip update of an :class:`AnalogEqTransformer` (module docstring): ``optimizer`` maps
    the weight-unit gradient to changes; tiles get quantized conductance writes, the digital
    parts add their change.

    With ``accumulate`` the tile writes are mixed-precision, as
    :class:`~analogeq.hardware.programming.ConductanceUpdater`'s (Nandakumar et al., Front.
    Neurosci. 14, 406 (2020)): each pair's changes add up in a digital accumulator ``chi``
    (device-pair weight units) and only whole device levels are written
    (:func:`~analogeq.hardware.programming.write_weights`); continuous conductances
    (``n_levels = 0``) are written exactly.

    Attributes:
        optimizer: rule mapping the weight-unit gradient to weight changes (optax).
        rounding: ``"stochastic"`` (default: unbiased, writes smaller than a level act on
            average) or ``"nearest"`` level rounding of the writes (without ``accumulate``).
        accumulate: mixed-precision writes through a digital accumulator (default ``False``).
    """

    optimizer: optax.GradientTransformation = eqx.field(static=True)
    rounding: str = eqx.field(static=True, default="stochastic")
    accumulate: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}; got {self.rounding!r}")

    def init(self, chip: AnalogEqTransformer):
        opt = self.optimizer.init(block_parameters(chip))
        if not self.accumulate:
            return opt
        return {"opt": opt, "chi": {n: jnp.zeros_like(chip.tiles[n].g_pos) for n in TILES}}

    def update(self, chip: AnalogEqTransformer, grads, state, key, estimate=None):
        """``grads``: the weight-unit dict of :class:`InWeightUnits`, or a gradient shaped like
        ``chip`` (converted with :func:`block_gradient`)."""
        del estimate
        if isinstance(grads, AnalogEqTransformer):
            grads = block_gradient(chip, grads)
        opt = state["opt"] if self.accumulate else state
        dw, opt = self.optimizer.update(grads, opt, block_parameters(chip))
        chi = [state["chi"][n] for n in TILES] if self.accumulate else None
        written, chi = write_weights([chip.tiles[n] for n in TILES], [dw[n] for n in TILES],
                                     chip.config.crossbar, key, self.rounding, chi)
        new_state = {"opt": opt, "chi": dict(zip(TILES, chi))} if self.accumulate else opt
        new = eqx.tree_at(lambda c: c.tiles, chip, dict(zip(TILES, written)))
        new = eqx.tree_at(lambda c: tuple(getattr(c, n) for n in DIGITAL), new,
                          tuple(getattr(chip, n) + dw[n] for n in DIGITAL))
        return new, new_state
