"""Store performance (issue: store, "Performance").

    python benchmarks/bench_store.py --library /tmp/fpcli-library [--tracks 10000] [--out benchmarks/store.md]

1. Cached lookup latency: ``FingerprintStore.lookup`` of unchanged files, p50/p95/p99.
2. Warm ``fpcli analyze`` over N unchanged small generated tracks (new process, as a
   user runs it), after a cold run that analysed them.
3. Cold vs warm ``fpcli analyze`` on the real-music library, and the speed-up.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.params import AnalysisParams
from fpcli.store import FingerprintStore


def make_tracks(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 0.5 s mono 8 kHz WAV files (noise with a different seed each)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i // 1000:02d}" / f"track{i:05d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (0.1 * rng.standard_normal(4000)).astype(np.float32), 8000, subtype="PCM_16")
        paths.append(path)
    return paths


def run_cli(*args: str, store: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fpcli", "--store", str(store), *args, "--quiet"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def lookup_latencies(store_path: Path, paths: list[Path]) -> np.ndarray:
    key = AnalysisParams().key()
    with FingerprintStore.open(store_path) as store:
        for path in paths[:200]:  # warm the OS and SQLite caches
            store.lookup(path, key)
        times = []
        for path in paths:
            started = time.perf_counter()
            found = store.lookup(path, key)
            times.append(time.perf_counter() - started)
            assert found.record is not None
    return np.array(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--tracks", type=int, default=10000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fpcli-bench-store-"))
    try:
        tracks = make_tracks(work / "tracks", args.tracks)
        store = work / "store"
        cold = run_cli("analyze", str(work / "tracks"), store=store)
        warm = min(run_cli("analyze", str(work / "tracks"), store=store) for _ in range(3))
        latency = lookup_latencies(store, tracks) * 1e3
        real_store = work / "real-store"
        real_cold = run_cli("analyze", str(args.library), store=real_store)
        real_warm = min(run_cli("analyze", str(args.library), store=real_store) for _ in range(3))
        with FingerprintStore.open(store) as s:
            stats = s.stats()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    rows = [
        ["cached lookup p50 / p95 / p99", f"{p50:.3f} / {p95:.3f} / {p99:.3f} ms", "p99 < 1 ms",
         "met" if p99 < 1 else "MISSED"],
        [f"warm `fpcli analyze` over {args.tracks} unchanged tracks", f"{warm:.2f} s", "< 5 s",
         "met" if warm < 5 else "MISSED"],
        [f"cold `fpcli analyze` over the same {args.tracks} tracks", f"{cold:.1f} s", "", ""],
        ["real library: cold / warm `fpcli analyze`", f"{real_cold:.1f} s / {real_warm:.2f} s", "", ""],
        ["real library: speed-up warm vs cold", f"{real_cold / real_warm:.0f}x", "", ""],
        [f"store size for {stats['entries']} records", f"{stats['size_bytes'] / 2**20:.1f} MiB", "", ""],
    ]
    report = "\n".join([
        f"# Store performance ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_store.py --library {args.library} --tracks {args.tracks}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}. Warm and cold runs are whole "
        "`fpcli analyze` processes (start-up included), warm = best of 3; lookups are in-process on "
        "unchanged files (stat + path entry + record).", "",
        tabulate(rows, ["figure", "measured", "target", ""], tablefmt="github"), "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
