"""Similarity search over the store: indexes, normalisation, exact top-k, strategies.

An ``Index`` is a packed float32 matrix of one fingerprint kind (13D streaming or 25D
batch) in physical units (NaN for null), with the record key, path and content key of
each row, saved beside the store as ``.npy`` files (loaded without pickle) and a
JSON header. It is refreshed incrementally from the store's change journal, so a
query never re-reads every record; an eviction, expiry or ``cache clear`` (which the
journal cannot describe) makes the next refresh rebuild it.

Distances are weighted Euclidean in a robust per-dimension scaling fitted on the
library: the 5th..95th percentile maps to [0, 1], clipped; a dim with no spread
weighs 0. Group weights (frequency, dynamics, temporal, spectral, harmonic,
variation, stereo) default to 1 and are shared by the dims of the group, so each
group counts the same whatever its size.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from fpcli.errors import FpcliError, ParameterError
from fpcli.fingerprint import BATCH_DIMS, DIM_BY_NAME, GROUPS, STREAMING_DIMS
from fpcli.library import analyze_file
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.store import FingerprintStore, Lookup

INDEX_FORMAT = 1
KINDS = {"streaming": STREAMING_DIMS, "batch": BATCH_DIMS}
NULL_PENALTY = 0.5       # normalised difference charged when one side of a dim is null
REFIT_SHARE = 0.1        # refit the scaling when this share of rows changed since the last fit
ACCURATE_CANDIDATES = 5  # "accurate" re-ranks k x this many fast candidates
STRATEGIES = ("fast", "accurate", "batch", "auto")


class SearchError(FpcliError):
    """A search that cannot be answered (empty store, undecodable query, ...)."""


# -- the index -------------------------------------------------------------------------------

@dataclasses.dataclass
class Index:
    """Rows of one fingerprint kind. ``values`` (n, d) float32 physical units, NaN = null."""

    kind: str
    params_key: str
    values: np.ndarray
    keys: np.ndarray        # (n,) record keys
    paths: np.ndarray       # (n,) last known paths
    contents: np.ndarray    # (n,) content keys
    low: np.ndarray         # (d,) 5th percentile per dim
    high: np.ndarray        # (d,) 95th percentile per dim
    generation: int = 0
    epoch: tuple[int, int] = (0, 0)
    changed_since_fit: int = 0
    _scaled: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _terms: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _content_words: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    def __len__(self) -> int:
        return len(self.keys)

    def normalised(self) -> np.ndarray:
        """(n, d) values scaled to [0, 1] by the fitted percentiles (NaN stays NaN),
        computed once per index so a query costs one pass over the matrix."""
        if self._scaled is None or len(self._scaled) != len(self.values):
            self._scaled = scale(self.values, self.low, self.high)
        return self._scaled

    def terms(self) -> np.ndarray:
        """(n, 3d) float32 [X^2, X, M]: the scaled values with nulls as 0 (X) and the
        null mask (M), so that every distance is one matrix-vector product."""
        if self._terms is None or len(self._terms) != len(self.values):
            scaled = self.normalised()
            mask = np.isnan(scaled)
            filled = np.where(mask, 0.0, scaled).astype(np.float32)
            self._terms = np.concatenate([filled * filled, filled, mask.astype(np.float32)], axis=1)
        return self._terms

    def rows_with_content(self, content: str) -> np.ndarray:
        """Boolean (n,) rows whose content key is ``content``, comparing the 32 hex
        digits as four 64-bit words (a string comparison costs 20x more at 1M rows)."""
        if self._content_words is None or len(self._content_words) != len(self.contents):
            self._content_words = _words(self.contents)
        target = _words(np.array([content]))
        return (self._content_words == target).all(axis=1)

    def fit(self) -> None:
        self.low, self.high = fit_scaling(self.values)
        self.changed_since_fit = 0
        self._scaled = self._terms = None


def _words(contents: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(contents.astype("S32")).view(np.uint64).reshape(len(contents), 4)


def fit_scaling(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """5th and 95th percentile of each column, ignoring NaN (0, 0 for an empty column)."""
    if len(values) == 0:
        zeros = np.zeros(values.shape[1])
        return zeros, zeros.copy()
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        low = np.nanpercentile(values, 5, axis=0)
        high = np.nanpercentile(values, 95, axis=0)
    return np.nan_to_num(low), np.nan_to_num(high)


def scale(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    spread = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(spread > 0, (values - low) / np.where(spread > 0, spread, 1.0), 0.0)
    scaled = np.clip(scaled, 0.0, 1.0)
    return np.where(np.isnan(values), np.nan, scaled).astype(np.float32)


class _quiet_nan_warnings:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._catch.__exit__(*exc)


def dim_weights(dims: tuple[str, ...], group_weights: dict[str, float], low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    """Per-dim weights: each group's weight shared by its dims; zero-spread dims weigh 0."""
    groups = [DIM_BY_NAME[d].group for d in dims]
    sizes = {g: groups.count(g) for g in set(groups)}
    weights = np.array([group_weights.get(g, 1.0) / sizes[g] for g in groups])
    return np.where(high - low > 0, weights, 0.0)


def parse_weights(text: str | None) -> dict[str, float]:
    """``"temporal=2,stereo=0"`` -> group weights (others 1.0)."""
    weights = dict.fromkeys(GROUPS, 1.0)
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        group, _, value = item.partition("=")
        if group not in weights:
            raise ParameterError(f"--weights {item!r}: {group!r} is not a group ({', '.join(GROUPS)})")
        try:
            weights[group] = float(value)
        except ValueError:
            raise ParameterError(f"--weights {item!r}: {value!r} is not a number") from None
        if weights[group] < 0:
            raise ParameterError(f"--weights {item!r}: must be >= 0")
    return weights


def _row_of(record: dict[str, Any], kind: str, params_key: str) -> np.ndarray | None:
    if record.get("params_key") != params_key or record.get("fingerprint_version") != FINGERPRINT_VERSION:
        return None
    source = record.get("streaming") if kind == "streaming" else record.get("batch")
    if not source:
        return None
    values = source["values"]
    return np.array([np.nan if values.get(d) is None else values[d] for d in KINDS[kind]], dtype=np.float32)


def build_index(store: FingerprintStore, kind: str, params_key: str) -> Index:
    """An index of every record of ``kind`` under ``params_key`` (reads every record)."""
    generation = store.generation()
    epoch = store.index_epoch()
    rows, keys, paths, contents = [], [], [], []
    for key in list(store.backend.keys("rec:")):
        record = store.backend.get(key)
        row = _row_of(record, kind, params_key) if record else None
        if row is not None:
            rows.append(row)
            keys.append(key)
            paths.append(record["path"])
            contents.append(record["content_key"])
    values = np.array(rows, dtype=np.float32).reshape(len(rows), len(KINDS[kind]))
    index = Index(kind, params_key, values, np.array(keys, dtype=str), np.array(paths, dtype=str),
                  np.array(contents, dtype=str), np.zeros(0), np.zeros(0), generation, epoch)
    index.fit()
    return index


def refresh(index: Index, store: FingerprintStore) -> tuple[Index, int, str]:
    """Bring ``index`` up to date; returns (index, records re-read, what was done:
    loaded, refreshed or rebuilt). Rebuilds when the journal cannot describe what
    changed (a clear, an eviction, an expiry) or when more changed than it holds."""
    epoch = store.index_epoch()
    changes = store.changes_since(index.generation) if tuple(index.epoch) == epoch else None
    if changes is None or len(changes) > max(1000, len(index)):
        fresh = build_index(store, index.kind, index.params_key)
        return fresh, len(fresh), "rebuilt"
    if not changes:
        return index, 0, "loaded"
    generation = store.generation()
    unique = list(dict.fromkeys(changes))
    position = {key: i for i, key in enumerate(index.keys.tolist())}
    keep = np.ones(len(index), dtype=bool)
    new_rows, new_keys, new_paths, new_contents = [], [], [], []
    values, paths = index.values.copy(), index.paths.astype(object)
    for key in unique:
        record = store.backend.get(key)
        row = _row_of(record, index.kind, index.params_key) if record else None
        i = position.get(key)
        if row is None:
            if i is not None:
                keep[i] = False
        elif i is not None:
            values[i], paths[i] = row, record["path"]
        else:
            new_rows.append(row)
            new_keys.append(key)
            new_paths.append(record["path"])
            new_contents.append(record["content_key"])
    d = values.shape[1]
    updated = Index(
        index.kind, index.params_key,
        np.concatenate([values[keep], np.array(new_rows, dtype=np.float32).reshape(-1, d)]),
        np.concatenate([index.keys[keep], np.array(new_keys, dtype=str)]).astype(str),
        np.concatenate([paths[keep], np.array(new_paths, dtype=object)]).astype(str),
        np.concatenate([index.contents[keep], np.array(new_contents, dtype=str)]).astype(str),
        index.low, index.high, generation, epoch, index.changed_since_fit + len(unique),
    )
    if updated.changed_since_fit > REFIT_SHARE * max(len(updated), 1):
        updated.fit()
    return updated, len(unique), "refreshed"


def index_folder(store: FingerprintStore) -> Path:
    return store.backend.index_dir


def save_index(index: Index, folder: Path) -> None:
    """Write the arrays (.npy, no pickle) then the JSON header, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{index.kind}-{index.params_key}"
    for name in ("values", "keys", "paths", "contents", "low", "high"):
        target = folder / f"{stem}.{name}.npy"
        temporary = folder / f".{stem}.{name}.{os.getpid()}.npy"
        np.save(temporary, getattr(index, name), allow_pickle=False)
        os.replace(temporary, target)
    header = {"format": INDEX_FORMAT, "kind": index.kind, "params_key": index.params_key, "rows": len(index),
              "generation": index.generation, "epoch": list(index.epoch), "changed_since_fit": index.changed_since_fit}
    temporary = folder / f".{stem}.json.{os.getpid()}"
    temporary.write_text(json.dumps(header))
    os.replace(temporary, folder / f"{stem}.json")


def load_index(folder: Path, kind: str, params_key: str) -> Index | None:
    """The saved index, or None when missing or inconsistent (a rebuild follows)."""
    stem = f"{kind}-{params_key}"
    try:
        header = json.loads((folder / f"{stem}.json").read_text())
        arrays = {name: np.load(folder / f"{stem}.{name}.npy", allow_pickle=False)
                  for name in ("values", "keys", "paths", "contents", "low", "high")}
    except (OSError, ValueError):
        return None
    rows = header.get("rows")
    if header.get("format") != INDEX_FORMAT or any(len(arrays[n]) != rows for n in ("values", "keys", "paths")):
        return None
    return Index(kind, params_key, arrays["values"].astype(np.float32), arrays["keys"], arrays["paths"],
                 arrays["contents"], arrays["low"], arrays["high"], int(header["generation"]),
                 tuple(header["epoch"]), int(header.get("changed_since_fit", 0)))


def current_index(store: FingerprintStore, kind: str, params_key: str) -> tuple[Index, dict[str, Any]]:
    """Load, refresh and save the index of ``kind``; returns it and what was done."""
    started = time.perf_counter()
    folder = index_folder(store)
    index = load_index(folder, kind, params_key)
    if index is None:
        index = build_index(store, kind, params_key)
        reread, action = len(index), "built"
    else:
        index, reread, action = refresh(index, store)
    if action != "loaded":
        save_index(index, folder)
    return index, {"index": action, "records_read": reread, "rows": len(index),
                   "index_seconds": time.perf_counter() - started}


# -- ranking ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Hit:
    path: str
    distance: float
    content_key: str
    explain: tuple[dict[str, Any], ...] = ()


def distances(index: Index, query: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Euclidean distances (n,) from ``query`` (physical units, (d,)) to every row.

    Nulls: a dim null on one side costs NULL_PENALTY, null on both costs 0. Computed
    as ``terms() @ u + c`` by expanding w (x - q)^2 = w x^2 - 2 w x q + w q^2 with
    the null cases folded into u and c, one pass over the matrix per query.
    """
    q = scale(query[None, :], index.low, index.high)[0].astype(np.float64)
    known = ~np.isnan(q)
    qf = np.where(known, q, 0.0)
    w = weights.astype(np.float64)
    penalty = NULL_PENALTY * NULL_PENALTY
    u_square = w * known                                   # w x^2 where the query is known
    u_cross = -2.0 * w * known * qf                        # -2 w x q
    u_absent = w * known * qf * qf + w * ~known * penalty  # charged where x is known (1 - M)
    u_mask = w * known * penalty                           # charged where x is null (M)
    u = np.concatenate([u_square, u_cross, u_mask - u_absent]).astype(np.float32)
    squared = index.terms() @ u + np.float32(u_absent.sum())
    return np.sqrt(np.maximum(squared, 0.0))


def top_k(index: Index, query: np.ndarray, k: int, weights: np.ndarray, *, exclude_content: str | None = None,
          under: str | None = None, explain: bool = False) -> list[Hit]:
    """The k nearest rows (exact; vectorised), nearest first; ties by path. Excluded
    rows get an infinite distance rather than a copy of the matrix without them."""
    if len(index) == 0 or k <= 0:
        return []
    d = distances(index, query, weights)
    if exclude_content is not None:
        d[index.rows_with_content(exclude_content)] = np.inf
    if under is not None:
        prefix = os.path.join(os.path.realpath(under), "")
        d[~np.char.startswith(index.paths.astype(str), prefix)] = np.inf
    take = min(k, len(d))
    best = np.argpartition(d, take - 1)[:take] if take < len(d) else np.arange(len(d))
    best = [int(i) for i in best if np.isfinite(d[i])]
    order = sorted(best, key=lambda i: (float(d[i]), index.paths[i]))
    return [Hit(str(index.paths[i]), float(d[i]), str(index.contents[i]),
                _explain(index, query, i, weights) if explain else ()) for i in order]


def _explain(index: Index, query: np.ndarray, row: int, weights: np.ndarray, n: int = 3) -> tuple[dict, ...]:
    q = scale(query[None, :], index.low, index.high)[0]
    x = scale(index.values[row][None, :], index.low, index.high)[0]
    diff = np.where(np.isnan(x - q), np.where(np.isnan(x) & np.isnan(q), 0.0, NULL_PENALTY), x - q)
    contribution = weights * diff * diff
    order = np.argsort(-contribution)[:n]
    return tuple({"dim": index.dims[i], "query": _value(query[i]), "hit": _value(index.values[row][i]),
                  "contribution": float(contribution[i])} for i in order if contribution[i] > 0)


def _value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)


# -- the query optimizer -----------------------------------------------------------------------

@dataclasses.dataclass
class SearchResult:
    query: str
    strategy: str
    reason: str
    hits: list[Hit]
    stats: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "strategy": self.strategy, "reason": self.reason,
                "hits": [dataclasses.asdict(h) for h in self.hits], "stats": self.stats}


def get_fingerprint_fast(store: FingerprintStore, path: str, params: AnalysisParams, *,
                         batch: bool = False) -> tuple[dict[str, Any], bool]:
    """The query's stored record when valid for the file, else analyse it now (stream,
    and batch when asked) and store it. Returns (record, was_cached)."""
    found: Lookup = store.lookup(path, params.key(), need_batch=batch)
    if found.record is not None:
        return found.record, True
    if found.error:
        raise SearchError(f"cannot read the query: {found.error}")
    result = analyze_file(path, params=params, batch=batch)
    if result.failed:
        raise SearchError(f"cannot analyse the query: {result.error}")
    return store.save(found.identity, result), False


def search(store: FingerprintStore, query_path: str, *, k: int = 10, strategy: str = "auto",
           params: AnalysisParams | None = None, group_weights: dict[str, float] | None = None,
           under: str | None = None, explain: bool = False, compute_missing: bool = False,
           include_duplicates: bool = False) -> SearchResult:
    """Find the k tracks of the store most similar to ``query_path``.

    fast: streaming fingerprints of cached tracks. accurate: k x 5 fast candidates
    re-ranked by batch fingerprints (missing ones computed for the candidates only).
    batch: batch fingerprints of every track (missing ones reported, or computed with
    ``compute_missing``). auto: chooses from the query's confidence and validation.
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"--strategy {strategy!r}: one of {', '.join(STRATEGIES)}")
    if k < 1:
        raise ParameterError(f"-k {k}: must be at least 1")
    params = params or AnalysisParams()
    group_weights = group_weights or dict.fromkeys(GROUPS, 1.0)
    started = time.perf_counter()
    store.flush_stats()
    hits_before = store.backend.counter("hits")
    record, cached = get_fingerprint_fast(store, query_path, params, batch=strategy in ("accurate", "batch"))
    reason = f"--strategy {strategy}"
    if strategy == "auto":
        strategy, reason = _choose(record)
    stats: dict[str, Any] = {"query_cached": cached}
    exclude = None if include_duplicates else record["content_key"]
    if strategy == "fast":
        hits = _fast(store, record, k, params, group_weights, exclude, under, explain, stats)
    elif strategy == "accurate":
        hits = _accurate(store, record, k, params, group_weights, exclude, under, explain, stats)
    else:
        hits = _batch(store, record, k, params, group_weights, exclude, under, explain, compute_missing, stats)
    store.flush_stats()
    stats["cache_hits"] = store.backend.counter("hits") - hits_before
    stats["seconds"] = time.perf_counter() - started
    return SearchResult(query_path, strategy, reason, hits, stats)


def _choose(record: dict[str, Any]) -> tuple[str, str]:
    validation = record.get("validation") or {}
    confidence = record["streaming"]["confidence"]
    mean = sum(confidence.values()) / len(confidence)
    if validation.get("status") == "invalid":
        return "accurate", "auto: the query's streaming fingerprint failed validation, so re-rank with batch"
    if mean < 0.9:
        return "accurate", f"auto: the query's streaming confidence is low ({mean:.2f}), so re-rank with batch"
    if validation.get("status") == "valid":
        return "fast", "auto: the query's streaming fingerprint is validated against batch"
    return "fast", "auto: the query's streaming fingerprint is complete (confidence 1.0); validate to be sure"


def _query_row(record: dict[str, Any], kind: str) -> np.ndarray:
    source = record["streaming"] if kind == "streaming" else record["batch"]
    return np.array([np.nan if source["values"].get(d) is None else source["values"][d] for d in KINDS[kind]],
                    dtype=np.float32)


def _ensure_nonempty(index: Index, kind: str) -> None:
    if len(index) <= 1:
        raise SearchError(f"the store holds no other {kind} fingerprints to search: "
                          f"run `fpcli analyze{' --batch' if kind == 'batch' else ''} LIBRARY` first")


def _rank_all(store, kind, record, k, params, group_weights, exclude, under, explain, stats) -> list[Hit]:
    """The k nearest of every indexed track of ``kind`` (refreshing the index first)."""
    index, info = current_index(store, kind, params.key())
    stats.update(info)
    _ensure_nonempty(index, kind)
    weights = dim_weights(index.dims, group_weights, index.low, index.high)
    return top_k(index, _query_row(record, kind), k, weights, exclude_content=exclude, under=under, explain=explain)


def _fast(store, record, k, params, group_weights, exclude, under, explain, stats) -> list[Hit]:
    return _rank_all(store, "streaming", record, k, params, group_weights, exclude, under, explain, stats)


def _accurate(store, record, k, params, group_weights, exclude, under, explain, stats) -> list[Hit]:
    candidates = _fast(store, record, k * ACCURATE_CANDIDATES, params, group_weights, exclude, under, False, stats)
    computed = 0
    for hit in candidates:  # batch fingerprints for the candidates only
        if os.path.exists(hit.path):
            _, cached = get_fingerprint_fast(store, hit.path, params, batch=True)
            computed += not cached
    stats["batch_computed"] = computed
    index, info = current_index(store, "batch", params.key())
    stats["batch_index"] = info
    wanted = {h.content_key for h in candidates}
    rows = np.flatnonzero(np.isin(index.contents, list(wanted)))
    sub = dataclasses.replace(index, values=index.values[rows], keys=index.keys[rows], paths=index.paths[rows],
                              contents=index.contents[rows], _scaled=None, _terms=None, _content_words=None)
    weights = dim_weights(index.dims, group_weights, index.low, index.high)
    return top_k(sub, _query_row(record, "batch"), k, weights, exclude_content=exclude, explain=explain)


def _batch(store, record, k, params, group_weights, exclude, under, explain, compute_missing, stats) -> list[Hit]:
    streaming, _ = current_index(store, "streaming", params.key())
    index, _ = current_index(store, "batch", params.key())
    missing = streaming.paths[~np.isin(streaming.contents, index.contents)].tolist()
    if compute_missing:
        for path in missing:
            if os.path.exists(path):
                get_fingerprint_fast(store, path, params, batch=True)
    stats["missing_batch"] = 0 if compute_missing else len(missing)
    return _rank_all(store, "batch", record, k, params, group_weights, exclude, under, explain, stats)


def write_m3u(result: SearchResult, destination: str | os.PathLike) -> None:
    """An extended M3U playlist of the query and its hits, paths relative to the playlist."""
    destination = Path(destination)
    base = destination.resolve().parent
    lines = ["#EXTM3U"]
    for path in [result.query, *(h.path for h in result.hits)]:
        lines.append(f"#EXTINF:-1,{Path(path).stem}")
        lines.append(os.path.relpath(os.path.realpath(path), base))
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(temporary, destination)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise SearchError(f"cannot write the playlist {destination}: {exc.strerror or exc}") from None
