"""``analogeq diagnose RUN_DIR``: stability diagnostics of a trained run."""

from __future__ import annotations

from pathlib import Path

from analogeq import cli_types as T


def cmd_diagnose(args) -> int:
    """Run :func:`analogeq.run_diagnostics.diagnose_run` and print the verdict table."""
    from analogeq.diagnostics.report import DiagnoseOptions, format_verdicts
    from analogeq.run_diagnostics import diagnose_run

    # tol None: the run's own convergence tolerance
    options = DiagnoseOptions(k=args.k, method=args.method, euler_steps=args.euler_steps,
                              t_max=args.t_max, tol=args.tol, seed=args.seed)
    if getattr(args, "analog", None):
        return _cmd_analog(args, options)
    report = diagnose_run(args.run_dir, n_inputs=args.n_inputs, options=options, out=args.out)
    print(f"{report['realization']}, step {report['step']}, state {tuple(report['state_shape'])}")
    print(format_verdicts(report))
    if report.get("hardware"):
        print("note: the chip settles in continuous time, so its stability is the sign of Re mu; "
              "the Euler columns say what the digital emulator would do with this field at the run's eps")
    out = Path(args.out) if args.out else Path(args.run_dir)
    print(f"wrote {out}/diagnose.json, diagnose.png")
    return 0


def _cmd_analog(args, options) -> int:
    """``--analog HARDWARE``: realize the run's EqTransformer as the analog block on HARDWARE and
    answer whether the Euler emulator's cycle exists in continuous time."""
    from analogeq.hardware.verdict import format_verdict
    from analogeq.run_diagnostics import analog_verdict

    out = analog_verdict(args.run_dir, args.analog, n_inputs=args.n_inputs, options=options,
                         seed=args.seed, out=args.out)
    print(format_verdict(out))
    d = Path(args.out) if args.out else Path(args.run_dir)
    print(f"wrote {d.parent if d.name == 'checkpoint.eqx' else d}/analog_verdict.json")
    return 0


def register(subparsers) -> None:
    """Add the ``diagnose`` subcommand to an ``argparse`` subparsers object."""
    p = subparsers.add_parser(
        "diagnose", help="stability diagnostics of a trained run (eigenvalues, limit cycles)",
        description="Load RUN_DIR's config.toml and checkpoint, relax the model at a few test inputs, "
        "compute the leading eigenvalues of M = I + eps J and of J at the fixed point, classify "
        "stable / Euler-artifact / continuous Hopf, check a long Euler relaxation at the run's eps "
        "and a continuous-time relaxation for limit cycles; writes diagnose.json and diagnose.png.")
    p.add_argument("run_dir", type=T.in_dir, help="run directory of 'analogeq train' (or its checkpoint.eqx)")
    p.add_argument("--n-inputs", type=T.integer(1, 4096), default=4, help="test inputs to diagnose, 1..4096 (default 4)")
    p.add_argument("--k", type=T.integer(1, 1024), default=6,
                   help="leading eigenvalues of each kind, 1..1024 (default 6)")
    p.add_argument("--method", choices=["auto", "arpack", "dense"], default="auto",
                   help="eigenvalue method (default auto: ARPACK, dense for tiny states)")
    p.add_argument("--euler-steps", type=T.integer(1, 10_000_000), default=4000,
                   help="Euler steps of the limit-cycle check, 1..1e7 (default 4000)")
    p.add_argument("--t-max", type=T.number(0.0, 1e7, lo_open=True, unit="tau"), default=400.0,
                   help="continuous-time horizon of the limit-cycle check, units of tau (default 400)")
    p.add_argument("--tol", type=T.number(0.0, 1.0, lo_open=True), default=None,
                   help="residual |F|/|s| counted as converged (default: the run's tol)")
    p.add_argument("--seed", type=T.seed, default=0, help="seed of projections and ARPACK start vector")
    p.add_argument("--out", type=T.out_dir, default=None, help="output directory (default: RUN_DIR)")
    p.add_argument("--analog", type=T.preset_or_file("chip"), default=None, metavar="HARDWARE",
                   help="eqtransformer runs: realize the block as analog circuits on HARDWARE (a preset "
                   "such as 'ideal' or 'realistic', or a TOML file), relax it in continuous time and "
                   "report whether the Euler emulator's cycle at the run's eps exists there; writes "
                   "analog_verdict.json")
    p.set_defaults(func=cmd_diagnose)
