"""Ideal analog transformer block vs the digital one: fixed-point error and settle time.

The ideal analog block (ChipConfig.ideal(), CircuitConfig()) relaxed by ChipRelaxation
(diffrax Tsit5 to the steady state |F|/|z| <= 1e-10) against the digital block relaxed by Euler
(eps 0.25) to residual 1e-13, float64; wall time per settle after compilation (median of 5).

    .venv/bin/python benchmarks/results/analog_transformer_fixed_point.py

Writes analog_transformer_fixed_point.json next to this file.
"""

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import analogeq as aq
from analogeq.ep import FreeTerm
from analogeq.hardware import ChipConfig, ChipRelaxation
from analogeq.hardware.transformer import realize_transformer
from analogeq.models.transformer import EqTransformer

SIZES = [(5, 6, 8, 2), (32, 32, 64, 4)]


def timed(fn, args, n=5):
    out = fn(*args)
    jax.block_until_ready(out.state)
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args).state)
        ts.append(time.perf_counter() - t0)
    return out, float(np.median(ts))


def main():
    cfg = ChipConfig.ideal().replace(**{"dynamics.steady_tol": 1e-10})
    chip_relax = ChipRelaxation(cfg, max_steps=20_000)
    euler = aq.EulerRelaxation(eps=0.25, T1=20_000, T2=10, tol=1e-13, stop_at_tol=True)
    rows = []
    for v, t, d, h in SIZES:
        block = EqTransformer(v, t, d, h, key=jax.random.PRNGKey(0), dtype=jnp.float64)
        chip = realize_transformer(block, cfg, jax.random.PRNGKey(7))
        x = jax.random.randint(jax.random.PRNGKey(1), (t,), 0, v)
        fa = jax.jit(lambda c, x: chip_relax.free(FreeTerm(c, x), c.init_state(x)))
        fd = jax.jit(lambda b, x: euler.free(FreeTerm(b, x), b.init_state(x)))
        ra, ta = timed(fa, (chip, x))
        rd, td = timed(fd, (block, x))
        err = float(jnp.linalg.norm(ra.state - rd.state) / jnp.linalg.norm(rd.state))
        z = jax.random.normal(jax.random.PRNGKey(3), (t, d), jnp.float64)
        ferr = float(jnp.max(jnp.abs(chip.force(z, x) - block.force(z, x))) / jnp.max(jnp.abs(block.force(z, x))))
        row = {"V": v, "T": t, "d": d, "H": h, "fixed_point_rel_error": err, "force_rel_error_random_state": ferr,
               "analog_steps": int(ra.steps), "analog_time_tau": float(ra.time), "analog_residual": float(ra.residual),
               "analog_seconds": ta, "euler_steps": int(rd.steps), "euler_residual": float(rd.residual),
               "euler_seconds": td}
        print(row)
        rows.append(row)
    (Path(__file__).parent / "analog_transformer_fixed_point.json").write_text(json.dumps(
        {"machine": "2-core CPU (shared with other runs), float64", "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
