"""Previews: the throughput of a first pass over a library, and the search quality a
preview gives (issue: partial and live fingerprints).

    python benchmarks/bench_preview.py --library /tmp/fpcli-library --corpus /tmp/fpcli-quality \\
        [--seconds 5,10,20,30,60] [--out benchmarks/preview.md]

1. `fpcli analyze LIB --seconds 30` vs `fpcli analyze LIB` on empty stores (whole
   processes, 2 workers, as a user runs them): wall time and the ratio.
2. recall@10 of a search whose query heard only its first N seconds, against the same
   search (fast strategy, default weights) with the whole query: every track of the
   library and the corpus is a query once, the store holding full fingerprints.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.analyze import Want, analyse
from fpcli.library import RunOptions, run_library
from fpcli.scan import scan
from fpcli.search import search
from fpcli.store import FingerprintStore
from fpcli.store.records import record_from_result


@dataclasses.dataclass
class FirstPass:
    """Median wall seconds of each kind of run (a preview first pass, a full pass)."""

    preview_wall: float
    full_wall: float
    mean_length_s: float

    @property
    def ratio(self) -> float:
        return self.full_wall / self.preview_wall


def first_pass(library: Path, seconds: float, work: Path, repeats: int = 1) -> FirstPass:
    """`fpcli analyze LIB --seconds N` and `fpcli analyze LIB`, each on an empty store,
    interleaved ``repeats`` times (so that a change of the machine's load hits both)."""
    env = installed_environment()

    def timed(run: int, *extra: str, store: str) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fpcli", "--store", str(work / f"{store}{run}"), "analyze",
                        str(library), "--quiet", "--jobs", "2", *extra],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False, env=env)
        return time.perf_counter() - started

    previews, fulls = [], []
    for run in range(repeats):
        previews.append(timed(run, "--seconds", f"{seconds:g}", store="preview"))
        fulls.append(timed(run, store="full"))
    with FingerprintStore.open(work / "full0") as store:
        lengths = [r.audio.duration_s for r in store.records()]
    return FirstPass(float(np.median(previews)), float(np.median(fulls)),
                     float(np.mean(lengths)) if lengths else 0.0)


def _four_minute_library(folder: Path, count: int, distinct: int = 10) -> Path:
    """``count`` 4-minute 44.1 kHz stereo FLACs: ``distinct`` rendered by ``synth.music_like``,
    the others rotated in time by a random offset and scaled by a random gain (other bytes,
    another digest, the same cost to analyse; rendering every one takes ~30 s)."""
    import soundfile as sf

    from fpcli import synth

    folder.mkdir(parents=True)
    rng = np.random.default_rng(7)
    bases = [synth.music_like(240.0, 44100, seed=100 + i, bpm=80 + 9 * i) for i in range(min(count, distinct))]
    for i in range(count):
        audio = bases[i % len(bases)]
        if i >= len(bases):
            audio = np.roll(audio, int(rng.integers(44100, len(audio) - 44100)), axis=0) * rng.uniform(0.5, 0.9)
        sf.write(folder / f"track{i:03d}.flac", audio, 44100)
    return folder


def recall(store: FingerprintStore, paths: list[str], seconds: list[float], k: int = 10) -> dict[float, float]:
    """Mean recall@k of preview queries against full queries, per N."""
    found: dict[float, list[float]] = {n: [] for n in seconds}
    for path in paths:
        full = {h.digest for h in search(store, path, k=k, strategy="fast").hits}
        if not full:
            continue
        identity = store.identify(path)
        for n in seconds:
            result = analyse(path, Want(seconds=n))
            if result.failed:
                continue
            query = record_from_result(identity, result, time.time())
            hits = search(store, path, k=k, strategy="fast", query=query).hits
            found[n].append(len(full & {h.digest for h in hits}) / len(full))
    return {n: float(np.mean(v)) if v else float("nan") for n, v in found.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--corpus", type=Path, default=Path("/tmp/fpcli-quality"))
    parser.add_argument("--seconds", default="5,10,20,30,60")
    parser.add_argument("--first-pass-seconds", type=float, default=30.0)
    parser.add_argument("--four-minute-tracks", type=int, default=0,
                        help="also time the first pass on this many generated 4-minute tracks (44.1 kHz stereo FLAC)")
    parser.add_argument("--first-pass-only", action="store_true", help="skip the search recall part")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved runs of each first pass (medians)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    seconds = [float(s) for s in args.seconds.split(",")]
    with tempfile.TemporaryDirectory(prefix="fpcli-bench-preview-") as folder:
        work = Path(folder)
        real = first_pass(args.library, args.first_pass_seconds, work, args.repeats)
        generated = None
        if args.four_minute_tracks:
            tracks = _four_minute_library(work / "generated", args.four_minute_tracks)
            (work / "g").mkdir()
            generated = first_pass(tracks, args.first_pass_seconds, work / "g", args.repeats)
        paths: list[str] = []
        recalls: dict[float, float] = {}
        if not args.first_pass_only:
            with FingerprintStore.open(work / "full0") as store:
                run_library([str(args.corpus)], store, RunOptions(jobs=2))
                paths = [p for p in scan([str(args.library), str(args.corpus)]).files if store.record_for_path(p)]
                recalls = recall(store, paths, seconds)
    rows = [[f"{n:g} s", f"{r:.3f}"] for n, r in recalls.items()]
    passes = [("the real-music library", real)]
    if generated is not None:
        passes.append((f"{args.four_minute_tracks} generated 4-minute tracks (44.1 kHz stereo FLAC)", generated))
    table = [[name, f"{p.mean_length_s:.0f} s", f"{p.preview_wall:.1f} s", f"{p.full_wall:.1f} s", f"{p.ratio:.1f}x"]
             for name, p in passes]
    lines = [
        f"# Previews ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_preview.py {' '.join(sys.argv[1:])}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; load average "
        f"{os.getloadavg()[0]:.1f} at the end.", "",
        "## A first pass over a library", "",
        f"`fpcli analyze LIB --seconds {args.first_pass_seconds:g} --jobs 2` (preview) and `fpcli analyze LIB "
        f"--jobs 2` (full), each on an empty store, whole processes as a user runs them; median of "
        f"{args.repeats} interleaved run(s), wall time. Target: throughput ratio (full / preview) >= 5x on "
        "4-minute tracks.", "",
        tabulate(table, ["library", "mean length", "preview", "full", "ratio"],
                 tablefmt="github"), "",
    ]
    if recalls:
        lines += [
            "## Search with a preview query", "",
            f"{len(paths)} queries (library and corpus tracks); the store holds the full fingerprints; "
            "recall@10 = share of the full query's 10 nearest that the preview query also finds.", "",
            tabulate(rows, ["query heard", "recall@10"], tablefmt="github"), "",
        ]
    return emit("\n".join(lines), args.out)


if __name__ == "__main__":
    sys.exit(main())
