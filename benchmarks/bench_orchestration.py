"""Orchestration at scale: many tiny files analysed by the local executor and by Dask
(issue: a million tracks, "Orchestration at scale").

    python benchmarks/bench_orchestration.py [--files 10000] [--out benchmarks/orchestration.md]

Generates ``--files`` distinct 0.5 s WAV files (22.05 kHz mono, a tone and noise of
their own), then, each into a fresh diskcache store, as a user runs them:

* ``fpcli analyze DIR --jobs 2`` (local worker processes);
* ``fpcli analyze DIR --executor dask --scheduler ADDR`` on a LocalCluster of 2
  single-threaded worker processes started here (workers save into the shared store).

Reported per executor: wall time, files per second, the per-file overhead (wall time
x 2 workers / files, less the analysis time of one file measured in this process), and
the command's own peak RSS (not its workers') at a fifth of the files and at all of them (the client's
memory must not grow with the number of files). The two stores must hold the same
fingerprints: every file's streaming values are compared.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.analyze import analyse, preload
from fpcli.blas import one_blas_thread
from fpcli.executors.local import _single_threaded_blas as single_threaded_blas

SR = 22050
WORKERS = 2


def tiny_library(folder: Path, count: int, seconds: float = 0.5) -> list[Path]:
    """``count`` distinct short WAVs in subfolders of 1,000."""
    rng = np.random.default_rng(3)
    t = np.arange(int(seconds * SR)) / SR
    paths = []
    for i in range(count):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        tone = 0.3 * np.sin(2 * np.pi * (110 + 3.7 * i % 2000) * t) + 0.05 * rng.standard_normal(len(t))
        path = sub / f"tiny{i:06d}.wav"
        sf.write(path, tone.astype(np.float32), SR, subtype="PCM_16")
        paths.append(path)
    return paths


def analysis_seconds(paths: list[Path], sample: int = 200) -> float:
    """Mean seconds of one file's analysis in this process (decode + 13D analyzer)."""
    preload()
    chosen = paths[:: max(1, len(paths) // sample)][:sample]
    with one_blas_thread():
        analyse(str(chosen[0]))
        started = time.perf_counter()
        for path in chosen:
            analyse(str(path))
    return (time.perf_counter() - started) / len(chosen)


# Runs the command and samples its own peak RSS (VmHWM) until it exits: the resource
# module's RUSAGE_CHILDREN would report the largest of the command and its workers.
WATCH = """
import subprocess, sys, time
t = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)
peak_kib, chunks = 0, []
def sample():
    global peak_kib
    try:
        with open(f"/proc/{child.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    peak_kib = max(peak_kib, int(line.split()[1]))
    except (OSError, ValueError):
        pass
import threading
reader = threading.Thread(target=lambda: chunks.append(child.stdout.read()))
reader.start()
while child.poll() is None:
    sample()
    time.sleep(0.2)
reader.join()
wall = time.perf_counter() - t
sys.stderr.write(f"{wall} {peak_kib / 1024} {child.returncode}\\n")
sys.stdout.buffer.write(b"".join(chunks))
"""


def run(folder: Path, store: Path, env: dict[str, str], extra: list[str]) -> tuple[float, float, list[dict]]:
    """(wall s, the command's own peak RSS in MiB, its --json lines) of one analyze run."""
    command = [sys.executable, "-m", "fpcli", "--store", str(store), "--store-size-mb", "100000", "analyze",
               str(folder), "--json", "--quiet", *extra]
    done = subprocess.run([sys.executable, "-c", WATCH, *command], capture_output=True, env=env, check=True)
    wall, rss, returncode = done.stderr.decode().split()[-3:]
    if int(returncode) not in (0, 3):
        raise SystemExit(f"{' '.join(command)} failed ({returncode})")
    lines = [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]
    return float(wall), float(rss), lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from distributed import LocalCluster

    env = installed_environment()
    load_before = os.getloadavg()[0]
    rows, results = [], {}
    with tempfile.TemporaryDirectory(prefix="fpcli-orchestration-") as folder:
        work = Path(folder)
        small_count = max(1, args.files // 5)
        paths = tiny_library(work / "all", args.files)
        small = work / "small"
        small.mkdir()
        for sub in sorted((work / "all").iterdir())[: max(1, small_count // 1000)]:
            os.symlink(sub, small / sub.name)
        small_files = sum(1 for _ in small.glob("*/*.wav"))
        per_file = analysis_seconds(paths)
        with single_threaded_blas(), LocalCluster(n_workers=WORKERS, threads_per_worker=1, processes=True,
                                                  dashboard_address=None, silence_logs=50) as cluster:
            executors = {"local (--jobs 2)": ["--jobs", str(WORKERS)],
                         "Dask LocalCluster (2 workers)": ["--executor", "dask", "--scheduler",
                                                           cluster.scheduler_address]}
            for name, extra in executors.items():
                _, small_rss, _ = run(small, work / f"s-{len(results)}", env, extra)
                wall, rss, lines = run(work / "all", work / f"store-{len(results)}", env, extra)
                results[name] = {line["path"]: line.get("streaming") for line in lines if line.get("status") == "ok"}
                overhead = wall * WORKERS / args.files - per_file
                rows.append([name, f"{wall:.1f} s", f"{args.files / wall:,.0f}", f"{overhead * 1e3:.1f} ms",
                             f"{small_rss:.0f} / {rss:.0f} MiB", f"{len(results[name]):,}"])
    local, dask = results.values()
    same = sum(1 for path, values in local.items() if dask.get(path) == values)
    report = "\n".join([
        f"# Orchestration of many tiny files ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_orchestration.py --files {args.files}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average {load_before:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after.", "",
        f"{args.files:,} distinct 0.5 s WAVs (22.05 kHz mono); one file's analysis takes {per_file * 1e3:.1f} ms "
        "in one process. Each run: `fpcli analyze DIR --json` into a fresh diskcache store, a new process.", "",
        tabulate(rows, ["executor", "wall", "files/s", "overhead per file (2 workers)",
                        f"command peak RSS, {small_files:,} / {args.files:,} files", "files ok"],
                 tablefmt="github"), "",
        f"Same fingerprints: {same:,} of {len(local):,} files have identical streaming values on both executors.",
        "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
