"""Reading a store's entries: one at a time (a look-up's reads) and all of them in
key-ordered batches (exports, search indexes, verify). One bad entry is one bad entry:
it is skipped, listed in ``bad_entries`` for the caller to report, and the rest is read.

``StoreReader`` is the reading half of ``core.FingerprintStore``; ``StoreImports`` the
bulk writes of an import.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fpcli.errors import BadEntryError, StoreError
from fpcli.params import FINGERPRINT_VERSION
from fpcli.store.census import FAILURE_TAG, census_tag
from fpcli.store.index_rows import IndexRow, index_row, index_row_of
from fpcli.store.protocol import BATCH, Backend, Put, Tag
from fpcli.store.records import Failure, Record, RecordFacts, SeenFacts, merged_record, path_key
from fpcli.store.schema import (
    checked_for_storing,
    dumps,
    dumps_finite,
    failure_to_json,
    is_hex32,
    loads,
    parse_failure,
    parse_path_entry,
    parse_record,
    parse_records,
    path_entry_text,
    record_text,
    storable_path,
)
from fpcli.store.timbre_block import sound_covariances

if TYPE_CHECKING:   # the gate (msgspec) is imported by bulk reads and imports only
    from fpcli.store.fast_schema import VouchedRecord


MAX_CANDIDATES = 16              # digests kept per content key (distinct files with equal heads and tails)
CANDIDATE_ATTEMPTS = 20          # compare-and-swap rounds of one candidate list against concurrent writers
T = TypeVar("T")


class StoreReader:
    """Reads over ``backend``; bad entries met are appended to ``bad_entries``."""

    backend: Backend
    bad_entries: list[BadEntryError]

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.bad_entries = []  # skipped while reading, for the CLI to report
        # Entries read ahead (``read_ahead``) for the reads about to ask for them: texts
        # of present entries as parsed JSON, and records parsed as one batch. Every write through
        # ``_put`` / ``_delete`` drops its key, so a read never sees an entry older than
        # this process's own last write. A record stays until the next batch: many
        # paths of one content (links, copies) share it, parsed once.
        self._ahead_data: dict[str, Any] = {}
        self._ahead_records: dict[str, Record | BadEntryError] = {}

    # -- reading entries (one bad entry is one bad entry) -----------------------------------

    def _read(self, key: str) -> Any | None:
        data = self._ahead_data.pop(key, None)
        if data is not None:
            return data
        text = self.backend.get(key)
        return None if text is None else loads(key, text)

    def read_record(self, key: str) -> Record | None:
        """The record under ``key``; None if absent or bad (a bad one is remembered in
        ``bad_entries`` and will be overwritten by the next save)."""
        try:
            ahead = self._ahead_records.get(key)
            if isinstance(ahead, BadEntryError):
                del self._ahead_records[key]  # read again, and reported, as any bad entry is
                raise ahead
            if ahead is not None:
                return ahead
            data = self._read(key)
            return None if data is None else parse_record(key, data)
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def read_records(self, keys: Sequence[str]) -> list[Record | None]:
        """``read_record`` of each of ``keys``, read BATCH keys per backend call and parsed
        as batches (the typed gate, covariances checked as one stack): a search whose
        candidates' files were all gone read 26,000 records one by one, 16 s of its
        time at 20,000 records."""
        found: dict[str, Record | None] = {}
        for start in range(0, len(keys), BATCH):
            chunk = [key for key in dict.fromkeys(keys[start:start + BATCH]) if key not in found]
            ahead = [key for key in chunk if key in self._ahead_records]
            found.update((key, self.read_record(key)) for key in ahead)
            rest = [key for key in chunk if key not in found]
            found.update((record.key, record) for record, _ in
                         self._parse_batch(list(zip(rest, self.backend.get_many(rest), strict=True))))
        return [found.get(key) for key in keys]

    def read_current(self, key: str) -> tuple[str | None, Record | None]:
        """(the text under ``key`` as the backend holds it now, its record): read past
        the read-ahead, for a compare-and-swap (``Backend.swap``). A bad entry is its
        text and None (remembered in ``bad_entries``), an unreadable one (None, None)."""
        try:
            text = self.backend.get(key)
        except BadEntryError as exc:   # a pickled or undecodable value: the backend gives no text
            self.bad_entries.append(exc)
            return None, None
        if text is None:
            return None, None
        try:
            return text, parse_record(key, loads(key, text))
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return text, None

    def read_ahead(self, keys: Sequence[str], records: Callable[[dict[str, Any]], str | None]) -> None:
        """Read the entries under ``keys`` in one backend call, and then the records named
        by ``records(entry)`` of those that are path entries (None: no record), parsed
        as one batch (their covariances checked in one stack). An entry read ahead is
        served once, by the next read of it, a record by every read of it until the
        next batch or a write of it (the paths of one content share it); absent and
        unreadable ones are left to that read, which reports them as it always does."""
        self.forget_ahead()
        record_keys: list[str] = []
        for key, text in zip(keys, self.backend.get_many(keys), strict=True):
            try:
                data = None if text is None else loads(key, text)
                entry = parse_path_entry(key, data) if data is not None and key.startswith("path:") else None
            except BadEntryError:
                continue
            if data is not None:
                self._ahead_data[key] = data
            wanted = None if entry is None else records(entry)
            if wanted is not None:
                record_keys.append(wanted)
        loaded: list[tuple[str, Any]] = []
        unique = list(dict.fromkeys(record_keys))
        for key, text in zip(unique, self.backend.get_many(unique), strict=True):
            if text is not None:
                try:
                    loaded.append((key, loads(key, text)))
                except BadEntryError as exc:
                    self._ahead_records[key] = exc
        self._ahead_records.update(zip([key for key, _ in loaded], parse_records(loaded), strict=True))

    def forget_ahead(self) -> None:
        self._ahead_data.clear()
        self._ahead_records.clear()

    def _put(self, key: str, text: str, tag: Tag = None) -> None:
        self._ahead_data.pop(key, None)
        self._ahead_records.pop(key, None)
        self.backend.put(key, text, tag)

    def _delete(self, key: str) -> None:
        self._ahead_data.pop(key, None)
        self._ahead_records.pop(key, None)
        self.backend.delete(key)

    def _swap_entry(self, key: str, expected: str | None, text: str | None, tag: Tag = None, *,
                    journal: bool = False) -> bool:
        """``Backend.swap`` (``text`` None: delete), then forget what was read ahead of
        ``key``; with ``journal``, the change is journaled before and after it
        (``journaled``); False if another writer came first."""
        making_room = text is None or (expected is not None and len(text) <= len(expected))
        with self.journaled([key] if journal else [], making_room=making_room):
            if not self.backend.swap(key, expected, text, tag):
                return False
        self._ahead_data.pop(key, None)
        self._ahead_records.pop(key, None)
        return True

    @contextlib.contextmanager
    def journaled(self, keys: Sequence[str], *, making_room: bool = False) -> Iterator[None]:
        """Journal ``keys`` before the writes of the block and again after them. The
        entry before makes sure no write is stored unjournaled: journaled only after,
        a write whose journal entry failed (a full disk) or never came (a kill between
        the two) stood in the store where no search index would ever read it. The entry
        after makes an index patched in between (from the first entry, before the
        write) read it again. A block that raises is journaled before only, which costs
        a reader one needless re-read."""
        if not keys:
            yield
            return
        self.backend.journal_extend(list(keys), making_room=making_room)
        yield
        self.backend.journal_extend(list(keys), making_room=making_room)

    def _forget_path_entries(self, paths: Iterable[Any], digest: str) -> None:
        """Delete the path entries of ``paths`` that name ``digest`` (or that are gone)."""
        for path in paths:
            if storable_path(path):
                entry = self._read_path_entry(path)
                if entry is None or entry["digest"] == digest:
                    self._delete(f"path:{path_key(path)}")

    def digests_of(self, paths: Sequence[str]) -> dict[str, str]:
        """path -> content digest of each path (resolved) whose path entry says its size
        and mtime are the file's now: what the store knows of those files unread, in
        one backend call per BATCH paths. Changed, unknown and unreadable files
        and bad entries are left out (not counted as look-ups)."""
        found: dict[str, str] = {}
        for chunk in _batches(paths, BATCH):
            keys = [f"path:{path_key(path)}" for path in chunk]
            for path, key, text in zip(chunk, keys, self.backend.get_many(keys), strict=True):
                try:
                    entry = None if text is None else parse_path_entry(key, loads(key, text))
                    st = None if entry is None else os.stat(path)
                except (BadEntryError, OSError):
                    continue
                if entry is not None and st is not None and entry["path"] == path and \
                        (entry["size"], entry["mtime_ns"]) == (st.st_size, st.st_mtime_ns):
                    found[path] = entry["digest"]
        return found

    def _read_path_entry(self, path: str) -> dict[str, Any] | None:
        return self._read_checked(f"path:{path_key(path)}", parse_path_entry)

    def failure_for(self, path: str) -> Failure | None:
        """The failure recorded for the resolved ``path``, read by its key (no look-up
        counted as a hit or miss); None when there is none or it is bad."""
        return self._read_checked(f"fail:{path_key(path)}", parse_failure)

    def _read_checked(self, key: str, parse: Callable[[str, Any], T]) -> T | None:
        """``parse(key, data)`` of the entry under ``key``; None if absent or bad (a bad
        one is remembered in ``bad_entries``)."""
        try:
            data = self._read(key)
            return None if data is None else parse(key, data)
        except BadEntryError as exc:
            self.bad_entries.append(exc)
            return None

    def _maintain(self, *, evict: bool = True) -> None:
        """The backend's expiry and (with ``evict``) size limit, then the identity
        entries of the records it removed are forgotten: left behind, they filled the
        size limit over time (a store of 1 MiB held nothing else, and evicted every new
        record at once)."""
        self.backend.maintain(evict=evict)
        for key, text in self.backend.removed_records():
            try:
                data = loads(key, text)
            except BadEntryError:
                continue
            if isinstance(data, dict) and isinstance(data.get("paths"), list):
                paths = [p.get("path") for p in data["paths"] if isinstance(p, dict)]
                self.forget_identity(data.get("digest"), data.get("content_key"), paths)

    def forget_identity(self, digest: Any, content: Any, paths: Iterable[Any]) -> None:
        """Forget the path entries of ``paths`` that name ``digest`` and ``digest`` in the
        candidate list of ``content``, unless a record of that content remains (under
        other parameters). Odd values (a removed record may be a bad one) are skipped."""
        if not isinstance(digest, str) or any(True for _ in self.backend.keys(f"rec:{digest}:")):
            return
        self._forget_path_entries(paths, digest)
        if is_hex32(content):   # a record's content key: a bad one names no candidate list
            self._change_candidates(content, lambda known: [d for d in known if d != digest])

    def _change_candidates(self, content: str, change: Callable[[list[str]], list[str]]) -> None:
        """Give the candidate list of ``content`` what ``change`` makes of it as it is
        now (an empty list: the entry goes), as one compare-and-swap, read and changed
        again when another process wrote it meanwhile: a prune that dropped a record
        and a run that stored another of the same content each wrote back the list it
        had read, and one of the two changes was lost (a record without its candidate
        entry is found by content no more)."""
        key = f"cand:{content}"
        for _ in range(CANDIDATE_ATTEMPTS):
            try:
                text = self.backend.get(key)
            except BadEntryError:   # unreadable (a value file gone): replaced, as a swap sees none
                text = None
            try:
                data = None if text is None else loads(key, text)
            except BadEntryError:
                # Not JSON: replaced, the swap comparing with the text as it is (taken for
                # none, it never matched: "the candidate list kept changing under other
                # writers", and analyze stopped at that file).
                data = None
            known = [d for d in data if isinstance(d, str)] if isinstance(data, list) else []
            wanted = change(known)
            if wanted == known or self._swap_entry(key, text, dumps(wanted) if wanted else None):
                return
        raise StoreError(f"{key}: the candidate list kept changing under other writers "
                         f"({CANDIDATE_ATTEMPTS} attempts)")

    def _candidates(self, content: str) -> list[str]:
        try:
            data = self._read(f"cand:{content}")
        except BadEntryError:
            return []
        return [d for d in data if isinstance(d, str)] if isinstance(data, list) else []

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

    def sound_texts(self, prefix: str = "rec:") -> Iterator[tuple[str, Record | None]]:
        """(stored text, None) of every readable record whose key starts with
        ``prefix`` that ``fast_schema`` vouches for, and (text, record) of the others
        the full parser accepts: what an export needs (the text of each sound record)
        at a third of the cost of parsing every record whole. Bad entries are skipped
        and listed in ``bad_entries``, as ``record_texts`` does."""
        from fpcli.store.fast_schema import sound_texts

        for batch in _batches(self.backend.items(prefix), BATCH):
            sound = sound_texts([text for _, text in batch])
            slow = [entry for entry, ok in zip(batch, sound, strict=True) if not ok]
            yield from ((text, None) for (_, text), ok in zip(batch, sound, strict=True) if ok and text is not None)
            yield from ((text, record) for record, text in self._parse_batch(slow))

    def index_rows(self, kind: str, params_key: str) -> Iterator[IndexRow]:
        """What a search index needs of every complete current record of ``kind``
        under ``params_key``, in key order, BATCH at a time. A plain current record takes
        a fast path (``index_rows.index_row``: the fields an index uses, and its covariance
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


class StoreImports(StoreReader):
    """The bulk writes of ``cache import``."""

    def import_records(self, records: list[Record]) -> list[Record]:
        """``import_batch`` of records alone; returns the records as written. An
        UnstorableError, and nothing written, when one of them could not be read back
        (records a caller made or changed: ``cache import`` parses its lines first)."""
        for record in records:
            checked_for_storing(record)
        return self.import_batch(list(records)).records

    def import_batch(self, items: Sequence[Record | VouchedRecord]) -> ImportedBatch:
        """Store a batch of records read from an export (in the export's order): each
        merged with the stored one as a save merges (``merged_record``: a preview never
        replaces a complete record, batch values and a verdict are kept, paths united;
        an import had written over the stored record whatever it held), with their path
        entries and candidates, in one transaction (diskcache: a batch is stored whole
        or not at all; written in slices of BATCH entries, a kill -9 between them left
        records without their path entries) or one pipeline (Redis: not a MULTI, which
        a Redis at its maxmemory refuses whole where a pipeline lets it evict); a
        journal extension before and after it (``journaled``: two changes per record
        returned) and one ``maintain`` per batch.

        A ``VouchedRecord`` (an export line the gate vouched for, ``fast_schema``) is
        stored as its text came, without a ``Record`` built and written again (that was
        most of an import's time), unless its key is stored already or comes twice in
        the batch: then it is parsed and merged as the others are. Returns what was
        written, one per key."""
        self.forget_ahead()
        written: dict[str, Record | VouchedRecord] = {}
        new: set[str] = set()
        pending = list(items)
        for _ in range(IMPORT_ATTEMPTS):
            plan = self._import_plan(pending)
            with self.journaled(plan.keys):
                changed = self.backend.put_many_unless_changed(plan.puts, plan.expected)
            written.update((key, item) for key, item in plan.written.items() if key not in changed)
            new |= {key for key in plan.new if key not in changed}
            if not changed:
                break
            # Another process wrote some of these entries since they were read: the
            # records they concern are merged again with what it stored.
            pending = [item for item in pending if _touches(item, changed)]
        else:
            raise StoreError(f"other processes kept changing the records of this batch ({IMPORT_ATTEMPTS} attempts)")
        # By what the import brought (each record's own paths and analysis time), not the
        # records as merged: a merged record's paths include stored ones it never saw.
        self._forget_failures_seen_past([item for item in items if item.key in written])
        self._maintain()
        return ImportedBatch([r for r in written.values() if isinstance(r, Record)],
                             [v for v in written.values() if not isinstance(v, Record)], len(new))

    def _import_plan(self, items: Sequence[Record | VouchedRecord]) -> _ImportPlan:
        """The writes of ``import_batch`` and the stored texts they were merged with."""
        plan = _ImportPlan()
        vouched, records = self._unmerged(items)
        unique = _folded(records)
        keys = [r.key for r in unique]
        stored = dict(zip(keys, self.backend.get_many(keys), strict=True))
        present = {key: text for key, text in stored.items() if text is not None}
        known = {record.key: record for record, _ in self._parse_batch(list(present.items()))}
        merged: list[Record] = []
        for record in unique:
            existing = known.get(record.key)
            if existing is not None:
                record = merged_record(existing, record)
            else:
                plan.new.add(record.key)
            merged.append(record)
            plan.puts.append((record.key, record_text(record), census_tag(record)))
            plan.expected[record.key] = stored[record.key]
            plan.written[record.key] = record
        for v in vouched:   # ``_unmerged`` found no entry under these keys
            plan.new.add(v.key)
            plan.puts.append((v.key, v.text, census_tag(v.record)))
            plan.expected[v.key] = None
            plan.written[v.key] = v
        facts: list[RecordFacts] = [*merged, *(v.record for v in vouched)]
        plan.puts += self._path_puts(facts, plan.expected)
        plan.puts += self._candidate_puts(facts, plan.expected)
        return plan

    def _unmerged(self, items: Sequence[Record | VouchedRecord]) -> tuple[list[VouchedRecord], list[Record]]:
        """The vouched records to store as they came (a key neither stored nor twice in
        the batch), and the records to fold and merge, in the batch's order (the fold
        merges records of one key in that order), vouched ones of other keys parsed."""
        counts = collections.Counter(item.key for item in items)
        single = [item for item in items if not isinstance(item, Record) and counts[item.key] == 1]
        single_keys = [v.key for v in single]
        stored = {key for key, text in zip(single_keys, self.backend.get_many(single_keys), strict=True)
                  if text is not None}
        kept = [v for v in single if v.key not in stored]
        taken = {v.key for v in kept}
        records = [item if isinstance(item, Record) else parse_record(item.key, loads(item.key, item.text))
                   for item in items if item.key not in taken]
        return kept, records

    def _path_puts(self, records: Sequence[RecordFacts], expected: dict[str, str | None]) -> list[Put]:
        """The path entries of a batch, but where the store saw a path's file at the same
        time or later than the record did: an older export imported into a live store
        put back each path's old size, time and content (a file rewritten since pointed
        at its old audio again, and a touched one was read whole at every look-up)."""
        wanted: dict[str, tuple[SeenFacts, RecordFacts]] = {}
        for record in records:
            for seen in record.paths:   # two records of a batch naming one path: the later sight
                key = path_key(seen.path)
                if key not in wanted or wanted[key][0].mtime_ns < seen.mtime_ns:
                    wanted[key] = (seen, record)
        keys = [f"path:{key}" for key in wanted]
        puts: list[Put] = []
        for key, (seen, record), text in zip(keys, wanted.values(), self.backend.get_many(keys), strict=True):
            try:
                stored = None if text is None else parse_path_entry(key, loads(key, text))
            except BadEntryError:
                stored = None   # a bad entry is replaced
            if stored is not None and stored["mtime_ns"] >= seen.mtime_ns:
                continue
            expected[key] = text
            puts.append((key, path_entry_text(seen.path, record.size, seen.mtime_ns, record.digest,
                                              record.content_key), None))
        return puts

    def _candidate_puts(self, records: Sequence[RecordFacts], expected: dict[str, str | None]) -> list[Put]:
        """The candidate lists of a batch, each read once and written once (the text
        read in ``expected``)."""
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
                expected[f"cand:{content}"] = text
                puts.append((f"cand:{content}", dumps_finite([*known, *added][-MAX_CANDIDATES:]), None))
        return puts

    def import_failures(self, failures: list[Failure]) -> int:
        """Store the failures of an export but those whose path's entry saw a later file
        at the path (a record of the file as it is since is stored, which look-ups
        answer with: the failure was listed by ``cache failures`` and counted by
        ``stats`` beside it). Returns the number left out. A failure of the very file
        a record is of stays, as in the store it came from (a forced analysis that
        failed after a good one). Times are the files' modification times
        (``_seen_after``): a good file put back with an older time (``cp -p``) leaves its
        later failure beside its record."""
        keys = [f"path:{path_key(f.path)}" for f in failures]
        kept = [failure for failure, key, text in zip(failures, keys, self.backend.get_many(keys), strict=True)
                if not _seen_since(key, text, failure)]
        self.backend.put_many([(f"fail:{path_key(f.path)}", dumps(failure_to_json(f)), FAILURE_TAG)
                               for f in kept])
        return len(failures) - len(kept)

    def _forget_failures_seen_past(self, records: Sequence[Record | VouchedRecord]) -> None:
        """Delete the failures of the paths these imported records saw as later files
        (``_seen_after``; a save deletes its path's failure; an import had left it, so a
        file mended since stood as failed and as recorded at once)."""
        sights: dict[str, tuple[int, float]] = {}   # failure key -> latest file time, latest analysis
        for item in records:
            facts: RecordFacts = item if isinstance(item, Record) else item.record
            for seen in facts.paths:
                key = f"fail:{path_key(seen.path)}"
                mtime_ns, when = sights.get(key, (seen.mtime_ns, facts.analysed_at))
                sights[key] = (max(mtime_ns, seen.mtime_ns), max(when, facts.analysed_at))
        keys = list(sights)
        for key, text in zip(keys, self.backend.get_many(keys), strict=True):
            if text is None:
                continue
            try:
                failure = parse_failure(key, loads(key, text))
            except BadEntryError:
                continue   # a bad entry is verify's to report
            if _seen_after(failure, *sights[key]):
                self._swap_entry(key, text, None)   # not if another writer changed it meanwhile


IMPORT_ATTEMPTS = 20   # rounds of an import batch's compare-and-swap against other writers


@dataclasses.dataclass
class _ImportPlan:
    """The writes of one round of ``import_batch``: the puts, the text each written key
    held when it was read (None: absent), and the record (or vouched line) written
    under each record key."""

    puts: list[Put] = dataclasses.field(default_factory=list)
    expected: dict[str, str | None] = dataclasses.field(default_factory=dict)
    written: dict[str, Record | VouchedRecord] = dataclasses.field(default_factory=dict)
    new: set[str] = dataclasses.field(default_factory=set)   # record keys no stored record held

    @property
    def keys(self) -> list[str]:
        """The record keys written (what the journal names)."""
        return list(self.written)


def _seen_after(failure: Failure, mtime_ns: int, analysed_at: float | None = None) -> bool:
    """Whether a file seen with modification time ``mtime_ns`` supersedes ``failure``:
    a later file than the one it is of. A failure of a file that could not be stat'ed
    (time -1: a permission denied, mended by a chmod that leaves the time as it was)
    has no file time: a record ``analysed_at`` after it supersedes it, where an import
    knows when (the record it imports); else it stays, as in the store it came from
    (there a save drops it: one beside a record is later than the record)."""
    if failure.mtime_ns < 0:
        return analysed_at is not None and analysed_at > failure.failed_at
    return mtime_ns > failure.mtime_ns


def _seen_since(key: str, text: str | None, failure: Failure) -> bool:
    """Whether the path entry ``text`` (under ``key``; None: absent) saw a later file
    than ``failure`` is of (``_seen_after``); a bad entry did not."""
    if text is None:
        return False
    try:
        return _seen_after(failure, int(parse_path_entry(key, loads(key, text))["mtime_ns"]))
    except BadEntryError:
        return False


def _touches(item: Record | VouchedRecord, changed: set[str]) -> bool:
    """Whether ``item``'s record, one of its path entries or its candidate list is
    among the ``changed`` keys."""
    facts: RecordFacts = item if isinstance(item, Record) else item.record
    return item.key in changed or f"cand:{facts.content_key}" in changed or \
        any(f"path:{path_key(seen.path)}" in changed for seen in facts.paths)


@dataclasses.dataclass
class ImportedBatch:
    """What ``import_batch`` wrote: the records it built (merged with stored ones) and
    the vouched ones it stored as they came; one per key."""

    records: list[Record]
    vouched: list[VouchedRecord]
    new: int = 0   # of them, records of keys the store held none of

    def __len__(self) -> int:
        return len(self.records) + len(self.vouched)

    def keys(self) -> list[str]:
        return [r.key for r in self.records] + [v.key for v in self.vouched]


def _folded(records: list[Record]) -> list[Record]:
    """One record per key, in first-seen order: records of one key (a file's preview and
    its whole record in one export) merged in their order, as saves would have."""
    by_key: dict[str, Record] = {}
    for record in records:
        earlier = by_key.get(record.key)
        by_key[record.key] = record if earlier is None else merged_record(earlier, record)
    return list(by_key.values())


def _batches(items: Iterable[T], size: int) -> Iterator[tuple[T, ...]]:
    """Tuples of ``size`` items (the last shorter): ``itertools.batched`` of Python 3.12."""
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
