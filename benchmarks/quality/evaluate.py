"""Music-similarity and tempo quality of fpcli's fingerprints against baselines.

    python benchmarks/quality/evaluate.py --corpus /tmp/fpcli-quality --out benchmarks/quality/results.md

Reads the corpus built by ``make_corpus.py`` (its ``manifest.json``), computes per clip
fpcli's streaming and batch fingerprints, an MFCC single-Gaussian timbre model and (if
installed) librosa's beat-tracker tempo and essentia's RhythmExtractor2013 tempo,
then reports for every system:

* precision@5 and 1-NN accuracy for the labels style and album (real tracks), instrument
  family and drums (generated clips); a query's neighbours are the other clips that carry
  the label, less the query's duplicates;
* duplicate recall: the share of same-piece pairs (Planet Blupi OGG vs MIDI render) that
  are mutual nearest neighbours in the whole corpus;
* tempo: exact (within 4 %) and octave/metrical (x2, x1/2, x3/2, x2/3 within 4 %) hits.

``--tempo-only`` (implied by a manifest of ``make_corpus.py --openmsx``) reports the tempo
tables and a per-clip tempo table alone, for a corpus that has no retrieval labels; its
JSON goes beside ``--out`` under the same name.

Features are cached in CORPUS/.quality-cache/ keyed by fpcli's parameters and the
file's size and mtime; ``--recompute`` ignores the cache. Results go to ``--out`` and
the same numbers to results.json beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from scipy.fft import dct
from scipy.signal import resample_poly

from fpcli import BATCH_DIMS, STREAMING_DIMS, AnalysisParams, analyze_batch, analyze_streaming
from fpcli.dsp.dupes import DupeKey, same_recording
from fpcli.fingerprint import DIM_BY_NAME, GROUPS
from fpcli.search import Index
from fpcli.search.proximity import MP_ROWS
from fpcli.search.rank import default_weights, dim_weights, distances, top_k
from fpcli.search.timbre import TIMBRE_COLUMNS, pack

NULL_PENALTY = 0.5        # fpcli search: normalised difference charged when one side of a dim is null
TEMPO_TOLERANCE = 0.04
RELATIONS: dict[str, float] = {"x2": 2.0, "x1/2": 0.5, "x3/2": 1.5, "x2/3": 2 / 3, "x3": 3.0, "x1/3": 1 / 3}
METRICAL = ("x2", "x1/2", "x3/2", "x2/3")   # the relations that count as "octave or metrical"
K = 5
MFCC_SR = 22050
N_FFT, HOP, N_MELS, N_MFCC = 2048, 512, 40, 20
LABELS: dict[str, str] = {"style": "real", "album": "real", "family": "rendered", "drums": "rendered"}


# --------------------------------------------------------------------------- features

def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular filters evenly spaced on the HTK mel scale, area-normalised (Slaney style)."""
    fmax = fmax or sr / 2

    def to_mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    edges = 700.0 * (10 ** (np.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2) / 2595.0) - 1.0)
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rise = (freqs - lower) / (centre - lower)
    fall = (upper - freqs) / (upper - centre)
    bank = np.maximum(0.0, np.minimum(rise, fall))
    return bank * (2.0 / (upper - lower))


MEL = mel_filterbank(MFCC_SR, N_FFT, N_MELS)


def mfcc(mono: np.ndarray) -> np.ndarray:
    """(frames, 20) MFCCs: Hann-windowed 2048-point power spectra, 40 mel bands, log, DCT-II orthonormal."""
    n_frames = 1 + (len(mono) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(mono[idx] * np.hanning(N_FFT), axis=1)) ** 2
    log_mel = np.log(power @ MEL.T + 1e-10)
    return dct(log_mel, type=2, norm="ortho", axis=1)[:, :N_MFCC]


def gaussian(frames: np.ndarray) -> dict[str, list]:
    """Mean and full covariance of the MFCC frames (a small ridge keeps it invertible)."""
    cov = np.cov(frames, rowvar=False) + 1e-3 * np.eye(frames.shape[1])
    return {"mean": frames.mean(axis=0).tolist(), "cov": cov.tolist()}


def librosa_tempo(path: Path) -> float | None:
    """librosa's ``beat.beat_track`` tempo at 22.05 kHz mono, or None when librosa is absent."""
    try:
        import librosa
    except ImportError:
        return None
    y, sr = librosa.load(str(path), sr=MFCC_SR, mono=True)
    tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
    return float(np.atleast_1d(tempo)[0])


def essentia_tempo(path: Path) -> float | None:
    """essentia's ``RhythmExtractor2013`` (multifeature) BPM at 44.1 kHz mono, or None
    when essentia is absent."""
    try:
        import essentia.standard as es
    except ImportError:
        return None
    audio = es.MonoLoader(filename=str(path), sampleRate=44100)()
    return float(es.RhythmExtractor2013(method="multifeature")(audio)[0])


def _plain(values: dict[str, Any]) -> dict[str, float | None]:
    return {k: (None if v is None else float(v)) for k, v in values.items()}


def clip_features(path: str) -> dict[str, Any]:
    """Everything the systems need from one clip (runs in a worker process)."""
    t0 = time.perf_counter()
    stream, _ = analyze_streaming(path)
    t1 = time.perf_counter()
    batch, _ = analyze_batch(path)
    t2 = time.perf_counter()
    audio, rate = sf.read(path, always_2d=True)
    mono = resample_poly(audio.mean(axis=1), MFCC_SR, rate) if rate != MFCC_SR else audio.mean(axis=1)
    model = gaussian(mfcc(mono))
    t3 = time.perf_counter()
    lib = librosa_tempo(Path(path))
    t4 = time.perf_counter()
    ess = essentia_tempo(Path(path))
    t5 = time.perf_counter()
    return {"streaming": _plain(stream.values), "batch": _plain(batch.values), "mfcc": model, "librosa_tempo": lib,
            "essentia_tempo": ess,
            "timbre": {"streaming": pack(stream.timbre).tolist(), "batch": pack(batch.timbre).tolist()},
            "dupe_key": None if stream.dupe_key is None else dataclasses.asdict(stream.dupe_key),
            "duration": stream.seconds,
            "seconds": {"streaming": t1 - t0, "batch": t2 - t1, "mfcc": t3 - t2, "librosa": t4 - t3,
                        "essentia": t5 - t4}}


def load_features(corpus: Path, entries: list[dict[str, Any]], workers: int, recompute: bool) -> list[dict[str, Any]]:
    """Features for every entry, from the cache where the file and fpcli's parameters are unchanged."""
    key = AnalysisParams().key()
    cache_file = corpus / ".quality-cache" / f"features-{key}.json"
    cache = {} if recompute or not cache_file.exists() else json.loads(cache_file.read_text())
    stamps = {e["id"]: _stamp(corpus / e["path"]) for e in entries}
    todo = [e for e in entries if cache.get(e["id"], {}).get("stamp") != stamps[e["id"]]]
    if todo:
        print(f"analysing {len(todo)} clips with {workers} worker(s) ...", file=sys.stderr)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(clip_features, [str(corpus / e["path"]) for e in todo])
            for n, (entry, feats) in enumerate(zip(todo, results, strict=True), 1):
                cache[entry["id"]] = {**feats, "stamp": stamps[entry["id"]]}
                if n % 20 == 0:
                    print(f"  {n}/{len(todo)}", file=sys.stderr)
        cache_file.parent.mkdir(exist_ok=True)
        cache_file.write_text(json.dumps(cache))
    return [cache[e["id"]] for e in entries]


def _stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{int(st.st_mtime)}"


# --------------------------------------------------------------------------- distances

def fpcli_distances(rows: list[dict[str, float | None]], dims: Sequence[str],
                    group_weights: dict[str, float] | None = None,
                    dim_weights: dict[str, float] | None = None) -> np.ndarray:
    """fpcli's search distance, all pairs: 5th..95th percentile scaling fitted on the corpus
    (clipped to [0, 1]), each group's weight shared by its dims, zero-spread dims weigh 0,
    a dim null on one side costs NULL_PENALTY, weighted Euclidean."""
    x = np.array([[np.nan if r[d] is None else r[d] for d in dims] for r in rows], dtype=np.float64)
    low, high = np.nanpercentile(x, 5, axis=0), np.nanpercentile(x, 95, axis=0)
    spread = high - low
    scaled = np.clip((x - low) / np.where(spread > 0, spread, 1.0), 0.0, 1.0)
    groups = [DIM_BY_NAME[d].group for d in dims]
    sizes = Counter(groups)
    gw = group_weights or {}
    w = np.array([gw.get(g, 1.0) / sizes[g] for g in groups]) * (spread > 0)
    for name, value in (dim_weights or {}).items():
        w[list(dims).index(name)] = value
    diff = scaled[:, None, :] - scaled[None, :, :]
    known_a, known_b = ~np.isnan(scaled)[:, None, :], ~np.isnan(scaled)[None, :, :]
    diff = np.where(known_a & known_b, diff, np.where(known_a | known_b, NULL_PENALTY, 0.0))
    return np.sqrt((w * diff * diff).sum(axis=2))


def _gauss_arrays(models: list[dict[str, list]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    means = np.array([m["mean"] for m in models])
    covs = np.array([m["cov"] for m in models])
    return means, covs, np.linalg.inv(covs), np.linalg.slogdet(covs)[1]


def skl_distances(models: list[dict[str, list]]) -> np.ndarray:
    """Symmetric Kullback-Leibler divergence between single full-covariance Gaussians
    (the log-determinant terms cancel): 0.5 [tr(S2^-1 S1) + tr(S1^-1 S2) + dmu' (S1^-1 + S2^-1) dmu] - d."""
    means, covs, invs, _ = _gauss_arrays(models)
    d = means.shape[1]
    tr = np.einsum("aij,bji->ab", invs, covs)                  # tr(S_a^-1 S_b)
    dmu = means[:, None, :] - means[None, :, :]
    inv_sum = invs[:, None] + invs[None, :]
    maha = np.einsum("abi,abij,abj->ab", dmu, inv_sum, dmu)
    out = 0.5 * (tr + tr.T + maha) - d
    np.fill_diagonal(out, 0.0)
    return np.maximum(out, 0.0)


def js_distances(models: list[dict[str, list]]) -> np.ndarray:
    """Jensen-Shannon-like divergence: the mixture of two Gaussians replaced by the Gaussian
    with its first two moments, JS ~ logdet(Sm) - (logdet S1 + logdet S2) / 2 (halved)."""
    means, covs, _, logdets = _gauss_arrays(models)
    n = len(models)
    out = np.zeros((n, n))
    for a in range(n):
        dmu = means[a] - means[a + 1:]
        mix = 0.5 * (covs[a] + covs[a + 1:]) + 0.25 * np.einsum("bi,bj->bij", dmu, dmu)
        js = 0.5 * (np.linalg.slogdet(mix)[1] - 0.5 * (logdets[a] + logdets[a + 1:]))
        out[a, a + 1:] = out[a + 1:, a] = np.maximum(js, 0.0)
    return out


def fpcli_v2_distances(rows: list[dict[str, float | None]], timbres: list[list[float]], dims: tuple[str, ...],
                       group_weights: dict[str, float] | None = None, mutual: bool = True) -> np.ndarray:
    """fpcli v2's search ranking as an all-pairs matrix, computed by fpcli's own ranking
    code (``fpcli.search.rank``, exact, no prefilter): the named dims (tempo on the
    octave circle weighted by rhythm stability) plus the timbre JS term, with the
    default weights (timbre 2) unless ``group_weights`` overrides them.

    ``mutual`` (what ``fpcli search`` does by default): row i holds the rank of each of
    ``top_k``'s MP_ROWS hits (0 first), ranked by mutual proximity, and MP_ROWS + the
    distance for the other clips (not hits: ranked after them). Else the distances."""
    values = np.array([[np.nan if r[d] is None else r[d] for d in dims] for r in rows], dtype=np.float32)
    n = len(rows)
    # Content digests are hashes in a store; the references of mutual proximity are the
    # smallest, so they must not follow the manifest's (album) order.
    contents = np.array([hashlib.md5(str(i).encode()).hexdigest() for i in range(n)])
    index = Index("streaming" if dims == STREAMING_DIMS else "batch", "eval", values,
                  np.array([str(i) for i in range(n)]), np.array([f"{i:05d}" for i in range(n)]),
                  contents, np.zeros(0), np.zeros(0),
                  timbre=np.array(timbres, dtype=np.float32).reshape(n, TIMBRE_COLUMNS))
    index.fit()
    weights = {**default_weights(), **(group_weights or {})}
    w = dim_weights(dims, weights, index.low, index.high)
    out = np.array([distances(index, values[i], w, index.timbre_rows()[i], weights["timbre"]) for i in range(n)])
    out = (out + out.T) / 2   # symmetric already up to float rounding
    if not mutual:
        return out
    ranked = MP_ROWS + out
    for i in range(n):
        hits = top_k(index, values[i], MP_ROWS, w, exclude_content=contents[i],
                     query_timbre=index.timbre_rows()[i], timbre_weight=weights["timbre"], mutual=True,
                     candidates=n)
        ranked[i, [int(h.path) for h in hits]] = np.arange(len(hits))
    np.fill_diagonal(ranked, 0.0)
    return ranked


def dupe_key_results(corpus: Path, entries: list[dict[str, Any]], feats: list[dict[str, Any]],
                     every: int = 4) -> dict[str, Any]:
    """The duplicate key on re-encoded copies: every ``every``-th clip written as MP3 and
    resampled to 22.05 kHz (in a temporary folder), keys compared with every original.
    Recall: copies matched to their original; false matches: pairs of different clips
    (originals and copies) that match; same-piece renders: the corpus's Blupi OGG vs MIDI
    pairs (different renderings, so not the same recording)."""
    keys = [None if f["dupe_key"] is None else DupeKey(**f["dupe_key"]) for f in feats]
    durations = [f["duration"] for f in feats]
    copies: list[tuple[int, str, DupeKey | None, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(0, len(entries), every):
            audio, rate = sf.read(corpus / entries[i]["path"], dtype="float32", always_2d=True)
            mp3 = Path(folder) / f"{i}.mp3"
            sf.write(mp3, audio, rate, format="MP3")
            low = Path(folder) / f"{i}-22k.flac"
            sf.write(low, resample_poly(audio, MFCC_SR, rate, axis=0).astype(np.float32), MFCC_SR)
            for kind, path in (("mp3", mp3), ("22.05 kHz", low)):
                fp, _ = analyze_streaming(path)
                copies.append((i, kind, fp.dupe_key, fp.seconds))

    def match(a: DupeKey | None, b: DupeKey | None, sa: float, sb: float) -> bool:
        return a is not None and b is not None and same_recording(a, b, sa, sb)
    recall = {kind: float(np.mean([match(keys[i], k, durations[i], s) for i, c, k, s in copies if c == kind]))
              for kind in ("mp3", "22.05 kHz")}
    false = sum(match(keys[a], keys[b], durations[a], durations[b])
                for a in range(len(keys)) for b in range(a + 1, len(keys)))
    false += sum(match(keys[j], k, durations[j], s) for i, _, k, s in copies for j in range(len(keys)) if j != i)
    pairs = [(a, b) for a in range(len(entries)) for b in range(a + 1, len(entries))
             if _duplicates(entries[a], entries[b])]
    renders = sum(match(keys[a], keys[b], durations[a], durations[b]) for a, b in pairs)
    n = len(keys)
    return {"copies": len(copies), "recall": recall, "false_matches": int(false),
            "pairs_checked": n * (n - 1) // 2 + len(copies) * (n - 1),
            "same_piece_renders_matched": f"{renders}/{len(pairs)}"}


def mutual_proximity(dist: np.ndarray) -> np.ndarray:
    """Empirical mutual proximity (Schnitzer et al., as in musly):
    MP(x, y) = 1 - P(D_x > d) P(D_y > d), each P over x's (y's) distances to the other clips."""
    n = len(dist)
    off = ~np.eye(n, dtype=bool)
    rows = [np.sort(dist[i][off[i]]) for i in range(n)]
    # greater[i, j] = share of i's distances that exceed d(i, j)
    greater = np.array([1.0 - np.searchsorted(rows[i], dist[i], side="right") / (n - 1) for i in range(n)])
    mp = 1.0 - greater * greater.T
    np.fill_diagonal(mp, 0.0)
    return mp


# --------------------------------------------------------------------------- metrics

def retrieval(dist: np.ndarray, entries: list[dict[str, Any]], label: str, kind: str) -> dict[str, float]:
    """precision@5 and 1-NN accuracy of ``label`` among the clips of ``kind`` (duplicates of the query excluded)."""
    idx = [i for i, e in enumerate(entries) if e["kind"] == kind and e.get(label) is not None]
    # Ties (e.g. a single dim that is 0 for most clips) are broken by a fixed random order, not by the
    # manifest order, which groups albums together and would bias the result.
    tiebreak = np.random.default_rng(0).permutation(len(entries))
    p_at_k, nn = [], []
    for q in idx:
        cands = [i for i in idx if i != q and not _duplicates(entries[q], entries[i])]
        order = sorted(cands, key=lambda i: (dist[q, i], tiebreak[i]))
        same = [entries[i][label] == entries[q][label] for i in order[:K]]
        p_at_k.append(sum(same) / K)
        nn.append(float(same[0]))
    return {"p@5": float(np.mean(p_at_k)), "1nn": float(np.mean(nn)), "queries": len(idx)}


def expected_random(entries: list[dict[str, Any]], label: str, kind: str, oracle: bool = False) -> dict[str, float]:
    """Expected precision@5 and 1-NN of a random ranking (exact expectation), or the best reachable (oracle)."""
    idx = [i for i, e in enumerate(entries) if e["kind"] == kind and e.get(label) is not None]
    p_at_k, nn = [], []
    for q in idx:
        cands = [i for i in idx if i != q and not _duplicates(entries[q], entries[i])]
        same = sum(entries[i][label] == entries[q][label] for i in cands)
        if oracle:
            p_at_k.append(min(K, same) / K)
            nn.append(float(same > 0))
        else:
            p_at_k.append(same / len(cands))
            nn.append(same / len(cands))
    return {"p@5": float(np.mean(p_at_k)), "1nn": float(np.mean(nn)), "queries": len(idx)}


def _duplicates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("dup_group") is not None and a.get("dup_group") == b.get("dup_group")


def hubness(dist: np.ndarray, k: int = K) -> dict[str, float]:
    """How evenly a system spreads its top-k lists over the whole corpus: N_k(x) = the
    number of other clips whose k nearest include x (mean k). A hub has a large N_k, an
    orphan N_k = 0; the skewness of N_k is the usual hubness measure (0: symmetric)."""
    n = len(dist)
    counts = np.zeros(n)
    tiebreak = np.random.default_rng(0).permutation(n)
    for q in range(n):
        order = sorted((i for i in range(n) if i != q), key=lambda i: (dist[q, i], tiebreak[i]))
        counts[order[:k]] += 1
    spread = counts.std()
    skew = float(((counts - counts.mean()) ** 3).mean() / spread ** 3) if spread > 0 else 0.0
    return {"skewness": skew, "max": float(counts.max()), "orphans": float(np.mean(counts == 0))}


def duplicate_recall(dist: np.ndarray, entries: list[dict[str, Any]]) -> dict[str, float]:
    """Share of duplicate pairs that are mutual nearest neighbours (and that are 1-NN from at least one side)."""
    d = dist + np.diag(np.full(len(dist), np.inf))
    nearest = np.argmin(d, axis=1)
    pairs = [(i, j) for i in range(len(entries)) for j in range(i + 1, len(entries))
             if _duplicates(entries[i], entries[j])]
    mutual = sum(nearest[i] == j and nearest[j] == i for i, j in pairs)
    either = sum(nearest[i] == j or nearest[j] == i for i, j in pairs)
    return {"pairs": len(pairs), "mutual_nn": mutual / len(pairs), "either_nn": either / len(pairs)}


def tempo_relation(estimate: float | None, nominal: float) -> str:
    """'exact', a relation name from RELATIONS, 'other', or 'none' (no estimate)."""
    if estimate is None or not np.isfinite(estimate) or estimate <= 0:
        return "none"
    ratio = estimate / nominal
    if abs(ratio - 1.0) <= TEMPO_TOLERANCE:
        return "exact"
    for name, factor in RELATIONS.items():
        if abs(ratio / factor - 1.0) <= TEMPO_TOLERANCE:
            return name
    return "other"


def tempo_table(estimates: dict[str, list[float | None]], nominal: list[float]) -> dict[str, dict[str, Any]]:
    """Per tempo estimator: counts of each relation, exact and exact-or-metrical totals."""
    out = {}
    for name, values in estimates.items():
        rel = Counter(tempo_relation(v, t) for v, t in zip(values, nominal, strict=True))
        out[name] = {"n": len(nominal), "exact": rel["exact"], "metrical": rel["exact"] + sum(rel[m] for m in METRICAL),
                     "relations": dict(rel)}
    return out


# --------------------------------------------------------------------------- report

def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A GitHub Markdown table (floats to 3 decimals)."""
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    """Cores, Python, numpy, fpcli commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = "?"
    return (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
            f"numpy {np.__version__}, fpcli at commit {commit or '?'}")


def corpus_summary(entries: list[dict[str, Any]]) -> list[str]:
    """Counts per label value, one line per label."""
    lines = []
    for label in ("album", "style", "family", "drums", "meter", "swing", "source"):
        counts = Counter(str(e[label]) for e in entries if e.get(label) is not None)
        lines.append(f"- {label}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return lines


def build_systems(entries: list[dict[str, Any]], feats: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Distance matrices of every compared system."""
    stream = [f["streaming"] for f in feats]
    batch = [f["batch"] for f in feats]
    models = [f["mfcc"] for f in feats]
    js = js_distances(models)
    stream_timbre = [f["timbre"]["streaming"] for f in feats]
    batch_timbre = [f["timbre"]["batch"] for f in feats]
    return {
        "fpcli v2 fast (13 dims + timbre)": fpcli_v2_distances(stream, stream_timbre, STREAMING_DIMS),
        "fpcli v2 batch (25 dims + timbre)": fpcli_v2_distances(batch, batch_timbre, BATCH_DIMS),
        "fpcli v2 fast, distance alone (--no-mp)": fpcli_v2_distances(stream, stream_timbre, STREAMING_DIMS,
                                                                      mutual=False),
        "fpcli v2 batch, distance alone (--no-mp)": fpcli_v2_distances(batch, batch_timbre, BATCH_DIMS,
                                                                       mutual=False),
        "fpcli v2 timbre alone (JS)": fpcli_v2_distances(stream, stream_timbre, STREAMING_DIMS,
                                                         dict.fromkeys(GROUPS, 0.0), mutual=False),
        "fpcli fast (13 streaming dims)": fpcli_distances(stream, STREAMING_DIMS),
        "fpcli batch (25 dims)": fpcli_distances(batch, BATCH_DIMS),
        "fpcli batch without tempo": fpcli_distances(batch, BATCH_DIMS, dim_weights={"tempo_bpm": 0.0}),
        "MFCC-20 G1 symmetric KL": skl_distances(models),
        "MFCC-20 G1 Jensen-Shannon + MP": mutual_proximity(js),
    }


def ablations(feats: list[dict[str, Any]], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """fpcli batch with one group switched off, and each batch dim alone: precision@5 per label."""
    batch = [f["batch"] for f in feats]
    groups = {f"without {g}": fpcli_distances(batch, BATCH_DIMS, group_weights={g: 0.0}) for g in GROUPS}
    singles = {d: fpcli_distances(batch, (d,)) for d in BATCH_DIMS}

    def score(dist: np.ndarray) -> dict[str, float]:
        return {label: retrieval(dist, entries, label, kind)["p@5"] for label, kind in LABELS.items()}
    return {"groups": {k: score(m) for k, m in groups.items()},
            "single_dims": {k: score(m) for k, m in singles.items()}}


def _analysed(corpus: Path, workers: int,
              recompute: bool) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(manifest, its entries, their features, the "analysis" facts of a report: this
    run's seconds, mean seconds per clip per system, which baselines ran)."""
    manifest = json.loads((corpus / "manifest.json").read_text())
    entries = manifest["entries"]
    t0 = time.monotonic()
    feats = load_features(corpus, entries, workers, recompute)
    analysis = {"seconds_this_run": round(time.monotonic() - t0, 1),
                "mean_seconds_per_clip": {k: float(np.mean([f["seconds"][k] for f in feats]))
                                          for k in feats[0]["seconds"]},
                "librosa": feats[0]["librosa_tempo"] is not None,
                "essentia": feats[0].get("essentia_tempo") is not None}
    return manifest, entries, feats, analysis


def _corpus_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    clips = len(manifest["entries"])
    return {"clips": clips, "clip_seconds": manifest["clip_seconds"], "hours": clips * manifest["clip_seconds"] / 3600}


def evaluate(corpus: Path, workers: int, recompute: bool) -> dict[str, Any]:
    """All numbers of the report."""
    manifest, entries, feats, analysis = _analysed(corpus, workers, recompute)
    systems = build_systems(entries, feats)
    results: dict[str, Any] = {"corpus": _corpus_facts(manifest), "labels": {}, "duplicates": {}, "tempo": {}}
    for label, kind in LABELS.items():
        table = {name: retrieval(m, entries, label, kind) for name, m in systems.items()}
        table["random (expected)"] = expected_random(entries, label, kind)
        table["oracle (best reachable)"] = expected_random(entries, label, kind, oracle=True)
        results["labels"][label] = table
    results["duplicates"] = {name: duplicate_recall(m, entries) for name, m in systems.items()}
    results["hubness"] = {name: hubness(m) for name, m in systems.items()}
    results["dupe_key"] = dupe_key_results(corpus, entries, feats)
    results["timbre_weight"] = timbre_weights(entries, feats)
    results["tempo"] = tempo_results(entries, feats)
    results["ablations"] = ablations(feats, entries)
    results["analysis"] = analysis
    return results


def timbre_weights(entries: list[dict[str, Any]], feats: list[dict[str, Any]],
                   weights: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 8.0)) -> dict[str, dict[str, Any]]:
    """precision@5 and 1-NN per label of the fast and batch searches (mutual proximity,
    as ``fpcli search`` ranks) at each timbre weight: {strategy: {weight: {label: ...}}}."""
    kinds = {"fast": ("streaming", STREAMING_DIMS), "batch": ("batch", BATCH_DIMS)}
    return {strategy: {str(w): {label: retrieval(fpcli_v2_distances(
        [f[kind] for f in feats], [f["timbre"][kind] for f in feats], dims, {"timbre": w}), entries, label, where)
        for label, where in LABELS.items()} for w in weights} for strategy, (kind, dims) in kinds.items()}


# The tempo sets of MIDI compositions (``make_corpus.py --openmsx``, ``--simutrans``): kind -> label.
COMPOSITION_SETS = {"openmsx": "OpenMSX", "simutrans": "Simutrans"}


def tempo_results(entries: list[dict[str, Any]], feats: list[dict[str, Any]]) -> dict[str, Any]:
    """Tempo tables for the generated clips (all, per meter, with/without drums) and the notated Blupi pieces."""
    def table(select: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        idx = [i for i, e in enumerate(entries) if e.get("tempo_bpm") and select(e)]
        est = {"fpcli streaming": [feats[i]["streaming"]["tempo_bpm"] for i in idx],
               "fpcli batch": [feats[i]["batch"]["tempo_bpm"] for i in idx]}
        if feats[0]["librosa_tempo"] is not None:
            est["librosa beat_track"] = [feats[i]["librosa_tempo"] for i in idx]
        if feats[0].get("essentia_tempo") is not None:
            est["essentia RhythmExtractor2013"] = [feats[i]["essentia_tempo"] for i in idx]
        return tempo_table(est, [entries[i]["tempo_bpm"] for i in idx])
    out = {"generated, all": table(lambda e: e["kind"] == "rendered")}
    for meter in ("4/4", "3/4", "6/8"):
        out[f"generated, {meter}"] = table(lambda e, m=meter: e["kind"] == "rendered" and e["meter"] == m)
    out["generated, drums"] = table(lambda e: e["kind"] == "rendered" and e["drums"])
    out["generated, no drums"] = table(lambda e: e["kind"] == "rendered" and not e["drums"])
    out["generated, swing"] = table(lambda e: e["kind"] == "rendered" and e["swing"])
    out["Planet Blupi (notated MIDI tempo)"] = table(lambda e: e["kind"] == "real")
    for kind, label in COMPOSITION_SETS.items():
        mine = [e for e in entries if e["kind"] == kind]
        out[f"{label}, all"] = table(lambda e, k=kind: e["kind"] == k)
        for meter in sorted({e["meter"] for e in mine}):
            out[f"{label}, {meter}"] = table(lambda e, k=kind, m=meter: e["kind"] == k and e["meter"] == m)
        out[f"{label}, swing (triplet off-beats)"] = table(lambda e, k=kind: e["kind"] == k and e["swing"])
        out[f"{label}, straight"] = table(lambda e, k=kind: e["kind"] == k and not e["swing"])
        out[f"{label}, no drums"] = table(lambda e, k=kind: e["kind"] == k and not e["drums"])
        for composer in sorted({e["composer"] for e in mine}):
            out[f"{label}, {composer}"] = table(lambda e, k=kind, c=composer: e["kind"] == k and e["composer"] == c)
    out = {name: t for name, t in out.items() if next(iter(t.values()))["n"]}    # subsets this corpus has
    out["detail"] = [{"id": e["id"], "nominal": e["tempo_bpm"], "meter": e.get("meter"),
                      "fpcli_streaming": f["streaming"]["tempo_bpm"], "fpcli_batch": f["batch"]["tempo_bpm"],
                      "librosa": f["librosa_tempo"], "essentia": f.get("essentia_tempo"),
                      **({k: e.get(k) for k in ("start_s", "tempo_beat", "tempo_alt_bpm", "tempo_alt_beat", "swing",
                                                 "drums", "composer", "title")}
                         if e["kind"] in COMPOSITION_SETS else {})}
                     for e, f in zip(entries, feats, strict=True) if e.get("tempo_bpm")]
    return out


def evaluate_tempo(corpus: Path, workers: int, recompute: bool) -> dict[str, Any]:
    """The tempo numbers alone (a corpus without retrieval labels, e.g. the OpenMSX set)."""
    manifest, entries, feats, analysis = _analysed(corpus, workers, recompute)
    return {"corpus": _corpus_facts(manifest), "tempo": tempo_results(entries, feats),
            "skipped_windows": manifest.get("skipped", []), "analysis": analysis}


def tempo_section(results: dict[str, Any]) -> list[str]:
    """The tempo tables of the report, one row per subset and estimator."""
    parts = ["## Tempo", "", f"Exact: within {TEMPO_TOLERANCE:.0%} of the nominal beat (the dotted quarter in 6/8). "
             "Octave/metrical: exact or x2, x1/2, x3/2, x2/3 within the same tolerance. "
             "The relation columns count every estimate by its relation to the nominal tempo.", ""]
    rel_cols = ["exact", *RELATIONS, "other", "none"]
    rows = []
    for subset, table in results["tempo"].items():
        if subset == "detail":
            continue
        for est, v in table.items():
            rows.append([subset, est, v["n"], v["exact"], v["metrical"],
                         *[v["relations"].get(r, 0) for r in rel_cols]])
    return [*parts, md_table(["clips", "estimator", "n", "exact", "octave/metrical", *rel_cols], rows), ""]


def render_tempo(results: dict[str, Any], command: str, entries: list[dict[str, Any]]) -> str:
    """The Markdown report of ``--tempo-only``: the tempo tables, every clip, the skipped windows."""
    c = results["corpus"]
    a = results["analysis"]
    pieces = len({e.get("piece", e["id"]) for e in entries})
    parts = [f"# Tempo quality ({datetime.date.today().isoformat()})", "", f"Command: `{command}`", "",
             f"Machine: {machine()}.", "",
             f"Corpus: {c['clips']} clips of {c['clip_seconds']:.0f} s ({c['hours']:.2f} h) from {pieces} pieces.",
             *[line for line in corpus_summary(entries) if not line.endswith(": ")],
             "- composer: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(
                 e.get("composer", "?") for e in entries).items())),
             "- beat: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(
                 e.get("tempo_beat", "?") for e in entries).items())), "",
             "Mean analysis time per clip (s): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                             a["mean_seconds_per_clip"].items()) + "."
             + ("" if a["librosa"] else " librosa is not installed: its tempo baseline did not run.")
             + ("" if a.get("essentia") else " essentia is not installed: its tempo baseline did not run."), ""]
    parts += tempo_section(results)
    systems = [("fpcli_streaming", "fpcli streaming"), ("fpcli_batch", "fpcli batch"), ("essentia", "essentia"),
               ("librosa", "librosa")]

    def cell(value: float | None, nominal: float) -> str:
        if value is None:
            return "-"
        rel = tempo_relation(value, nominal)
        return f"{value:.1f}" + ("" if rel == "exact" else f" ({rel})")
    rows = [[d["id"], d.get("title", ""), d.get("start_s", ""), d["meter"],
             f"{d['nominal']:g}" + (f" ({d['tempo_alt_bpm']:g} {d['tempo_alt_beat']})" if d.get("tempo_alt_bpm")
                                    else ""),
             "yes" if d.get("swing") else "", *[cell(d[k], d["nominal"]) for k, _ in systems]]
            for d in results["tempo"]["detail"]]
    parts += ["## Every clip", "", "Label: the notated tempo of the beat the meter implies (an alternative "
              "reading in brackets); swing: triplet off-beats outnumber straight ones in the window's MIDI; "
              "an estimate that is not exact shows its relation to the label.", "",
              md_table(["clip", "title", "start (s)", "meter", "label BPM", "swing", *[n for _, n in systems]],
                       rows), ""]
    skipped = results.get("skipped_windows", [])
    if skipped:
        parts += [f"## Skipped windows ({len(skipped)})", "",
                  md_table(["piece", "start (s)", "reason"],
                           [[s["piece"], "-" if s["start_s"] is None else s["start_s"], s["reason"]]
                            for s in skipped]), ""]
    return "\n".join(parts)


def render(results: dict[str, Any], command: str, entries: list[dict[str, Any]]) -> str:
    """The Markdown report."""
    c = results["corpus"]
    a = results["analysis"]
    parts = [f"# Music-similarity and tempo quality ({datetime.date.today().isoformat()})", "",
             f"Command: `{command}`", "", f"Machine: {machine()}.", "",
             f"Corpus: {c['clips']} clips of {c['clip_seconds']:.0f} s ({c['hours']:.2f} h).",
             *corpus_summary(entries), "",
             "Mean analysis time per clip (s): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                             a["mean_seconds_per_clip"].items()) + "."
             + ("" if a["librosa"] else " librosa is not installed: its tempo baseline did not run.")
             + ("" if a.get("essentia") else " essentia is not installed: its tempo baseline did not run."), ""]
    names = {"style": "Style (real tracks)", "album": "Album / composer (real tracks)",
             "family": "Instrument family (generated clips)", "drums": "Drums yes/no (generated clips)"}
    for label, table in results["labels"].items():
        n = next(iter(table.values()))["queries"]
        parts += [f"## {names[label]}: {n} queries", "",
                  md_table(["system", "precision@5", "1-NN accuracy"],
                           [[s, v["p@5"], v["1nn"]] for s, v in table.items()]), ""]
    parts += [f"## Hubness: top-{K} lists over the whole corpus ({len(entries)} clips)", "",
              f"N_{K}(x): how many other clips have x among their {K} nearest (mean {K}). Hubs crowd many "
              "lists, orphans none: a lower skewness and maximum and fewer orphans spread the lists more evenly.",
              "", md_table(["system", f"skewness of N_{K}", f"largest N_{K}", "orphans (share)"],
                           [[s, v["skewness"], v["max"], v["orphans"]] for s, v in results["hubness"].items()]), ""]
    dup = results["duplicates"]
    pairs = next(iter(dup.values()))["pairs"]
    parts += [f"## Duplicates: {pairs} same-piece pairs (Planet Blupi OGG vs FluidSynth MIDI render), whole corpus", "",
              md_table(["system", "mutual 1-NN", "1-NN from either side"],
                       [[s, v["mutual_nn"], v["either_nn"]] for s, v in dup.items()]), ""]
    key = results["dupe_key"]
    parts += ["## Duplicate key (fpcli v2): re-encoded copies", "",
              f"Every 4th clip re-encoded as MP3 and resampled to 22.05 kHz ({key['copies']} copies); "
              "each copy's key compared with every original clip.", "",
              md_table(["copies matched: MP3", "copies matched: 22.05 kHz", "false matches",
                        "pairs of different clips checked", "Blupi OGG vs MIDI render matched"],
                       [[key["recall"]["mp3"], key["recall"]["22.05 kHz"], key["false_matches"],
                         key["pairs_checked"], key["same_piece_renders_matched"]]]), "",
              "## Timbre weight: precision@5 / 1-NN accuracy (default 2)", ""]
    for strategy, table in results["timbre_weight"].items():
        parts += [f"{strategy}:", "", md_table(["timbre weight", *LABELS], [
            [w, *(f"{v[label]['p@5']:.3f} / {v[label]['1nn']:.3f}" for label in LABELS)] for w, v in table.items()]),
            ""]
    parts += tempo_section(results)
    abl = results["ablations"]
    full = {label: results["labels"][label]["fpcli batch (25 dims)"]["p@5"] for label in LABELS}
    parts += ["## fpcli batch ablations (precision@5)", "", "One group's weight set to 0:", "",
              md_table(["variant", *LABELS], [["all groups", *full.values()]]
                       + [[k, *v.values()] for k, v in abl["groups"].items()]), "",
              "Each batch dim alone (same scaling):", "",
              md_table(["dim", "group", *LABELS],
                       [[k, DIM_BY_NAME[k].group, *v.values()] for k, v in abl["single_dims"].items()]), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path(os.environ.get("OUT", "/tmp/fpcli-quality")))
    parser.add_argument("--out", type=Path, default=None, help="Markdown report (results.json is written beside it)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recompute", action="store_true", help="ignore the feature cache")
    parser.add_argument("--tempo-only", action="store_true",
                        help="tempo tables only (implied by an OpenMSX manifest); JSON beside --out, same name")
    args = parser.parse_args(argv)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/quality/evaluate.py", *sys.argv[1:]])
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    entries = manifest["entries"]
    tempo_only = args.tempo_only or manifest.get("set") in COMPOSITION_SETS
    results = (evaluate_tempo if tempo_only else evaluate)(args.corpus, args.workers, args.recompute)
    results["command"] = command
    report = (render_tempo if tempo_only else render)(results, command, entries)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
        # The tempo-only report's JSON is named as it is; the main one's is results.json.
        json_path = args.out.with_suffix(".json") if tempo_only else args.out.with_name("results.json")
        json_path.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
