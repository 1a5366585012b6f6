"""Calibration of the streaming confidences (docs/fingerprint.md, "Confidence").

A confidence c for a dim means: the probability that the value shown now is within
that dim's validation tolerance (``fpcli.validate.DEFAULT_TOLERANCES``) of the value
the same analyzer gives once the whole track is read. This script measures it.

Two steps::

    # 1. with the BASE commit's fpcli on the path: stream every track, snapshot at
    #    5/10/20/30/60 s, keep values, confidences, evidence and the full-track value
    #    (JSON lines; resumable; --every 2 takes every other corpus clip)
    python benchmarks/bench_confidence.py collect --corpus CORPUS --tracks DIR ... --out snapshots.jsonl
    # 2. with this version: fit the confidence model on the tracks outside the
    #    --held-out folders (or on one half of them; --fit prints the weights for
    #    fpcli/streaming.py) and report reliability tables on the others. Before =
    #    the confidences the base commit stored; after = the current model on the
    #    same snapshots. --acf-cache: the tempo dims recomputed with this version's
    #    estimator at the same cut points (when the base commit's tempo differs).
    python benchmarks/bench_confidence.py report --before snapshots.jsonl --held-out LIBRARY \
        --out benchmarks/confidence.md

``CORPUS`` is a folder with a ``manifest.json`` (benchmarks/quality/make_corpus.sh);
``--tracks`` folders add whole tracks (every audio file below them). Tracks are split
into halves by a hash of their file stem, so a piece and its re-render land in the
same half.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

CHECKPOINTS = (5.0, 10.0, 20.0, 30.0, 60.0)
BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 0.9), (0.9, 1.0))


# -- collect --------------------------------------------------------------------------------

def audio_files(corpus: Path | None, track_dirs: list[Path], every: int = 1) -> list[str]:
    from fpcli.audio import AUDIO_EXTENSIONS

    files: list[str] = []
    for folder in track_dirs:  # whole tracks first: they take longest
        files += sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if corpus is not None:
        manifest = json.loads((corpus / "manifest.json").read_text())
        files += [str(corpus / e["path"]) for e in manifest["entries"]][::every]
    return files


def _features(analyzer: Any) -> dict[str, float]:
    """Evidence the confidence model may use, read from the analyzer's state (works on
    the base commit's analyzer too)."""
    pipeline, tally = analyzer.pipeline, analyzer.tally
    seconds_per_frame = pipeline.params.hop / pipeline.samplerate
    heard = pipeline.samples / pipeline.samplerate
    share = min(pipeline.samples / analyzer.expected_frames, 1.0) if analyzer.expected_frames else math.nan
    return {
        "seconds": heard,
        "share": share,
        "onset_seconds": pipeline.autocorrelation.count * seconds_per_frame,
        "non_silent_seconds": tally.voiced_frames * seconds_per_frame,
        "voiced_pairs": float(tally.voiced_pairs),
        "onsets": float(tally.onsets),
        "short_term_blocks": float(analyzer._short_term.total),
        "momentary_blocks": float(analyzer._momentary.total),
        "peak_windows": float(tally.window_peaks.count),
        # The tempo model's margin as the analyzer has it now (analyzers before it had none:
        # ``report --acf-cache`` then recomputes it).
        **({"tempo_margin": analyzer._tempo_margin()} if hasattr(analyzer, "_tempo_margin") else {}),
    }


def collect_one(path: str) -> dict[str, Any]:
    """One pass over ``path``: snapshots at each checkpoint shorter than the track,
    then the full-track fingerprint."""
    from fpcli.analyze import read_into
    from fpcli.audio import AudioReader
    from fpcli.streaming import StreamingAnalyzer

    try:
        reader = AudioReader(path, block_frames=8192)
        duration = reader.expected_frames / reader.info.samplerate if reader.expected_frames else math.inf
        analyzer = StreamingAnalyzer(reader.info.samplerate, reader.info.channels,
                                     expected_frames=reader.expected_frames or None)
        marks = [s for s in CHECKPOINTS if s < duration - 0.5]
        snapshots: list[dict[str, Any]] = []

        def keep(seconds: float) -> None:
            snap = analyzer.snapshot()
            snapshots.append({"seconds": seconds, "values": snap.values, "confidence": snap.confidence,
                              "features": _features(analyzer)})

        read_into(reader, [analyzer], checkpoints=marks, on_checkpoint=keep)
        final = analyzer.finish()
        return {"path": path, "group": group_of(path), "duration": final.seconds, "final": final.values,
                "snapshots": snapshots}
    except Exception as exc:  # a track that fails to decode is reported, not fatal
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}


def group_of(path: str) -> str:
    """The file stem without a track number: a piece, its render and its clip share it."""
    stem = Path(path).stem.lower()
    return stem.split(" - ", 1)[-1].split(" (")[0]


def half_of(group: str) -> int:
    return hashlib.sha256(group.encode()).digest()[0] % 2


def collect(args: argparse.Namespace) -> None:
    files = audio_files(args.corpus, args.tracks, args.every)
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {json.loads(line)["path"] for line in out.read_text().splitlines() if line.strip()}
    todo = [f for f in files if f not in done]
    print(f"{len(files)} files, {len(todo)} to do", file=sys.stderr)
    with out.open("a") as fh, ProcessPoolExecutor(args.workers) as pool:
        for i, row in enumerate(pool.map(collect_one, todo, chunksize=1)):
            fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"{i + 1}/{len(todo)} {row['path']}", file=sys.stderr)


# -- report ---------------------------------------------------------------------------------

def load(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if "error" not in r]


def samples(rows: list[dict[str, Any]], name: str) -> Iterator[tuple[dict[str, Any], dict[str, Any], bool]]:
    """(track row, snapshot, passed) for every snapshot of dim ``name``; passed means
    the snapshot value is within tolerance of the full-track value (both null passes)."""
    from fpcli.validate import DEFAULT_TOLERANCES, _metric

    for row in rows:
        for snap in row["snapshots"]:
            metric = _metric(name, snap["values"][name], row["final"][name], DEFAULT_TOLERANCES[name])
            yield row, snap, metric.passed


def reliability(pairs: list[tuple[float, bool]]) -> list[list[Any]]:
    """Rows of (bucket, mean confidence, observed pass rate, count)."""
    out = []
    for low, high in BUCKETS:
        inside = [(c, p) for c, p in pairs if low <= c < high or (high == 1.0 and c == 1.0)]
        if inside:
            out.append([f"{low:.1f}-{high:.1f}", f"{np.mean([c for c, _ in inside]):.2f}",
                        f"{np.mean([p for _, p in inside]):.2f}", len(inside)])
        else:
            out.append([f"{low:.1f}-{high:.1f}", "", "", 0])
    return out


def calibration_error(pairs: list[tuple[float, bool]]) -> tuple[float, float]:
    """(expected calibration error over the buckets, Brier score)."""
    if not pairs:
        return math.nan, math.nan
    conf = np.array([c for c, _ in pairs])
    hit = np.array([p for _, p in pairs], dtype=float)
    ece = 0.0
    for low, high in BUCKETS:
        mask = (conf >= low) & ((conf < high) | ((high == 1.0) & (conf == 1.0)))
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - hit[mask].mean())
    return float(ece), float(np.mean((conf - hit) ** 2))


UNIT_FEATURE = {"onset seconds": "onset_seconds", "seconds": "seconds", "non-silent seconds": "non_silent_seconds",
                "voiced pairs": "voiced_pairs", "gated short-term blocks": "short_term_blocks",
                "gated momentary blocks": "momentary_blocks", "non-silent 1 s windows": "peak_windows"}


def _inputs(name: str, snap: dict[str, Any]) -> tuple[float, float | None, float, float]:
    """(evidence, share or None, seconds, tempo margin) of one snapshot."""
    from fpcli.streaming import EVIDENCE_SCALES

    f = snap["features"]
    share = f["share"] if f["share"] is not None and math.isfinite(f["share"]) else None
    margin = f.get("tempo_margin", 0.0) if name in ("tempo_bpm", "rhythm_stability") else 0.0
    return f[UNIT_FEATURE[EVIDENCE_SCALES[name][0]]], share, f["seconds"], margin


def new_confidence(name: str, snap: dict[str, Any]) -> float:
    """The current model's confidence from the recorded evidence."""
    from fpcli.streaming import confidence_from_evidence

    if snap["values"][name] is None:
        return 0.0
    return confidence_from_evidence(name, *_inputs(name, snap))


def retempo(rows: list[dict[str, Any]], cache: Path) -> list[dict[str, Any]]:
    """The rows with tempo_bpm and rhythm_stability (snapshots and full track) recomputed
    by the current estimator from the tempo path's cached autocorrelations, and the
    tempo margin added to the features. The other dims are unchanged by the tempo work,
    so their snapshots serve before and after alike."""
    from tempo_front import cached_acfs

    from fpcli.dsp.tempo import estimate_tempo
    from fpcli.params import AnalysisParams

    params = AnalysisParams()
    out = []
    for row in rows:
        data = cached_acfs(row["path"], cache, CHECKPOINTS)
        rate = float(data["frame_rate"])
        row = json.loads(json.dumps(row))

        def put(values: dict[str, Any], acf: np.ndarray, recent: np.ndarray, rate: float = rate) -> float:
            est = estimate_tempo(acf, rate, params, recent)
            values["tempo_bpm"] = est.bpm if math.isfinite(est.bpm) else None
            values["rhythm_stability"] = est.stability if math.isfinite(est.stability) else None
            return est.margin

        put(row["final"], data["full"], data["recent_full"])
        for snap in row["snapshots"]:
            at = f"{snap['seconds']:g}"
            snap["features"]["tempo_margin"] = put(snap["values"], data[at], data[f"recent_{at}"])
        out.append(row)
    return out


def fit(rows: list[dict[str, Any]]) -> dict[str, tuple[float, ...]]:
    """Per dim, logistic-regression weights (bias, evidence, share, log2 seconds, margin);
    a negative evidence, share or seconds weight is fixed at 0 and the rest refitted, so
    the confidence never falls as evidence grows."""
    from fpcli.fingerprint import STREAMING_DIMS
    from fpcli.streaming import evidence_features

    weights = {}
    for name in STREAMING_DIMS:
        x, y = [], []
        for _, snap, passed in samples(rows, name):
            if snap["values"][name] is None:
                continue
            evidence, share, seconds, margin = _inputs(name, snap)
            if share is None:
                share = seconds / (seconds + 240.0)
            x.append(evidence_features(name, evidence, share, seconds, margin))
            y.append(float(passed))
        design = np.array(x)
        keep = [0, 1, 2, 3] if name in ("tempo_bpm", "rhythm_stability") else [0, 1, 2]
        while True:
            w = _logistic(design[:, keep], np.array(y))
            negative = [k for k, wk in zip(keep, w[1:], strict=True) if wk < 0]
            if not negative:
                break
            keep = [k for k in keep if k not in negative]
        full = [w[0], 0.0, 0.0, 0.0, 0.0]
        for k, wk in zip(keep, w[1:], strict=True):
            full[1 + k] = wk
        weights[name] = tuple(round(v, 3) for v in full)
    return weights


def _logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, steps: int = 100) -> list[float]:
    """L2-regularised logistic regression by Newton's method; x (n, k) -> k + 1 weights."""
    if len(x) == 0:
        return [0.0] * (x.shape[1] + 1)
    design = np.column_stack([np.ones(len(x)), x])
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], ridge)
    penalty[0] = 1e-6
    for _ in range(steps):
        p = 1 / (1 + np.exp(-design @ w))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return [float(v) for v in w]


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def held_out(row: dict[str, Any], prefixes: list[str]) -> bool:
    """Whether a track is in the report set: under one of ``prefixes`` (folders of whole
    tracks kept out of the fit), or without them the half a hash of its stem picks."""
    if prefixes:
        return any(row["path"].startswith(prefix) for prefix in prefixes)
    return half_of(row["group"]) == 1


def report(args: argparse.Namespace) -> None:
    from fpcli.fingerprint import STREAMING_DIMS

    before = load(args.before)
    after = retempo(before, args.acf_cache) if args.acf_cache else before
    prefixes = [str(p) for p in args.held_out]
    test_before = [r for r in before if held_out(r, prefixes)]
    train_after = [r for r in after if not held_out(r, prefixes)]
    test_after = [r for r in after if held_out(r, prefixes)]
    if args.fit:
        print("CONFIDENCE_WEIGHTS = {")
        for name, w in fit(train_after).items():
            print(f'    "{name}": {w},')
        print("}")
        return
    lines = [f"# Confidence calibration ({datetime.date.today().isoformat()})", "",
             "Command: `python benchmarks/bench_confidence.py report --before SNAPSHOTS.jsonl "
             + ("--acf-cache CACHE " if args.acf_cache else "")
             + "".join(f"--held-out {name} " for name in _held_out_names(prefixes))
             + "--out benchmarks/confidence.md` (snapshots collected with `bench_confidence.py collect`, see the "
             "docstring).", "",
             f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
             f"fpcli at commit {_commit()}.", "",
             "A confidence c means: the probability that the value shown now is within the dim's validation "
             "tolerance of the value the streaming analyzer gives for the whole track. "
             f"Snapshots at {', '.join(f'{s:g}' for s in CHECKPOINTS)} s (those before the track's end). "
             f"Tracks: {len(after)} ({len(train_after)} to fit, {len(test_after)} to report on; "
             + (f"the report set is every track under {', '.join(_held_out_names(prefixes))}, none of them fitted on"
                if prefixes
                else "split in halves by a hash of the file stem") + "). Tables are on the report set only. "
             "`ECE` is the count-weighted mean |mean confidence - pass rate| over the buckets; `Brier` the mean "
             "squared difference between confidence and the 0/1 outcome.", "",
             f"Data: fit on {sum(r['duration'] > 31 for r in train_after)} whole tracks (median "
             f"{np.median([r['duration'] for r in train_after if r['duration'] > 31] or [0]):.0f} s) and "
             f"{sum(r['duration'] <= 31 for r in train_after)} clips of at most 31 s (their 'whole track' is the "
             "clip); reported on "
             f"{sum(r['duration'] > 31 for r in test_after)} whole tracks (median "
             f"{np.median([r['duration'] for r in test_after if r['duration'] > 31] or [0]):.0f} s) and "
             f"{sum(r['duration'] <= 31 for r in test_after)} clips. 'Before' is the confidence the analyzer "
             "stored in each snapshot, 'after' the model fitted here. Limits: one fit, no confidence intervals"
             + ("; the tempo dims are recomputed with the current estimator at the same cut points" if args.acf_cache
                else "") + ".", ""]
    summary = []
    for name in STREAMING_DIMS:
        old = [(s["confidence"][name], p) for _, s, p in samples(test_before, name)]
        new = [(new_confidence(name, s), p) for _, s, p in samples(test_after, name)]
        (old_ece, old_brier), (new_ece, new_brier) = calibration_error(old), calibration_error(new)
        summary.append([name, len(new), f"{np.mean([p for _, p in new]):.2f}", f"{old_ece:.3f}",
                        f"{new_ece:.3f}", f"{old_brier:.3f}", f"{new_brier:.3f}"])
        lines += [f"## {name}", "", "Before (base commit's confidence):", "",
                  md_table(["bucket", "mean confidence", "pass rate", "count"], reliability(old)), "",
                  "After (fitted model):", "",
                  md_table(["bucket", "mean confidence", "pass rate", "count"], reliability(new)), ""]
    head = ["## Summary (report set)", "",
            md_table(["dim", "snapshots", "pass rate", "ECE before", "ECE after", "Brier before", "Brier after"],
                     summary), ""]
    insert = lines.index("## " + STREAMING_DIMS[0])
    text = "\n".join(lines[:insert] + head + lines[insert:]) + "\n"
    Path(args.out).write_text(text) if args.out else print(text)


def _held_out_names(prefixes: list[str]) -> list[str]:
    """The held-out folders as the report names them: LIBRARY for one (this machine's
    path says nothing to a reader), else their last two path parts."""
    if len(prefixes) == 1:
        return ["LIBRARY"]
    return ["/".join(Path(p).parts[-2:]) for p in prefixes]


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--corpus", type=Path)
    c.add_argument("--tracks", type=Path, nargs="*", default=[])
    c.add_argument("--out", required=True)
    c.add_argument("--workers", type=int, default=2)
    c.add_argument("--every", type=int, default=1, help="take every n-th corpus clip (a faster run)")
    r = sub.add_parser("report")
    r.add_argument("--before", type=Path, required=True)
    r.add_argument("--acf-cache", type=Path,
                   help="recompute the tempo dims with this version's estimator from bench_tempo.py's onset "
                        "autocorrelation cache (--cache, filled if missing): snapshots of an analyzer before it")
    r.add_argument("--held-out", type=Path, nargs="*", default=[],
                   help="report on the tracks under these folders and fit on the others (default: halves)")
    r.add_argument("--out")
    r.add_argument("--fit", action="store_true", help="print the fitted coefficients instead of the report")
    args = parser.parse_args()
    collect(args) if args.command == "collect" else report(args)


if __name__ == "__main__":
    main()
