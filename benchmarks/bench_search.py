"""Search performance and quality (issue: search, "Measured").

    python benchmarks/bench_search.py --library /tmp/fpcli-library [--out benchmarks/search.md]

1. Warm query latency (index in memory) over 10k, 100k and 1M synthetic streaming
   fingerprints, drawn around the real library's values with jitter and 2 % nulls,
   each with a timbre Gaussian drawn around one of 2,000 synthetic timbres; with the
   default weights (timbre 2), so every query runs the prefilter and the exact JS
   re-rank. The prefilter's recall@10 against the exhaustive exact ranking (every
   row's exact distance, computed in slices) is measured on 20 queries per size.
2. Cold query: a new process that loads a saved 100k index from disk and answers one
   query (process start-up included).
3. Index build from a store of 10k records, and an incremental refresh after 100
   changed records.
4. Quality on the real-music library: recall@10 of `fast` and `accurate` against the
   `batch` ranking, every track as a query.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.dsp.timbre import N_MFCC
from fpcli.fingerprint import STREAMING_DIMS
from fpcli.library import RunOptions, run_library
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.search import Index, build_index, current_index, dim_weights, refresh, save_index, search, top_k
from fpcli.search.rank import default_weights, exact_distances
from fpcli.search.timbre import TIMBRE_COLUMNS
from fpcli.store import FingerprintStore, Record
from fpcli.store.records import AudioFacts, PathSeen, StreamingValues

KEY = AnalysisParams().key()
WEIGHTS = default_weights()
TIMBRES = 2000


def synthetic_timbre(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, TIMBRE_COLUMNS) packed Gaussians: each row a jittered copy of one of TIMBRES
    centres (mean spread 3, covariance A A^T / 13 with A jittered by 30 %)."""
    centre_means = rng.normal(0, 3, (TIMBRES, N_MFCC))
    centre_factors = rng.normal(size=(TIMBRES, N_MFCC, N_MFCC))
    upper = np.triu_indices(N_MFCC)
    out = np.empty((n, TIMBRE_COLUMNS), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        which = rng.integers(TIMBRES, size=m)
        factors = centre_factors[which] + 0.3 * rng.normal(size=(m, N_MFCC, N_MFCC))
        covs = factors @ np.swapaxes(factors, 1, 2) / N_MFCC
        out[start:start + m, :N_MFCC] = centre_means[which] + 0.3 * rng.normal(size=(m, N_MFCC))
        out[start:start + m, N_MFCC:] = covs[:, upper[0], upper[1]]
    return out


def synthetic_index(n: int, centres: np.ndarray, rng: np.random.Generator) -> Index:
    base = centres[rng.integers(len(centres), size=n)]
    values = (base * rng.normal(1.0, 0.15, size=base.shape)).astype(np.float32)
    values[rng.random(values.shape) < 0.02] = np.nan
    index = Index("streaming", KEY, values, np.array([f"k{i}" for i in range(n)]),
                  np.array([f"/music/{i // 1000:04d}/{i:07d}.flac" for i in range(n)]),
                  np.array([f"{i:032x}" for i in range(n)]), np.zeros(0), np.zeros(0),
                  timbre=synthetic_timbre(n, rng))
    index.fit()
    return index


def _query(index: Index, weights: np.ndarray, i: int, mutual: bool = True) -> list:
    """The search's top 10 of row i: by mutual proximity as ``fpcli search`` ranks them,
    or (``mutual`` False) by distance, as the prefilter's recall is judged."""
    return top_k(index, index.values[i], 10, weights, exclude_content=index.contents[i],
                 query_timbre=index.timbre_rows()[i], timbre_weight=WEIGHTS["timbre"], mutual=mutual)


def warm_latency(index: Index, rng: np.random.Generator, queries: int = 100) -> dict[bool, tuple[float, float, float]]:
    """Wall-clock p50 and p99 and the CPU-time p50 (ms) of ``queries`` random queries,
    ranked by mutual proximity (True: as ``fpcli search`` ranks) and by distance alone
    (False), the two rankings of each query run one after the other so that both see
    the same machine. On a shared machine the wall clock includes waiting for a core;
    the CPU time does not."""
    weights = dim_weights(index.dims, WEIGHTS, index.low, index.high)
    # Warm: the features, the timbre embedding, their terms, the content words and the
    # references are built once per loaded index, by its first query (the cold-query
    # row measures that).
    _query(index, weights, 0)
    times: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(queries):
        i = int(rng.integers(len(index)))
        for mutual in (True, False):
            started, cpu_started = time.perf_counter(), time.process_time()
            _query(index, weights, i, mutual)
            times[mutual].append(time.perf_counter() - started)
            cpu[mutual].append(time.process_time() - cpu_started)
    out = {}
    for mutual in (True, False):
        p50, p99 = np.percentile(np.array(times[mutual]) * 1e3, [50, 99])
        out[mutual] = (float(p50), float(p99), float(np.median(cpu[mutual]) * 1e3))
    return out


def prefilter_recall(index: Index, rng: np.random.Generator, queries: int = 20) -> float:
    """Mean recall@10 of top_k (prefilter + exact re-rank) against the exact distance
    of every row."""
    weights = dim_weights(index.dims, WEIGHTS, index.low, index.high)
    recalls = []
    for i in rng.integers(len(index), size=queries):
        got = {h.digest for h in _query(index, weights, int(i), mutual=False)}
        exact = np.concatenate([
            exact_distances(index, index.values[i], weights, np.arange(s, min(s + 50_000, len(index))),
                            index.timbre_rows()[i], WEIGHTS["timbre"]) for s in range(0, len(index), 50_000)])
        exact[index.rows_with_content(index.contents[i])] = np.inf
        truth = set(index.contents[np.argsort(exact)[:10]])
        recalls.append(len(got & truth) / 10)
    return float(np.mean(recalls))


COLD = r"""
import sys, time
t = time.perf_counter()
from pathlib import Path
import numpy as np
from fpcli.search import load_index, top_k, dim_weights
from fpcli.search.rank import default_weights
index = load_index(Path(sys.argv[1]), "streaming", sys.argv[2])
w = dim_weights(index.dims, default_weights(), index.low, index.high)
hits = top_k(index, index.values[123], 10, w, exclude_content=index.contents[123],
             query_timbre=index.timbre_rows()[123], timbre_weight=default_weights()["timbre"], mutual=True)
print(len(hits), time.perf_counter() - t)
"""


def fake_records(store: FingerprintStore, n: int, centres: np.ndarray, rng: np.random.Generator,
                 first: int = 0) -> None:
    """``n`` complete typed records (no timbre) written straight to the backend and journal."""
    for i in range(first, first + n):
        values = dict(zip(STREAMING_DIMS, (centres[i % len(centres)] * rng.normal(1, 0.1, 13)).tolist(),
                          strict=True))
        content = f"{i:032x}"
        record = Record(content, content, KEY, FINGERPRINT_VERSION, 1, (PathSeen(f"/music/{i:06d}.flac", 1),), True,
                        AudioFacts(30.0, 44100, 2, "FLAC", "PCM_16", False, None),
                        StreamingValues(values, dict.fromkeys(STREAMING_DIMS, 1.0), {}, 1, 30.0), None, None,
                        1.0, 1.0)
        store._write_record(record)


def recall_at_10(library: Path, workdir: Path) -> dict[str, float]:
    with FingerprintStore.open(workdir / "real") as store:
        run_library([str(library)], store, RunOptions(jobs=2, batch=True))
        paths = sorted(r.path for r in store.records())
        recalls = {"fast": [], "accurate": []}
        for path in paths:
            truth = {h.path for h in search(store, path, k=10, strategy="batch").hits}
            for strategy in recalls:
                got = {h.path for h in search(store, path, k=10, strategy=strategy).hits}
                recalls[strategy].append(len(got & truth) / max(len(truth), 1))
    return {s: float(np.mean(v)) for s, v in recalls.items()} | {"queries": len(paths)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        quality = recall_at_10(args.library, work)
        with FingerprintStore.open(work / "real") as real:
            centres = np.array([[np.nan if r.streaming.values[d] is None else r.streaming.values[d]
                                 for d in STREAMING_DIMS] for r in real.records()], dtype=np.float32)
        centres = np.where(np.isnan(centres), np.nanmean(centres, axis=0), centres)
        targets = {10_000: 5, 100_000: 15, 1_000_000: 100}
        for n, target in targets.items():
            index = synthetic_index(n, centres, rng)
            latency = warm_latency(index, rng)
            p50, p99, cpu = latency[True]
            rows.append([f"warm query, {n:,} tracks (p50 / p99; CPU time p50)",
                         f"{p50:.1f} / {p99:.1f} ms; {cpu:.1f} ms", f"< {target} ms",
                         "met" if p99 < target else "MISSED"])
            plain = latency[False]
            rows.append([f"the same queries by distance alone (--no-mp), {n:,} tracks",
                         f"{plain[0]:.1f} / {plain[1]:.1f} ms; {plain[2]:.1f} ms", "", ""])
            rows.append([f"prefilter recall@10 vs exhaustive exact ranking, {n:,} tracks (20 queries)",
                         f"{prefilter_recall(index, rng):.3f}", "", ""])
            if n == 100_000:
                save_index(index, work / "idx")
                out = subprocess.run([sys.executable, "-c", COLD, str(work / "idx"), KEY], capture_output=True,
                                     text=True, check=True).stdout.split()
                started = time.perf_counter()
                subprocess.run([sys.executable, "-c", COLD, str(work / "idx"), KEY], capture_output=True, check=True)
                wall = time.perf_counter() - started
                rows.append(["cold query, 100,000 tracks (new process, index from disk)",
                             f"{wall:.2f} s (in-process {float(out[1]):.2f} s)", "< 1 s",
                             "met" if wall < 1 else "MISSED"])
        with FingerprintStore.open(work / "fake") as store:
            fake_records(store, 10_000, centres, rng)
            started = time.perf_counter()
            index = build_index(store, "streaming", KEY)
            build = time.perf_counter() - started
            save_index(index, store.location and Path(store.location) / "index")
            fake_records(store, 100, centres, rng, first=10_000)
            started = time.perf_counter()
            index, reread, action = refresh(index, store)
            refresh_time = time.perf_counter() - started
            started = time.perf_counter()
            current_index(store, "streaming", KEY)
            load_time = time.perf_counter() - started
        rows += [
            ["index build from a store of 10,000 records", f"{build:.2f} s", "", ""],
            [f"incremental refresh after 100 new records ({action}, {reread} read)", f"{refresh_time * 1e3:.0f} ms",
             "", ""],
            ["load a saved 10,000-row index", f"{load_time * 1e3:.0f} ms", "", ""],
            [f"recall@10 vs batch, fast ({quality['queries']} queries, real library)", f"{quality['fast']:.3f}",
             "", ""],
            [f"recall@10 vs batch, accurate ({quality['queries']} queries)", f"{quality['accurate']:.3f}", "", ""],
        ]
    report = "\n".join([
        f"# Search performance and quality ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_search.py --library {args.library}`", "",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}; "
        f"load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.", "",
        tabulate(rows, ["figure", "measured", "target", ""], tablefmt="github"), "",
        "Synthetic fingerprints are the real library's streaming values with 15 % multiplicative jitter and 2 % "
        "nulls, each with a timbre Gaussian jittered from one of 2,000 random timbres; queries use the default "
        "weights (every group 1, timbre 2): the prefilter (one matrix-vector product over the named features "
        "and a 32-dim timbre embedding), the exact Jensen-Shannon re-rank of the best 1,000, then the 30 "
        "nearest ranked by mutual proximity against 32 reference rows, as `fpcli search` ranks (the warm-query "
        "rows; each query is also run by distance alone, right after, for the --no-mp rows). The prefilter's "
        "recall compares rankings by distance. "
        "The real library has only 24 decodable tracks, so recall@10 there compares rankings of 23 "
        "candidates; it says how much re-ranking with batch changes the answer, not how it scales.", "",
    ])
    return emit(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
