"""Store performance (issue: store, "Performance").

    python benchmarks/bench_store.py --library /tmp/fpcli-library [--tracks 10000] [--out benchmarks/store.md]

1. Cached lookup latency: ``FingerprintStore.lookup`` of unchanged files, p50/p95/p99.
2. Warm ``fpcli analyze`` over N unchanged small generated tracks (new process, as a
   user runs it), after a cold run that analysed them.
3. Cold vs warm ``fpcli analyze`` on the real-music library, and the speed-up.
4. The cost of confirming a moved or copied file: the full-content digest (blake2b)
   in GB/s, and a moved real track's look-up vs analysing it again.
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
from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.analyze import fingerprint_of
from fpcli.params import AnalysisParams
from fpcli.store import FingerprintStore, Need, file_digest


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


_ENV: dict[str, str] = {}


def run_cli(*args: str, store: Path) -> float:
    """Wall seconds of one fpcli command, run as installed code runs (cached bytecode)."""
    if not _ENV:
        _ENV.update(installed_environment())
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fpcli", "--store", str(store), *args, "--quiet"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=_ENV)
    return time.perf_counter() - started


def lookup_latencies(store_path: Path, paths: list[Path]) -> np.ndarray:
    need = Need(AnalysisParams().key())
    with FingerprintStore.open(store_path) as store:
        for path in paths[:200]:  # warm the OS and SQLite caches
            store.lookup(str(path), need)
        times = []
        for path in paths:
            started = time.perf_counter()
            found = store.lookup(str(path), need)
            times.append(time.perf_counter() - started)
            assert found.record is not None
    return np.array(times)


def digest_speed(work: Path, megabytes: int = 1024) -> float:
    """GB/s of ``file_digest`` over a ``megabytes`` file already in the page cache."""
    big = work / "big.bin"
    with open(big, "wb") as out:
        block = np.random.default_rng(1).bytes(2**20)
        for _ in range(megabytes):
            out.write(block)
    file_digest(str(big))  # into the page cache
    started = time.perf_counter()
    file_digest(str(big))
    seconds = time.perf_counter() - started
    big.unlink()
    return megabytes / 1024 / seconds


def moved_track_costs(work: Path, library: Path) -> tuple[str, float, float] | None:
    """(track, ms to confirm a moved copy, ms to analyse it): the largest library file."""
    files = sorted((p for p in library.rglob("*") if p.suffix in {".wav", ".flac"}), key=lambda p: p.stat().st_size)
    if not files:
        return None
    track = files[-1]
    with FingerprintStore.open(work / "moved-store") as store:
        fingerprint_of(store, str(track))
        moved = work / f"moved{track.suffix}"
        shutil.copy2(track, moved)
        started = time.perf_counter()
        found = store.lookup(str(moved), Need(AnalysisParams().key()))
        confirm = time.perf_counter() - started
        assert found.record is not None
        started = time.perf_counter()
        fingerprint_of(store, str(moved), force=True)
        analyse = time.perf_counter() - started
    return f"{track.name} ({track.stat().st_size / 2**20:.0f} MiB)", confirm * 1e3, analyse * 1e3


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
        gb_per_s = digest_speed(work)
        moved = moved_track_costs(work, args.library)
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
        ["full-content digest (blake2b, page cache)", f"{gb_per_s:.2f} GB/s ({1 / gb_per_s:.2f} s per GB)", "", ""],
    ]
    if moved:
        rows.append([f"moved copy of {moved[0]}: confirm by digest vs analyse again",
                     f"{moved[1]:.0f} ms vs {moved[2]:.0f} ms", "", ""])
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
