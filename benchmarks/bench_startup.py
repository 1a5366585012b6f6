"""Start-up time of the commands people run most often (issue: real libraries, "Start-up").

    python benchmarks/bench_startup.py [--runs 15] [--out benchmarks/startup.md]

Each command is a new process, as a user runs it; the table gives the minimum and the
median of ``--runs`` runs, next to a bare ``python -c pass`` measured in the same
interleaved rounds (the interpreter's own start-up, which no code of ours can remove).
The minimum is the figure to compare with the target (< 0.3 s): a median on a busy
machine measures the other jobs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

COMMANDS = {
    "python -c pass (interpreter only)": [sys.executable, "-c", "pass"],
    "fpcli --version": [sys.executable, "-m", "fpcli", "--version"],
    "fpcli --help": [sys.executable, "-m", "fpcli", "--help"],
    "fpcli cache stats (empty store)": [sys.executable, "-m", "fpcli", "cache", "stats"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as store:
        env = {**os.environ, "FPCLI_STORE": store}
        for _ in range(args.runs):
            for name, command in COMMANDS.items():  # interleaved: load affects every command alike
                started = time.perf_counter()
                subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
                times[name].append(time.perf_counter() - started)
    load = os.getloadavg()[0]
    rows = [[name, f"{min(t):.3f} s", f"{statistics.median(t):.3f} s",
             "" if name.startswith("python") else ("met" if min(t) < 0.3 else "MISSED")] for name, t in times.items()]
    report = "\n".join([
        f"# Start-up ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_startup.py --runs {args.runs}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at the end.",
        "", tabulate(rows, ["command", "min", "median", "target min < 0.3 s"], tablefmt="github"), "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
