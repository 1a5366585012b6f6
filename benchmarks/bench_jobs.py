"""Library runs with --jobs 1 and --jobs 2: wall-clock time of whole commands.

    python benchmarks/bench_jobs.py --library /tmp/fpcli-library [--repeats 3] [--out benchmarks/jobs.md]

Each round runs ``fpcli analyze LIBRARY --jobs N --quiet`` for every N given, in a
rotating order (interleaved A/B), each into a fresh empty store, so every file is
decoded and analysed. Reported: the median wall time per N, the median of each
round's speed-up (wall time with --jobs 1 / with --jobs N: a slow round slows both
sides of its own ratio), the CPU time of the command and its workers, and the load
average, since other jobs on the machine take cores from --jobs 2.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate


def run_once(library: Path, jobs: int, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command's process) of one library run into a
    fresh store (the workers' CPU is not counted: they are not the command's children)."""
    store = tempfile.mkdtemp(prefix="fpcli-jobs-")
    command = [sys.executable, "-m", "fpcli", "--store", store, "analyze", str(library), "--jobs", str(jobs),
               "--quiet"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    # Exit code 3 (some files failed) is expected: the library holds broken files on purpose.
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
                          env=env)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(store, ignore_errors=True)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds (each runs every --jobs value once)")
    parser.add_argument("--jobs", default="1,2", help="comma-separated --jobs values; the first is the base")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    args = parser.parse_args()
    values = [int(v) for v in args.jobs.split(",")]
    load_before = os.getloadavg()
    runs: dict[int, list[tuple[float, float]]] = {j: [] for j in values}
    env = installed_environment()
    run_once(args.library, values[-1], env)  # warm-up: file cache, imports
    for r in range(args.repeats):
        for jobs in values[r % len(values):] + values[: r % len(values)]:
            runs[jobs].append(run_once(args.library, jobs, env))
    load_after = os.getloadavg()
    base = values[0]
    rows = []
    for jobs in values:
        walls = [w for w, _ in runs[jobs]]
        speedups = [b[0] / w[0] for b, w in zip(runs[base], runs[jobs], strict=True)]
        rows.append([jobs, f"{statistics.median(walls):.1f}", " ".join(f"{w:.1f}" for w in walls),
                     f"{statistics.median(c for _, c in runs[jobs]):.1f}", f"{statistics.median(speedups):.2f}"])
    report = "\n".join([
        f"# Library run, --jobs 1 vs 2 ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_jobs.py --library {args.library} --repeats {args.repeats}` "
        f"(each run: `fpcli --store FRESH_DIR analyze {args.library} --jobs N --quiet`)", "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}; load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.2f}' for v in load_before)} before, {', '.join(f'{v:.2f}' for v in load_after)} after "
        "(other jobs share the two cores, and take them from --jobs 2).", "",
        "Wall time of the whole command (start-up, scan, workers, store) into a fresh store; rounds "
        "interleave the --jobs values. Speed-up: median over rounds of (wall with --jobs "
        f"{base}) / (wall with --jobs N) in the same round. CPU: the command's own process only (its "
        "workers are forked by a fork server, whose children the command does not wait for).", "",
        tabulate(rows, ["--jobs", "wall s (median)", "wall s (rounds)", "parent CPU s (median)",
                        f"speed-up vs --jobs {base}"], tablefmt="github"), "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
