"""Search strategies: fast (streaming fingerprints), accurate (fast candidates re-ranked
with batch fingerprints), batch (batch fingerprints of every track) and auto."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fpcli.cue import album_image_of, is_entry, missing_track_reason, track_of_entry
from fpcli.dsp.dupes import DURATION_TOLERANCE_S
from fpcli.errors import ParameterError, QueryError, SearchError, StoreError
from fpcli.executors import DEFAULT_TIMEOUT_S
from fpcli.extensions import AUDIO_EXTENSIONS
from fpcli.files import atomic_text, printable_path
from fpcli.fingerprint import DIM_BY_NAME, STREAMING_DIMS, mean_confidence, seconds_text
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams, checked_params
from fpcli.search.dupes import Recording, RecordingTable, starts_like
from fpcli.search.index import KINDS, Index, row_of
from fpcli.search.proximity import reference_of, use_reference
from fpcli.search.rank import TIMBRE_WEIGHT, Hit, default_weights, dim_weights, explain_row, top_k
from fpcli.search.saved import IndexProgress, current_index
from fpcli.search.timbre import pack
from fpcli.store import FingerprintStore, Record
from fpcli.store.core import results_optional
from fpcli.store.protocol import BATCH
from fpcli.store.records import STREAM_PREFIX, FileIdentity, entry_file, file_state, record_key, resolve

if TYPE_CHECKING:  # fpcli.library (the analysis stack) is imported only when something is missing
    from fpcli.library import Event

ACCURATE_CANDIDATES = 5  # "accurate" re-ranks k x this many fast candidates
DUPLICATE_SLACK = 10     # extra hits asked for so that dropping duplicates still leaves k
STRATEGIES = ("fast", "accurate", "batch", "auto")
GONE = "no such file or folder"  # why a hit whose every file is gone was skipped (as a failed look-up says it)
CHANGED = "changed since it was analysed"  # ... or whose file is another one now (rewritten, or a folder)


class WeightsError(SearchError, ParameterError):
    """Weights that leave a fingerprint kind nothing to measure: a bad weights value
    (a usage error, as any other), found only once the index's groups are known. Still
    a SearchError, which it was raised as before."""


@dataclasses.dataclass(frozen=True)
class Query:
    """How to rank: k, weights per group (and "timbre"), a folder to stay under,
    explanations, and whether duplicates (the query's and each other's: other files
    of one recording) are dropped from the hits. The query's own file (``query_file``,
    resolved; None for a stream) is never a hit, even when duplicates are kept."""

    k: int
    group_weights: dict[str, float]
    under: str | None
    explain: bool
    exclude: str | None  # the query's digest (the query and its copies are not hits)
    drop_duplicates: bool = True
    mutual_proximity: bool = True  # re-rank the nearest by mutual proximity (search.proximity)
    query_file: str | None = None
    copies: dict[str, str] = dataclasses.field(default_factory=dict)  # digest -> its file under ``under``

    @property
    def under_prefix(self) -> str | None:
        return None if self.under is None else os.path.join(os.path.realpath(self.under), "")

    @property
    def timbre_weight(self) -> float:
        return self.group_weights.get("timbre", TIMBRE_WEIGHT)


@dataclasses.dataclass(frozen=True)
class Compute:
    """How missing batch fingerprints of candidates are computed: on ``jobs`` worker
    processes (each file within ``timeout_s``), reporting to ``on_event`` as a library
    run does: ("start", (total, description)) once, then ("track", TrackResult) per file."""

    jobs: int = 1
    timeout_s: float = DEFAULT_TIMEOUT_S
    on_event: Event = lambda kind, payload: None


@dataclasses.dataclass
class SearchResult:
    query: str
    strategy: str
    reason: str
    hits: list[Hit]
    stats: dict[str, Any]
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # candidates that failed, why

    def to_json(self) -> dict[str, Any]:
        return {"query": self.query, "strategy": self.strategy, "reason": self.reason,
                "hits": [dataclasses.asdict(h) for h in self.hits], "stats": self.stats,
                "skipped": [{"path": p, "error": e} for p, e in self.skipped]}


# Expected recall@10 of a search whose query heard only its first N seconds, against the
# same search with the whole query (benchmarks/preview.md; linear between the points).
PREVIEW_RECALL = ((5.0, 0.594), (10.0, 0.644), (20.0, 0.777), (30.0, 0.921), (60.0, 0.940))


def expected_recall(seconds: float) -> float | None:
    """The measured recall@10 of a query that heard ``seconds``, linear between the
    lengths measured; None when nothing was measured, or ``seconds`` is under the
    shortest length measured (that length's figure says nothing of less). Past the
    longest, the longest's figure (hearing more is no worse)."""
    points = [p for p in PREVIEW_RECALL if p[1] > 0]
    if not points or seconds < points[0][0]:
        return None
    return float(np.interp(seconds, [s for s, _ in points], [r for _, r in points]))


def query_record(store: FingerprintStore, path: str, params: AnalysisParams, *,
                 batch: bool = False, seconds: float | None = None) -> tuple[Record, bool]:
    """The query's stored record, or analyse it now (stream, and batch when asked) and
    store it. Returns (record, was_cached). Raises SearchError for a bad query.

    A preview query (``seconds``) is the file's first ``seconds`` whatever the store
    holds: a stored record serves only when it heard just that much (a preview of that
    length, or a whole track no longer); otherwise those seconds are analysed now, and
    stored only when the store holds less of the track (a fuller record is kept)."""
    from fpcli.analyze import Want, answer, compute, keep, look_up  # the analyzers: only when a search needs them

    image = album_image_of(path)
    if image is not None:
        # Analysed as a query it was stored as a track, a search candidate for good.
        raise QueryError(f"{printable_path(path)} is the album image of a CUE sheet, not a track: search one of "
                          f"its tracks ({printable_path(image)}#01, ...)")
    missing = missing_track_reason(path) if is_entry(path) and track_of_entry(path) is None else None
    if missing is not None:   # it was "no such file or folder" beside the image (as analyze says it)
        raise QueryError(f"cannot analyse the query {printable_path(path)}: {missing}")
    want = Want(params, batch=batch and seconds is None, seconds=seconds)
    found = look_up(store, path, want)
    known = answer(path, found)
    if known is not None and known.failed:
        raise QueryError(f"cannot analyse the query {printable_path(path)}: {known.error}")
    if found.record is not None and (seconds is None or _hears_just(found.record, seconds)):
        return found.record, True
    assert found.identity is not None  # answer() reports an unreadable file
    identity, result = compute(path, want, found.identity)
    kept = found.record is None
    if kept:  # the store holds less than this: keep it (as any analysed file)
        unsaved = store.unsaved
        result = keep(store, path, identity, result)
        kept = store.unsaved == unsaved   # a user who may only read: the query is searched, not stored
    if result.failed:
        raise QueryError(f"cannot analyse the query {printable_path(path)}: {result.error}")
    # The preview itself, not the fuller record the store may hold; or the query this
    # user could not store, as it was analysed.
    if seconds is not None or not kept:
        from fpcli.store.records import record_from_result

        return record_from_result(identity, result, time.time()), False
    return _stored_query(store, path, params), False


# Why a preview record (the first N seconds of a track) is no search candidate, and
# what to do: its values describe the start of the track only, not the track.
PREVIEWS_LEFT_OUT = ("the first seconds of a track only, which search leaves out: analyse those tracks in "
                     "full; an analyze run with upgrade finishes every preview")
def other_versions_said(older: int, newer: int) -> str:
    """What the records of other fingerprint versions are, and what to do about them:
    "then cache prune drops them" was said of a later version's records too, which
    prune keeps (they are another fpcli's)."""
    parts = []
    if older:
        parts.append(f"{older} of a former fingerprint version (an analyze run of their folders makes them anew, "
                     "and cache prune then drops them)")
    if newer:
        parts.append(f"{newer} of a later fingerprint version, written by a newer fpcli (this one cannot use them: "
                     "search them with that fpcli)")
    return "; ".join(parts)


PREVIEW_MATCH_S = 0.05  # a stored preview this close to the seconds asked for is that preview


def _hears_just(record: Record, seconds: float) -> bool:
    """Whether ``record`` heard the first ``seconds`` of its track and no more: a
    preview of that length, or a whole track that is no longer."""
    return abs(record.streaming.seconds - seconds) <= PREVIEW_MATCH_S or \
        (record.complete and record.streaming.seconds <= seconds)


def _stored_query(store: FingerprintStore, path: str, params: AnalysisParams) -> Record:
    """The query's record as stored after its analysis (merged with what was there)."""
    try:
        # Not a second counted look-up; named by its parameters, it is one read (without
        # them, a scan of every key: seconds per query on a Redis store of 1,000,000).
        record = store.record_for_path(path, params.key())
    except OSError as exc:
        raise QueryError(f"cannot read the query {printable_path(path)}: {exc.strerror}") from None
    if record is None:
        raise SearchError(f"the query {printable_path(path)} was analysed but its record was evicted at once: "
                          "raise the store's size limit")
    return record


@results_optional
def search(store: FingerprintStore, query_path: str, *, k: int = 10, strategy: str = "auto",
           params: AnalysisParams | None = None, group_weights: dict[str, float] | None = None,
           under: str | None = None, explain: bool = False, compute_missing: bool = False,
           include_duplicates: bool = False, seconds: float | None = None,
           query: Record | None = None, compute: Compute | None = None,
           mutual_proximity: bool = True, index_progress: IndexProgress | None = None) -> SearchResult:
    """Find the k tracks of the store most similar to ``query_path``.

    fast: streaming fingerprints of cached tracks. accurate: k x 5 fast candidates
    re-ranked by batch fingerprints (missing ones computed for the candidates only).
    batch: batch fingerprints of every track (missing ones reported, or computed with
    ``compute_missing``). auto: chooses from the query's confidence and validation.
    Duplicates (other files of the query's recording, second files of a hit's) are
    left out unless ``include_duplicates``.

    A partial query (``seconds``: its first N seconds; or a ``query`` record made from
    a stream) is searched with its streaming fingerprint, each dim weighted by its
    confidence, and the result says how reliable it is (``stats["expected_recall"]``).

    Missing batch fingerprints (accurate, batch with ``compute_missing``) are computed
    in parallel as ``compute`` says (default: one worker, no progress events).

    The nearest hits are ranked by mutual proximity (``search.proximity``) unless
    ``mutual_proximity`` is False (then by distance alone). ``index_progress`` hears of
    a search index built from every record (minutes at a million records).
    """
    if strategy not in STRATEGIES:
        raise ParameterError(f"{strategy!r}: one of {', '.join(STRATEGIES)}", "strategy")
    if k < 1:
        raise ParameterError(f"{k}: must be at least 1", "k")
    params = checked_params(params)
    compute = compute or Compute()
    started = time.perf_counter()
    store.flush_stats()
    hits_before = store.backend.counter("hits")
    if query is not None:
        record, cached = query, False
    else:
        record, cached = query_record(store, query_path, params, batch=strategy in ("accurate", "batch"),
                                      seconds=seconds)
    reason = f"strategy {strategy} asked for"
    asked_auto = False
    if not record.complete:
        strategy, reason = "fast", (f"a partial query ({seconds_text(record.streaming.seconds)} s heard): streaming "
                                    "fingerprints, each dim weighted by its confidence")
    elif strategy == "auto":
        asked_auto = True
        strategy, reason = _choose(record, can_rerank=query is None)
        if strategy != "fast" and record.batch is None:
            # Chosen after the look-up, which asked for the streaming fingerprint only.
            record, _ = query_record(store, query_path, params, batch=True)
    copies = files_under(store, under) if under else {}
    plan = Query(k, {**default_weights(), **(group_weights or {})}, under, explain,
                 None if include_duplicates else record.digest, not include_duplicates, mutual_proximity,
                 None if query is not None else resolve(query_path), copies or {})
    # duplicates_dropped is 0, not absent, when none were (or duplicates are kept): a key of every answer.
    stats: dict[str, Any] = {"query_cached": cached, "query_seconds": record.streaming.seconds,
                             "query_complete": record.complete, "duplicates_dropped": 0}
    if copies is None:
        stats["copies_elsewhere"] = (f"not looked for: more than {COPY_WALK_ENTRIES:,} entries under the folder "
                                     "(a track there whose identical copy elsewhere was analysed last is left out)")
    if not record.complete:
        stats["expected_recall"] = expected_recall(record.streaming.seconds)  # None until measured
    if _silent(record):
        stats["query_silent"] = True
    skipped: list[tuple[str, str]] = []
    if strategy == "fast" and (unused := _weights_of_no_streaming_dim(group_weights or {})):
        stats["weights_unused"] = unused
    if strategy == "fast":
        hits = _rank_all(store, "streaming", record, plan, params, stats, skipped, index_progress)
    elif strategy == "accurate":
        try:
            hits = _accurate(store, record, plan, params, compute, stats, skipped, index_progress)
        except BatchValuesNotStored as exc:
            if not asked_auto:
                raise
            # auto chose accurate (the query's verdict doubts its streaming values); the
            # store keeps no batch values now (full, or this user may only read): it
            # failed the default search, exit 1.
            strategy, reason = "fast", f"auto chose accurate, but {exc}"
            skipped.clear()
            hits = _rank_all(store, "streaming", record, plan, params, stats, skipped, index_progress)
    else:
        hits = _batch(store, record, plan, params, compute if compute_missing else None, stats, skipped,
                      index_progress)
    if under is not None and not hits:  # say why the answer is empty: copies, or nothing there
        stats["query_copies_under"] = _copies_under(record, plan, stats)
    stats["previews_left_out"] = _previews_left_out(store, record)
    older, newer = store.other_version_counts()
    stats["other_versions_left_out"], stats["newer_versions_left_out"] = older + newer, newer
    store.flush_stats()
    stats["cache_hits"] = store.backend.counter("hits") - hits_before
    stats["ranking"] = _ranking(hits, mutual_proximity)
    stats["seconds"] = time.perf_counter() - started
    return SearchResult(query_path, strategy, reason, hits, stats, skipped)


def _copies_under(record: Record, query: Query, stats: dict[str, Any]) -> int:
    """How many tracks under ``--library`` were left out as the query's recording, for a
    search with no hit there: byte-identical copies (other paths of the query's record)
    and other encodings (duplicates dropped: with no hit kept, each was the query's).
    0 with duplicates kept (copies are hits then)."""
    prefix = query.under_prefix
    if not query.drop_duplicates or prefix is None:
        return 0
    same_bytes = [seen.path for seen in record.paths if seen.path.startswith(prefix)
                  and resolve(seen.path) != query.query_file and os.path.exists(seen.path)]
    return len(same_bytes) + stats.get("duplicates_dropped", 0)


def _ranking(hits: list[Hit], mutual_proximity: bool) -> str:
    """How the hits were ordered, in words (the result says it)."""
    if any(hit.mutual_proximity is not None for hit in hits):
        return "mutual proximity"
    if not mutual_proximity:
        return "distance (mutual proximity off)"
    return "distance (too few tracks to model mutual proximity)" if hits else "distance"


def _choose(record: Record, *, can_rerank: bool = True) -> tuple[str, str]:
    """auto's strategy and why. ``can_rerank`` is False for a stream query, which has
    no batch fingerprint (its audio is gone once analysed)."""
    if _silent(record):   # its few dims are exact: "confidence high (1.00)" said nothing of what it compares
        return "fast", "auto: the query is silent, so only its silence and rhythm dims have values"
    status = record.validation.status if record.validation else None
    mean = _mean_confidence(record)
    doubt = ("the query's streaming fingerprint failed validation" if status == "invalid" else
             f"the query's streaming confidence is low ({mean:.2f})" if mean < 0.9 else None)
    if doubt and can_rerank:
        return "accurate", f"auto: {doubt}, so re-rank with batch"
    if doubt:
        return "fast", f"auto: {doubt}, but a stream has no batch fingerprint to re-rank with"
    if status == "valid":
        return "fast", "auto: the query's streaming fingerprint is validated against batch"
    return "fast", f"auto: the query's streaming confidence is high ({mean:.2f}); validate to be sure"


def _silent(record: Record) -> bool:
    """Whether the query heard nothing but silence: every frame below the silence
    threshold, so no spectrum, no timbre, no loudness was measured."""
    return record.streaming.values.get("silence_ratio") == 1.0 and record.timbre is None


def _mean_confidence(record: Record) -> float:
    """``mean_confidence`` of the record's streaming fingerprint."""
    return mean_confidence(record.streaming.confidence, record.streaming.values)


def _query_row(record: Record, kind: str) -> np.ndarray:
    row = row_of(record, kind)
    if row is None:
        raise QueryError(f"the query has no {kind} fingerprint values (too short to measure: less than one "
                         "analysis frame?)")
    return row


def _previews_left_out(store: FingerprintStore, record: Record) -> int | None:
    """The store's preview records of this version but the query's own: a preview query
    stores its preview, which was counted among the previews search left out and
    told to finish, in that search and every later one of it. None: not counted."""
    previews = store.record_count("previews", FINGERPRINT_VERSION)   # None: not counted
    if previews and not record.complete:
        stored = store.read_record(record.key)
        if stored is not None and not stored.complete:
            previews -= 1
    return previews


def _rank_all(store: FingerprintStore, kind: str, record: Record, query: Query, params: AnalysisParams,
              stats: dict[str, Any], skipped: list[tuple[str, str]],
              progress: IndexProgress | None = None) -> list[Hit]:
    """The k nearest of every indexed track of ``kind`` (refreshing the index first).
    Nothing to search is an answer with no hits, its reason in
    ``stats["nothing_to_search"]`` (it was an error, exit 1 with nothing on stdout for
    ``--json``, where a batch search of a store without batch fingerprints answered
    with no hits and exit 0); tracks lacking a batch fingerprint are counted in
    ``stats["missing_batch"]`` then, with how to compute them."""
    _query_row(record, kind)   # a query with nothing measured fails as a query (not "nothing to search")
    index, info = current_index(store, kind, params.key(), progress)
    stats.update(info)
    if not _holds_others(index, record, query) and not (kind == "batch" and stats.get("missing_batch")):
        message = f"the store holds no other {kind} fingerprints to search: analyse the library first" + (
            " with batch fingerprints" if kind == "batch" else "")
        previews = _previews_left_out(store, record)
        older, newer = store.other_version_counts()
        copies = len(_copies_left(record, query))
        if copies and len(index) == 1:   # "no other fingerprints" read as if the copies were lost
            message = (f"the store holds no other recording to search, only {copies} other file"
                       f"{'s' if copies != 1 else ''} of the query's own (left out as duplicates): "
                       "analyse the library first")
        elif kind == "streaming" and previews:
            some = "1 of its records is a preview" if previews == 1 else f"{previews} of its records are previews"
            message = f"the store holds no other complete fingerprints to search: {some} ({PREVIEWS_LEFT_OUT})"
        elif older or newer:
            # After an upgrade every record is of the former version: "analyse the library
            # first" told the user to do what they had done.
            message = (f"the store holds no other fingerprints of this version (v{FINGERPRINT_VERSION}) to search: "
                       f"of its records, {other_versions_said(older, newer)}")
        stats["nothing_to_search"] = message
        return []
    return _ranked(store, index, record, query, stats, skipped)


def _holds_others(index: Index, record: Record, query: Query) -> bool:
    """Whether ``index`` has a row besides the query's own record, or (duplicates kept)
    the query's record has a file besides the query's. A stream or a preview query is
    not indexed: a store of one other track answered "the store holds no other
    fingerprints" (len(index) <= 1 took the one row for the query's). And a byte-identical
    copy, one record with the query, was that answer under --include-duplicates, as
    long as the store held nothing else."""
    if len(index) > 1 or (len(index) == 1 and str(index.keys[0]) != record.key):
        return True
    return not query.drop_duplicates and len(index) == 1 and bool(_copies_left(record, query))


def _copies_left(record: Record, query: Query) -> list[str]:
    """The files of the query's record besides the query's own that are still there
    (under the folder asked for, if any): a renamed file's former path stays in its
    record until a prune, and counted as a copy it made an answer of no hit at all."""
    prefix = query.under_prefix
    return [seen.path for seen in record.paths
            if seen.path != query.query_file and (prefix is None or seen.path.startswith(prefix))
            and file_left(seen.path, seen.mtime_ns, record.size, record.digest, record.content_key)]


def _ranked(store: FingerprintStore, index: Index, record: Record, query: Query, stats: dict[str, Any],
            skipped: list[tuple[str, str]]) -> list[Hit]:
    """top_k of ``index``, then (unless duplicates are kept) the hits that are the
    query's recording or an earlier hit's dropped, reading the hits' records. A hit
    shows a file of its record that still exists; a record with none left is no hit,
    and is named in ``skipped`` (the next row takes its place). Only the hits shown
    are looked for on disk: about k stat calls, not one per record; and only they are
    explained (``--explain``), once, after the rows passed over are known: explaining
    every row fetched, each time the request widened, took 68 s for a search over
    20,000 records whose files were gone (13.8 s without ``--explain``)."""
    _refuse_all_weights_zero(index, query)
    weights = dim_weights(index.dims, query.group_weights, index.low, index.high)
    if index.kind == "streaming" and not record.complete:  # a partial query: trust each dim as far as it is known
        confidence = record.streaming.confidence
        weights = weights * np.array([confidence.get(dim, 0.0) for dim in index.dims])
    hits = _kept_hits(store, index, record, query, weights, stats, skipped)
    return _explained(index, record, query, weights, hits) if query.explain else hits


def _explained(index: Index, record: Record, query: Query, weights: np.ndarray, hits: list[Hit]) -> list[Hit]:
    """``hits`` with their ``explain_row`` lines (the rows of one content hold one
    record's values, so any of its rows explains a hit)."""
    rows = np.flatnonzero(index.rows_with_contents([hit.digest for hit in hits]))
    row_of: dict[str, int] = {}
    for row, content in zip(rows.tolist(), index.contents[rows].tolist(), strict=True):
        row_of.setdefault(str(content), row)
    point, timbre = _query_row(record, index.kind), pack(record.timbre)
    return [dataclasses.replace(hit, explain=explain_row(index, point, row_of[hit.digest], weights, timbre,
                                                         query.timbre_weight)) for hit in hits]


def _kept_hits(store: FingerprintStore, index: Index, record: Record, query: Query, weights: np.ndarray,
               stats: dict[str, Any], skipped: list[tuple[str, str]]) -> list[Hit]:
    """The hits of ``_ranked``, not yet explained."""
    wanted = query.k + (DUPLICATE_SLACK if query.drop_duplicates else 1)  # 1: the query's own row, if indexed
    also_under = index.rows_with_contents(list(query.copies)) if query.copies else None
    records = _HitRecords(store, index.params_key)
    whole = _whole_copy(store, record, index.params_key) if query.query_file else record
    copies = _references_of_the_query(store, index, record, whole) if query.mutual_proximity else []
    while True:
        hits = top_k(index, _query_row(record, index.kind), wanted, weights, exclude_content=query.exclude,
                     under=query.under, query_timbre=pack(record.timbre), timbre_weight=query.timbre_weight,
                     mutual=query.mutual_proximity, query_content=record.digest, also_under=also_under,
                     query_copies=copies)
        hits = [_filed_under(hit, query) for hit in hits]
        rows_left = len(hits) == wanted and wanted < len(index)
        if not query.drop_duplicates:
            shown, gone = _on_disk(store, index, _other_files(store, index, record, query, hits), query)
            if len(shown) == query.k or not rows_left:
                skipped += [(hit.path, gone_reason(hit.path)) for hit in gone]
                return shown
        else:
            kept_hits, maybe_query, dropped, gone = _kept_on_disk(store, records.of(hits), whole, record, query,
                                                                  records.forget)
            if len(kept_hits) - len(maybe_query) >= query.k or not rows_left:
                stats["duplicates_dropped"] = stats.get("duplicates_dropped", 0) + dropped
                skipped += [(hit.path, gone_reason(hit.path)) for hit in gone]
                return _marking_the_query(kept_hits, maybe_query, query.k, stats)
        # More duplicates (or gone files) than the slack (15 encodings of the query left
        # 8 of 10 hits, 800 left none): ask for four times as many, until k remain or
        # the rows run out.
        wanted = min(4 * wanted, len(index))


def _references_of_the_query(store: FingerprintStore, index: Index, record: Record, whole: Record) -> list[str]:
    """Digests of the index's mutual-proximity references (``reference_of``) that hold
    the query's recording (``whole``: its whole record, or the query's own), by the
    duplicate rule. The references' records are read once per index (one batch of at
    most REFERENCE_ROWS records, about 5 ms on Redis), not once per query."""
    reference = reference_of(index)
    contents = [c for c in reference.contents.tolist() if c != record.digest]
    unread = [c for c in contents if c not in reference.recordings]
    for content, other in zip(unread, store.read_records([record_key(c, index.params_key) for c in unread]),
                              strict=True):
        reference.recordings[content] = None if other is None else Recording.of(other)
    mine = Recording.of(whole)
    query_recording = RecordingTable()
    query_recording.add(mine)
    # Durations first: the rule asks them within DURATION_TOLERANCE_S (1 ms a query less).
    return [c for c in contents if (other := reference.recordings[c]) is not None
            and abs(other.seconds - mine.seconds) <= DURATION_TOLERANCE_S
            and query_recording.first_same(other) is not None]


@dataclasses.dataclass
class _HitRecords:
    """The records of a search's hits, read BATCH at a time as the hits are gone
    through and kept as the request widens; a record whose every file is gone is not
    kept, nor looked for again. Read all at once and kept, the records of a library
    on a drive not mounted took 1.9 GB at 100,000 records."""

    store: FingerprintStore
    params_key: str
    read: dict[str, Record | None] = dataclasses.field(default_factory=dict)
    gone: set[str] = dataclasses.field(default_factory=set)

    def of(self, hits: list[Hit]) -> Iterator[tuple[Hit, Record | None]]:
        """(hit, its record) in the hits' order, None for a hit found gone before; a
        hit whose record cannot be read is left out."""
        for start in range(0, len(hits), BATCH):
            part = hits[start : start + BATCH]
            keys = [record_key(hit.digest, self.params_key) for hit in part]
            unread = [key for key in dict.fromkeys(keys) if key not in self.read and key not in self.gone]
            self.read.update(zip(unread, self.store.read_records(unread), strict=True))
            for hit, key in zip(part, keys, strict=True):
                if key in self.gone:
                    yield hit, None
                elif (found := self.read[key]) is not None:
                    yield hit, found

    def forget(self, hit: Hit) -> None:
        """``hit``'s record has no file left: drop it, and give it as gone from now on."""
        key = record_key(hit.digest, self.params_key)
        self.gone.add(key)
        self.read.pop(key, None)


def _kept_on_disk(store: FingerprintStore, usable: Iterable[tuple[Hit, Record | None]], reference: Record,
                  record: Record, query: Query, on_gone: Callable[[Hit], None] = lambda hit: None
                  ) -> tuple[list[Hit], set[str], int, list[Hit]]:
    """The hits of ``usable`` (hits with their records, nearest first) that are neither
    the query's recording nor an earlier kept hit's and have a file still there, each
    shown by such a file, until k are kept that are not perhaps the query
    (``starts_like``). Returns (kept hits, digests of those perhaps the query, how many
    were dropped as duplicates, hits passed over because every file of theirs is
    gone). A gone hit is no kept hit, so a copy of it in another encoding is a hit.
    Only a hit that would be kept is looked for on disk (about k stat calls), and each
    is compared with the kept ones once, all of them in one pass: taking out one gone hit at a time and
    dropping the duplicates of the whole list again took 65 s for a search over 2,000
    records whose files were gone (a library on a drive not mounted)."""
    kept: list[Hit] = []
    kept_records = RecordingTable()
    kept_records.add(Recording.of(reference))
    maybe_query: set[str] = set()
    gone: list[Hit] = []
    dropped = 0
    for hit, stored in usable:
        if len(kept) - len(maybe_query) == query.k:
            break
        if stored is None:
            # Found gone in a narrower request: the hits before it are the same, so it was
            # no duplicate of a kept one then and is none now.
            gone.append(hit)
            continue
        recording = Recording.of(stored)
        if kept_records.first_same(recording) is not None:
            dropped += 1
            continue
        path = _path_left(store, hit, stored, query.under_prefix)
        if path is None:
            gone.append(hit)
            on_gone(hit)
            continue
        kept.append(dataclasses.replace(hit, path=path))
        kept_records.add(recording)
        if starts_like(record, stored):
            maybe_query.add(hit.digest)
    return kept, maybe_query, dropped, gone


def _on_disk(store: FingerprintStore, index: Index, hits: list[Hit], query: Query) -> tuple[list[Hit], list[Hit]]:
    """The first k of ``hits`` that still have a file of theirs, each showing one (its
    record read: the times its paths were seen at), and the hits passed over whose
    every file is gone or changed."""
    shown: list[Hit] = []
    gone: list[Hit] = []
    for hit in hits:
        if len(shown) == query.k:
            break
        path = _path_left(store, hit, store.read_record(record_key(hit.digest, index.params_key)), query.under_prefix)
        if path is None:
            gone.append(hit)
        else:
            shown.append(dataclasses.replace(hit, path=path))
    return shown, gone


def _path_left(store: FingerprintStore, hit: Hit, stored: Record | None, prefix: str | None) -> str | None:
    """The path ``hit`` is shown by: its own while its file is the one analysed, else
    the most recently seen path of its record (under ``prefix`` when given) whose file
    is; None when none is left. An index keeps one path per record, the last one seen,
    which may be a copy deleted, rewritten or replaced by a folder since, while the
    others remain."""
    if stored is None:
        return None   # the record itself is gone (pruned, evicted) since the index was made
    seen = {p.path: p.mtime_ns for p in reversed(stored.paths)}
    for path in dict.fromkeys([hit.path, *seen] if hit.path in seen else seen):
        if (prefix is None or path.startswith(prefix)) and \
                file_left(path, seen[path], stored.size, stored.digest, stored.content_key,
                          _retimed(store, stored, path)):
            return path
    return None


def file_left(path: str, mtime_ns: int, size: int, digest: str, content_key: str,
              on_touched: Callable[[int], None] = lambda mtime_ns: None) -> bool:
    """Whether the file of a stored path (seen at ``mtime_ns``, of a record of ``size``
    bytes, ``digest`` and ``content_key``) is still the one analysed (``file_state``:
    ``cache prune`` forgets the others; a file rewritten with other audio, or replaced
    by a folder, was shown as a hit and a duplicate). A file only touched (its bytes
    confirmed by the digest) is told to ``on_touched`` with its time now."""
    state = file_state(path, size, mtime_ns, digest, content_key)
    if state.touched_ns is not None:
        on_touched(state.touched_ns)
    return state.why is None


def retimed(store: FingerprintStore, key: str, size: int, digest: str, content_key: str,
            path: str) -> Callable[[int], None]:
    """``file_left``'s ``on_touched`` for a search or ``cache dupes``: the touched file's
    time stored under the record ``key``, as a prune stores it (read whole again at
    every search otherwise: a restore without its times made each search read its
    hits' files whole until the next prune)."""
    def store_time(mtime_ns: int) -> None:
        with contextlib.suppress(StoreError):   # a read-only store: read whole again next time
            store.record_touched(key, FileIdentity(path, size, mtime_ns, content_key, digest))
    return store_time


def _retimed(store: FingerprintStore, record: Record, path: str) -> Callable[[int], None]:
    """``retimed`` of a path of ``record``."""
    return retimed(store, record.key, record.size, record.digest, record.content_key, path)


def gone_reason(path: str) -> str:
    """Why a stored path is no file of its record any more."""
    return GONE if not os.path.lexists(entry_file(path)[0]) else CHANGED


def _weights_of_no_streaming_dim(group_weights: dict[str, float]) -> list[str]:
    """The groups given a weight other than their default that hold no streaming dim
    (frequency, dynamics, stereo): a fast search has no such dims, and ``--weights
    stereo=0`` changed nothing there without a word."""
    streaming_groups = {DIM_BY_NAME[dim].group for dim in STREAMING_DIMS} | {"timbre"}
    defaults = default_weights()
    return sorted(group for group, weight in group_weights.items()
                  if group not in streaming_groups and weight != defaults.get(group))


def _refuse_all_weights_zero(index: Index, query: Query) -> None:
    """WeightsError when no group of this index's dims, nor the timbre, weighs more than 0:
    every distance would be 0 and the hits an arbitrary order (``--weights
    temporal=0,spectral=0,harmonic=0,variation=0,timbre=0`` passed the check of the
    weights alone, as the batch-only groups still weighed 1)."""
    groups = sorted({DIM_BY_NAME[dim].group for dim in index.dims})
    if query.timbre_weight == 0 and not any(query.group_weights.get(group, 1.0) for group in groups):
        raise WeightsError(f"every group of the {index.kind} fingerprint weighs 0 ({', '.join(groups)}, timbre): "
                           "give one of them a weight, or search by batch fingerprints (strategy batch)", "weights")


def _whole_copy(store: FingerprintStore, record: Record, params_key: str) -> Record:
    """A file query's record for the duplicate checks: for a preview, the stored
    complete record of the same file content when there is one, whose key covers the
    first minute (a 3 s preview's key is too short to tell its own WAV copy from a
    stranger). Not for a stream: a stored stream of its name may be another broadcast."""
    if record.complete:
        return record
    stored = store.read_record(record_key(record.digest, params_key))
    return stored if stored is not None and stored.complete else record


def _marking_the_query(hits: list[Hit], maybe_query: set[str], k: int, stats: dict[str, Any]) -> list[Hit]:
    """The hits up to the k-th that is not perhaps the query's own recording (the
    digests ``maybe_query``: a partial query starts like them), those
    kept in their place, and named in ``stats["probably_the_query"]``: k other tracks
    are still found, and the query itself is shown for what it probably is."""
    out: list[Hit] = []
    others = 0
    for hit in hits:
        if others == k:
            break
        out.append(dataclasses.replace(hit, probably_the_query=True) if hit.digest in maybe_query else hit)
        others += hit.digest not in maybe_query
    marked = [hit.path for hit in out if hit.probably_the_query]
    if marked:
        stats["probably_the_query"] = marked
    return out


def files_under(store: FingerprintStore, folder: str) -> dict[str, str] | None:
    """digest -> a file under ``folder`` with that content (the first by path), for the
    files there the store knows unchanged. An index keeps one path per record, the
    last one seen: a byte-identical copy under the folder of a track filed under
    another path was left out of ``--library`` by its path alone. The folder is
    walked and its audio files' path entries read in batches; None when the walk
    meets more than COPY_WALK_ENTRIES entries (``-l /`` must not walk the disk)."""
    files = _audio_files(folder)
    if files is None:
        return None
    found: dict[str, str] = {}
    for path, digest in store.digests_of(sorted(files)).items():
        found.setdefault(digest, path)
    return found


COPY_WALK_ENTRIES = 200_000   # folder entries looked at under --library for copies filed elsewhere


def _audio_files(folder: str) -> list[str] | None:
    """The resolved audio files under ``folder`` (symlinked folders not followed; an
    unreadable folder is skipped), or None past COPY_WALK_ENTRIES entries."""
    files: list[str] = []
    seen = 0
    for root, folders, names in os.walk(os.path.realpath(folder)):
        seen += len(folders) + len(names)
        if seen > COPY_WALK_ENTRIES:
            return None
        files += [os.path.join(root, name) for name in names if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS]
    return files


def _filed_under(hit: Hit, query: Query) -> Hit:
    """``hit`` with the path of its copy under ``--library`` when its row is filed
    under a path outside it."""
    prefix = query.under_prefix
    if prefix is None or hit.path.startswith(prefix) or hit.digest not in query.copies:
        return hit
    return dataclasses.replace(hit, path=query.copies[hit.digest])


def _other_files(store: FingerprintStore, index: Index, record: Record, query: Query, hits: list[Hit]) -> list[Hit]:
    """``hits`` with the query's own row (the one record of every byte-identical copy,
    indexed under one of their paths) replaced by a hit per other path of that record
    under the folder asked for: the query's own file is never a hit, its copies are."""
    out: list[Hit] = []
    for hit in hits:
        if hit.digest != record.digest:
            out.append(hit)
            continue
        stored = store.read_record(record_key(hit.digest, index.params_key))
        prefix = query.under_prefix
        out.extend(dataclasses.replace(hit, path=seen.path) for seen in (stored.paths if stored is not None else ())
                   if resolve(seen.path) != query.query_file and (prefix is None or seen.path.startswith(prefix))
                   and stored is not None
                   and file_left(seen.path, seen.mtime_ns, stored.size, stored.digest, stored.content_key,
                                 _retimed(store, stored, seen.path)))
        # (a copy moved away since is no hit: its record stays)
    return out


class BatchValuesNotStored(StoreError):
    """Batch fingerprints computed for a ranking could not be stored (a full Redis, a
    user who may only read); the ranking reads them from the store."""


def _batch_for(store: FingerprintStore, paths: list[str], params: AnalysisParams, compute: Compute,
               skipped: list[tuple[str, str]]) -> int:
    """Compute the missing batch fingerprints of ``paths`` on ``compute.jobs`` worker
    processes (the store answers the others), each stored as it arrives; a file that
    fails is skipped and reported, never the end of the search. Returns how many were
    computed. Every path is looked up, so that a file deleted or damaged since it was
    stored is reported (a filter on existing files dropped it, and every CUE track,
    without a word); a stream has no file to compute from and is reported so."""
    from fpcli.analyze import Want, answer, look_up  # the analysis stack: only when something is missing
    from fpcli.library import RunOptions, analyse_all

    want = Want(params, batch=True)
    todo = []
    for path in paths:
        if path.startswith(STREAM_PREFIX):
            skipped.append((path, "a stream: no file to compute batch values from"))
            continue
        found = look_up(store, path, want)
        known = answer(path, found, limit_s=compute.timeout_s)
        if known is not None:
            if known.failed:
                skipped.append((path, known.error or "failed"))
        elif found.identity is not None:
            todo.append((path, found.identity))
    if not todo:
        return 0
    compute.on_event("start", (len(todo), "batch fingerprints"))
    options = RunOptions(params, batch=True, jobs=compute.jobs, timeout_s=compute.timeout_s)
    computed, unsaved = 0, store.unsaved
    with contextlib.closing(analyse_all(todo, options, store)) as results:   # closed early: its workers stop
        for result in results:
            compute.on_event("track", result)
            if store.unsaved > unsaved:
                # Ranked from the store, values it could not keep are no values: a full
                # Redis answered with no hit and exit 0. The first refused stops the others.
                raise BatchValuesNotStored(f"the batch fingerprints of the candidates cannot be stored "
                                           f"({store.refused}): ranking by batch fingerprints needs them stored; "
                                           "strategy fast ranks by the streaming ones")
            if result.failed:
                skipped.append((result.path, result.error or "failed"))
            computed += not result.failed
    return computed


def _accurate(store: FingerprintStore, record: Record, query: Query, params: AnalysisParams, compute: Compute,
              stats: dict[str, Any], skipped: list[tuple[str, str]], progress: IndexProgress | None) -> list[Hit]:
    wide = dataclasses.replace(query, k=query.k * ACCURATE_CANDIDATES, explain=False)
    candidates = _rank_all(store, "streaming", record, wide, params, stats, skipped, progress)
    if not candidates:
        return []
    stats["batch_computed"] = _batch_for(store, [h.path for h in candidates], params, compute, skipped)
    index, info = current_index(store, "batch", params.key(), progress)
    stats["batch_index"] = info
    rows = np.flatnonzero(np.isin(index.contents, [h.digest for h in candidates]))
    sub = Index(index.kind, index.params_key, index.values[rows], index.keys[rows], index.stored_paths[rows],
                index.contents[rows], index.low, index.high, timbre=index.timbre_rows()[rows],
                timbre_fit=index.timbre_fit)
    use_reference(sub, reference_of(index))  # mutual proximity against the whole library, not the candidates
    return _ranked(store, sub, record, query, stats, skipped)


def _batch(store: FingerprintStore, record: Record, query: Query, params: AnalysisParams, compute: Compute | None,
           stats: dict[str, Any], skipped: list[tuple[str, str]], progress: IndexProgress | None) -> list[Hit]:
    """Rank by batch fingerprints of every track; those missing are computed when
    ``compute`` is given, else counted in ``stats["missing_batch"]``."""
    streaming, _ = current_index(store, "streaming", params.key(), progress)
    index, first = current_index(store, "batch", params.key(), progress)
    missing = streaming.path_strings(~np.isin(streaming.contents, index.contents))
    if compute is not None:
        _batch_for(store, missing, params, compute, skipped)
    stats["missing_batch"] = 0 if compute is not None else len(missing)
    hits = _rank_all(store, "batch", record, query, params, stats, skipped, progress)
    if first.get("index") != "loaded" and stats.get("index") == "loaded":
        # Built a moment ago in this search (it said so): "index loaded" read as a
        # contradiction, and its records read and time were those of the second look.
        stats.update(first)
    return hits


@dataclasses.dataclass(frozen=True)
class LeftOut:
    """What ``write_m3u`` left out of a playlist, and why: streams have no file at all,
    CUE-sheet tracks (``album.flac#03``) are a part of an album image, no file of
    their own."""

    streams: int = 0
    cue_tracks: int = 0


def write_m3u(result: SearchResult, destination: str | os.PathLike[str]) -> LeftOut:
    """An extended M3U playlist of the query and its hits, paths relative to the
    playlist's real folder (through a symlinked folder, ``..`` goes up from the real
    one: paths relative to the folder as named were all broken), or absolute for
    ``-`` (stdout: where it is saved is not known; paths relative to the current
    folder broke anywhere else). A path an M3U line cannot hold (a newline, bytes
    that are not UTF-8) or should not (a control character: ``--m3u -`` on a terminal
    wrote a name's escape sequences to it) is written as a percent-encoded file:// URI. Streams (a query
    on stdin, hits stored by ``analyze - --name``) and CUE-sheet tracks have no file a
    player could open: they are left out, and counted in the answer."""
    base = None if os.fspath(destination) == "-" else os.path.realpath(os.path.dirname(os.path.abspath(destination)))
    query = [] if result.query == "-" else [result.query]  # as given: a relative file may be named stream:...
    files = query + [h.path for h in result.hits if not h.path.startswith(STREAM_PREFIX)]  # stored: absolute
    paths = [path for path in files if not is_entry(path)]
    lines = ["#EXTM3U"]
    for path in paths:
        real = os.path.realpath(path)   # the title of the file the line opens (a link's target's, not the link's)
        lines.append(f"#EXTINF:-1,{printable_path(Path(real).stem)}")
        lines.append(_m3u_location(real, base))
    with atomic_text(destination) as out:
        out.write("\n".join(lines) + "\n")
    return LeftOut(streams=1 + len(result.hits) - len(files), cue_tracks=len(files) - len(paths))


def _m3u_location(path: str, base: str | None) -> str:
    """An M3U line for ``path`` (real): relative to ``base``, absolute when None."""
    raw = os.fsencode(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or any(_is_control(c) for c in text):
        from urllib.parse import quote

        return "file://" + quote(raw)
    if base is None:
        return text
    relative = os.path.relpath(text, base)
    # A line starting with # is a comment or directive to every M3U reader: the track
    # "#1 hit.flac" would be dropped from the playlist.
    return os.path.join(".", relative) if relative.startswith("#") else relative


def _is_control(character: str) -> bool:
    """A C0 or C1 control character or DEL, a tab aside (a line may hold one)."""
    code = ord(character)
    return (code < 0x20 and character != "\t") or 0x7F <= code < 0xA0


__all__ = ["KINDS", "STRATEGIES", "Compute", "LeftOut", "SearchResult", "search", "write_m3u"]
