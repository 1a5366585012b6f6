"""The fingerprint store: identity, look-ups, saves (merged, never downgraded),
failures, statistics and the change journal, over a ``Backend``.

Keys (all ASCII, whatever the file names hold)::

    rec:<digest>:<params_key>   a Record: one content under one set of parameters
    path:<path_key>             {path, size, mtime_ns, digest, content_key} last seen there
    cand:<content_key>          [digest, ...]: records whose head and tail look like this
    fail:<path_key>             a Failure of the file at that path

Census: every record and failure is written with a tag naming its kind
(``census_tag``); the backend keeps a count per tag through every write, delete,
expiry and eviction, so ``stats`` reads counts instead of every record.

Identity: a path seen before with the same size and mtime_ns is unchanged and its
digest is taken from the path entry without reading the file. Any other path (new,
moved, copied, changed) is identified by its content key, which only proposes
candidates; a candidate is served only when the file's full digest equals it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import stat
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from fpcli.errors import BadEntryError, StoreError
from fpcli.params import FINGERPRINT_VERSION
from fpcli.results import TrackResult
from fpcli.store.protocol import BATCH, Backend, Put, Tag
from fpcli.store.records import (
    Failure,
    FileIdentity,
    Record,
    entry_file,
    entry_identity_keys,
    path_key,
    record_from_result,
    record_key,
)
from fpcli.store.schema import (
    IndexRow,
    dumps,
    failure_to_json,
    index_row,
    index_row_of,
    loads,
    parse_failure,
    parse_path_entry,
    parse_record,
    parse_records,
    record_text,
    sound_covariances,
)
from fpcli.store.spec import StoreSpec

COUNTERS = ("hits", "misses", "evictions", "expiries")
# A hit rewrites its record when last_used_at is older than this: "last used" and the
# eviction order are kept to the day. Hourly, a warm re-run over 10,000 tracks an hour
# after the last one rewrote every record (more than the whole look-up work).
LAST_USED_RESOLUTION_S = 86400.0
STATS_FLUSH_LOOKUPS = 256        # lookups counted in memory before being added to the store
MAX_CANDIDATES = 16              # digests kept per content key (distinct files with equal heads and tails)
FAILURE_TAG = "fail"
T = TypeVar("T")


def census_tag(record: Record) -> str:
    """The kind of a record for ``stats``: its version and whether it has batch values,
    a verdict, or is a preview, e.g. ``rec:v1:bv-`` (``-``: no)."""
    return (f"rec:v{record.fingerprint_version}:{'b' if record.batch is not None else '-'}"
            f"{'v' if record.validation is not None else '-'}{'-' if record.complete else 'p'}")


def tag_of_entry(key: str, text: str) -> Tag:
    """The census tag of stored text (for a recount of entries written untagged);
    None for identity entries and bad ones (which ``stats`` does not count)."""
    try:
        if key.startswith("rec:"):
            return census_tag(parse_record(key, loads(key, text)))
        if key.startswith("fail:"):
            parse_failure(key, loads(key, text))
            return FAILURE_TAG
    except BadEntryError:
        return None
    return None


def census_summary(counts: dict[str, int]) -> dict[str, Any]:
    """entries, with_batch, validated, previews, failures and by_version from the
    counts per census tag."""
    summary: dict[str, Any] = {"entries": 0, "with_batch": 0, "validated": 0, "previews": 0,
                               "failures": counts.get(FAILURE_TAG, 0), "by_version": {}}
    for tag, n in counts.items():
        parts = tag.split(":")
        if len(parts) != 3 or parts[0] != "rec" or len(parts[2]) != 3:
            continue
        version, flags = parts[1].removeprefix("v"), parts[2]
        summary["entries"] += n
        summary["with_batch"] += n * (flags[0] == "b")
        summary["validated"] += n * (flags[1] == "v")
        summary["previews"] += n * (flags[2] == "p")
        summary["by_version"][version] = summary["by_version"].get(version, 0) + n
    return summary


@dataclasses.dataclass(frozen=True)
class Need:
    """What a caller needs from a record: its parameters, batch values or not, and
    how much of the track (``seconds`` None: all of it; N: at least N seconds heard)."""

    params_key: str
    batch: bool = False
    seconds: float | None = None

    def served_by(self, record: Record) -> bool:
        if record.fingerprint_version != FINGERPRINT_VERSION or record.params_key != self.params_key:
            return False
        if self.batch and record.batch is None:
            return False
        if record.complete:
            return True
        return self.seconds is not None and record.streaming.seconds >= self.seconds


@dataclasses.dataclass(frozen=True)
class Lookup:
    """The answer of ``FingerprintStore.lookup``.

    ``record``: the record that serves the need (None on a miss). ``previous``: the
    record stored for this content and parameters even if it does not serve the need
    (a preview when all is wanted), kept for the report. ``identity`` is None when the
    file cannot be read (``error`` says why); ``failure`` is a recorded failure of the
    unchanged file.
    """

    identity: FileIdentity | None
    record: Record | None = None
    previous: Record | None = None
    failure: Failure | None = None
    error: str | None = None


def resolve(path: str | os.PathLike[str]) -> str:
    """The absolute, symlink-free path as ``str`` (undecodable bytes as surrogates)."""
    return os.path.realpath(os.fsdecode(path))


def stat_regular(path: str) -> os.stat_result:
    """``os.stat`` of a regular file (for a CUE track ``album.flac#03``, of its image);
    OSError with a clear message otherwise (a FIFO or a device would block a reader
    forever)."""
    st = os.stat(entry_file(path)[0])
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else \
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        raise OSError(0, f"is {kind}, not an audio file" if kind != "not a regular file" else kind)
    return st


def os_reason(exc: OSError) -> str:
    """An OSError in words: "symlink loop" rather than errno's "Too many levels..."."""
    import errno

    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "no such file or folder"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return exc.strerror or str(exc)


class FingerprintStore:
    """Records of analysed tracks, failures and hit statistics over a backend."""

    def __init__(self, backend: Backend, spec: StoreSpec) -> None:
        self.backend = backend
        self.spec = spec  # how to open this store again elsewhere (a Dask worker)
        self.bad_entries: list[BadEntryError] = []  # skipped while reading, for the CLI to report
        self._pending = dict.fromkeys(COUNTERS[:2], 0)
        self._pending_lookups = 0

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *,
             size_limit_mb: float | None = None, ttl_s: float | None = None) -> FingerprintStore:
        """Open (creating) the store at ``location``, FPCLI_STORE, or the user cache dir."""
        spec = StoreSpec(None if location is None else os.fspath(location), ttl_s=ttl_s,
                         **({} if size_limit_mb is None else {"size_limit_mb": size_limit_mb}))
        return cls.from_spec(spec)

    @classmethod
    def from_spec(cls, spec: StoreSpec) -> FingerprintStore:
        spec = spec.resolved()
        return cls(spec.open_backend(), spec)

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        try:
            self.flush_stats()
        finally:
            self.backend.close()

    def __enter__(self) -> FingerprintStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading entries (one bad entry is one bad entry) -----------------------------------

    def _read(self, key: str) -> Any | None:
        text = self.backend.get(key)
        return None if text is None else loads(key, text)

    def read_record(self, key: str) -> Record | None:
        """The record under ``key``; None if absent or bad (a bad one is remembered in
        ``bad_entries`` and will be overwritten by the next save)."""
        try:
            data = self._read(key)
            return None if data is None else parse_record(key, data)
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def _read_path_entry(self, path: str) -> dict[str, Any] | None:
        key = f"path:{path_key(path)}"
        try:
            data = self._read(key)
            return None if data is None else parse_path_entry(key, data)
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def _read_failure(self, path: str) -> Failure | None:
        key = f"fail:{path_key(path)}"
        try:
            data = self._read(key)
            return None if data is None else parse_failure(key, data)
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def _candidates(self, content: str) -> list[str]:
        try:
            data = self._read(f"cand:{content}")
        except BadEntryError:
            return []
        return [d for d in data if isinstance(d, str)] if isinstance(data, list) else []

    # -- identity ---------------------------------------------------------------------------

    def identify(self, path: str | os.PathLike[str], *, digest: bool = True) -> FileIdentity:
        """Identity of a file; reads it whole (for the digest) only when its path entry
        does not vouch for it. Raises OSError when it cannot be read."""
        identity, _ = self._identify(resolve(path), want_digest=digest)
        return identity

    def _identify(self, resolved: str, *, want_digest: bool, st: os.stat_result | None = None
                  ) -> tuple[FileIdentity, dict[str, Any] | None]:
        """(identity, the path's stored entry). The digest comes from the entry when the
        file is unchanged, else from a full read when ``want_digest`` or when a record
        with the same content key exists (a candidate to confirm). ``st``: the file's
        stat when the caller has just taken it."""
        st = st or stat_regular(resolved)
        entry = self._read_path_entry(resolved)
        if entry and (entry["size"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            return FileIdentity(resolved, st.st_size, st.st_mtime_ns, entry["content_key"], entry["digest"]), entry
        content, _ = entry_identity_keys(resolved, st.st_size, digest=False)
        if want_digest or self._candidates(content):
            _, digest = entry_identity_keys(resolved, st.st_size, digest=True)
        else:
            digest = None
        return FileIdentity(resolved, st.st_size, st.st_mtime_ns, content, digest), entry

    # -- look-ups (counted) -----------------------------------------------------------------

    def lookup(self, path: str | os.PathLike[str], need: Need) -> Lookup:
        """The record serving ``need`` for the file at ``path``, counted as a hit or a
        miss. A file whose failure is recorded and which has not changed returns that
        failure (not counted)."""
        resolved = resolve(path)
        try:
            st = stat_regular(resolved)
        except OSError as exc:
            return Lookup(None, error=os_reason(exc))
        try:
            identity, entry = self._identify(resolved, want_digest=False, st=st)
        except OSError as exc:  # unreadable: its recorded failure (if unchanged) comes with the error
            return Lookup(None, failure=self._unchanged_failure(resolved, st), error=os_reason(exc))
        stored = self.read_record(record_key(identity.digest, need.params_key)) if identity.digest else None
        record = stored if stored is not None and need.served_by(stored) else None
        if record is None:  # only a file the store cannot answer may have a failure that matters
            failure = self._unchanged_failure(resolved, st)
            if failure is not None:
                return Lookup(identity, failure=failure)
        self._count("hits" if record is not None else "misses")
        if record is not None:
            record = self._touch(record, identity, entry)
        return Lookup(identity, record=record, previous=stored)

    def _unchanged_failure(self, resolved: str, st: os.stat_result) -> Failure | None:
        failure = self._read_failure(resolved)
        if failure and (failure.size, failure.mtime_ns) == (st.st_size, st.st_mtime_ns):
            return failure
        return None

    def _touch(self, record: Record, identity: FileIdentity, entry: dict[str, Any] | None) -> Record:
        """A hit: remember a new path of this content (a copy, a move, a second root);
        refresh last_used at most daily (LAST_USED_RESOLUTION_S)."""
        now = time.time()
        new_path = identity.path not in {p.path for p in record.paths}
        if new_path or entry is None or entry["digest"] != identity.digest:
            record = record.with_path(identity.path, identity.mtime_ns)
            self._claim_path(identity, entry, record.params_key)
        if new_path or now - record.last_used_at > LAST_USED_RESOLUTION_S:
            record = dataclasses.replace(record, last_used_at=now)
            self._write_record(record, journal=new_path)
        return record

    def _claim_path(self, identity: FileIdentity, entry: dict[str, Any] | None, params_key: str) -> None:
        """Point the path entry at this content; a record of the content that was there
        before (the file changed at its path) loses the path."""
        assert identity.digest is not None
        if entry and entry["digest"] != identity.digest:
            old = self.read_record(record_key(entry["digest"], params_key))
            if old is not None:
                self._keep_or_drop(old.without_path(identity.path))
        self.backend.put(f"path:{path_key(identity.path)}", dumps({
            "path": identity.path, "size": identity.size, "mtime_ns": identity.mtime_ns,
            "digest": identity.digest, "content_key": identity.content_key}))

    def _keep_or_drop(self, record: Record) -> None:
        """Write a record that lost a path, or delete it when it has none left."""
        if record.paths:
            self._write_record(record)
        else:
            self.backend.delete(record.key)
            self.backend.journal_append(record.key)

    def _count(self, name: str) -> None:
        self._pending[name] += 1
        self._pending_lookups += 1
        if self._pending_lookups >= STATS_FLUSH_LOOKUPS:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Add the look-ups counted in memory to the shared counters."""
        if self._pending_lookups:
            self.backend.add_counters(self._pending)
            self._pending = dict.fromkeys(self._pending, 0)
            self._pending_lookups = 0

    # -- writes -------------------------------------------------------------------------------

    def _write_record(self, record: Record, *, journal: bool = True) -> None:
        self.backend.put(record.key, record_text(record), census_tag(record))
        if journal:
            self.backend.journal_append(record.key)

    def save(self, identity: FileIdentity, result: TrackResult) -> Record:
        """Store an analysed file, merged with the record already stored for its
        content: a record that heard more of the track is never replaced by one that
        heard less (the new path and batch values are still added); batch values and
        the validation verdict survive a re-analysis that lacks them. Forgets the
        file's failure. ``identity.digest`` must be known."""
        if identity.digest is None or result.streaming is None:
            raise StoreError(f"{identity.path}: cannot store a result without its digest and fingerprint")
        fresh = record_from_result(identity, result, time.time())
        existing = self.read_record(fresh.key)
        record = fresh if existing is None else _merge(existing, fresh)
        entry = self._read_path_entry(identity.path)
        self._write_record(record.with_path(identity.path, identity.mtime_ns))
        self._claim_path(identity, entry, record.params_key)
        self._add_candidate(identity.content_key, identity.digest)
        self.backend.delete(f"fail:{path_key(identity.path)}")
        self.backend.maintain()
        return record.with_path(identity.path, identity.mtime_ns)

    def _add_candidate(self, content: str, digest: str) -> None:
        known = self._candidates(content)
        if digest not in known:
            self.backend.put(f"cand:{content}", dumps([*known, digest][-MAX_CANDIDATES:]))

    def update_record(self, record: Record) -> None:
        """Write back a record changed by the caller (e.g. a validation verdict)."""
        self._write_record(record)
        self.backend.maintain()

    def save_failure(self, path: str, identity: FileIdentity | None, error_type: str, message: str) -> Failure:
        """Record that ``path`` could not be analysed; skipped until it changes."""
        resolved = identity.path if identity else resolve(path)
        try:
            st = os.stat(resolved)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, -1
        failure = Failure(resolved, error_type, message, size, mtime_ns, time.time())
        self.backend.put(f"fail:{path_key(resolved)}", dumps(failure_to_json(failure)), FAILURE_TAG)
        return failure

    def forget_path(self, record: Record, path: str) -> None:
        """Remove one path of a record (and the record with its last path)."""
        self._keep_or_drop(record.without_path(path))
        entry = self._read_path_entry(path)
        if entry is None or entry["digest"] == record.digest:
            self.backend.delete(f"path:{path_key(path)}")

    def delete_record(self, record: Record) -> None:
        """Remove a record and the path entries that point at it."""
        for seen in record.paths:
            entry = self._read_path_entry(seen.path)
            if entry is not None and entry["digest"] == record.digest:
                self.backend.delete(f"path:{path_key(seen.path)}")
        self.backend.delete(record.key)
        self.backend.journal_append(record.key)

    def delete_failure(self, path: str) -> None:
        self.backend.delete(f"fail:{path_key(path)}")

    def clear(self) -> int:
        """Remove every record, failure and counter; returns the entries removed."""
        self._pending = dict.fromkeys(self._pending, 0)
        self._pending_lookups = 0
        return self.backend.clear()

    # -- reading everything -------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        """Every readable record, read in key-ordered batches (memory does not grow
        with the store); bad ones are skipped and listed in ``bad_entries``."""
        for record, _ in self.record_texts():
            yield record

    def record_texts(self, prefix: str = "rec:") -> Iterator[tuple[Record, str]]:
        """(record, its stored JSON text) of every readable record whose key starts
        with ``prefix``: the bulk read behind exports and search indexes. Each batch
        of BATCH entries is one backend read and one ``parse_records`` call (every
        record checked as ``read_record`` checks it, the timbre matrices of the batch
        at once)."""
        for batch in _batches(self.backend.items(prefix), BATCH):
            yield from self._parse_batch(batch)

    def index_rows(self, kind: str, params_key: str) -> Iterator[IndexRow]:
        """What a search index needs of every complete current record of ``kind``
        under ``params_key``, in key order, BATCH at a time. A plain current record takes
        a fast path (``schema.index_row``: the fields an index uses, and its covariance
        checked with the batch's); any other goes through the full parser, so a bad
        entry is reported as every reader reports it. About 3x faster than parsing
        every record whole (the first search after an import builds its index so)."""
        for batch in _batches(self.backend.items("rec:"), BATCH):
            found: dict[int, IndexRow | None] = {}
            slow: list[int] = []
            for position, (key, text) in enumerate(batch):
                row: IndexRow | None | bool = False
                if text is not None:
                    try:
                        row = index_row(key, loads(key, text), kind, params_key, FINGERPRINT_VERSION)
                    except BadEntryError as exc:
                        self.bad_entries.append(exc)
                        continue
                if row is False:
                    slow.append(position)
                else:
                    found[position] = row  # type: ignore[assignment]
            slow += self._unsound_timbres(found)
            for position in slow:  # rare: one at a time, as a look-up reads it
                record = self._parse_record(*batch[position])
                found[position] = None if record is None else index_row_of(record, kind, params_key,
                                                                             FINGERPRINT_VERSION)
            yield from (found[p] for p in sorted(found) if found[p] is not None)  # type: ignore[misc]

    @staticmethod
    def _unsound_timbres(found: dict[int, IndexRow | None]) -> list[int]:
        """Positions (removed from ``found``) of fast-path rows whose covariance is not
        symmetric positive semi-definite: the full parser reports them."""
        timbres = {p: row.timbre for p, row in found.items() if row is not None and row.timbre is not None}
        if not timbres:
            return []
        import numpy as np

        with_timbre = list(timbres)
        sound = sound_covariances(np.stack(list(timbres.values())))
        unsound = [p for p, ok in zip(with_timbre, sound.tolist(), strict=True) if not ok]
        for position in unsound:
            del found[position]
        return unsound

    def _parse_batch(self, batch: Sequence[tuple[str, str | None]]) -> Iterator[tuple[Record, str]]:
        loaded: list[tuple[str, Any]] = []
        texts: list[str] = []
        for key, text in batch:
            if text is None:  # unreadable as text: read it alone so the reason is recorded
                record = self.read_record(key)
                if record is not None:
                    yield record, record_text(record)
                continue
            try:
                loaded.append((key, loads(key, text)))
                texts.append(text)
            except BadEntryError as exc:
                self.bad_entries.append(exc)
        for result, text in zip(parse_records(loaded), texts, strict=True):
            if isinstance(result, BadEntryError):
                self.bad_entries.append(result)
            else:
                yield result, text

    def _parse_record(self, key: str, text: str | None) -> Record | None:
        if text is None:  # unreadable as text: read it alone so the reason is recorded
            return self.read_record(key)
        try:
            return parse_record(key, loads(key, text))
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def failures(self) -> Iterator[Failure]:
        for key, text in self.backend.items("fail:"):
            try:
                data = self._read(key) if text is None else loads(key, text)
                if data is not None:
                    yield parse_failure(key, data)
            except BadEntryError as exc:
                self.bad_entries.append(exc)

    def record_for_path(self, path: str | os.PathLike[str], params_key: str | None = None) -> Record | None:
        """The newest record of a file's content, not counted as a look-up: the one
        under ``params_key`` when stored (one read), else of any parameters (a key
        range on diskcache, a keyspace scan on Redis). Raises OSError when the file
        cannot be read."""
        identity = self.identify(path)
        if params_key is not None and identity.digest is not None:
            record = self.read_record(record_key(identity.digest, params_key))
            if record is not None:
                return record
        candidates = [self.read_record(k) for k in self.backend.keys(f"rec:{identity.digest}:")]
        return max((c for c in candidates if c is not None), key=lambda r: r.analysed_at, default=None)

    def stats(self, *, recount: bool = False) -> dict[str, Any]:
        """Counts kept across runs and the census of the store, from maintained
        counters (no record is read; ``recount`` or a store never counted counts
        every entry once). Plain data."""
        self.flush_stats()
        counters = {name: self.backend.counter(name) for name in COUNTERS}
        lookups = counters["hits"] + counters["misses"]
        counts, note = (None, None) if recount else self.backend.census()
        if counts is None:
            counts, note = self.backend.recount(tag_of_entry), None
        return {
            "location": self.location, **census_summary(counts), "size_bytes": self.backend.volume(),
            "size_limit_bytes": self.backend.size_limit, "ttl_s": self.backend.ttl_s, **counters,
            "lookups": lookups, "hit_rate": counters["hits"] / lookups if lookups else None,
            "bad_entries": len(self.bad_entries), "census_exact": note is None,
            "warnings": [w for w in [self.backend.policy_warning(), note] if w],
        }

    # -- bulk writes (imports) -----------------------------------------------------------------

    def import_records(self, records: list[Record]) -> None:
        """Store a batch of records read from an export: each merged with the paths of
        the stored one, with their path entries and candidates, in one transaction
        or pipeline per kind; one journal extension and one ``maintain`` per batch."""
        unique = list({r.key: r for r in records}.values())
        stored = self.backend.get_many([r.key for r in unique])
        present = {key: text for key, text in zip([r.key for r in unique], stored, strict=True) if text is not None}
        known = {record.key: record for record, _ in self._parse_batch(list(present.items()))}
        puts: list[Put] = []
        for record in unique:
            existing = known.get(record.key)
            for seen in existing.paths if existing is not None else ():
                if seen.path not in {p.path for p in record.paths}:
                    record = record.with_path(seen.path, seen.mtime_ns)
            puts.append((record.key, record_text(record), census_tag(record)))
            puts += [(f"path:{path_key(seen.path)}", dumps({
                "path": seen.path, "size": record.size, "mtime_ns": seen.mtime_ns, "digest": record.digest,
                "content_key": record.content_key}), None) for seen in record.paths]
        puts += self._candidate_puts(unique)
        for start in range(0, len(puts), BATCH):
            self.backend.put_many(puts[start:start + BATCH])
        self.backend.journal_extend([r.key for r in unique])
        self.backend.maintain()

    def _candidate_puts(self, records: list[Record]) -> list[Put]:
        """The candidate lists of a batch, each read once and written once."""
        wanted: dict[str, list[str]] = {}
        for record in records:
            wanted.setdefault(record.content_key, []).append(record.digest)
        contents = list(wanted)
        puts: list[Put] = []
        for content, text in zip(contents, self.backend.get_many([f"cand:{c}" for c in contents]), strict=True):
            try:
                data = [] if text is None else loads(content, text)
            except BadEntryError:
                data = []
            known = [d for d in data if isinstance(d, str)] if isinstance(data, list) else []
            added = [d for d in dict.fromkeys(wanted[content]) if d not in known]
            if added:
                puts.append((f"cand:{content}", dumps([*known, *added][-MAX_CANDIDATES:]), None))
        return puts

    def import_failures(self, failures: list[Failure]) -> None:
        self.backend.put_many([(f"fail:{path_key(f.path)}", dumps(failure_to_json(f)), FAILURE_TAG)
                               for f in failures])

    # -- change journal (for incremental index refresh) ----------------------------------------

    def generation(self) -> int:
        return self.backend.generation()

    def changes_since(self, generation: int) -> list[str] | None:
        """Record keys changed after ``generation``, or None when the journal cannot
        tell (it keeps the last JOURNAL_LIMIT changes): the caller must rebuild."""
        return self.backend.journal_since(generation)

    def index_epoch(self) -> tuple[int, int]:
        """(epoch, evictions + expiries): when either moves, records vanished without
        passing through the journal, and indexes must be rebuilt."""
        return self.backend.counter("epoch"), self.backend.counter("evictions") + self.backend.counter("expiries")


def _merge(existing: Record, fresh: Record) -> Record:
    """The record to keep when ``fresh`` analysed content already stored.

    The one that heard more of the track keeps its streaming values (a tie goes to
    the fresh analysis); paths are united; batch values and a verdict on complete
    values survive from the existing record when the fresh one has none.
    """
    heard_more = existing.complete and not fresh.complete or (
        not existing.complete and not fresh.complete and existing.streaming.seconds > fresh.streaming.seconds)
    base = existing if heard_more else fresh
    validation = existing.validation if existing.complete and base.complete else None
    merged = dataclasses.replace(base, paths=existing.paths, batch=fresh.batch or existing.batch,
                                 validation=base.validation or validation)
    for seen in fresh.paths:
        merged = merged.with_path(seen.path, seen.mtime_ns)
    return merged


def _batches(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Tuples of ``size`` items (the last shorter): ``itertools.batched`` of Python 3.12."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
