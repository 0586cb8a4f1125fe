"""Run the test suite one file per pytest process, several processes at a time (``make test``).

Each file runs in a process of its own: in one process over the whole suite, XLA's CPU compiler
crashed (segfault / abort inside backend_compile) near the end, in tests that pass on their own.
Files run ``--jobs`` at a time (default: the number of CPU cores), the slowest first, since most
of a file's time is single-threaded XLA compilation. Each file's output is printed whole when it
finishes; the last line sums the counts over all files. Exit status 5 of a file (every test
deselected) counts as a pass.

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


def _order(files: list[Path]) -> list[Path]:
    """Slowest first, by the times of the previous run (unknown files first)."""
    known = {}
    if TIMES.exists():
        for line in TIMES.read_text().splitlines():
            name, _, sec = line.partition(" ")
            try:
                known[name] = float(sec)
            except ValueError:
                continue
    return sorted(files, key=lambda f: -known.get(f.name, float("inf")))


def _run(path: Path, args: list[str]) -> tuple[Path, int, str, float]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", *args, str(path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return path, out.returncode, out.stdout, time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    opts, pytest_args = parser.parse_known_args()
    files = _order(sorted(TESTS.glob("test_*.py")))
    totals: dict[str, int] = {}
    failed, times = [], {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        futures = [pool.submit(_run, f, pytest_args) for f in files]
        for fut in as_completed(futures):
            path, rc, text, sec = fut.result()
            times[path.name] = sec
            print(f"== {path.relative_to(ROOT)} ({sec:.0f} s)\n{text.rstrip()}", flush=True)
            if rc not in (0, 5):
                failed.append(f"{path.name} (exit {rc})")
            last = text.strip().splitlines()[-1] if text.strip() else ""
            for n, kind in COUNTS.findall(last):
                kind = "errors" if kind.startswith("error") else kind
                totals[kind] = totals.get(kind, 0) + int(n)
    TIMES.parent.mkdir(exist_ok=True)
    TIMES.write_text("".join(f"{k} {v:.1f}\n" for k, v in sorted(times.items())))
    if failed:
        print("FAILED files: " + ", ".join(failed))
    print(f"{len(files)} files in {time.perf_counter() - t0:.0f} s with {opts.jobs} jobs; "
          f"{totals.get('deselected', 0)} deselected, {totals.get('errors', 0)} errors")
    # The closing line in the plain form CI reads: 'N passed, N failed[, N skipped]'.
    skipped = f", {totals['skipped']} skipped" if totals.get("skipped") else ""
    print(f"{totals.get('passed', 0)} passed, {totals.get('failed', 0) + totals.get('errors', 0)} failed{skipped}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
