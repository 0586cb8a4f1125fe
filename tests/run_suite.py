"""Run the test suite one file per pytest process, several processes at a time (``make test``).

Each file runs in a process of its own: in one process over the whole suite, XLA's CPU compiler
crashed (segfault / abort inside backend_compile) near the end, in tests that pass on their own.
Files run ``--jobs`` at a time (default: the number of CPU cores), the slowest first, since most
of a file's time is single-threaded XLA compilation. A file in ``SPLIT`` (its tests share nothing
and together would be the suite's critical path) runs one process per test function. Each
process's output is printed whole when it finishes; the last line sums the counts over all of
them. Exit status 5 (every test deselected) counts as a pass.

    python tests/run_suite.py [--jobs N] [PYTEST ARGS...]    # e.g. -m "not slow"
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
TIMES = ROOT / ".cache" / "test_times.txt"
COUNTS = re.compile(r"(\d+) (passed|failed|errors?|skipped|deselected|xfailed|xpassed)")
# Each notebook runs in a kernel of its own anyway: one process per notebook.
SPLIT = {"test_notebooks.py"}
TEST_DEF = re.compile(r"^def (test_\w+)\(", re.MULTILINE)


def _units(files: list[Path]) -> list[str]:
    """Pytest arguments, one per process: a file, or ``file::test`` for each test of a SPLIT file."""
    units = []
    for f in files:
        rel = str(f.relative_to(ROOT))
        if f.name in SPLIT:
            units += [f"{rel}::{name}" for name in TEST_DEF.findall(f.read_text())]
        else:
            units.append(rel)
    return units


def _name(unit: str) -> str:
    """The key of a unit in the times file: the file name, with ``::test`` for a split file."""
    return unit.split("/")[-1]


def _order(units: list[str]) -> list[str]:
    """Slowest first, by the times of the previous run (unknown units first)."""
    known = {}
    if TIMES.exists():
        for line in TIMES.read_text().splitlines():
            name, _, sec = line.partition(" ")
            try:
                known[name] = float(sec)
            except ValueError:
                continue
    return sorted(units, key=lambda u: -known.get(_name(u), float("inf")))


def _plugins_off(unit: str) -> list[str]:
    """Pytest options that leave out plugins the unit's file does not use: Hypothesis's plugin
    imports all of Hypothesis at start-up, ~1 s of CPU in each of the suite's ~50 processes,
    and only a file that uses Hypothesis needs it."""
    text = (ROOT / unit.split("::")[0]).read_text()
    return [] if "hypothesis" in text else ["-p", "no:hypothesispytest"]


def _run(unit: str, args: list[str]) -> tuple[str, int, str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", *_plugins_off(unit), *args, unit], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return unit, out.returncode, out.stdout, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    opts, pytest_args = parser.parse_known_args()
    files = sorted(TESTS.glob("test_*.py"))
    units = _order(_units(files))
    totals: dict[str, int] = {}
    failed, times = [], {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        futures = [pool.submit(_run, u, pytest_args) for u in units]
        for fut in as_completed(futures):
            unit, rc, text, sec = fut.result()
            times[_name(unit)] = sec
            print(f"== {unit} ({sec:.0f} s)\n{text.rstrip()}", flush=True)
            if rc not in (0, 5):
                failed.append(f"{_name(unit)} (exit {rc})")
            last = text.strip().splitlines()[-1] if text.strip() else ""
            for n, kind in COUNTS.findall(last):
                kind = "errors" if kind.startswith("error") else kind
                totals[kind] = totals.get(kind, 0) + int(n)
    TIMES.parent.mkdir(exist_ok=True)
    TIMES.write_text("".join(f"{k} {v:.1f}\n" for k, v in sorted(times.items())))
    if failed:
        print("FAILED files: " + ", ".join(failed))
    print(f"{len(files)} files ({len(units)} processes) in {time.perf_counter() - t0:.0f} s with {opts.jobs} jobs, "
          f"{sum(times.values()):.0f} s summed over processes; "
          f"{totals.get('deselected', 0)} deselected, {totals.get('errors', 0)} errors")
    # The closing line in the plain form CI reads: 'N passed, N failed[, N skipped]'.
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    print(f"{totals.get('passed', 0)} passed, {totals.get('failed', 0) + totals.get('errors', 0)} failed{skipped}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
