"""The fingerprint store: identity, look-ups, saves (merged, never downgraded),
failures, statistics and the change journal, over a ``Backend``.

Keys (all ASCII, whatever the file names hold)::

    rec:<digest>:<params_key>   a Record: one content under one set of parameters
    path:<path_key>             {path, size, mtime_ns, digest, content_key} last seen there
    cand:<content_key>          [digest, ...]: records whose head and tail look like this
    fail:<path_key>             a Failure of the file at that path

Census (``census.py``): every record and failure is written with a tag naming its
kind, so ``stats`` reads counts instead of every record. Reads of single entries and
of everything, and the bulk writes of an import, are in ``reading.py``.

Identity: a path seen before with the same size and mtime_ns is unchanged and its
digest is taken from the path entry without reading the file. Any other path (new,
moved, copied, changed) is identified by its content key, which only proposes
candidates; a candidate is served only when the file's full digest equals it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar, cast

from fpcli.errors import ParameterError, StoreError, StoreFullError, StoreReadOnlyError
from fpcli.params import FINGERPRINT_VERSION
from fpcli.results import TrackResult
from fpcli.store.census import COUNTERS, FAILURE_TAG, census_summary, census_tag, tag_of_entry
from fpcli.store.protocol import Backend
from fpcli.store.reading import MAX_CANDIDATES, StoreImports, _batches
from fpcli.store.records import (
    MAX_PATHS,
    STREAM_PREFIX,
    Failure,
    FileIdentity,
    PathSeen,
    Record,
    Validation,
    entry_file,
    entry_identity_keys,
    merged_record,
    os_reason,
    path_key,
    record_from_result,
    record_key,
    resolve,
    resolve_all,
    stat_regular,
    stream_identity,
)
from fpcli.store.schema import checked_for_storing, dumps, failure_to_json, path_entry_text, record_text
from fpcli.store.spec import StoreSpec

# A hit rewrites its record when last_used_at is older than this: "last used" and the
# eviction order are kept to the day. Hourly, a warm re-run over 10,000 tracks an hour
# after the last one rewrote every record (more than the whole look-up work).
LAST_USED_RESOLUTION_S = 86400.0
STATS_FLUSH_LOOKUPS = 256        # lookups counted in memory before being added to the store
LOOKUP_BATCH = 256               # files whose entries ``lookup_many`` reads in one go
T = TypeVar("T")


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


SAVE_ATTEMPTS = 20  # compare-and-swap rounds of one save against concurrent writers of its record
# A change of a record's paths: the record as stored now -> (paths kept, oldest first,
# paths gone), or None for no change (``FingerprintStore.rewrite_paths``).
PathChange = Callable[[Record], tuple[Sequence[PathSeen], Sequence[str]] | None]


def _location_text(location: object) -> str:
    """A store location given to the API as text (a path as str, bytes or a PathLike;
    bytes gave a TypeError from a str pattern deep inside), else a ParameterError."""
    try:
        return os.fsdecode(location)   # type: ignore[arg-type]  # anything else raises TypeError
    except TypeError:
        raise ParameterError(f"{location!r}: a folder path or a redis:// URL", "location") from None


class FingerprintStore(StoreImports):
    """Records of analysed tracks, failures and hit statistics over a backend."""

    def __init__(self, backend: Backend, spec: StoreSpec) -> None:
        super().__init__(backend)
        self.spec = spec  # how to open this store again elsewhere (a Dask worker)
        self._pending = dict.fromkeys(COUNTERS[:2], 0)
        self._pending_lookups = 0
        # False once a write was refused because this user may only read (a Redis ACL):
        # the writes that only keep the store tidy (last-used times, new paths of a
        # hit, the hit counters) are then skipped, and reading commands answer.
        self.writable = True
        # Results a run over files could not store for that reason: analysed and
        # reported, not kept (``refused``: the server's words, for the run's summary).
        self.unsaved = 0
        self.refused = ""
        self._optional = threading.local()   # ``storing_optional``, per thread

    @property
    def storing_optional(self) -> bool:
        """True while a command whose answer does not hang on storing runs (search,
        validate) in this thread: a store full under noeviction then leaves a result
        unsaved, as for a user who may only read, where it stopped the command
        (``results_optional``). Per thread: a search beside a run over files on one
        store let the run go on, storing nothing."""
        return bool(getattr(self._optional, "on", False))

    @storing_optional.setter
    def storing_optional(self, on: bool) -> None:
        self._optional.on = on

    @classmethod
    def open(cls, location: str | os.PathLike[str] | None = None, *,
             size_limit_mb: float | None = None, ttl_s: float | None = None) -> FingerprintStore:
        """Open (creating) the store at ``location``, FPCLI_STORE, or the user cache dir."""
        spec = StoreSpec(None if location is None else _location_text(location), ttl_s=ttl_s,
                         **({} if size_limit_mb is None else {"size_limit_mb": size_limit_mb}))
        return cls.from_spec(spec)

    @classmethod
    def from_spec(cls, spec: StoreSpec, *, existing: bool = False) -> FingerprintStore:
        """The store ``spec`` names; with ``existing``, one on Redis must hold a store."""
        spec = spec.resolved()
        return cls(spec.open_backend(existing=existing), spec)

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

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        """Close; when an error is already on its way out, a close that fails too (a
        store gone mid-run cannot flush its statistics) does not hide it."""
        if kind is None:
            self.close()
            return
        with contextlib.suppress(StoreError):
            self.close()

    # -- identity ---------------------------------------------------------------------------

    def identify(self, path: str | os.PathLike[str], *, digest: bool = True,
                 params_key: str | None = None) -> FileIdentity:
        """Identity of a file; reads it whole (for the digest) only when its path entry
        does not vouch for it. With ``params_key`` (a result about to be saved under
        the digest), the entry vouches only as in a look-up: when the record it names
        under those parameters is this file's, or there is none (an entry edited or
        left wrong made a forced run overwrite another file's record). Raises OSError
        when it cannot be read."""
        return self._identify_checked(resolve(path), digest, params_key)

    def identify_many(self, paths: Iterable[str | os.PathLike[str]],
                      params_key: str) -> Iterator[FileIdentity | OSError]:
        """``identify(path, digest=False, params_key=params_key)`` of each path, in order
        (an OSError given, not raised), with the path entries and the records they name
        read ahead in batches as ``lookup_many`` reads them: one by one, a forced run's
        look-ups took 600 us a file on a local Redis before its first analysis."""
        def identified(resolved: str) -> FileIdentity | OSError:
            try:
                return self._identify_checked(resolved, False, params_key)
            except OSError as exc:
                return exc

        return self._each_read_ahead(paths, params_key, identified)

    def _identify_checked(self, resolved: str, digest: bool, params_key: str | None) -> FileIdentity:
        st = stat_regular(resolved)
        identity, entry = self._identify(resolved, want_digest=digest, st=st)
        if params_key is not None and entry is not None and identity.digest == entry["digest"] and \
                _misled(self.read_record(record_key(entry["digest"], params_key)), identity, entry):
            identity, _ = self._identify(resolved, want_digest=True, st=st, trust_entry=False)
        return identity

    def _identify(self, resolved: str, *, want_digest: bool, st: os.stat_result | None = None,
                  trust_entry: bool = True) -> tuple[FileIdentity, dict[str, Any] | None]:
        """(identity, the path's stored entry). The digest comes from the entry when the
        file is unchanged (and ``trust_entry``), else from a full read when
        ``want_digest`` or when a record with the same content key exists (a candidate
        to confirm). ``st``: the file's stat when the caller has just taken it."""
        st = st or stat_regular(resolved)
        entry = self._read_path_entry(resolved)
        content = None
        # Another inode at the path is another file, whatever its size and time: two files
        # of one size and time swapped by renames were each served the other's record. It
        # is identified as a new path is (a content key proposes, the digest confirms: the
        # content key alone cannot tell two rips padded with silence); the hit then gives
        # the entry this inode. A file system whose inode numbers change on each mount
        # pays that read once per mount.
        same_inode = entry is not None and entry.get("inode") in (None, st.st_ino)
        if trust_entry and entry and same_inode and (entry["size"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
            if not entry_file(resolved)[1]:
                return FileIdentity(resolved, st.st_size, st.st_mtime_ns, entry["content_key"], entry["digest"],
                                    st.st_ino), entry
            # A CUE track: its image unchanged says nothing of its sheet, whose edited
            # bounds (the salt of its keys) make another track of the same image; the
            # salted content key (128 KiB read) tells.
            content, _ = entry_identity_keys(resolved, st.st_size, digest=False)
            if content == entry["content_key"]:
                return FileIdentity(resolved, st.st_size, st.st_mtime_ns, content, entry["digest"], st.st_ino), entry
        if content is None:
            content, _ = entry_identity_keys(resolved, st.st_size, digest=False)
        if want_digest or self._candidates(content):
            _, digest = entry_identity_keys(resolved, st.st_size, digest=True)
        else:
            digest = None
        return FileIdentity(resolved, st.st_size, st.st_mtime_ns, content, digest, st.st_ino), entry

    # -- look-ups (counted) -----------------------------------------------------------------

    def lookup(self, path: str | os.PathLike[str], need: Need) -> Lookup:
        """The record serving ``need`` for the file at ``path``, counted as a hit or a
        miss. A file whose failure is recorded and which has not changed returns that
        failure (not counted)."""
        return self._lookup(resolve(path), need)

    def lookup_many(self, paths: Iterable[str | os.PathLike[str]], need: Need) -> Iterator[Lookup]:
        """``lookup`` of each path, in order, with the same answers and counts: the path
        entries and records of LOOKUP_BATCH files are read ahead in two backend calls
        (one SQL query each, or one MGET) and the records parsed as one batch, instead
        of two reads and a parse per file. A whole-library run looks its files up so."""
        return self._each_read_ahead(paths, need.params_key, lambda resolved: self._lookup(resolved, need))

    def _each_read_ahead(self, paths: Iterable[str | os.PathLike[str]], params_key: str,
                         each: Callable[[str], T]) -> Iterator[T]:
        """``each(resolved path)`` of every path, in order, LOOKUP_BATCH at a time, with
        their path entries and the records those name under ``params_key`` read ahead."""
        folders: dict[str, str] = {}   # each folder's real path, made once
        for chunk in _batches(paths, LOOKUP_BATCH):
            resolved = resolve_all(chunk, folders)
            self.read_ahead([f"path:{path_key(p)}" for p in resolved],
                            lambda entry: record_key(entry["digest"], params_key))
            try:
                for path in resolved:
                    yield each(path)
            finally:
                self.forget_ahead()

    def _lookup(self, resolved: str, need: Need) -> Lookup:
        try:
            st = stat_regular(resolved)
        except OSError as exc:
            return Lookup(None, error=os_reason(exc))
        try:
            identity, entry = self._identify(resolved, want_digest=False, st=st)
            stored = self.read_record(record_key(identity.digest, need.params_key)) if identity.digest else None
            if _misled(stored, identity, entry):   # the entry names a record not of this file: read the file
                identity, entry = self._identify(resolved, want_digest=True, st=st, trust_entry=False)
                stored = self.read_record(record_key(identity.digest, need.params_key)) if identity.digest else None
        except OSError as exc:  # unreadable: its recorded failure (if unchanged) comes with the error
            return Lookup(None, failure=self._unchanged_failure(resolved, st), error=os_reason(exc))
        record = stored if stored is not None and need.served_by(stored) else None
        if record is None:  # only a file the store cannot answer may have a failure that matters
            failure = self._unchanged_failure(resolved, st)
            if failure is not None:
                return Lookup(identity, failure=failure)
        self._count("hits" if record is not None else "misses")
        if record is not None and self.writable:
            with self._unless_read_only():
                record = self._touch(record, identity, entry)
        return Lookup(identity, record=record, previous=stored)

    @contextlib.contextmanager
    def _unless_read_only(self) -> Iterator[None]:
        """Run a write that only keeps the store tidy; a user who may only read skips
        it (and the later ones): a hit of a read-only Redis user failed the whole
        command (analyze, search) for its last-used time. So does a store full under
        noeviction, this write only: a search of a full Redis failed on the look-up
        counts."""
        try:
            yield
        except StoreReadOnlyError:
            self.writable = False
        except StoreFullError:
            pass

    def _unchanged_failure(self, resolved: str, st: os.stat_result) -> Failure | None:
        failure = self.failure_for(resolved)
        return failure if failure is not None and failure.unchanged(st) else None

    def _touch(self, record: Record, identity: FileIdentity, entry: dict[str, Any] | None) -> Record:
        """A hit: remember a new path of this content (a copy, a move, a second root)
        and a new mtime of a listed one; refresh last_used at most daily
        (LAST_USED_RESOLUTION_S). A known unchanged path writes nothing, however many
        paths the content has."""
        now = time.time()
        # An entry of another inode, or of none (written before inodes were kept, or by an
        # import or a prune), vouches no more: rewritten with this file's, once, so that a
        # file restored from a backup (new inode, same time) is read whole once, not on
        # every run, and every entry comes to hold the inode that tells a swap.
        vouched = entry is not None and (entry["digest"], entry["size"], entry["mtime_ns"], entry.get("inode")) == (
            identity.digest, identity.size, identity.mtime_ns, identity.inode)
        seen = record.seen_at(identity.path)
        # A path its entry vouches for is known even when the record no longer lists
        # it (only the latest MAX_PATHS are): listing it again would push another out,
        # and every look-up of a content with more paths than that would write.
        new_path = seen is None and (not vouched or len(record.paths) < MAX_PATHS)
        changed = new_path or (seen is not None and seen.mtime_ns != identity.mtime_ns)
        if not vouched:
            self._claim_path(identity, entry, record.params_key)
        if not (changed or now - record.last_used_at > LAST_USED_RESOLUTION_S):
            return record
        read = record
        dropped = [False]

        def touched(current: Record | None) -> Record:
            # Changed on the record as it is now: written back as it was read, it undid
            # what another process did meanwhile (a prune's removal of a gone path came
            # back; a path another run added was lost). Dropped meanwhile (a prune took
            # its last old path while this run found the file moved): this file keeps it.
            dropped[0] = current is None
            # Dropped: its paths were all gone (the prune judged), this file's is the one left.
            base = dataclasses.replace(read, paths=()) if current is None else current
            if changed or current is None:
                base = base.with_path(identity.path, identity.mtime_ns)
            return dataclasses.replace(base, last_used_at=now, paths=base.paths[-MAX_PATHS:])

        record = self._swap_changed(read.key, touched, journal=new_path)
        if dropped[0]:
            self._add_candidate(record.content_key, record.digest)
        return record

    def _swap_changed(self, key: str, change: Callable[[Record | None], Record], *, journal: bool = True) -> Record:
        """Write what ``change`` makes of the record under ``key`` as it is now (None:
        absent or unreadable), as one compare-and-swap, read and changed again when
        another process wrote it meanwhile. Returns the record written."""
        for _ in range(SAVE_ATTEMPTS):
            text, current = self.read_current(key)
            updated = change(current)
            if self._swap(updated, text, journal=journal):
                return updated
        raise StoreError(f"{key}: the record kept changing under other writers ({SAVE_ATTEMPTS} attempts)")

    def record_touched(self, key: str, identity: FileIdentity) -> None:
        """A file of the record under ``key`` found touched (its bytes confirmed by the
        digest, its time moved) by a search or ``cache dupes``: its time now
        (``identity``) in the record and in its path entry, as a prune stores them, so
        that it is not read whole again. Nothing when the record no longer lists the
        path."""
        path, mtime_ns = identity.path, identity.mtime_ns

        def retimed(current: Record) -> tuple[list[PathSeen], list[str]] | None:
            if not any(seen.path == path for seen in current.paths):
                return None
            return [PathSeen(seen.path, mtime_ns if seen.path == path else seen.mtime_ns)
                    for seen in current.paths], []

        if self.rewrite_paths(key, retimed) is not None:
            self.retime_path(identity)

    def retime_path(self, identity: FileIdentity) -> None:
        """Give the path entry of a file confirmed to hold this content (a prune's
        touched file) the file's time now, unless the entry names another content by
        then (another run analysed what is there now: its entry stays)."""
        entry = self._read_path_entry(identity.path)
        if entry is None or entry["digest"] == identity.digest:
            self._put_path_entry(_with_inode(identity))

    def _put_path_entry(self, identity: FileIdentity) -> None:
        """The path entry saying the file at ``identity.path``, of its size and time,
        holds ``identity``'s content."""
        assert identity.digest is not None
        self._put(f"path:{path_key(identity.path)}", path_entry_text(
            identity.path, identity.size, identity.mtime_ns, identity.digest, identity.content_key, identity.inode))

    def _claim_path(self, identity: FileIdentity, entry: dict[str, Any] | None, params_key: str) -> None:
        """Point the path entry at this content; a record of the content that was there
        before (the file changed at its path) loses the path, and a failure recorded for
        the path goes (a file answered by a copy's record stayed listed as failed, in
        cache failures and stats)."""
        assert identity.digest is not None
        if entry and entry["digest"] != identity.digest:
            path = identity.path
            self.rewrite_paths(record_key(entry["digest"], params_key), lambda old: (
                [seen for seen in old.paths if seen.path != path], []) if any(
                    seen.path == path for seen in old.paths) else None)
        self._put_path_entry(identity)
        self.delete_failure(identity.path)

    def rewrite_paths(self, key: str, change: PathChange) -> Record | None:
        """Give the record under ``key`` the paths ``change`` makes of it as it is now
        ((paths kept, oldest first, and paths gone), or None: nothing to change), as one
        compare-and-swap, read and changed again when another process wrote it
        meanwhile: a prune wrote back the record it had read, so the path a concurrent
        run had just added for a moved file was lost, and the record dropped with its
        last old path. It keeps the latest MAX_PATHS paths and goes when none is left;
        the path entries of the gone paths go when they name its content. Returns the
        record as it was before the change, or None (absent, or nothing changed)."""
        for _ in range(SAVE_ATTEMPTS):
            text, record = self.read_current(key)
            changed = None if record is None else change(record)
            if record is None or changed is None:
                return None
            paths, gone = changed
            updated = dataclasses.replace(record, paths=tuple(paths)[-MAX_PATHS:])
            if self._swap(updated, text) if updated.paths else self._swap_entry(key, text, None, journal=True):
                self._forget_path_entries(gone, record.digest)
                if not updated.paths:
                    self.forget_identity(record.digest, record.content_key, ())
                return record
        raise StoreError(f"{key}: the record kept changing under other writers ({SAVE_ATTEMPTS} attempts)")

    def take_back_misses(self, count: int) -> None:
        """Take back ``count`` misses counted for files looked up again in the same run
        (copies of a content analysed meanwhile): each is counted once, by its second
        answer. A run of a file and its copy counted 3 look-ups for 2 files (a hit rate
        of 0.33 for half of them answered from the store)."""
        self._pending["misses"] -= count

    def _count(self, name: str) -> None:
        self._pending[name] += 1
        self._pending_lookups += 1
        if self._pending_lookups >= STATS_FLUSH_LOOKUPS:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Add the look-ups counted in memory to the shared counters."""
        if self._pending_lookups and self.writable:
            with self._unless_read_only():
                self.backend.add_counters(self._pending)
            self._pending = dict.fromkeys(self._pending, 0)
            self._pending_lookups = 0

    # -- writes -------------------------------------------------------------------------------

    def _write_record(self, record: Record, *, journal: bool = True) -> None:
        with self.journaled([record.key] if journal else []):
            self._put(record.key, record_text(record), census_tag(record))

    def save(self, identity: FileIdentity, result: TrackResult) -> Record:
        """Store an analysed file, merged with the record already stored for its
        content: a record that heard more of the track is never replaced by one that
        heard less (the new path and batch values are still added); batch values and
        the validation verdict survive a re-analysis that lacks them. Forgets the
        file's failure. ``identity.digest`` must be known."""
        if identity.digest is None or result.streaming is None:
            raise StoreError(f"{identity.path}: cannot store a result without its digest and fingerprint")
        fresh = record_from_result(identity, result, time.time())
        checked_for_storing(fresh)
        record = self._swap_merged(fresh, identity)
        entry = self._read_path_entry(identity.path)
        self._claim_path(identity, entry, record.params_key)
        self._add_candidate(identity.content_key, identity.digest)
        self._delete(f"fail:{path_key(identity.path)}")
        self._maintain()
        return record

    def _swap_merged(self, fresh: Record, identity: FileIdentity) -> Record:
        """Write ``fresh`` merged with the record stored under its key, as one
        compare-and-swap: a record another process wrote between the read and the write
        (a complete one, while this run saves a preview) is read again and merged, never
        overwritten. Returns the record written."""
        for _ in range(SAVE_ATTEMPTS):
            text, existing = self.read_current(fresh.key)
            merged = fresh if existing is None else merged_record(existing, fresh)
            record = merged.with_path(identity.path, identity.mtime_ns)
            if self._swap(record, text):
                return record
        raise StoreError(f"{identity.path}: its record kept changing under other writers ({SAVE_ATTEMPTS} attempts)")

    def _swap(self, record: Record, expected: str | None, *, journal: bool = True) -> bool:
        """Write ``record`` if its key still holds ``expected`` (``Backend.swap``), then
        forget what was read ahead of it and journal the change (unless ``journal`` is
        False: a new last-used time changes nothing a search index holds); False if
        another writer came first."""
        return self._swap_entry(record.key, expected, record_text(record), census_tag(record), journal=journal)

    def _add_candidate(self, content: str, digest: str) -> None:
        self._change_candidates(content, lambda known: known if digest in known else
                                [*known, digest][-MAX_CANDIDATES:])

    def set_validation(self, record: Record, validation: Validation | None) -> Record | None:
        """Store ``validation`` (a verdict on ``record``'s values) in the record as it is
        now, as one compare-and-swap: paths or batch values another process wrote
        meanwhile are kept, where writing back the record read before the validation
        dropped them. A verdict on values analysed again meanwhile is stale and not
        stored (None)."""
        for _ in range(SAVE_ATTEMPTS):
            text, current = self.read_current(record.key)
            if current is None or (current.streaming, current.batch) != (record.streaming, record.batch):
                return None
            updated = dataclasses.replace(current, validation=validation)
            checked_for_storing(updated)   # a similarity of 1.5 was stored, then never read back
            if self._swap(updated, text):
                self._maintain()
                return updated
        raise StoreError(f"{record.path}: its record kept changing under other writers ({SAVE_ATTEMPTS} attempts)")

    def update_record(self, record: Record) -> None:
        """Write back a record changed by the caller (e.g. a validation verdict); an
        UnstorableError, and nothing written, for one the store could not read back
        (it replaced the good record with a bad entry)."""
        checked_for_storing(record)
        self._write_record(record)
        self._maintain()

    def save_failure(self, path: str, identity: FileIdentity | None, error_type: str, message: str,
                     limit_s: float | None = None) -> Failure:
        """Record that ``path`` could not be analysed; skipped until it changes. The file
        as ``identity`` saw it before the analysis is what failed (a fresh stat could be
        of a file that replaced it meanwhile, which would then be skipped unread).
        ``limit_s``: a timeout's time limit (a longer one tries the file again)."""
        resolved = identity.path if identity else resolve(path)
        if identity is not None:
            size, mtime_ns = identity.size, identity.mtime_ns
        else:
            try:
                st = stat_regular(resolved)
                size, mtime_ns = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime_ns = -1, -1
        failure = Failure(resolved, error_type, message, size, mtime_ns, time.time(), limit_s)
        self._put(f"fail:{path_key(resolved)}", dumps(failure_to_json(failure)), FAILURE_TAG)
        return failure

    def forget_paths(self, record: Record, paths: Sequence[str]) -> None:
        """Remove these paths of the record stored under ``record``'s key, written once
        (the record goes with its last path), and their path entries that name its
        content (``rewrite_paths``)."""
        gone = set(paths)
        self.rewrite_paths(record.key, lambda current: (
            [seen for seen in current.paths if seen.path not in gone], sorted(gone)))

    def delete_record(self, record: Record) -> None:
        """Remove a record and the path entries that point at it (and its content's
        candidate entry when no record of it remains)."""
        self.forget_paths(record, [seen.path for seen in record.paths])

    def delete_record_alone(self, key: str) -> bool:
        """Delete the record under ``key`` and nothing else (a compare-and-swap): a
        record of another fingerprint version whose content has a record of this one,
        which shares its path and candidate entries (``delete_record`` would forget
        them). False when it was gone already."""
        for _ in range(SAVE_ATTEMPTS):
            text, _ = self.read_current(key)
            if text is None:
                return False
            if self._swap_entry(key, text, None, journal=True):
                return True
        raise StoreError(f"{key}: the record kept changing under other writers ({SAVE_ATTEMPTS} attempts)")

    def delete_failure(self, path: str) -> None:
        self._delete(f"fail:{path_key(path)}")

    def clear(self) -> int:
        """Remove every record, failure and counter; returns the entries removed."""
        self._pending = dict.fromkeys(self._pending, 0)
        self._pending_lookups = 0
        return self.backend.clear()

    def record_for_path(self, path: str | os.PathLike[str], params_key: str | None = None) -> Record | None:
        """The newest record of a file's content, not counted as a look-up: the one
        under ``params_key`` when stored (one read), else of any parameters (a key
        range on diskcache, a keyspace scan on Redis). Raises OSError when the file
        cannot be read. ``stream:NAME`` (what ``cache list`` shows of a named stream)
        is that stream's record, unless a file of that name exists."""
        text = os.fspath(path)
        stream = isinstance(text, str) and text.startswith(STREAM_PREFIX) and not os.path.lexists(text)
        if stream:
            try:
                return self._newest_record(stream_identity(text[len(STREAM_PREFIX):]), params_key)
            except ParameterError:   # a name no stream is stored under ("stream:"): it was "--name '': ..."
                return None
        resolved = resolve(path)
        identity, entry = self._identify(resolved, want_digest=True)
        record = self._newest_record(identity, params_key)
        if _misled(record, identity, entry):   # as in a look-up: the entry led to another file's record
            identity, _ = self._identify(resolved, want_digest=True, trust_entry=False)
            record = self._newest_record(identity, params_key)
        return record

    def _newest_record(self, identity: FileIdentity, params_key: str | None) -> Record | None:
        """The record of ``identity``'s content under ``params_key``, else its newest of
        any parameters."""
        if params_key is not None and identity.digest is not None:
            record = self.read_record(record_key(identity.digest, params_key))
            if record is not None:
                return record
        candidates = [self.read_record(k) for k in self.backend.keys(f"rec:{identity.digest}:")]
        return max((c for c in candidates if c is not None), key=lambda r: r.analysed_at, default=None)

    def remove_expired(self) -> None:
        """Records past their TTL removed now, with their identity entries (the size
        limit is left alone: it is the running command's): a search first, or its saved
        index kept serving them until some process wrote to the store. Rows carry their
        own expiry, so whatever this run's TTL (a run without `--store-ttl` too)."""
        with contextlib.suppress(StoreError):   # a read-only store: read as it is
            self._maintain(evict=False)

    def stats(self, *, recount: bool = False) -> dict[str, Any]:
        """Counts kept across runs and the census of the store, from maintained
        counters (no record is read; ``recount`` or a store never counted counts
        every entry once). Plain data. Records past their TTL are removed first (and
        counted as expiries), or the census still counted them; the size limit is left
        alone (it is the running command's: `--store-size-mb 4 cache stats` of a store
        of 3,000 records evicted 2,473 of them)."""
        self.flush_stats()
        self.remove_expired()
        counters = {name: self.backend.counter(name) for name in COUNTERS}
        lookups = counters["hits"] + counters["misses"]
        counts, note = (None, None) if recount else self.backend.census()
        if counts is None:
            counts, note = self.backend.recount(tag_of_entry), None
        data_bytes, meta_bytes = self.backend.volumes()
        return {
            "location": self.location, **census_summary(counts), "size_bytes": data_bytes + (meta_bytes or 0),
            "data_bytes": data_bytes, "meta_bytes": meta_bytes,
            "size_limit_bytes": self.backend.size_limit, "ttl_s": self.backend.ttl_s, **counters,
            "lookups": lookups, "hit_rate": counters["hits"] / lookups if lookups else None,
            "bad_entries": len(self.bad_entries), "census_exact": note is None,
            "warnings": [w for w in [self.backend.policy_warning(), note] if w],
        }

    def record_count(self, kind: str = "entries", version: int | None = None) -> int | None:
        """How many records the store holds (``kind``: entries, or one of the census's
        other counts, e.g. previews; ``version``: of that fingerprint version only),
        from its kept census (no scan); None when it keeps none (a store that must be
        counted first). A former version's previews are no previews of this one: an
        upgrade run cannot finish them."""
        counts, _ = self.backend.census()
        if counts is None:
            return None
        if version is not None:
            counts = {tag: n for tag, n in counts.items() if tag.startswith(f"rec:v{version}:")}
        return int(census_summary(counts)[kind])

    def other_version_counts(self) -> tuple[int, int]:
        """How many records are of a former and of a later fingerprint version than this
        fpcli's (from the kept census; 0, 0 when the store keeps none). An analysis of
        a former record's file makes it anew (and prune then drops it); a later one
        is another fpcli's, which this one can neither use nor replace."""
        counts, _ = self.backend.census()
        if counts is None:
            return 0, 0
        by_version = census_summary(counts)["by_version"]
        # A version that is no number is none this fpcli knows: another fpcli's, as a later one.
        versions = [(int(v) if v.isascii() and v.isdigit() else FINGERPRINT_VERSION + 1, n)
                    for v, n in by_version.items()]
        return (sum(n for v, n in versions if v < FINGERPRINT_VERSION),
                sum(n for v, n in versions if v > FINGERPRINT_VERSION))

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


F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def storing_optional(store: FingerprintStore) -> Iterator[None]:
    """``store.storing_optional`` set for the block: a search of a query not yet stored,
    and a validate whose fingerprints must be computed, failed with "is full" on a
    Redis full under noeviction, where the answer needs no write."""
    before, store.storing_optional = store.storing_optional, True
    try:
        yield
    finally:
        store.storing_optional = before


def results_optional(function: F) -> F:
    """``function(store, ...)`` run ``storing_optional``."""
    @functools.wraps(function)
    def wrapped(store: FingerprintStore, *args: Any, **kwargs: Any) -> Any:
        with storing_optional(store):
            return function(store, *args, **kwargs)
    return cast(F, wrapped)


def _with_inode(identity: FileIdentity) -> FileIdentity:
    """``identity`` with the inode of the file at its path when it has none (a prune or
    a search confirmed the file by its digest, not by a stat of ours): an entry written
    without one is trusted whatever file is put at the path."""
    if identity.inode is not None:
        return identity
    try:
        return dataclasses.replace(identity, inode=stat_regular(identity.path).st_ino)
    except OSError:
        return identity


def _misled(record: Record | None, identity: FileIdentity, entry: dict[str, Any] | None) -> bool:
    """Whether ``identity`` took its digest from the path ``entry`` and ``record``, the
    record that digest names, is not this file's (``_entry_agrees``). A path entry
    edited or left wrong served another track's record for this file, which then came
    up in its own search hits, and verify called the store sound."""
    return record is not None and entry is not None and identity.digest == entry["digest"] and \
        not _entry_agrees(record, identity)


def _entry_agrees(record: Record, identity: FileIdentity) -> bool:
    """Whether ``record`` can be the file of ``identity``: its content key, and its paths
    list the file's unless they are full (only the latest MAX_PATHS are kept)."""
    if record.content_key != identity.content_key:
        return False
    return record.seen_at(identity.path) is not None or len(record.paths) >= MAX_PATHS
