"""``analogeq sweep SWEEP.toml``: the command line of :func:`analogeq.sweep.run_sweep`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from analogeq import cli_types as T

DESCRIPTION = """\
Train one run per point of a grid and/or random sample of hardware and training parameters,
times each seed and chip instance listed in [sweep] seeds / chips. Each finished run is stored
under OUT/runs/ by a hash of its full configuration, so rerunning the same command after an
interruption computes only the missing runs. Writes results.csv/json (one row per run),
points.csv (mean/std over replicates) and curves.png / heatmap.png / scatter.png.

Runs execute in this process by default, on N local worker processes with --workers N, or on
any Dask cluster with --scheduler ADDRESS (for SLURM start the cluster with dask-jobqueue's
SLURMCluster and pass its scheduler address; see docs/sweeps.md)."""


def cmd_sweep(args) -> int:
    from analogeq.sweep.driver import load_spec, run_sweep
    from analogeq.tables import format_table

    spec = load_spec(args.spec)
    if args.dry_run:
        runs = spec.runs()
        print(f"sweep {spec.name!r}: {len(spec.points())} points, {len(runs)} runs")
        for r in runs:
            print(r.key, dict(r.point), f"seed={r.seed} chip={r.chip_seed}")
        return 0
    out = Path(args.out) if args.out else Path("runs") / "sweeps" / spec.name
    result = run_sweep(args.spec, out, scheduler=args.scheduler, workers=args.workers,
                       progress=not args.no_progress)
    metrics = [m for m in spec.metrics if result.points and f"{m}_mean" in result.points[0]]
    cols = [(a, a, "") for a in spec.axes] + [("n", "n", "d")]
    for m in metrics:
        cols += [(f"{m}_mean", m, ".4g"), (f"{m}_std", "+-", ".2g")]
    print(format_table(result.points, cols))
    print(f"{result.computed} runs computed, {result.cached} reused from {out}/runs")
    print("wrote " + ", ".join(str(f) for f in result.files))
    if result.failed:
        print(f"{len(result.failed)} runs failed (rerun the command to retry them):")
        for key, err in result.failed.items():
            print(f"  {key}: {err}")
        return 1
    return 0


_ADDRESS = re.compile(r"^(?:(tcp|tls|ws|wss|ucx|inproc)://)?([A-Za-z0-9_.\-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")


def scheduler_address(text: str) -> str:
    """``--scheduler``: ``[protocol://]host:port`` with a port in 1..65535."""
    m = _ADDRESS.match(text.strip())
    if m is None or not 1 <= int(m.group(3)) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a Dask scheduler address [protocol://]host:port, e.g. "
                                         f"tcp://10.0.0.1:8786; got {text!r}")
    return text.strip()


def register(sub) -> None:
    p = sub.add_parser("sweep", help="sweep hardware/training parameters over chips and seeds (resumable, "
                       "local or on a Dask cluster)", description=DESCRIPTION)
    p.add_argument("spec", type=T.in_file, help="sweep TOML file ([sweep], [train], [chip], [grid], [random])")
    p.add_argument("--out", type=T.out_dir, default=None, help="output directory (default: runs/sweeps/<name>)")
    p.add_argument("--scheduler", type=scheduler_address, default=None, metavar="ADDRESS",
                   help="Dask scheduler address, e.g. tcp://10.0.0.1:8786 (default: run locally); "
                   "unreachable for 20 s is an error")
    p.add_argument("--workers", type=T.integer(0, 256), default=0,
                   help="without --scheduler: run on a local Dask cluster of this many processes "
                   "(default 0: in this process)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their keys, run nothing")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_sweep)
