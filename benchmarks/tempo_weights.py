"""How the tempo estimator's weights trade the labelled sets against each other.

    python benchmarks/tempo_weights.py --corpus /tmp/fpcli-quality --openmsx /tmp/fpcli-openmsx \
        [--cache /tmp/fpcli-tempo-cache]

Scores the onset autocorrelation of every labelled clip (the generated signals of
``bench_tempo.py``, the quality corpus's labelled clips, and the optional OpenMSX set of
``make_corpus.py --openmsx``) by ``estimate_tempo`` under a grid of weight settings: the
grouping's weight, which groupings (bars of 2, 3 or 4 beats) it reads and whether it
takes their best or their mean, the prior's weight and the per-octave preference for
the faster level. Prints exact counts (within 4 %) per set for today's defaults, the
best settings overall, the best chosen on the older two sets alone, and which clips the
best overall setting changes. Nothing in fpcli is changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import bench_tempo
import numpy as np
from tempo_front import cached_acfs

from fpcli.dsp import tempo
from fpcli.params import AnalysisParams

PARAMS = AnalysisParams()
GRID = {
    "mode": ("max", "mean"),
    "grouping": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
    "prior": (0.5, 1.0, 1.5),
    "faster": (0.0, 0.1, 0.2, 0.3, 0.4),
    "groupings": ((2, 3, 4), (2, 4), (2, 4, 8), (2, 3, 4, 6, 8), (4,), (2,)),
}
Scorer = Callable[[np.ndarray, np.ndarray, float, AnalysisParams], np.ndarray]


def scorer(mode: str, grouping: float, prior: float, faster: float, groupings: tuple[int, ...]) -> Scorer:
    """``tempo.metrical_scores`` with these weights; the beat's and the subdivision's as
    the estimator has them (1 and 0 today, so the subdivision term is left out)."""
    assert tempo.WEIGHT_SUBDIVISION == 0, "the grid leaves the subdivision term out: add it back"
    def scores(evidence: np.ndarray, lags: np.ndarray, frame_rate: float, params: AnalysisParams) -> np.ndarray:
        lags = lags.astype(np.float64)
        beat = tempo._peak_near(evidence, lags, 0.5)
        levels = np.array([tempo._peak_near(evidence, lags * g, 0.5 + 0.25 * g) for g in groupings])
        group = levels.mean(axis=0) if mode == "mean" else levels.max(axis=0)
        bpm = 60 * frame_rate / lags
        log_prior = -0.5 * (np.log2(bpm / params.tempo_prior_bpm) / params.tempo_prior_octaves) ** 2
        return tempo.WEIGHT_BEAT * beat + grouping * group + prior * log_prior + faster * np.log2(bpm)
    return scores


def _file_acf(args: tuple[str, str | None]) -> tuple[np.ndarray, float]:
    path, cache = args
    data = cached_acfs(path, Path(cache) if cache else None)
    return data["full"], float(data["frame_rate"])


def _synthetic_acf(index: int) -> tuple[np.ndarray, float]:
    return bench_tempo.synthetic_acf(bench_tempo.synthetic_cases()[index])


def clips(corpus: Path, openmsx: Path | None, cache: Path | None) -> list[dict[str, Any]]:
    """Every labelled clip with its ACF: set, id, nominal BPM, acf, frame rate."""
    synthetic = bench_tempo.synthetic_cases()
    labelled = bench_tempo.corpus_cases(corpus)
    sets: list[tuple[str, list[dict[str, Any]]]] = [("generated", synthetic), ("corpus", labelled)]
    if openmsx is not None:
        entries = json.loads((openmsx / "manifest.json").read_text())["entries"]
        sets.append(("openmsx", [{"id": e["id"], "tempo_bpm": float(e["tempo_bpm"]), "path": str(openmsx / e["path"])}
                                 for e in entries]))
    out = []
    with ProcessPoolExecutor(2) as pool:
        for name, cases in sets:
            acfs = pool.map(_synthetic_acf, range(len(cases))) if name == "generated" else \
                pool.map(_file_acf, [(c["path"], str(cache) if cache else None) for c in cases])
            out += [{"set": name, "id": c["id"], "nominal": c["tempo_bpm"], "acf": acf, "rate": rate}
                    for c, (acf, rate) in zip(cases, acfs, strict=True)]
    return out


def exact_counts(data: list[dict[str, Any]], scores: Scorer) -> tuple[dict[str, int], list[float]]:
    """({set: exact count}, every clip's estimate) with ``scores`` as the metrical scorer."""
    saved = tempo.metrical_scores
    tempo.metrical_scores = scores
    try:
        estimates = [tempo.estimate_tempo(d["acf"], d["rate"], PARAMS).bpm for d in data]
    finally:
        tempo.metrical_scores = saved
    counts: dict[str, int] = {}
    for d, bpm in zip(data, estimates, strict=True):
        counts[d["set"]] = counts.get(d["set"], 0) + (math.isfinite(bpm) and abs(bpm / d["nominal"] - 1) <= 0.04)
    return counts, estimates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, required=True)
    parser.add_argument("--openmsx", type=Path)
    parser.add_argument("--cache", type=Path)
    args = parser.parse_args()
    data = clips(args.corpus, args.openmsx, args.cache)
    sets = list(dict.fromkeys(d["set"] for d in data))
    today, today_estimates = exact_counts(data, tempo.metrical_scores)
    sizes = {s: sum(d["set"] == s for d in data) for s in sets}
    print(f"clips: {sizes}")
    print(f"today: {today} = {sum(today.values())}")
    results = []
    for values in itertools.product(*GRID.values()):
        setting = dict(zip(GRID, values, strict=True))
        counts, estimates = exact_counts(data, scorer(**setting))
        results.append((counts, setting, estimates))
    print(f"{len(results)} settings; best overall:")
    results.sort(key=lambda r: sum(r[0].values()), reverse=True)
    for counts, setting, _ in results[:8]:
        print(f"  {sum(counts.values())} {counts} {setting}")
    print("best on the generated signals and the corpus alone:")
    for counts, setting, _ in sorted(results, key=lambda r: r[0]["generated"] + r[0]["corpus"], reverse=True)[:8]:
        print(f"  {sum(counts.values())} {counts} {setting}")
    print("clips the best overall setting changes (nominal: today -> it):")
    for d, before, after in zip(data, today_estimates, results[0][2], strict=True):
        right = [math.isfinite(b) and abs(b / d["nominal"] - 1) <= 0.04 for b in (before, after)]
        if right[0] != right[1]:
            print(f"  {d['set']} {d['id']}: {d['nominal']:.1f}: {before:.1f} -> {after:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
