"""Effect sizes of the analog transformer block's non-idealities on its fixed point.

For each non-ideality alone (everything else ideal) and for the static part of the realistic
chip with every circuit non-ideality on: the relative distance ``|z_a* - z_d*| / |z_d*|`` of the
analog fixed point (diffrax, Tsit5 to residual 1e-10) from the digital one (Euler to 1e-13),
over 3 chip keys x 2 input sequences, and the analog ``max Re mu`` at its fixed point.

    .venv/bin/python benchmarks/results/analog_transformer_effects.py [RUN_DIR]

Writes analog_transformer_effects.json / .md next to this file. RUN_DIR: a trained
eqtransformer run (default: a freshly initialized block V=5, T=6, d=8, H=2, float64).
"""

import json
import sys
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import analogeq as aq
from analogeq.diagnostics import dense_jacobian, settle
from analogeq.diagnostics.report import to_float64
from analogeq.ep import FreeTerm
from analogeq.hardware import ChipConfig
from analogeq.hardware.transformer import CircuitConfig, realize_transformer
from analogeq.models.transformer import EqTransformer

HERE = Path(__file__).parent
IDEAL = ChipConfig.ideal()
REAL = ChipConfig.preset("realistic")
STATIC = {"crossbar.read_noise": 0.0, "crossbar.thermal_noise": False, "neuron.kTC_noise": False,
          "noise.temperature": 0.0}
CIRC = CircuitConfig(mult_gain_sigma=0.02, mult_offset_sigma=2e-3, softmax_gain_sigma=0.05,
                     norm_gain_sigma=0.02)
CASES = [
    ("crossbar.n_levels = 64", IDEAL.replace(**{"crossbar.n_levels": 64}), CircuitConfig()),
    ("crossbar.prog_noise = 0.005", IDEAL.replace(**{"crossbar.prog_noise": 0.005}), CircuitConfig()),
    ("crossbar.d2d_bounds = 0.1 (64 levels)", IDEAL.replace(**{"crossbar.d2d_bounds": 0.1,
                                                             "crossbar.n_levels": 64}), CircuitConfig()),
    ("crossbar.read_noise = 0.01 (one settle's draw)", IDEAL.replace(**{"crossbar.read_noise": 0.01}),
     CircuitConfig()),
    ("neuron offset 1 mV + gain 2 % (GELU)", IDEAL.replace(**{"neuron.offset_sigma": 1e-3,
                                                             "neuron.gain_sigma": 0.02}), CircuitConfig()),
    ("neuron.amp_pole_tau = 1 ns", IDEAL.replace(**{"neuron.amp_pole_tau": 1e-9}), CircuitConfig()),
    ("DAC 8 bit, +-1 V (clips x_in)", IDEAL.replace(**{"periphery.dac_bits": 8}), CircuitConfig()),
    ("DAC 8 bit, +-4 V", IDEAL.replace(**{"periphery.dac_bits": 8, "periphery.dac_range": 4.0}),
     CircuitConfig()),
    ("multiplier gain 2 %", IDEAL, CircuitConfig(mult_gain_sigma=0.02)),
    ("multiplier offset 2 mV", IDEAL, CircuitConfig(mult_offset_sigma=2e-3)),
    ("multiplier noise 1 mV (one settle's draw)", IDEAL, CircuitConfig(mult_noise=1e-3)),
    ("softmax exponentiator gain 5 %", IDEAL, CircuitConfig(softmax_gain_sigma=0.05)),
    ("normalization gain 2 %", IDEAL, CircuitConfig(norm_gain_sigma=0.02)),
    ("GELU rails +-1 V", IDEAL, CircuitConfig(gelu_rails=True)),
    ("realistic (static, DAC off) + all circuits", REAL.replace(**STATIC, **{"periphery.dac_bits": 0}), CIRC),
    ("realistic (static) + all circuits", REAL.replace(**STATIC), CIRC),
]


def main(run_dir=None):
    if run_dir:
        from analogeq.runs import load_run

        run = load_run(run_dir)
        block = to_float64(run.model)
        xs = jnp.asarray(np.asarray(run.parts.data.x_test[:2]))
        what = f"trained run {run_dir} (step {run.step})"
    else:
        block = EqTransformer(5, 6, 8, 2, key=jax.random.PRNGKey(0), dtype=jnp.float64)
        xs = jax.random.randint(jax.random.PRNGKey(1), (2, 6), 0, 5)
        what = "initialized block V=5 T=6 d=8 H=2 (key 0)"
    relax = aq.EulerRelaxation(eps=0.25, T1=20000, T2=10, tol=1e-13, stop_at_tol=True)
    zd = [relax.free(FreeTerm(block, x), block.init_state(x)).state for x in xs]
    rows = []
    t0 = time.time()
    for name, cfg, circ in CASES:
        shifts, res = [], []
        for k in range(3):
            chip = realize_transformer(block, cfg, jax.random.PRNGKey(100 + k), circuits=circ)
            if "settle's draw" in name:
                chip = chip.sample_phase(jax.random.PRNGKey(200 + k))
            for x, z in zip(xs, zd):
                s, _, _, _ = settle(eqx.Partial(chip.force, x=x), chip.init_state(x), tol=1e-10)
                shifts.append(float(jnp.linalg.norm(chip.nodes(s) - z) / jnp.linalg.norm(z)))
                mu = np.linalg.eigvals(dense_jacobian(eqx.Partial(chip.force, x=x), s))
                res.append(float(mu.real.max()))
        rows.append({"case": name, "shift_mean": float(np.mean(shifts)), "shift_max": float(np.max(shifts)),
                     "max_re_mu": float(np.max(res))})
        print(f"{name:48s} shift mean {np.mean(shifts):.3e} max {np.max(shifts):.3e}  max Re mu {np.max(res):+.4f}")
    mu_d = max(float(np.linalg.eigvals(dense_jacobian(eqx.Partial(block.force, x=x), z)).real.max())
               for x, z in zip(xs, zd))
    out = {"model": what, "digital_max_re_mu": mu_d, "rows": rows, "seconds": time.time() - t0,
           "machine": "2-core CPU (shared), float64"}
    (HERE / "analog_transformer_effects.json").write_text(json.dumps(out, indent=2))
    md = [(f"Fixed-point shift of the analog block vs the digital one, {what}; 3 chip keys x 2 inputs; "
           f"digital max Re mu = {mu_d:+.4f} / tau."), "",
          "| non-ideality (alone) | mean rel. shift | max rel. shift | analog max Re mu (1/tau) |",
          "|---|---|---|---|"]
    md += [f"| {r['case']} | {r['shift_mean']:.2e} | {r['shift_max']:.2e} | {r['max_re_mu']:+.4f} |" for r in rows]
    (HERE / "analog_transformer_effects.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
