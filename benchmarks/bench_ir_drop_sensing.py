"""How far the chip's sensed EP update is from its exact gradient under IR drop (issue 15).

The chip of ``tests/test_ir_drop.py`` (``realistic`` preset, noise and amplifier pole off, a
5-7-6-3 network on 3 x 4 tiles, float64) with wire resistance: for one batch of 4 states and
adjoints, the sensed update (:meth:`analogeq.hardware.Chip.update_gradient`: each device's row
adjoint times the voltage across it) against the exact gradient through the wire networks
(:func:`analogeq.ep.force_gradient`), in weight units.

    python benchmarks/bench_ir_drop_sensing.py
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import analogeq as aq
from analogeq.ep.gradients import compare_gradients, force_gradient
from analogeq.hardware import ChipConfig, realize

jax.config.update("jax_enable_x64", True)

CASES = [(0.0, 0.0, 0.0), (2.5, 0.0, 0.0), (2.5, 100.0, 50.0), (5.0, 5.0, 5.0), (10.0, 10.0, 10.0),
         (50.0, 100.0, 50.0), (500.0, 100.0, 50.0)]


def main() -> None:
    f64 = jnp.float64
    model = aq.LeakyNetwork((5, 7, 6, 3), key=jax.random.PRNGKey(0), asymmetry=0.6, gain=0.8, dtype=f64)
    xs = jax.random.normal(jax.random.PRNGKey(1), (4, 5), f64)
    ss = 0.5 * jax.random.normal(jax.random.PRNGKey(2), (4, 16), f64)
    a = jax.random.normal(jax.random.PRNGKey(3), (4, 16), f64)
    base = ChipConfig.preset("realistic").replace(**{
        "crossbar.tile_rows": 3, "crossbar.tile_cols": 4, "neuron.amp_pole_tau": 0.0})
    print("r_segment r_drive r_sense [Ohm]   cosine        rel. error")
    for r_seg, r_drv, r_sns in CASES:
        hw = base.replace(**{"crossbar.r_segment": r_seg, "crossbar.r_drive": r_drv, "crossbar.r_sense": r_sns})
        chip = realize(model, hw, jax.random.PRNGKey(1))
        c = compare_gradients(chip.weight_gradient(chip.update_gradient(xs, ss, a)),
                              chip.weight_gradient(force_gradient(chip, xs, ss, a)))["overall"]
        print(f"{r_seg:9g} {r_drv:7g} {r_sns:7g}         {c['cosine']:.6f}    {c['rel_error']:.3e}")


if __name__ == "__main__":
    main()
