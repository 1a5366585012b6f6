"""Store maintenance: prune, verify, repair, export and import.

Exports are JSON Lines (a header line, then one ``{"type": "record"|"failure",
"data": ...}`` per line); imports parse JSON only and check every field with the same
parser a store read uses, so an imported record can never break a later command.

Everything here streams: entries are read in batches (``Backend.items``), never as a
list of every key, and imports write a batch of records per transaction (diskcache)
or pipeline (Redis), so memory stays flat and throughput does not depend on the size
of the store.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import io
import itertools
import json
import math
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from fpcli.errors import BadEntryError, StoreError, StoreFullError
from fpcli.files import atomic_text
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.store.census import FAILURE_TAG, census_summary, census_tag, tag_of_entry
from fpcli.store.core import FingerprintStore, PathChange
from fpcli.store.protocol import BATCH, DATA_LOST_KEY, DATA_LOST_PROBLEM
from fpcli.store.reading import ImportedBatch
from fpcli.store.records import (
    MAX_PATHS,
    Failure,
    FileIdentity,
    FileState,
    PathSeen,
    Record,
    file_state,
    path_key,
    record_key,
    stored_file_state,
)
from fpcli.store.schema import (
    RECORD_LINE_PREFIX,
    dumps,
    failure_to_json,
    is_hex32,
    loads,
    parse_failure,
    parse_path_entry,
    parse_record,
    parse_records,
    record_line,
    record_text,
)

if TYPE_CHECKING:   # the gate (msgspec) is imported by an import only
    from fpcli.store.fast_schema import VouchedRecord

EXPORT_FORMAT = "fpcli-store-export"
EXPORT_VERSION = 2
MAX_IMPORT_LINE = 1 << 20  # a record is a few KiB; a longer line is rejected unread
Progress = Callable[[int], None]


@dataclasses.dataclass(frozen=True)
class Pruned:
    path: str
    reason: str  # gone, changed, or "failure: gone" ...


def prune(store: FingerprintStore, *, dry_run: bool = False, progress: Progress = lambda n: None) -> list[Pruned]:
    """Paths of records and failures whose file is gone or changed: each such path is
    dropped from its record (a record goes with its last path). With ``dry_run``
    nothing is removed. Records are read in batches while they are pruned (the
    batches resume after the last key read, so a deletion does not disturb them);
    ``progress`` gets the records checked every BATCH. A record listing MAX_PATHS
    paths may have more copies, known only by their path entries: those records are
    pruned after one pass over the path entries (``_prune_crowded``)."""
    removed: list[Pruned] = []
    try:
        _prune_into(removed, store, dry_run, progress)
    except KeyboardInterrupt:
        raise PruneInterrupted(removed, dry_run) from None
    except StoreError as exc:
        # A Redis gone, a full disk: what was dropped before it is said, not only the error.
        if removed and not dry_run:
            raise StoreError(f"{exc}; {_pruned_before(removed)}", repairable=exc.repairable) from None
        raise
    return removed


class PruneInterrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM made one) during a prune; ``removed`` holds what it dropped
    before it. An interrupted prune said only "interrupted": 1,770 entries of 20,000
    were dropped, and nothing said which."""

    def __init__(self, removed: list[Pruned], dry_run: bool) -> None:
        self.removed = removed
        self.how_far = "nothing was dropped (a dry run)" if dry_run else _pruned_before(removed)
        super().__init__(self.how_far)


def _pruned_before(removed: list[Pruned]) -> str:
    return f"{len(removed)} path(s) were dropped before it: run the prune again to finish it"


def _prune_into(removed: list[Pruned], store: FingerprintStore, dry_run: bool, progress: Progress) -> None:
    """``prune``'s work, appending to ``removed`` as it goes (so that what was dropped
    before an interrupt is known)."""
    crowded: dict[str, list[str]] = {}  # digest -> keys of its records that list MAX_PATHS paths
    older: list[Record] = []   # records of a former fingerprint version, checked a batch at a time
    for number, record in enumerate(store.records(), start=1):
        if number % BATCH == 0:
            progress(number)
        if len(record.paths) >= MAX_PATHS:
            crowded.setdefault(record.digest, []).append(record.key)
        else:
            removed += _pruned_paths(store, record, dry_run)
        # Former only: a newer fpcli sharing the store (one Redis, mixed clients) keeps its
        # own. Checked after its gone paths went with their entries, as every record's do.
        if record.fingerprint_version < FINGERPRINT_VERSION:
            older.append(record)
            if len(older) == BATCH:
                _drop_superseded(store, older, dry_run, removed)
                older = []
    _drop_superseded(store, older, dry_run, removed)
    if crowded:
        _prune_crowded(store, crowded, dry_run, removed)
    for failure in store.failures():
        why = stored_file_state(failure.path, failure.size, failure.mtime_ns)
        if why:
            if not dry_run:
                store.delete_failure(failure.path)
            removed.append(Pruned(failure.path, f"failure: {why}"))


def _pruned_paths(store: FingerprintStore, record: Record, dry_run: bool) -> list[Pruned]:
    """The gone or changed paths of ``record`` (of fewer than MAX_PATHS), dropped with
    their entries unless ``dry_run``, and its touched files given their time now."""
    states: dict[tuple[str, int], FileState] = {}   # (path, stored mtime): read once per prune
    gone, touched = _judged(record, states)
    if dry_run:
        return gone
    return _prune_record(store, record, states) if gone or touched else []


def _drop_superseded(store: FingerprintStore, older: list[Record], dry_run: bool, removed: list[Pruned]) -> None:
    """Delete the records of ``older`` (of a former fingerprint version) whose content has
    a record of this version (its files were analysed again): nothing reads them, and
    search counted them as left out after the upgrade was done. Their path entries
    stay: the new record shares them, an entry alone knows a copy still there, and
    the entries of gone files went as every record's do (``_pruned_paths``). One read
    of the new keys; each record dropped is added to ``removed`` as it goes."""
    params_key = AnalysisParams().key()   # what every command analyses with
    present = store.backend.get_many([record_key(r.digest, params_key) for r in older]) if older else []
    for record, current in zip(older, present, strict=True):
        if current is not None and (dry_run or store.delete_record_alone(record.key)):
            removed.append(Pruned(record.path, f"fingerprint v{record.fingerprint_version}: analysed again as "
                                               f"v{FINGERPRINT_VERSION}"))


def _prune_record(store: FingerprintStore, record: Record, states: dict[tuple[str, int], FileState]) -> list[Pruned]:
    """Drop the gone paths of ``record`` and give its touched files their time now, in
    one read and one write (a read and a write per gone path cost 1.45 ms a path: 183 s
    for 2,000 records of 63 gone paths), judged again on the record as it is when
    written: another process may have given it a path meanwhile (the file moved), which
    must not be lost with the old ones. Returns the paths dropped.

    A store full under noeviction takes a record back only if it is no larger: a
    touched file's new time made one 2 bytes longer (deflated) and stopped the prune.
    The gone paths then go without the new times (those files are read again at the
    next prune)."""
    judged: list[Pruned] = []
    retimed: dict[str, int] = {}

    def without_gone(current: Record, *, with_times: bool) -> tuple[list[PathSeen], list[str]] | None:
        lost_now, touched_now = _judged(current, states)
        touched_now = touched_now if with_times else {}
        judged[:] = lost_now
        retimed.clear()
        retimed.update(touched_now)
        lost = {p.path for p in lost_now}
        if not (lost or touched_now):
            return None
        return ([PathSeen(seen.path, touched_now.get(seen.path, seen.mtime_ns)) for seen in current.paths
                 if seen.path not in lost], sorted(lost))

    try:
        before = store.rewrite_paths(record.key, functools.partial(without_gone, with_times=True))
    except StoreFullError:
        before = store.rewrite_paths(record.key, functools.partial(without_gone, with_times=False))
    if before is None:
        return []
    # A touched file's new time, in its record and its path entry: confirmed by its
    # digest, it was read whole again at every prune, search and dupes.
    for path, mtime_ns in retimed.items():
        with contextlib.suppress(StoreFullError):   # no room made: read again at the next prune
            store.retime_path(FileIdentity(path, record.size, mtime_ns, record.content_key, record.digest))
    return judged


def _judged(record: Record, states: dict[tuple[str, int], FileState]) -> tuple[list[Pruned], dict[str, int]]:
    """(the paths of ``record`` whose file is gone or changed, each with why; the paths
    whose file was only touched, with its time now). ``states`` keeps what was found of
    each (path, stored time), so a record judged again is not read again."""
    gone: list[Pruned] = []
    touched: dict[str, int] = {}
    for seen in record.paths:
        state = states.get((seen.path, seen.mtime_ns))
        if state is None:
            state = file_state(seen.path, record.size, seen.mtime_ns, record.digest, record.content_key)
            states[(seen.path, seen.mtime_ns)] = state
        if state.why:
            gone.append(Pruned(seen.path, state.why))
        elif state.touched_ns is not None:
            touched[seen.path] = state.touched_ns
    return gone, touched


def forget_orphans(store: FingerprintStore, *, dry_run: bool = False) -> int:
    """Remove the identity entries that name no stored content: path entries whose
    digest has no record, and such digests in candidate lists. A store forgets them
    with the records it removes; older stores (and any record removed behind its
    back) left them, and they count against the size limit. One indexed look-up per
    entry, so memory stays flat. None where the backend expires them itself (Redis,
    where each look-up would scan the keyspace). Returns the entries removed or
    mended (or that would be, with ``dry_run``)."""
    if store.backend.expires_identities:
        return 0
    stored: dict[str, bool] = {}

    def has_record(digest: str) -> bool:
        if digest not in stored:
            if len(stored) >= BATCH:
                stored.clear()
            stored[digest] = any(True for _ in store.backend.keys(f"rec:{digest}:"))
        return stored[digest]

    orphans = 0
    for entry in _path_entries(store):   # read in key ranges: deleting behind the reader is safe
        if not has_record(entry["digest"]):
            orphans += 1
            if not dry_run:
                store.backend.delete(f"path:{path_key(entry['path'])}")
    for key, text in store.backend.items("cand:"):
        try:
            known = [] if text is None else loads(key, text)
        except (BadEntryError, StoreError):
            continue   # verify reports it
        if not isinstance(known, list):
            continue
        kept = [d for d in known if isinstance(d, str) and has_record(d)]
        if len(kept) < len(known):
            orphans += 1
            if dry_run:
                continue
            if kept:
                store.backend.put(key, dumps(kept))
            else:
                store.backend.delete(key)
    return orphans


def _prune_crowded(store: FingerprintStore, crowded: dict[str, list[str]], dry_run: bool,
                   removed: list[Pruned]) -> None:
    """Prune the records that list MAX_PATHS paths (keys by digest): every path of
    their content, listed or known only by its path entry, is checked, the gone ones
    forgotten, and each record lists the latest MAX_PATHS of those still there. Such
    a record lost its listed paths while unlisted copies remained, and was dropped
    with them (the copies then analysed again); the gone unlisted ones were never
    pruned."""
    gone: dict[str, dict[str, str]] = {digest: {} for digest in crowded}        # digest -> path -> why
    unlisted: dict[str, list[PathSeen]] = {digest: [] for digest in crowded}   # the copies still there
    for entry in _path_entries(store):
        digest = entry["digest"]
        if digest in gone:
            why = stored_file_state(entry["path"], entry["size"], entry["mtime_ns"], entry["digest"],
                                    entry["content_key"])
            if why:
                gone[digest][entry["path"]] = why
            else:
                unlisted[digest].append(PathSeen(entry["path"], entry["mtime_ns"]))
    for digest, keys in crowded.items():
        said: set[str] = set()   # paths of this content added to ``removed`` (as each record is rewritten)
        for key in keys:
            record = store.read_record(key)
            if record is None:
                continue
            for seen in record.paths:
                why = stored_file_state(seen.path, record.size, seen.mtime_ns, record.digest, record.content_key)
                if why:
                    gone[digest].setdefault(seen.path, why)
            if gone[digest] and not dry_run:
                store.rewrite_paths(key, _with_copies(gone[digest], unlisted[digest]))
            removed += [Pruned(path, why) for path, why in gone[digest].items() if path not in said]
            said |= set(gone[digest])
        removed += [Pruned(path, why) for path, why in gone[digest].items() if path not in said]


def _with_copies(gone: dict[str, str], unlisted: list[PathSeen]) -> PathChange:
    """The change of a crowded record's paths: its listed paths still there, after the
    unlisted copies still there (oldest first), and the gone ones forgotten."""
    def change(record: Record) -> tuple[list[PathSeen], list[str]]:
        listed = [seen for seen in record.paths if seen.path not in gone]
        known = {seen.path for seen in listed}
        others = sorted((seen for seen in unlisted if seen.path not in known), key=lambda seen: seen.mtime_ns)
        return [*others, *listed], sorted(gone)
    return change


def _path_entries(store: FingerprintStore) -> Iterator[dict[str, Any]]:
    """Every readable path entry, read in batches (bad ones are left to verify)."""
    for key, text in store.backend.items("path:"):
        if text is None:
            continue
        try:
            yield parse_path_entry(key, loads(key, text))
        except (BadEntryError, StoreError):
            continue


# -- verify and repair -------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Problem:
    key: str      # the entry ("" for the storage itself)
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}" if self.key else self.message


def verify(store: FingerprintStore, progress: Progress = lambda n: None) -> list[Problem]:
    """Every integrity problem: the storage's own checks (SQLite integrity, meta
    counters), pickled entries, then each entry's schema and key. [] when sound."""
    problems, _ = verify_counted(store, progress)
    return problems


def verify_counted(store: FingerprintStore, progress: Progress = lambda n: None,
                   notes: list[str] | None = None) -> tuple[list[Problem], int]:
    """``verify`` and the number of entries checked. Entries are read in batches
    (constant memory); ``progress`` gets the count every BATCH entries. Records past
    their TTL are removed first, as ``stats`` removes them (the census still counted
    them: an idle store with a TTL failed every verify, and its repair). ``notes``
    receives what the check could not judge (the counts, when another process wrote
    to the store during the scan)."""
    store.remove_expired()
    before = _written_state(store)
    try:
        problems = [Problem("", p) for p in store.backend.check()]
        unsafe = store.backend.unsafe_keys()
    except StoreError as exc:
        _raise_unless_damage(exc)
        return [Problem("", str(exc))], 0
    if unsafe:
        problems.append(Problem("", f"{unsafe} pickled key(s) or key(s) that are not UTF-8 text (not written by "
                                    "fpcli): a repair removes them"))
    number = 0
    found: collections.Counter[str] = collections.Counter()  # census tags of the sound entries
    records: list[tuple[str, str]] = []   # records read as text, checked a batch at a time
    try:
        for number, (key, text) in enumerate(store.backend.items(), start=1):
            if key.startswith("rec:") and text is not None:
                records.append((key, text))
            else:
                problems += [Problem(key, m) for m in _entry_problems(store, key, text, found)]
            if number % BATCH == 0:
                problems += _record_problems(records, found)
                records = []
                progress(number)
        problems += _record_problems(records, found)
    except StoreError as exc:
        _raise_unless_damage(exc)
        problems.append(Problem("", str(exc)))
        return problems, number
    census = _census_problems(store, found)
    if census and _written_state(store) != before and store.backend.census()[1] is None:
        # Written meanwhile (an analyze beside a cron verify): the entries read and the
        # counts belong to different moments, and a difference says nothing. (Counts a
        # backend already calls stale, Redis having evicted keys, are reported with why.)
        (notes if notes is not None else []).append(
            "the store was written during the check, so its statistics' counts were not compared with its "
            "entries (run the check again when nothing writes)")
        census = []
    problems += [Problem("", m) for m in census]
    return problems, number


def _raise_unless_damage(exc: StoreError) -> None:
    """``exc`` again unless it says the store is damaged (a problem of the store that
    verify reports and a repair may mend). A Redis that went away mid-check was listed
    as one of the store's problems, exit 3, where every other command exits 1."""
    if not exc.repairable:
        raise exc


def _written_state(store: FingerprintStore) -> tuple[Any, ...]:
    """What moves whenever the store is written: its census, journal generation and epoch."""
    try:
        return store.backend.census()[0], store.generation(), store.index_epoch()
    except StoreError:
        return ()


def _record_problems(entries: list[tuple[str, str]], found: collections.Counter[str]) -> list[Problem]:
    """``_entry_problems`` of a batch of records (key, stored text), parsed as one
    (``parse_records``: the fast gate, the timbre covariances as one stack; one at a
    time, verify ran at a third of an export's pace)."""
    problems: list[Problem] = []
    loaded: list[tuple[str, Any]] = []
    for key, text in entries:
        try:
            loaded.append((key, loads(key, text)))
        except BadEntryError as exc:
            problems += [Problem(key, m) for m in exc.problems]
    for (key, _), result in zip(loaded, parse_records(loaded), strict=True):
        if isinstance(result, BadEntryError):   # a record under another's key too (KEY_MISMATCH)
            problems += [Problem(key, m) for m in result.problems]
        else:
            found[census_tag(result)] += 1
    return problems


def _census_problems(store: FingerprintStore, found: collections.Counter[str]) -> list[str]:
    """A problem when the counts ``stats`` reads differ from the entries just read. On
    Redis an entry written from outside fpcli (a hand-made SET) is counted by no one,
    and overwriting it then adds a count that nothing takes off: stats counted a record
    too many while verify called the store sound. Where the backend says its counts
    may be stale (Redis evicted or expired keys, or restarted: ``stats`` says so too),
    the difference is reported with that reason: a store whose records had all
    expired was called sound with 10 entries counted and 0 there, and its repair,
    finding no problem, never counted again."""
    counted, note = store.backend.census()
    if counted is None or counted == dict(found):
        return []
    stated, actual = census_summary(counted), census_summary(dict(found))
    differ = [f"{name} {stated[name]} counted, {actual[name]} found"
              for name in ("entries", "previews", "with_batch", "validated", "failures")
              if stated[name] != actual[name]]
    what = "; ".join(differ) or "by version"
    why = note.split(":")[0] if note else "or the store was written meanwhile"
    return [f"census: the counts of the store's statistics differ from its entries ({what}; {why}): a repair "
            "counts them again"]


def _entry_problems(store: FingerprintStore, key: str, text: str | None = None,
                    found: collections.Counter[str] | None = None) -> list[str]:
    """What is wrong with one entry ([] when sound); a sound record or failure adds its
    census tag to ``found``."""
    found = collections.Counter() if found is None else found
    try:
        if text is None:  # not read in the batch (unreadable as text): read alone to learn why
            text = store.backend.get(key)
        if text is None:
            return []  # expired or evicted meanwhile
        data = loads(key, text)
        if key.startswith("rec:"):
            record = parse_record(key, data)   # BadEntryError for a record under another's key too
            found[census_tag(record)] += 1
            return []
        if key.startswith("fail:"):
            failure = parse_failure(key, data)
            if key != f"fail:{path_key(failure.path)}":
                return ["path does not match the key"]
            found[FAILURE_TAG] += 1
            return []
        if key.startswith("path:"):
            entry = parse_path_entry(key, data)
            return [] if key == f"path:{path_key(entry['path'])}" else ["path does not match the key"]
        if key.startswith("cand:"):
            ok = isinstance(data, list) and all(is_hex32(d) for d in data)
            return [] if ok else ["candidate list is not a list of digests"]
        return ["unknown kind of entry"]
    except BadEntryError as exc:
        return exc.problems
    except StoreError as exc:
        return [str(exc)]


def repair(store: FingerprintStore, quarantine: str | os.PathLike[str]) -> dict[str, int]:
    """Remove every bad entry after writing it (key, text if readable, problems) to
    ``quarantine`` as JSON Lines; remove pickled entries and damaged meta counters.
    A database SQLite finds damaged is rebuilt from what can still be read.
    Returns counts of what was done."""
    storage = store.backend.check()
    rebuilt = _rebuild(store, quarantine) if any("SQLite" in p for p in storage) else {}
    counts = {"moved_aside": 0, "rebuilt": 0, **rebuilt, "quarantined": 0, "unsafe": store.backend.remove_unsafe(),
              "counters": 0}
    for problem in store.backend.check():
        # A damaged counter restarts from 0; a damaged journal entry goes (the journal
        # then cannot say what changed across it, and an index is rebuilt).
        for kind in ("meta: counter ", "meta: journal entry "):
            if problem.startswith(kind):
                store.backend.reset_meta(problem[len(kind):].split()[0])
                counts["counters"] += 1
        if problem.startswith(DATA_LOST_PROBLEM):   # nothing to mend: noted, and no longer a problem
            store.backend.reset_meta(DATA_LOST_KEY)
            counts["data_lost"] = 1
    checked = verify(store)
    bad = [p for p in checked if p.key]
    if any(p.message.startswith("census:") for p in checked) and not bad:
        store.backend.recount(tag_of_entry)
        counts["census"] = 1
    if bad:
        with _open_quarantine(quarantine) as out:
            for key in dict.fromkeys(p.key for p in bad):
                out.write(json.dumps({"key": key, "text": _raw_text(store, key),
                                      "problems": [p.message for p in bad if p.key == key]}) + "\n")
                store.backend.delete(key)
                counts["quarantined"] += 1
        # A bad entry may be a counted one overwritten from outside (a hand-made SET on
        # Redis): removing it could not say what the census had counted it as, so stats
        # kept counting it. Count again.
        store.backend.recount(tag_of_entry)
        if any(p.key.startswith("rec:") for p in bad):
            # A bad record cannot say which paths it had: its identity entries go as orphans.
            counts["orphans"] = forget_orphans(store)
    return counts


def _open_quarantine(quarantine: str | os.PathLike[str]) -> IO[str]:
    """The quarantine file, opened to append before anything is removed: a folder the
    repair cannot write to (a read-only current folder, for Redis) stops it with one
    line, nothing removed (it was a traceback)."""
    try:
        return open(quarantine, "a", encoding="utf-8")
    except OSError as exc:
        raise StoreError(f"cannot write the quarantine file {quarantine}: {exc.strerror or exc}; nothing was "
                         "removed (run the repair from a folder you can write to)") from None


def _raw_text(store: FingerprintStore, key: str) -> str | None:
    try:
        return store.backend.get(key)
    except StoreError:
        return None


def _rebuild(store: FingerprintStore, quarantine: str | os.PathLike[str]) -> dict[str, int]:
    """A damaged database: read every entry that can still be read, clear the store,
    write them back. Returns {"rebuilt": entries kept} (and on diskcache
    "moved_aside": the damaged parts kept aside)."""
    rebuild = getattr(store.backend, "rebuild", None)
    if rebuild is not None:  # diskcache: move the damaged database aside, keep its readable rows
        with _open_quarantine(quarantine) as out:   # before the rebuild: a folder it cannot write stops it
            done = dict(rebuild())
            out.write(json.dumps({"rebuilt": done["rebuilt"], "at": time.time()}) + "\n")
        return done
    with _open_quarantine(quarantine) as out:
        saved = _every_readable_entry(store)
        try:
            store.backend.clear()
        except StoreError as exc:
            raise StoreError(f"{exc}; move the store folder aside and import an export into a new one") from None
        for key, text in saved:
            store.backend.put(key, text)
        out.write(json.dumps({"rebuilt": len(saved), "at": time.time()}) + "\n")
    return {"rebuilt": len(saved)}


def _every_readable_entry(store: FingerprintStore) -> list[tuple[str, str]]:
    saved: list[tuple[str, str]] = []
    try:
        keys = list(store.backend.keys())
    except StoreError:
        keys = []
    for key in keys:
        try:
            text = store.backend.get(key)
        except StoreError:
            continue
        if text is not None:
            saved.append((key, text))
    return saved


# -- export and import ---------------------------------------------------------------------------

def export_store(store: FingerprintStore, destination: str | os.PathLike[str],
                 progress: Progress = lambda n: None) -> dict[str, int]:
    """Write every readable record and failure as JSON Lines (atomically; ``-`` is
    stdout), streaming: memory does not grow with the store. Bad entries are skipped
    (and listed in ``store.bad_entries``)."""
    counts = {"records": 0, "failures": 0}
    with atomic_text(destination) as out:
        out.write(json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": time.time()}) + "\n")
        lines: Iterator[tuple[str, str]] = itertools.chain(
            (("record", _record_line(record, text)) for text, record in store.sound_texts()),
            (("failure", dumps({"type": "failure", "data": failure_to_json(f)})) for f in store.failures()))
        for kind, line in lines:
            out.write(line + "\n")
            counts[f"{kind}s"] += 1
            if sum(counts.values()) % BATCH == 0:
                progress(sum(counts.values()))
    return counts


def _record_line(record: Record | None, text: str) -> str:
    """The export line of a record: its stored text as is (it was just checked, so it
    is one JSON object; writing it again would cost as much as the check), or written
    afresh from the ``record`` parsed unless it is one line of ASCII, as fpcli writes
    it (a text the fast check vouched for comes without a record: it is such a line)."""
    if record is not None and (not text.isascii() or "\n" in text or "\r" in text):
        text = record_text(record)
    return record_line(text)


@dataclasses.dataclass
class ImportReport:
    records: int = 0
    new: int = 0                                              # records the store held none of (the others merged)
    failures: int = 0
    failures_recorded_since: int = 0                          # left out: a record of a later file at the path is stored
    evicted: int = 0                                          # by the size limit, in the same command
    rejected: list[str] = dataclasses.field(default_factory=list)  # "line N: reason"


def import_store(store: FingerprintStore, source: str | os.PathLike[str] | IO[bytes],
                 progress: Progress = lambda n: None,
                 on_records: Callable[[ImportedBatch], None] = lambda batch: None) -> ImportReport:
    """Read an export (a path, ``-`` for stdin, or a binary file ``open_export`` opened:
    a command opens its input before the store, so that a missing file does not leave
    a new, empty store behind): every line is parsed as JSON only and checked
    with the store's own record parser (a batch of lines at a time); valid records
    and failures are stored, other lines rejected with a reason (in line order).
    A batch is written in one transaction or pipeline, so an interrupted import
    leaves whole batches: running it again completes it. ``on_records`` receives
    each batch as written (a search index is kept current so).

    A record line as an export writes it is checked by the typed gate alone
    (``fast_schema.vouched_lines``) and stored as it came; the parser reads only the
    lines the gate cannot vouch for, and says what is wrong with them."""
    report = ImportReport()
    batch = _Batch(on_records)
    rejected: list[tuple[int, str]] = []
    epoch = store.backend.counter("epoch")
    try:
        opened = contextlib.nullcontext(source) if not isinstance(source, (str, os.PathLike)) else \
            open_export(source)
        with opened as handle, store.backend.bulk_writes():
            for number, raw in enumerate(_lines(handle), start=1):
                if number > 1 and raw is not None and raw.startswith(_RECORD_LINE):
                    batch.lines.append((number, raw.rstrip(b"\r\n")))   # checked with its batch
                elif reason := _import_line(store, raw, number, report, batch):
                    rejected.append((number, reason))
                if len(batch) >= BATCH:
                    batch.flush(store, report, rejected)
                if number % BATCH == 0:
                    progress(number)
            batch.flush(store, report, rejected)
    except StoreError as exc:
        partly = batch.writing and not store.backend.atomic_batches
        if report.records + report.failures == 0 and not partly:
            raise
        # A full disk, say: the user must know how far it got, not only that it stopped.
        # (A Redis at its maxmemory stored part of the batch it refused: 268 records, and
        # the import said only that Redis was full.)
        raise StoreError(f"{exc}; {_imported_before(report, partly)}") from None
    except KeyboardInterrupt:
        # Not "from" it: a command that does not say how far (the library's caller)
        # still sees a Ctrl-C, and the CLI's says "interrupted" once.
        raise ImportInterrupted(_imported_before(report, batch.writing and not store.backend.atomic_batches)
                                ) from None
    if store.backend.counter("epoch") != epoch:
        # A Redis restarted without persistence, a FLUSHDB, a failover, a cache clear by
        # another process: the records written before it are gone, and the import said
        # "imported 3000 records", exit 0, with 1,000 stored.
        raise StoreError(f"the store was emptied or replaced while importing (a Redis restart without "
                         f"persistence, a FLUSHDB, a failover, or cache clear): of the {report.records} records "
                         "imported, those written before it are gone; run the import again")
    report.rejected = [f"line {number}: {reason}" for number, reason in sorted(rejected)]
    report.evicted = store.backend.counter("evictions") - report.evicted
    return report


class ImportInterrupted(KeyboardInterrupt):
    """A Ctrl-C (or SIGTERM made one) during an import; ``how_far`` says what was
    stored before it. An interrupted import said only "interrupted": of 100,000
    records, 30,000 were stored, and nothing said so."""

    def __init__(self, how_far: str) -> None:
        super().__init__(how_far)
        self.how_far = how_far


def _imported_before(report: ImportReport, partly: bool) -> str:
    """How far an import that stopped got, and what to do about it."""
    return (f"{report.records} records and {report.failures} failures were imported before it, in whole batches"
            + (", and part of the batch being written may be stored" if partly else "")
            + ": run the import again to complete it")


_RECORD_LINE = RECORD_LINE_PREFIX.encode("ascii")


@dataclasses.dataclass
class _Batch:
    """Lines waiting to be checked and written together (one transaction or
    pipeline): record lines of an export's form, record data by line number (of
    other lines), parsed failures."""

    on_records: Callable[[ImportedBatch], None]
    lines: list[tuple[int, bytes]] = dataclasses.field(default_factory=list)
    records: list[tuple[int, Any]] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    writing: bool = False   # inside the store's writes (an error then may leave part of a batch)

    def __len__(self) -> int:
        return len(self.lines) + len(self.records) + len(self.failures)

    def flush(self, store: FingerprintStore, report: ImportReport, rejected: list[tuple[int, str]]) -> None:
        items: list[tuple[int, Record | VouchedRecord]] = self._vouched(store, report, rejected)
        parsed = parse_records([(f"line {number}", data) for number, data in self.records])
        for (number, _), result in zip(self.records, parsed, strict=True):
            if isinstance(result, BadEntryError):
                rejected.append((number, "invalid record: " + "; ".join(result.problems[:3])))
            else:
                items.append((number, result))
        items.sort(key=lambda item: item[0])   # records of one key are merged in the export's order
        if items:
            self.writing = True
            imported = store.import_batch([item for _, item in items])
            self.writing = False
            # Counted once written (a failed write is not imported), and before the index
            # rows are kept: an interrupt there said a whole stored batch was not.
            report.records += len(items)
            report.new += imported.new
            self.on_records(imported)
        if self.failures:
            self.writing = True
            left_out = store.import_failures(self.failures)
            self.writing = False
            report.failures += len(self.failures) - left_out
            report.failures_recorded_since += left_out
        self.lines, self.records, self.failures = [], [], []

    def _vouched(self, store: FingerprintStore, report: ImportReport,
                 rejected: list[tuple[int, str]]) -> list[tuple[int, Record | VouchedRecord]]:
        """The record lines the gate vouches for; the others are read as any line
        (``_import_line``: their data joins ``records``, or they are rejected)."""
        if not self.lines:
            return []
        from fpcli.store.fast_schema import vouched_lines

        found: list[tuple[int, Record | VouchedRecord]] = []
        for (number, raw), vouched in zip(self.lines, vouched_lines([raw for _, raw in self.lines]), strict=True):
            if vouched is not None:
                found.append((number, vouched))
            elif reason := _import_line(store, raw, number, report, self):
                rejected.append((number, reason))
        return found


class _ReadOnly(io.RawIOBase):
    """A byte stream as the raw stream of a ``BufferedReader`` (which can peek)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class open_export:  # noqa: N801 (used as a function: with open_export(path) as handle)
    """The binary input of an import: a file, or stdin for ``-``; ``StoreError`` naming
    a file that cannot be read."""

    def __init__(self, source: str | os.PathLike[str]) -> None:
        self.source = os.fspath(source)
        self.handle: IO[bytes] | None = None

    def __enter__(self) -> IO[bytes]:
        if self.source == "-":
            stdin: IO[bytes] = sys.stdin.buffer
            if not hasattr(stdin, "peek"):   # a stdin replaced by a plain byte stream
                stdin = io.BufferedReader(_ReadOnly(stdin))
            _refuse_non_export("stdin", stdin)
            return stdin
        try:
            self.handle = open(self.source, "rb")
        except OSError as exc:
            raise StoreError(f"cannot read {self.source}: {exc.strerror or exc}") from None
        try:
            _refuse_non_export(self.source, self.handle)
        except StoreError:
            self.handle.close()
            raise
        return self.handle

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()


def _refuse_other_export_version(header: dict[str, Any]) -> None:
    """StoreError for an export header of another version than this fpcli reads. The
    whole file is of that version: rejecting the header alone imported every record
    anyway, under a message that said to re-analyse instead."""
    if header.get("version") != EXPORT_VERSION:
        version = json.dumps(header.get("version"))[:10]   # as JSON: a version "2" (text) is not version 2
        raise StoreError(f"an export of version {version}; this fpcli reads version {EXPORT_VERSION}: nothing was "
                         "imported (import it with the fpcli that wrote it, or analyse the library again)")


def _refuse_non_export(name: str, handle: IO[bytes]) -> None:
    """StoreError unless what ``handle`` starts with could be an export (JSON Lines: a
    first line that is an object), read without consuming it. An audio file given by
    mistake printed 6,866 "rejected line" errors, and empty input made an empty store;
    neither is read now, and no store is made for them."""
    peek = getattr(handle, "peek", None)
    if peek is None:
        return   # a stream that cannot be peeked at (a caller's own) is judged line by line
    try:
        start = peek(1 << 16)
    except OSError:
        return   # its read fails on the first line, with the reason
    head = start[: 1 << 16].lstrip()
    if head.startswith(b"\xef\xbb\xbf"):   # a byte-order mark some editors add
        head = head[3:].lstrip()
    # At its end already (asked again, a terminal would wait for a second Ctrl-D), or a
    # file of blank lines alone (whose size says it was all peeked at).
    if not start or (not head and len(start) >= _file_size(handle)):
        raise StoreError(f"{name} is empty: an fpcli export holds at least its header line; nothing was imported")
    if head and not head.startswith(b"{"):
        raise StoreError(f"{name} is not an fpcli export (JSON Lines, `fpcli cache export` writes them): it does "
                         "not start with a JSON object; nothing was imported")
    first, newline, _ = head.partition(b"\n")
    try:
        header = json.loads(first) if newline else None
    except ValueError:
        return   # the line-by-line reading says what is wrong with it
    if isinstance(header, dict) and header.get("type") == EXPORT_FORMAT:
        _refuse_other_export_version(header)   # before a store is made for it


def _file_size(handle: IO[bytes]) -> float:
    """The size of the regular file ``handle`` reads (inf for a pipe, a terminal or a
    stream of the caller's)."""
    try:
        info = os.fstat(handle.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return math.inf
    return info.st_size if stat.S_ISREG(info.st_mode) else math.inf


def _lines(handle: IO[bytes]) -> Iterator[bytes | None]:
    """Lines of at most MAX_IMPORT_LINE bytes; a longer line is consumed whole and
    given as None (rejected as one line, never split into several)."""
    while True:
        line = _read_line(handle, MAX_IMPORT_LINE + 1)
        if not line:
            return
        if len(line) > MAX_IMPORT_LINE and not line.endswith(b"\n"):
            while (rest := _read_line(handle, MAX_IMPORT_LINE)) and not rest.endswith(b"\n"):
                pass
            yield None
        else:
            yield line


def _read_line(handle: IO[bytes], limit: int) -> bytes:
    """A line of the export; a read that fails (a disk error, a pipe's writer gone
    wrong) is a clear error, never taken for the end of the export."""
    try:
        return handle.readline(limit)
    except OSError as exc:
        raise StoreError(f"reading the export failed ({exc.strerror or exc})") from None   # import_store says how far


def _import_line(store: FingerprintStore, raw: bytes | None, number: int, report: ImportReport,
                 batch: _Batch) -> str | None:
    if number == 1:
        report.evicted = store.backend.counter("evictions")
    if raw is None:
        return f"longer than {MAX_IMPORT_LINE} bytes"
    if not raw.strip():
        return None
    try:
        item = loads("line", raw.rstrip(b"\r\n"))   # a cut line's error then names its own line, not "line 2"
    except BadEntryError as exc:
        return exc.problems[0]
    if not isinstance(item, dict) or "type" not in item:
        return "not an export line (an object with a 'type')"
    kind, data = item.get("type"), item.get("data")
    try:
        if kind == EXPORT_FORMAT:
            if len(batch) or report.records or report.failures or report.rejected:
                return "export header in the middle of the file"   # blank lines before it are no content
            _refuse_other_export_version(item)
            return None
        if kind == "record":
            batch.records.append((number, data))  # checked with its batch (``_Batch.flush``)
            return None
        if kind == "failure":
            batch.failures.append(parse_failure(f"line {number}", data))   # counted once written
            return None
    except BadEntryError as exc:
        return f"invalid {kind}: " + "; ".join(exc.problems[:3])
    return f"unknown type {str(kind)[:40]!r}"
