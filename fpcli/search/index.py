"""Search indexes: a packed float32 matrix of one fingerprint kind (13D streaming or
25D batch) in physical units (NaN for null), the packed timbre Gaussians
(``search.timbre``), with the record key, path and content digest of each row,
saved beside the store (``search.saved``). Refreshed incrementally from the store's change journal, so a
query never re-reads every record; an eviction, expiry or ``cache clear`` (which the
journal cannot describe) makes the next refresh rebuild it. Previews (partial
records) are not indexed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from fpcli.params import FINGERPRINT_VERSION
from fpcli.search.timbre import TIMBRE_COLUMNS, TimbreFit, embed, fit_timbre, logdets, pack
from fpcli.store import FingerprintStore, Record
from fpcli.store.index_rows import IndexRow, is_current, measured_values

TEMPO_DIM = "tempo_bpm"
TEMPO_CONFIDENCE_DIM = "rhythm_stability"
KINDS = {"streaming": STREAMING_DIMS, "batch": BATCH_DIMS}
REFIT_SHARE = 0.1        # refit the scaling when this share of rows changed since the last fit


@dataclasses.dataclass(frozen=True)
class Reference:
    """The reference rows of an index (``search.proximity``): search features (R, F) as
    ``Index.normalised``, packed timbre (R, TIMBRE_COLUMNS), their log-determinants (R,)
    and content digests (R,) (a row is never its own reference). ``recordings``: what
    the duplicate rule reads of each reference's record (``search.dupes.Recording``,
    None: unreadable), by digest, read once per reference set."""

    features: np.ndarray
    timbre: np.ndarray
    logdets: np.ndarray
    contents: np.ndarray
    recordings: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)


@dataclasses.dataclass
class Index:
    """Rows of one fingerprint kind. ``values`` (n, d) float32 physical units, NaN = null."""

    kind: str
    params_key: str
    values: np.ndarray
    keys: np.ndarray        # (n,) record keys
    stored_paths: np.ndarray  # (n,) last known paths: str, or UTF-8 bytes (surrogateescape) as saved
    contents: np.ndarray    # (n,) content digests (equal for copies of one file)
    low: np.ndarray         # (d,) 5th percentile per dim
    high: np.ndarray        # (d,) 95th percentile per dim
    generation: int = 0
    epoch: tuple[int, int] = (0, 0)
    changed_since_fit: int = 0
    timbre: np.ndarray | None = None      # (n, TIMBRE_COLUMNS) float32 packed Gaussians, NaN rows = none
    timbre_fit: TimbreFit | None = None
    _scaled: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _terms: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _embedded: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _logdets: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _content_words: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _content_folded: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _decoded_paths: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    _reference: Reference | None = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return KINDS[self.kind]

    @property
    def paths(self) -> np.ndarray:
        """(n,) str paths. A loaded index keeps them encoded, as saved: decoding 1,000,000
        paths takes about 1 s, which a query needs only for its hits (``path_strings``)."""
        if self.stored_paths.dtype.kind == "U":
            return self.stored_paths
        if self._decoded_paths is None or len(self._decoded_paths) != len(self.stored_paths):
            self._decoded_paths = decode_paths(self.stored_paths)
        return self._decoded_paths

    def path_strings(self, rows: np.ndarray) -> list[str]:
        """The paths of ``rows`` (integer positions or a boolean mask), decoded."""
        picked = self.stored_paths[rows]
        return picked.tolist() if picked.dtype.kind == "U" else decode_paths(picked).tolist()

    def rows_under(self, folder: str) -> np.ndarray:
        """Boolean (n,) rows whose path starts with ``folder`` (a path ending in a separator)."""
        if self.stored_paths.dtype.kind == "U":
            return np.char.startswith(self.stored_paths, folder)
        return np.char.startswith(self.stored_paths, folder.encode("utf-8", "surrogateescape"))

    def encoded_paths(self) -> np.ndarray:
        """(n,) bytes paths, UTF-8 with surrogateescape (any file name round-trips)."""
        if self.stored_paths.dtype.kind == "S":
            return self.stored_paths
        return encode_paths(self.stored_paths)

    def __len__(self) -> int:
        return len(self.keys)

    def timbre_rows(self) -> np.ndarray:
        """(n, TIMBRE_COLUMNS) packed timbre (all NaN when the index has none)."""
        if self.timbre is None or len(self.timbre) != len(self.values):
            self.timbre = np.full((len(self.values), TIMBRE_COLUMNS), np.nan, dtype=np.float32)
        return self.timbre

    def normalised(self) -> np.ndarray:
        """(n, F) search features (``encode``), computed once per index so a query
        costs one pass over the matrix."""
        if self._scaled is None or len(self._scaled) != len(self.values):
            self._scaled = encode(self.values, self.dims, self.low, self.high)
        return self._scaled

    def normalised_rows(self, rows: np.ndarray) -> np.ndarray:
        """(r, F) ``normalised()`` of ``rows`` only. A loaded index has its prefilter
        terms but not the features: they are read back from the terms (X where M is 0,
        NaN where it is 1: the same float32 values), so a cold query never encodes
        every row."""
        if self._scaled is None and self._terms is not None and len(self._terms) == len(self.values):
            f = len(feature_dims(self.dims))
            part = np.asarray(self._terms[rows])
            return np.where(part[:, 2 * f:3 * f] > 0, np.float32(np.nan), part[:, f:2 * f])
        return self.normalised()[rows]

    def terms(self) -> np.ndarray:
        """(n, 3F + E + 2) float32 [X^2, X, M, T, |T|^2, N]: the features with nulls as
        0 (X) and the null mask (M), then the timbre embedding T (0 where none), its
        squared norm and the no-timbre mask N, so that every prefilter distance is one
        matrix-vector product."""
        if self._terms is None or len(self._terms) != len(self.values):
            self._terms = prefilter_terms(self.normalised(), self.embedded())
        return self._terms

    def embedded(self) -> np.ndarray:
        """(n, EMBED_DIMS) float32 timbre prefilter vectors (NaN rows: no timbre; zero
        columns when the index has no timbre fit)."""
        if self._embedded is None or len(self._embedded) != len(self.values):
            fit = self.timbre_fit
            self._embedded = embed(self.timbre_rows(), fit) if fit is not None \
                else np.zeros((len(self.values), 0), dtype=np.float32)
        return self._embedded

    def timbre_logdets(self) -> np.ndarray:
        """(n,) float64 log-determinants (nats) of the rows' ridged timbre covariances
        (NaN: no timbre), kept so that the exact re-rank factorises only the mixtures."""
        if self._logdets is None or len(self._logdets) != len(self.values):
            self._logdets = logdets(self.timbre_rows())
        return self._logdets

    def rows_with_content(self, content: str) -> np.ndarray:
        """Boolean (n,) rows whose content key is ``content``, comparing the 32 hex
        digits as four 64-bit words (a string comparison costs 20x more at 1M rows)."""
        target = content_words_of(np.array([content]))[0]
        words = self.content_words()
        # The four words XOR-ed into one single out the rows (almost always just the
        # right ones); only those are compared in full. Comparing every (n, 4) row and
        # reducing costs ~30x more.
        maybe = np.flatnonzero(self._folded_contents() == np.bitwise_xor.reduce(target))
        rows = np.zeros(len(words), dtype=bool)
        rows[maybe[(words[maybe] == target).all(axis=1)]] = True
        return rows

    def rows_with_contents(self, contents: Sequence[str]) -> np.ndarray:
        """Boolean (n,) rows whose content key is any of ``contents``: the folded words
        looked up at once (np.isin), then the few rows they single out compared in full."""
        rows = np.zeros(len(self.contents), dtype=bool)
        if not len(contents):
            return rows
        targets = content_words_of(np.array(list(contents)))
        maybe = np.flatnonzero(np.isin(self._folded_contents(), np.bitwise_xor.reduce(targets, axis=1)))
        wanted = set(map(tuple, targets.tolist()))
        rows[[i for i, words in zip(maybe.tolist(), self.content_words()[maybe].tolist(), strict=True)
              if tuple(words) in wanted]] = True
        return rows

    def _folded_contents(self) -> np.ndarray:
        """(n,) uint64: each row's four content words XOR-ed into one (kept)."""
        words = self.content_words()
        if self._content_folded is None or len(self._content_folded) != len(words):
            self._content_folded = np.bitwise_xor.reduce(words, axis=1)
        return self._content_folded

    def content_words(self) -> np.ndarray:
        """(n, 4) uint64: each row's content digest as four 64-bit words."""
        if self._content_words is None or len(self._content_words) != len(self.contents):
            self._content_words = content_words_of(self.contents)
        return self._content_words

    def fit(self) -> None:
        self.low, self.high = fit_scaling(self.values)
        self.timbre_fit = fit_timbre(self.timbre_rows())
        self.changed_since_fit = 0
        self._scaled = self._terms = self._embedded = self._reference = None


def prefilter_terms(scaled: np.ndarray, embedded: np.ndarray) -> np.ndarray:
    """(r, 3F + E + 2) float32 ``Index.terms`` of rows with features ``scaled`` (r, F)
    and timbre embedding ``embedded`` (r, E)."""
    mask = np.isnan(scaled)
    filled = np.where(mask, 0.0, scaled).astype(np.float32)
    none = np.isnan(embedded[:, :1]) if embedded.shape[1] else np.ones((len(filled), 1), dtype=bool)
    t = np.where(none, 0.0, embedded).astype(np.float32)
    return np.concatenate([filled * filled, filled, mask.astype(np.float32), t,
                           (t * t).sum(axis=1, keepdims=True), none.astype(np.float32)], axis=1)


def encode_paths(paths: np.ndarray) -> np.ndarray:
    """(n,) str -> (n,) bytes, UTF-8 with surrogateescape."""
    return np.array([p.encode("utf-8", "surrogateescape") for p in paths.tolist()], dtype=object).astype(bytes) \
        if len(paths) else np.zeros(0, dtype="S1")


def decode_paths(paths: np.ndarray) -> np.ndarray:
    """The inverse of ``encode_paths``."""
    return np.array([p.decode("utf-8", "surrogateescape") for p in paths.tolist()], dtype=str) \
        if len(paths) else np.zeros(0, dtype=str)


def content_words_of(contents: np.ndarray) -> np.ndarray:
    """(n,) 32-hex-digit digests -> (n, 4) uint64 words (``Index.content_words``)."""
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


def encode(values: np.ndarray, dims: tuple[str, ...], low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(n, d) physical values -> (n, d + 1) float32 search features: every dim scaled
    to [0, 1] (``scale``; NaN for null) except the tempo, which becomes the two
    columns ``tempo_point`` (never NaN), placed where the tempo dim was."""
    scaled = scale(values, low, high)
    if TEMPO_DIM not in dims:
        return scaled
    t = dims.index(TEMPO_DIM)
    confidence = values[:, dims.index(TEMPO_CONFIDENCE_DIM)] if TEMPO_CONFIDENCE_DIM in dims else None
    point = tempo_point(values[:, t], confidence)
    return np.concatenate([scaled[:, :t], point, scaled[:, t + 1:]], axis=1).astype(np.float32)


def tempo_point(bpm: np.ndarray, confidence: np.ndarray | None) -> np.ndarray:
    """(n,) tempi in BPM -> (n, 2) points c/2 (cos 2 pi log2 bpm, sin 2 pi log2 bpm).

    One octave of tempo is one turn, so 70 and 140 BPM coincide and the distance of
    two confident tempi is sin(pi x octaves apart, modulo the octave), in [0, 1]. The
    confidence c in [0, 1] (rhythm_stability: the strength of the onset envelope's
    periodicity) pulls an uncertain tempo to the centre: half way from every
    confident one, like a null (which sits at the centre). Octave errors of the
    tempo estimator therefore cost nothing, and weak tempi little.
    """
    c = np.ones(len(bpm)) if confidence is None else np.nan_to_num(np.clip(confidence, 0.0, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        turn = 2 * np.pi * np.log2(np.where(bpm > 0, bpm, np.nan))
    known = np.isfinite(turn)
    c = np.where(known, c, 0.0)
    turn = np.where(known, turn, 0.0)
    return (0.5 * c[:, None] * np.stack([np.cos(turn), np.sin(turn)], axis=1)).astype(np.float32)


def feature_dims(dims: tuple[str, ...]) -> tuple[str, ...]:
    """The dim of each ``encode`` column (the tempo twice)."""
    return tuple(name for d in dims for name in ((d, d) if d == TEMPO_DIM else (d,)))


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


def row_of(record: Record, kind: str, params_key: str | None = None) -> np.ndarray | None:
    """(d,) float32 physical values of one kind (NaN for null); None when the record
    has no such values (or only nulls), is a preview, or belongs to other parameters or versions."""
    values = measured_values(record, kind)
    if values is None or (params_key is not None and not is_current(record, params_key, FINGERPRINT_VERSION)):
        return None
    return np.array([np.nan if values.get(d) is None else values[d] for d in KINDS[kind]], dtype=np.float32)


BuildProgress = Callable[[int, int | None], None]   # (rows read so far, records in the store or None)


def build_index(store: FingerprintStore, kind: str, params_key: str,
                progress: BuildProgress | None = None) -> Index:
    """An index of every record of ``kind`` under ``params_key`` (reads every record;
    minutes at a million records, so ``progress`` hears of it: once with 0 rows at the
    start, then every BUILD_CHUNK rows). The rows are packed into arrays every
    BUILD_CHUNK records: a million rows held as Python objects took about 1.7 GB more
    than their arrays."""
    generation = store.generation()
    epoch = store.index_epoch()
    total = store.record_count() if progress is not None else None
    if progress is not None:
        progress(0, total)
    chunks: list[tuple[np.ndarray, ...]] = []
    pending: list[IndexRow] = []
    for entry in store.index_rows(kind, params_key):
        pending.append(entry)
        if len(pending) == BUILD_CHUNK:
            chunks.append(_packed_rows(pending, kind))
            pending = []
            if progress is not None:
                progress(len(chunks) * BUILD_CHUNK, total)
    chunks.append(_packed_rows(pending, kind))
    values, timbre, keys, paths, contents = (np.concatenate(part) for part in zip(*chunks, strict=True))
    return index_of(kind, params_key, values, decode_paths(keys), paths, decode_paths(contents), timbre,
                    generation, epoch)


BUILD_CHUNK = 8192


def _packed_rows(rows: list[IndexRow], kind: str) -> tuple[np.ndarray, ...]:
    """(values, timbre, keys, paths, digests) of index rows: ``row_values`` then ``row_fields``."""
    return (row_values(rows, kind), *row_fields(rows))


def row_values(rows: list[IndexRow], kind: str) -> np.ndarray:
    """(m, d) float32 values of index rows of ``kind``, NaN for null (as ``row_of``)."""
    return np.array([row.values for row in rows], dtype=np.float64).astype(np.float32).reshape(
        len(rows), len(KINDS[kind]))


def row_fields(rows: list[IndexRow]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What index rows hold whatever their kind: packed timbre (m, TIMBRE_COLUMNS)
    float32 (NaN: none), then keys, paths and digests as UTF-8 bytes (m,) (a Python
    string per row costs about 50 bytes more)."""
    no_timbre = np.full(TIMBRE_COLUMNS, np.nan, dtype=np.float32)
    timbre = np.array([no_timbre if row.timbre is None else row.timbre for row in rows],
                      dtype=np.float32).reshape(len(rows), TIMBRE_COLUMNS)
    keys, paths, digests = (encode_paths(np.array([getattr(row, name) for row in rows], dtype=object))
                            for name in ("key", "path", "digest"))
    return timbre, keys, paths, digests


def index_of(kind: str, params_key: str, values: np.ndarray, keys: np.ndarray, paths: np.ndarray,
             contents: np.ndarray, timbre: np.ndarray, generation: int, epoch: tuple[int, int]) -> Index:
    """A fitted index of these rows: values (n, d) float32, keys, paths and content digests
    (n,) str, timbre (n, TIMBRE_COLUMNS) float32; current at ``generation`` and ``epoch``."""
    index = Index(kind, params_key, values, keys, paths, contents, np.zeros(0), np.zeros(0), generation, epoch,
                  timbre=timbre)
    index.fit()
    return index


def index_stem(kind: str, params_key: str) -> str:
    """The name of a saved index's files: ``<stem>.json`` (its header) and
    ``<stem>.<token>.<array>.npy`` (``patch.array_path``)."""
    return f"{kind}-{params_key}"




@dataclasses.dataclass(frozen=True)
class Pending:
    """What changed in the store since an index was current: the store's generation
    and the keys its journal names (None: the journal cannot say, after a clear, an
    eviction or an expiry)."""

    generation: int
    epoch: tuple[int, int]
    changes: list[str] | None

    def needs_rebuild(self, rows: int) -> bool:
        """True when an index of ``rows`` rows is better built again than replayed: the
        journal cannot say what changed, or more records changed than a quarter of its
        rows (or 1,000). Records, not journal entries (each write is journaled twice);
        a quarter, because a replay reads each changed record alone and a build reads
        them all in batches: every record of 5,000 rewritten took 1.52 s to replay
        against 0.32 s to build."""
        return self.changes is None or len(set(self.changes)) > max(1000, rows // 4)


def pending_changes(index: Index, store: FingerprintStore) -> Pending:
    """The store's changes since ``index``, read once per query (patch and refresh share them)."""
    return changes_since(store, index.generation, tuple(index.epoch))


def changes_since(store: FingerprintStore, generation: int, epoch: tuple[int, ...]) -> Pending:
    """The store's changes since an index current at ``generation`` of ``epoch``."""
    now_epoch = store.index_epoch()
    now = store.generation()  # before the journal: a write in between is read again, not missed
    changes = store.changes_since(generation) if tuple(epoch) == now_epoch else None
    return Pending(now, now_epoch, changes)


def refresh(index: Index, store: FingerprintStore, pending: Pending | None = None,
            progress: BuildProgress | None = None) -> tuple[Index, int, str]:
    """Bring ``index`` up to date (with ``pending``, the changes already read);
    returns (index, records re-read, what was done: loaded, refreshed or rebuilt).
    Rebuilds when the journal cannot describe what changed (a clear, an eviction, an
    expiry) or when more changed than it holds."""
    pending = pending or pending_changes(index, store)
    generation, epoch, changes = pending.generation, pending.epoch, pending.changes
    if pending.needs_rebuild(len(index)):
        fresh = build_index(store, index.kind, index.params_key, progress)
        return fresh, len(fresh), "rebuilt"
    if not changes:
        return index, 0, "loaded"
    unique = list(dict.fromkeys(changes))
    position = {key: i for i, key in enumerate(index.keys.tolist())}
    keep = np.ones(len(index), dtype=bool)
    new_rows, new_timbres, new_keys, new_paths, new_contents = [], [], [], [], []
    changed: list[int] = []
    values, paths, timbres = index.values.copy(), index.paths.astype(object), index.timbre_rows().copy()
    for key in unique:
        record = store.read_record(key)
        row = row_of(record, index.kind, index.params_key) if record else None
        i = position.get(key)
        if record is None or row is None:
            if i is not None:
                keep[i] = False
        elif i is not None:
            values[i], paths[i], timbres[i] = row, record.path, pack(record.timbre)
            changed.append(i)
        else:
            new_rows.append(row)
            new_timbres.append(pack(record.timbre))
            new_keys.append(key)
            new_paths.append(record.path)
            new_contents.append(record.digest)
    d = values.shape[1]
    updated = Index(
        index.kind, index.params_key,
        np.concatenate([values[keep], np.array(new_rows, dtype=np.float32).reshape(-1, d)]),
        np.concatenate([index.keys[keep], np.array(new_keys, dtype=str)]).astype(str),
        np.concatenate([paths[keep], np.array(new_paths, dtype=object)]).astype(str),
        np.concatenate([index.contents[keep], np.array(new_contents, dtype=str)]).astype(str),
        index.low, index.high, generation, epoch, index.changed_since_fit + len(unique),
        timbre=np.concatenate([timbres[keep], np.array(new_timbres, dtype=np.float32).reshape(-1, TIMBRE_COLUMNS)]),
        timbre_fit=index.timbre_fit,
    )
    if updated.changed_since_fit > REFIT_SHARE * max(len(updated), 1):
        updated.fit()
    elif index.timbre_fit is not None:
        fit = index.timbre_fit

        def embedded(rows: np.ndarray) -> np.ndarray:
            return embed(rows, fit)

        updated._embedded = _carried(index.embedded(), embedded, index, updated, keep, changed, len(new_rows))
    # Log-determinants do not depend on the fit: carried even when it was refitted.
    updated._logdets = _carried(index.timbre_logdets(), logdets, index, updated, keep, changed, len(new_rows))
    return updated, len(unique), "refreshed"


def _carried(per_row: np.ndarray, compute: Callable[[np.ndarray], np.ndarray], old: Index, new: Index,
             keep: np.ndarray, changed: list[int], added: int) -> np.ndarray:
    """A per-row array of the refreshed index (the embedding (n, E), the log-determinants
    (n,)) without recomputing every row: ``per_row`` of the kept rows of ``old``, with
    ``compute`` run on the packed timbre of the changed rows and of the ``added`` new ones."""
    carried = per_row.copy()
    if changed:
        carried[changed] = compute(new_rows_of(old, changed, new, keep))
    fresh = compute(new.timbre_rows()[len(new) - added:])
    return np.concatenate([carried[keep], fresh])


def new_rows_of(old: Index, changed: list[int], new: Index, keep: np.ndarray) -> np.ndarray:
    """Packed timbre of the changed rows (old positions) as they are in ``new``."""
    position = np.cumsum(keep) - 1
    return new.timbre_rows()[position[changed]]
