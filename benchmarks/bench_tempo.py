"""Tempo accuracy: fpcli's metrical tempo estimator against its predecessor and librosa.

    python benchmarks/bench_tempo.py [--corpus /tmp/fpcli-quality] [--cache DIR] [--out benchmarks/tempo.md]

Ground truth:

* generated here (``fpcli.synth``): click tracks, ``music_like`` at many tempi, and
  ``metrical_clip`` in 4/4 (with and without drums, swung, with loud off-beat open
  hi-hats), 3/4 and 6/8 (the nominal beat of 6/8 is the dotted quarter);
* the labelled clips of the quality corpus (``benchmarks/quality/make_corpus.sh``):
  72 FluidSynth renders with known tempo and meter, and 20 Planet Blupi clips whose
  label is the MIDI file's notated tempo.

Estimators: ``fpcli`` (``fpcli.dsp.tempo.estimate_tempo``, this version, with the recent
envelopes its level checks read), ``fpcli
before`` (the octave-rule estimator of the previous version, copied below for
comparison only) and ``librosa beat_track`` (22.05 kHz mono, defaults) when librosa
is installed. Both fpcli estimators read the same onset autocorrelation, computed by
the pipeline's tempo path (``tempo_front.TempoFront``).

Exact: within 4 % of the nominal beat. Octave/metrical: exact or x2, x1/2, x3/2, x2/3,
x3, x1/3 within 4 %.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tempo_front import TempoFront, cached_acfs

from fpcli import synth
from fpcli.dsp.tempo import estimate_tempo, tempo_lag_range
from fpcli.params import AnalysisParams

TOLERANCE = 0.04
RELATIONS = {"x2": 2.0, "x1/2": 0.5, "x3/2": 1.5, "x2/3": 2 / 3, "x3": 3.0, "x1/3": 1 / 3}
SR = 22050
SECONDS = 20.0
PARAMS = AnalysisParams()


# -- the previous estimator (for comparison only) -------------------------------------------

def before_estimate_tempo(acf: np.ndarray, frame_rate: float, params: AnalysisParams) -> float:
    """The previous version's estimator: peak mass x log-normal prior around 120 BPM,
    then "double the tempo when the half lag's mass is >= 98.5 %", on the all-band
    onset autocorrelation (column 0)."""
    acf = acf[:, 0] if acf.ndim == 2 else acf
    low, high = tempo_lag_range(frame_rate, params)
    high = min(high, len(acf) - 2)
    if high <= low or not np.any(acf[low : high + 1] > 0):
        return math.nan
    mass = np.convolve(np.maximum(acf, 0.0), np.ones(5), mode="same")
    lags = np.arange(low, high + 1)
    bpm = 60 * frame_rate / lags
    prior = np.exp(-0.5 * (np.log2(bpm / 120.0) / 1.0) ** 2)
    best = int(lags[np.argmax(mass[lags] * prior)])
    half = int(round(best / 2))
    if half >= low and 60 * frame_rate / half <= params.tempo_max_bpm and mass[half] >= 0.985 * mass[best]:
        best = half
    best = max((best - 1, best, best + 1), key=lambda lag: acf[lag] if 1 <= lag < len(acf) - 1 else -np.inf)
    a, b, c = acf[best - 1], acf[best], acf[best + 1]
    d = a - 2 * b + c
    shift = float(np.clip(0.5 * (a - c) / d, -0.5, 0.5)) if d < 0 else 0.0
    return float(np.clip(60 * frame_rate / (best + shift), params.tempo_min_bpm, params.tempo_max_bpm))


def fpcli_tempo(acf: np.ndarray, frame_rate: float, recent: np.ndarray | None) -> float:
    return estimate_tempo(acf, frame_rate, PARAMS, recent).bpm


ESTIMATORS: dict[str, Callable[[np.ndarray, float, np.ndarray | None], float]] = {
    "fpcli": fpcli_tempo,
    "fpcli before": lambda acf, rate, recent: before_estimate_tempo(acf, rate, PARAMS),
}


# -- ground truth ---------------------------------------------------------------------------

def synthetic_cases() -> list[dict[str, Any]]:
    """(group, name, nominal BPM, factory) of every generated signal."""
    cases = []

    def add(group: str, name: str, bpm: float, make: Callable[[], np.ndarray]) -> None:
        cases.append({"group": group, "id": name, "tempo_bpm": bpm, "make": make})

    for bpm in (60, 72, 90, 100, 120, 140, 160, 180, 200):
        add("click tracks", f"click-{bpm}", bpm, lambda b=bpm: synth.click_track(b, SECONDS, SR))
    for i, bpm in enumerate((70, 84, 96, 110, 124, 136, 150, 170)):
        add("music_like", f"music_like-{bpm}", bpm, lambda b=bpm, s=i: synth.music_like(SECONDS, SR, bpm=b, seed=s))
    for i, bpm in enumerate((64, 80, 96, 112, 128, 144, 160, 176)):
        add("4/4 drums", f"44-{bpm}", bpm, lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, seed=s))
        add("4/4 no drums", f"44-nodrums-{bpm}", bpm,
            lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, drums=False, seed=s))
    for i, bpm in enumerate((84, 92, 99, 108, 116, 126, 132)):
        add("4/4 off-beat hi-hats", f"44-offbeat-{bpm}", bpm,
            lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, offbeat=True, seed=s))
    for i, bpm in enumerate((72, 88, 104, 120, 138)):
        add("4/4 swing", f"44-swing-{bpm}", bpm,
            lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, swing=1.0, seed=s))
    for i, bpm in enumerate((72, 90, 108, 126, 144, 168)):
        add("3/4", f"34-{bpm}", bpm, lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, meter="3/4", seed=s))
    for i, bpm in enumerate((50, 58, 66, 76, 86, 100)):
        add("6/8 (dotted quarter)", f"68-{bpm}", bpm,
            lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, meter="6/8", seed=s))
        add("6/8 (dotted quarter)", f"68-nodrums-{bpm}", bpm,
            lambda b=bpm, s=i: synth.metrical_clip(b, SECONDS, SR, meter="6/8", drums=False, seed=s))
    return cases


def synthetic_acf(case: dict[str, Any]) -> tuple[np.ndarray, float]:
    acf, rate, _ = synthetic_front(case)
    return acf, rate


def synthetic_front(case: dict[str, Any]) -> tuple[np.ndarray, float, np.ndarray]:
    """(autocorrelation, frame rate, recent envelopes) of a generated signal."""
    front = TempoFront(SR, PARAMS)
    front.push(case["make"]())
    return front.acf(), front.frame_rate, front.recent.recent()


def corpus_cases(corpus: Path) -> list[dict[str, Any]]:
    entries = json.loads((corpus / "manifest.json").read_text())["entries"]
    out = []
    for e in entries:
        if not e.get("tempo_bpm"):
            continue
        if e["kind"] == "real":
            group = "Planet Blupi OGG" if e["source"].endswith("ogg") else "Planet Blupi MIDI render"
        else:
            group = f"rendered {e['meter']}" + (" swing" if e.get("swing") else "")
        out.append({"group": group, "id": e["id"], "tempo_bpm": float(e["tempo_bpm"]),
                    "path": str(corpus / e["path"]), "meter": e.get("meter")})
    return out


def _corpus_one(args: tuple[str, str | None]) -> tuple[np.ndarray, float, np.ndarray, float | None]:
    path, cache = args
    data = cached_acfs(path, Path(cache) if cache else None, (5.0, 10.0, 20.0, 30.0, 60.0))
    return (data["full"], float(data["frame_rate"]), data["recent_full"],
            librosa_tempo(path, Path(cache) if cache else None))


def librosa_tempo(path: str, cache: Path | None) -> float | None:
    """librosa ``beat.beat_track`` tempo (22.05 kHz mono), cached; None without librosa."""
    target = cache / "librosa" / (Path(path).parent.name + "-" + Path(path).stem + ".json") if cache else None
    if target is not None and target.exists():
        return json.loads(target.read_text())["bpm"]
    try:
        import librosa
    except ImportError:
        return None
    y, sr = librosa.load(path, sr=SR, mono=True)
    bpm = float(np.atleast_1d(librosa.beat.beat_track(y=y, sr=sr)[0])[0])
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"bpm": bpm}))
    return bpm


def librosa_array_tempo(x: np.ndarray) -> float | None:
    try:
        import librosa
    except ImportError:
        return None
    return float(np.atleast_1d(librosa.beat.beat_track(y=x.mean(axis=1), sr=SR)[0])[0])


# -- scoring --------------------------------------------------------------------------------

def relation(estimate: float | None, nominal: float) -> str:
    """'exact', a RELATIONS name, 'other', or 'none'."""
    if estimate is None or not math.isfinite(estimate) or estimate <= 0:
        return "none"
    ratio = estimate / nominal
    if abs(ratio - 1) <= TOLERANCE:
        return "exact"
    return next((name for name, f in RELATIONS.items() if abs(ratio / f - 1) <= TOLERANCE), "other")


def table(rows: list[dict[str, Any]], systems: list[str]) -> list[list[Any]]:
    out = []
    groups = list(dict.fromkeys(r["group"] for r in rows)) + ["all"]
    for group in groups:
        inside = [r for r in rows if group == "all" or r["group"] == group]
        for system in systems:
            rel = Counter(relation(r["estimates"].get(system), r["tempo_bpm"]) for r in inside)
            if system not in inside[0]["estimates"]:
                continue
            out.append([group, system, len(inside), rel["exact"], len(inside) - rel["other"] - rel["none"],
                        *(rel[k] for k in RELATIONS), rel["other"] + rel["none"]])
    return out


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def misses(rows: list[dict[str, Any]], system: str) -> list[str]:
    return [f"{r['id']} ({r['tempo_bpm']:g} -> {r['estimates'][system]:.1f})" for r in rows
            if relation(r["estimates"].get(system), r["tempo_bpm"]) != "exact"]


def run(args: argparse.Namespace) -> str:
    started = time.time()
    synthetic = synthetic_cases()
    for case in synthetic:
        acf, rate, recent = synthetic_front(case)
        case["estimates"] = {name: f(acf, rate, recent) for name, f in ESTIMATORS.items()}
        if not args.no_librosa:
            lib = librosa_array_tempo(case["make"]())
            if lib is not None:
                case["estimates"]["librosa beat_track"] = lib
    corpus: list[dict[str, Any]] = []
    if args.corpus and (args.corpus / "manifest.json").exists():
        corpus = corpus_cases(args.corpus)
        jobs = [(c["path"], str(args.cache) if args.cache else None) for c in corpus]
        with ProcessPoolExecutor(args.workers) as pool:
            for case, (acf, rate, recent, lib) in zip(corpus, pool.map(_corpus_one, jobs), strict=True):
                case["estimates"] = {name: f(acf, rate, recent) for name, f in ESTIMATORS.items()}
                if lib is not None and not args.no_librosa:
                    case["estimates"]["librosa beat_track"] = lib
    systems = ["fpcli", "fpcli before", "librosa beat_track"]
    header = ["clips", "estimator", "n", "exact", "octave/metrical", *RELATIONS, "other"]
    parts = [f"# Tempo accuracy ({datetime.date.today().isoformat()})", "",
             "Command: `python benchmarks/bench_tempo.py --corpus /tmp/fpcli-quality --cache /tmp/fpcli-tempo-cache "
             "--out benchmarks/tempo.md` (run from the repository root)", "",
             f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
             f"fpcli at commit {_commit()}; {time.time() - started:.0f} s.", "",
             "Exact: within 4 % of the nominal beat (the dotted quarter in 6/8). Octave/metrical: exact or one of "
             "the relation columns (within 4 %). `fpcli before` is the previous estimator (octave rule, 120 BPM "
             "prior) on the same onset autocorrelation.", "",
             f"## Generated signals ({len(synthetic)} clips of {SECONDS:g} s at {SR} Hz, `fpcli.synth`)", "",
             md_table(header, table(synthetic, systems)), ""]
    if corpus:
        parts += [f"## Labelled corpus ({len(corpus)} clips of 30 s)", "",
                  "Rendered: FluidSynth renders of generated MIDI (4/4, 3/4, 6/8, swing) with known tempo. "
                  "Planet Blupi: the game's OGG soundtrack and our render of its MIDI files, labelled with the MIDI "
                  "files' notated tempo (a label, not a listening test).", "",
                  md_table(header, table(corpus, systems)), ""]
    parts += ["## Misses of fpcli (not exact)", ""]
    for name, rows in (("generated", synthetic), ("corpus", corpus)):
        if rows:
            parts.append(f"* {name}: " + (", ".join(misses(rows, "fpcli")) or "none"))
    if args.json:
        plain = [{k: v for k, v in r.items() if k != "make"} for r in synthetic + corpus]
        Path(args.json).write_text(json.dumps(plain, indent=1))
    return "\n".join(parts) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="quality corpus folder with manifest.json")
    parser.add_argument("--cache", type=Path, help="folder for cached onset autocorrelations and librosa tempi")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-librosa", action="store_true")
    parser.add_argument("--json", help="also write every estimate to this JSON file")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    return emit(run(args), args.out)


if __name__ == "__main__":
    sys.exit(main())
