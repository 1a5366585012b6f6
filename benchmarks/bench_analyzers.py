"""Analyzer speed and memory on a real-music library (issue: analyzers, "Performance").

    python benchmarks/bench_analyzers.py --library /tmp/fpcli-library [--out benchmarks/analyzers.md]

For every decodable file of the library (``manifest.json`` from
shared/corpus/make_library.sh, or every audio file under the folder), one process
measures in the same run: decode-only speed (the read loop alone), streaming speed
and batch speed, in seconds of audio per second of wall time, and each as a ratio to
decode-only. Then it streams a 60-minute and a 3-minute file, each in a fresh
process, and reports peak RSS and peak traced numpy/Python allocations.
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
from pathlib import Path

import numpy as np
import soundfile as sf
from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.audio import AUDIO_EXTENSIONS, AudioReader
from fpcli.bench import ANALYZERS, time_file
from fpcli.blas import one_blas_thread
from fpcli.memory import keep_buffers_on_heap


def library_files(root: Path) -> list[Path]:
    manifest = root / "manifest.json"
    if manifest.exists():
        return [root / r["path"] for r in json.loads(manifest.read_text()) if r["expected"] == "ok"
                and not r["path"].startswith("broken/")]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)


def speed_table(files: list[Path], repeats: int) -> tuple[list[list], dict]:
    """Per file: the three kinds timed back to back in each of ``repeats`` rounds (in a
    rotating order), CPU seconds; speeds are medians over the rounds and the time
    ratios medians of each round's analysis time / decode time (a slow round slows
    both sides of its own ratio). Totals: summed median CPU times."""
    kinds = list(ANALYZERS)
    for kind in kinds:  # warm-up: imports and first-call costs are not timed
        time_file(str(files[0]), ANALYZERS[kind])
    rows, totals = [], {k: [0.0, 0.0] for k in kinds}
    round_totals: list[dict[str, float]] = [dict.fromkeys(kinds, 0.0) for _ in range(repeats)]
    for path in files:
        cpu: dict[str, list[float]] = {k: [] for k in kinds}
        audio = 0.0
        for r in range(repeats):
            for kind in kinds[r % len(kinds):] + kinds[: r % len(kinds)]:
                audio, seconds = time_file(str(path), ANALYZERS[kind])
                cpu[kind].append(seconds)
                round_totals[r][kind] += seconds
        median = {k: float(np.median(v)) for k, v in cpu.items()}
        for kind in kinds:
            totals[kind][0] += audio
            totals[kind][1] += median[kind]
        ratio = {k: float(np.median([a / d for a, d in zip(cpu[k], cpu["decode"], strict=True)])) for k in kinds}
        info = sf.info(str(path))
        rows.append([path.name[:38], f"{info.samplerate / 1000:g}k/{info.channels}ch", f"{audio:.0f}",
                     *(f"{audio / median[k]:.0f}" for k in kinds), f"{ratio['streaming']:.2f}",
                     f"{ratio['batch']:.2f}"])
    total = {k: a / w for k, (a, w) in totals.items()}
    total_ratio = {k: float(np.median([t[k] / t["decode"] for t in round_totals])) for k in kinds}
    rows.append(["TOTAL", "", f"{totals['decode'][0]:.0f}", *(f"{total[k]:.0f}" for k in kinds),
                 f"{total_ratio['streaming']:.2f}", f"{total_ratio['batch']:.2f}"])
    return rows, total


MEMORY_PROBE = r"""
import resource, sys, tracemalloc
from fpcli.memory import keep_buffers_on_heap
from fpcli.analyze import analyze_streaming, preload
keep_buffers_on_heap()
preload()  # scipy's modules load lazily: their code objects are not the analysis's memory
tracemalloc.start()
analyze_streaming(sys.argv[1])
peak = tracemalloc.get_traced_memory()[1]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, peak)
"""


def make_long_file(files: list[Path], minutes: float, folder: Path) -> Path:
    """A FLAC of ``minutes`` of stereo 44.1 kHz music by concatenating library tracks."""
    out = folder / f"long_{minutes:g}min.flac"
    target = int(minutes * 60 * 44100)
    written = 0
    sources = [p for p in files if sf.info(str(p)).samplerate == 44100 and sf.info(str(p)).channels == 2]
    with sf.SoundFile(out, "w", 44100, 2, format="FLAC", subtype="PCM_16") as f:
        while written < target:
            for path in sources:
                for block in AudioReader(path):
                    take = block[: target - written]
                    f.write(take)
                    written += len(take)
                    if written >= target:
                        return out
    return out


def memory_table(files: list[Path]) -> list[list]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for minutes in (3, 60):
            path = make_long_file(files, minutes, Path(folder))
            out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(path)], capture_output=True, text=True,
                                 check=True).stdout.split()
            rss, traced = int(out[0]), int(out[1])
            rows.append([f"{minutes} min", f"{rss / 2**20:.1f}", f"{traced / 2**20:.2f}"])
    base_rss, base_traced = float(rows[0][1]), float(rows[0][2])
    rows.append(["60 / 3 min", f"{float(rows[1][1]) / base_rss:.3f}", f"{float(rows[1][2]) / base_traced:.3f}"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--repeats", type=int, default=3, help="rounds per file (medians)")
    parser.add_argument("--out", type=Path, help="write the markdown report here")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()
    keep_buffers_on_heap()  # as the fpcli command does (fpcli/memory.py)
    load_before = f"{os.getloadavg()[0]:.2f}"
    files = library_files(args.library)
    if not files:
        parser.error(f"no audio files under {args.library}")
    with one_blas_thread():  # as the command's read loop (fpcli/analyze.py read_into)
        rows, total = speed_table(files, args.repeats)
    header = ["file", "rate", "audio s", "decode x", "stream x", "batch x", "stream t / decode t",
              "batch t / decode t"]
    lines = [
        f"# Analyzer speed ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_analyzers.py --library {args.library} --repeats {args.repeats}`", "",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, numpy {np.__version__}, libsndfile {sf.__libsndfile_version__}; "
        f"load average {load_before} before the run, {os.getloadavg()[0]:.2f} after (other jobs share the "
        "cores).", "",
        "One process, one core: speeds are seconds of audio per CPU second of the process (x real time, "
        "decoding included), medians of the rounds, so waiting for a busy core does not count. The time "
        "ratios are analysis CPU time / decode-only CPU time of the same file in the same round (median "
        "of the rounds): the decoder's share is the same in both, so they hold better under load than "
        "the speeds. TOTAL: summed median times; its ratios are medians of the rounds' summed times.", "",
        tabulate(rows, header, tablefmt="github"), "",
    ]
    if not args.no_memory:
        lines += ["## Streaming peak memory, 3-minute vs 60-minute file (fresh process each)", "",
                  tabulate(memory_table(files), ["file", "peak RSS MiB", "peak traced MiB"], tablefmt="github"), ""]
    report = "\n".join(lines)
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
