"""Start-up time of the commands people run most often (issue: real libraries, "Start-up").

    python benchmarks/bench_startup.py [--runs 15] [--baseline CHECKOUT] [--out benchmarks/startup.md]

Each command is a new process, as a user runs it; the table gives the minimum and the
median of ``--runs`` runs, next to a bare ``python -c pass`` measured in the same
interleaved rounds (the interpreter's own start-up, which no code of ours can remove).
The minimum is the figure to compare with the target (< 0.3 s): a median on a busy
machine measures the other jobs. Modules run from their cached bytecode, as installed
code does (one untimed run of each command first writes it). ``--baseline`` runs each fpcli command a second time
in the same rounds with another checkout's ``fpcli`` package first on PYTHONPATH (e.g.
``git worktree add /tmp/before HEAD~3``), and reports the median of the per-round
ratios new / baseline.
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
    parser.add_argument("--baseline", type=Path, help="another checkout to compare with, in the same rounds")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    before: dict[str, list[float]] = {name: [] for name in COMMANDS if args.baseline and name.startswith("fpcli")}
    with tempfile.TemporaryDirectory() as store:
        # As installed code runs: with its bytecode cached (a shell that sets
        # PYTHONDONTWRITEBYTECODE would compile every module on every start).
        env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        env["FPCLI_STORE"] = store
        old_env = {**env, "PYTHONPATH": str(args.baseline)} if args.baseline else env
        for command in COMMANDS.values():  # writes the bytecode caches, creates the store
            _seconds(command, env)
            if args.baseline:
                _seconds(command, old_env)
        for _ in range(args.runs):
            for name, command in COMMANDS.items():  # interleaved: load affects every command alike
                times[name].append(_seconds(command, env))
                if name in before:
                    before[name].append(_seconds(command, old_env))
    load = os.getloadavg()[0]
    rows = [[name, f"{min(t):.3f} s", f"{statistics.median(t):.3f} s",
             "" if name.startswith("python") else ("met" if min(t) < 0.3 else "MISSED"),
             *_compared(t, before.get(name), args.baseline)] for name, t in times.items()]
    headers = ["command", "min", "median", "target min < 0.3 s"]
    if args.baseline:
        headers += ["baseline min / median", "new / baseline (median of rounds)"]
    option = f" --baseline {args.baseline}" if args.baseline else ""
    report = "\n".join([
        f"# Start-up ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_startup.py --runs {args.runs}{option}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average {load:.1f} at the end.",
        "", tabulate(rows, headers, tablefmt="github"), "",
    ])
    return emit(report, args.out)


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def _compared(new: list[float], old: list[float] | None, baseline: Path | None) -> list[str]:
    """The baseline's min / median and the median per-round ratio, as table cells."""
    if baseline is None:
        return []
    if not old:
        return ["", ""]
    ratio = statistics.median(a / b for a, b in zip(new, old, strict=True))
    return [f"{min(old):.3f} / {statistics.median(old):.3f} s", f"{ratio:.2f}"]


if __name__ == "__main__":
    sys.exit(main())
