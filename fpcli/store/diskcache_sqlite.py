"""The SQLite level under the diskcache backend: a serialiser that never pickles,
SQLite errors turned into one clear ``StoreError``, and the salvage of a database too
damaged to open."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import re
import secrets
import shutil
import sqlite3
import stat
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import diskcache
import diskcache.core

from fpcli.errors import StoreError
from fpcli.store import sqlite_pages
from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB


class SafeDisk(diskcache.Disk):
    """diskcache serialisation that never pickles: keys and values must be str, bytes,
    int or float, and a pickled row found on disk is an error, not code to run."""

    _PLAIN = (str, bytes, int, float)

    def put(self, key: Any) -> Any:
        if type(key) not in self._PLAIN:
            raise StoreError(f"store keys must be str/bytes/int/float, not {type(key).__name__}")
        return super().put(key)

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise StoreError("the store holds a pickled key; refusing to unpickle it")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if not read and type(value) not in self._PLAIN:
            raise StoreError(f"store values must be str/bytes/int/float, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str, value: Any, read: bool) -> Any:
        if mode == diskcache.core.MODE_PICKLE:
            raise StoreError("the store holds a pickled value; refusing to unpickle it")
        if mode in (diskcache.core.MODE_BINARY, diskcache.core.MODE_TEXT) and not read:
            data = _read_value_file(self._value_path(filename))
            return data if mode == diskcache.core.MODE_BINARY else data.decode("utf-8")
        if mode != diskcache.core.MODE_RAW:
            self._value_path(filename)
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        # diskcache removes a row's value file with its row (delete, clear, eviction,
        # repair): a hand-made row naming ../../notes.txt or /home/me/x removed it.
        try:
            self._value_path(file_path)
        except BadValueFile:
            return
        super().remove(file_path)

    def _value_path(self, filename: Any) -> str:
        """The full path of a row's value file; ``StoreError`` unless it is a name
        diskcache makes (``ab/cd/<28 hex digits>.val``) inside the store's folder. A
        row's ``filename`` is read from the database, which anyone who can write the
        store's file (or hand over a copy of it) decides: a planted ``/etc/passwd``, a
        FIFO or ``/dev/zero`` was read (its text then copied into the repair's quarantine
        file), hung on or read without end."""
        if not isinstance(filename, str) or not _VALUE_FILE_NAME.fullmatch(filename.replace(os.sep, "/")):
            raise BadValueFile(f"a value file named {str(filename)[:80]!r}, not one the store writes (a hand-made row)")
        path = os.path.join(self._directory, filename)
        if os.path.realpath(path) != os.path.join(os.path.realpath(self._directory), filename):
            raise BadValueFile(f"the value file {filename} leads out of the store's folder (a link)")
        return path


class BadValueFile(StoreError):
    """A row's value file that is not read: a name the store never writes, a link out
    of its folder, not a regular file, or larger than any entry (one bad entry)."""


_VALUE_FILE_NAME = re.compile(r"[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{28}\.val")
MAX_VALUE_FILE = 64 << 20   # bytes: a record is a few KiB (64 paths of 4 KiB at most)


def _read_value_file(path: str) -> bytes:
    """A value file's bytes: a regular file (not a link, FIFO or device) of at most
    MAX_VALUE_FILE bytes, else ``StoreError``. ``OSError`` when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        facts = os.fstat(handle.fileno())
        if not stat.S_ISREG(facts.st_mode):
            raise BadValueFile(f"the value file {path} is not a regular file")
        if facts.st_size > MAX_VALUE_FILE:
            raise BadValueFile(f"the value file {path} holds {facts.st_size} bytes, more than any entry")
        return handle.read(MAX_VALUE_FILE + 1)[:MAX_VALUE_FILE]


def lenient_text(data: bytes) -> str:
    """A SQLite TEXT value as str, its bytes that are not UTF-8 as lone surrogates
    (``surrogateescape``), which the JSON parser refuses for that entry alone. With
    the default decoding one flipped bit in one record raised for the whole batch
    read around it: every command that reads the store in batches (analyze of a
    folder, list, export, verify) stopped with "damaged", and a repair, finding SQLite's
    integrity intact, had nothing to mend."""
    return data.decode("utf-8", "surrogateescape")


def is_text(value: str) -> bool:
    """Whether ``value``, read by ``lenient_text``, was UTF-8 in the database: fpcli
    writes its JSON as ASCII (a path's undecodable byte as a \\udcXX escape), so a
    lone surrogate in what was read is a byte that was never written as such."""
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def as_sql_text(value: str) -> bytes:
    """A key read by ``lenient_text`` as bytes to bind with ``CAST(? AS TEXT)``: the
    exact bytes of the row, also when they are not UTF-8 (a str with a lone surrogate
    cannot be bound at all: it raised UnicodeEncodeError, a traceback)."""
    return value.encode("utf-8", "surrogateescape")


class LenientCache(diskcache.Cache):
    """A diskcache ``Cache`` whose connections read text with ``lenient_text``."""

    @property
    def _con(self) -> sqlite3.Connection:
        connection: sqlite3.Connection = diskcache.Cache._con.fget(self)   # made per thread and process
        if connection.text_factory is not lenient_text:
            connection.text_factory = lenient_text
        return connection


@contextlib.contextmanager
def guard(location: str) -> Iterator[None]:
    """SQLite and file errors become one StoreError naming the store and the way out."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "disk is full" in str(exc) or "disk I/O" in str(exc):
            raise StoreError(f"the store at {location}: {exc} (what was written before is kept)") from None
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise StoreError(f"the store at {location} is read-only ({exc})") from None
        raise StoreError(f"the store at {location} is damaged ({exc})", repairable=True) from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the store at {location} is damaged ({exc})", repairable=True) from None
    except diskcache.Timeout:
        raise StoreError(f"the store at {location} is locked by another process for too long") from None
    except OSError as exc:
        raise StoreError(f"the store at {location}: {exc.strerror or exc}") from None


# The meta part first: the data part's rebuild moves the epoch on, which meta holds.
PARTS = ("meta", "data")
DATABASE = "cache.db"   # a part's SQLite file (diskcache's name)
# A part rebuilt is written beside it as <part>.rebuilding-<stamp>, renamed .rebuilt-<stamp> when
# complete; the damaged part is kept as <part>.damaged-<stamp>.
BUILDING, REBUILT, DAMAGED = ".rebuilding-", ".rebuilt-", ".damaged-"


def salvage(directory: str, parts: Iterable[str] | None = None) -> dict[str, int]:
    """Rebuild ``parts`` of the store at ``directory`` (by default each part, ``data``
    or ``meta``, whose database does not open soundly): read every row SQLite can
    still read and swap a fresh database holding them in for the damaged one, which is
    kept aside (``data.damaged-<time>``) for the user. Pickled rows are dropped. The
    epoch moves on, so that a search index saved before does not pass for current:
    for the data part before its swap, for the meta part (which holds the epoch) after
    it. Returns {"moved_aside": parts, "salvaged": rows kept}, and when the data part
    (the records) was among them "records_moved_aside": 1 and "records_read_back": its
    rows kept (a meta part holds counters and the journal, no record)."""
    chosen = None if parts is None else set(parts)
    counts = {"moved_aside": 0, "salvaged": 0}
    for part in PARTS:
        folder = os.path.join(directory, part)
        if (part not in chosen) if chosen is not None else sound_part(folder):
            continue
        rows = salvage_part(folder, before_swap=(lambda: new_epoch(directory)) if part == "data" else None)
        counts["salvaged"] += rows
        if part == "meta":
            new_epoch(directory)
        else:
            counts.update(records_moved_aside=1, records_read_back=rows)
        counts["moved_aside"] += 1
    return counts


def finish_rebuilds(directory: str) -> None:
    """Put in place a part whose rebuild was complete when the repair stopped between
    its two renames (the part moved aside as ``.damaged-<stamp>``, its rebuild still
    ``.rebuilt-<stamp>``), and move the epoch on: without it the store would open with
    that part missing and make it again empty. Only that state: a ``.rebuilt-`` left
    by a repair stopped earlier, beside its damaged part, is stale (``salvage_part``
    removes it)."""
    for part in PARTS:
        folder = os.path.join(directory, part)
        if os.path.lexists(folder):
            continue
        for built in sorted(glob.glob(glob.escape(folder) + REBUILT + "*"), reverse=True):
            stamp = built[len(folder + REBUILT):]
            if os.path.isdir(f"{folder}{DAMAGED}{stamp}"):
                with contextlib.suppress(OSError, StoreError):   # else the store says what is missing
                    os.rename(built, folder)
                    new_epoch(directory)
                break


def sound_part(folder: str) -> bool:
    """Whether the part at ``folder`` opens and SQLite's quick check of its database
    finds nothing: opening alone reads few pages (a store whose damage only a later
    query met was "rebuilt" with nothing done, and failed to open again, for ever)."""
    try:
        with LenientCache(folder, disk=SafeDisk) as cache:
            return [row[0] for row in cache._sql("PRAGMA quick_check").fetchall()] == ["ok"]
    except (sqlite3.Error, OSError):
        return False


def new_epoch(directory: str) -> None:
    """Move the store's epoch on after a part was rebuilt: entries (and journal
    entries) that could not be read are gone, so a search index saved before must
    not pass for current (it served hits of records no longer there, or none)."""
    try:
        with LenientCache(os.path.join(directory, "meta"), disk=SafeDisk) as meta:
            meta.incr("epoch", 1, default=secrets.randbelow(1 << 48))
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"cannot update the rebuilt store at {directory}: {exc}") from None


SIZE_LIMIT_KEY = "size_limit"   # the meta part's copy of the data part's limit (bytes)


def _size_limit_of(folder: str) -> int:
    """The size limit (bytes) the part at ``folder`` holds; when its Settings cannot be
    read (a damaged first page), the copy the meta part beside it keeps, else
    DEFAULT_SIZE_LIMIT_MB's: a limit of 5000 MiB fell back to diskcache's default, and
    a lower one would evict at the next write what the repair had saved."""
    database = os.path.join(folder, diskcache.core.DBNAME)
    with contextlib.suppress(sqlite3.Error, TypeError, ValueError):
        if os.path.isfile(database):
            connection = sqlite3.connect(database)
            try:
                (value,) = connection.execute("SELECT value FROM Settings WHERE key = 'size_limit'").fetchone()
            finally:
                connection.close()
            if isinstance(value, int) and value > 0:
                return value
    return kept_size_limit(os.path.join(os.path.dirname(folder), "meta")) or DEFAULT_SIZE_LIMIT_MB * 2**20


def kept_size_limit(meta_folder: str) -> int | None:
    """The data part's limit as the meta part at ``meta_folder`` keeps a copy of it."""
    with contextlib.suppress(sqlite3.Error, OSError, diskcache.Timeout):
        if os.path.isfile(os.path.join(meta_folder, diskcache.core.DBNAME)):
            with LenientCache(meta_folder, disk=SafeDisk) as meta:
                kept = meta.get(SIZE_LIMIT_KEY)
            if isinstance(kept, int) and not isinstance(kept, bool) and kept > 0:
                return kept
    return None


def salvage_part(folder: str, *, before_swap: Callable[[], None] | None = None) -> int:
    """Swap a fresh database holding the readable rows of the part at ``folder`` in
    for it, all or nothing: the rows are written beside it in one transaction, the
    finished folder renamed as rebuilt, then the damaged part renamed aside and the
    rebuilt one into its place (``finish_rebuilds`` ends a swap stopped between the
    two). The rows used to be written one commit each into the part's own place, after
    the damaged one had been moved away: a repair stopped by Ctrl-C, a kill or a full
    disk left a store of some of them, which verify called sound."""
    rows = _readable_rows(folder)
    limit = _size_limit_of(folder)
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    building, built, damaged = folder + BUILDING + stamp, folder + REBUILT + stamp, folder + DAMAGED + stamp
    for stale in glob.glob(glob.escape(folder) + BUILDING + "*") + glob.glob(glob.escape(folder) + REBUILT + "*"):
        shutil.rmtree(stale, ignore_errors=True)   # of a repair stopped before its swap: this one replaces it
    try:
        # No eviction while rebuilding; the part keeps the store's own limit (diskcache's
        # default of 1 GiB became the store's, 5000 MiB before, in a review).
        now = time.time()
        with LenientCache(building, disk=SafeDisk, eviction_policy="none", cull_limit=0, size_limit=limit) as fresh, \
                fresh.transact():
            # Least recently used first: set() stamps each row with the time it is written,
            # so the order of their last use is kept for the LRU eviction.
            kept = [row for row in rows if row.expire_time is None or row.expire_time > now]   # not yet expired
            for row in sorted(kept, key=lambda row: row.access_time):
                fresh.set(row.key, row.value, expire=None if row.expire_time is None else row.expire_time - now,
                          tag=row.tag)
        os.rename(building, built)
        if before_swap is not None:
            before_swap()
        os.rename(folder, damaged)
    except (OSError, sqlite3.Error) as exc:
        for left in (building, built):
            shutil.rmtree(left, ignore_errors=True)
        raise StoreError(f"cannot rebuild the store part {folder}: {exc}; nothing was changed (free some space, "
                         "or move the store folder aside and import an export into a new store)") from None
    try:
        os.rename(built, folder)
    except OSError as exc:   # the damaged part back where it was, if it can be
        try:
            os.rename(damaged, folder)
            where = f"the damaged part is back at {folder}"
        except OSError:
            where = f"the damaged part is at {damaged}"
        raise StoreError(f"cannot put the rebuilt store part in place of {folder}: {exc}; the rebuild is kept "
                         f"as {built} and {where}") from None
    return len(kept)


@dataclasses.dataclass(frozen=True)
class SalvagedRow:
    """A plain row read back from a damaged part, with what diskcache keeps beside its
    value: its expiry (s since 1970, None: never), its tag (a census kind) and when it
    was last used (the LRU order). A rebuild that kept the value alone made records
    with a TTL immortal and lost the census tags and the eviction order."""

    key: str
    value: str | int | float
    expire_time: float | None = None
    tag: Any = None
    access_time: float = 0.0


def _readable_rows(folder: str) -> list[SalvagedRow]:
    """Every plain row that can still be read from ``folder``'s database: through
    SQL, skipping past damaged pages (rowid order), then straight from the table's leaf
    pages (``sqlite_pages``) for the keys SQL could not reach (a damaged interior page
    hides every row below it from SQL)."""
    db = os.path.join(folder, DATABASE)
    if not os.path.isfile(db):
        return []
    rows = _rows_through_sql(folder, db)
    found = {row.key for row in rows}
    for _, values in sqlite_pages.table_rows(db, CACHE_COLUMNS):
        _, key, raw, _, expire_time, access_time, _, tag, _, mode, filename, value = values
        row = _plain_row(folder, key, raw, value, mode, filename, expire_time, tag, access_time)
        if row is not None and row.key not in found:
            rows.append(row)
            found.add(row.key)
    return rows


# diskcache's Cache table: rowid, key, raw, store_time, expire_time, access_time,
# access_count, tag, size, mode, filename, value.
CACHE_COLUMNS = 12


def _rows_through_sql(folder: str, db: str) -> list[SalvagedRow]:
    rows: list[SalvagedRow] = []
    try:
        connection = sqlite3.connect(db, timeout=5)
    except sqlite3.Error:
        return rows
    with contextlib.suppress(sqlite3.Error):  # the latest pages into the file, for the page reader
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    last, misses = 0, 0
    try:
        while misses < 40:
            try:
                for rowid, key, raw, value, mode, filename, expire_time, tag, access_time in connection.execute(
                        "SELECT rowid, key, raw, value, mode, filename, expire_time, tag, access_time FROM Cache "
                        "WHERE rowid > ? ORDER BY rowid", (last,)):
                    last = rowid
                    row = _plain_row(folder, key, raw, value, mode, filename, expire_time, tag, access_time)
                    if row is not None:
                        rows.append(row)
                break
            except sqlite3.DatabaseError:
                misses += 1
                last += 1 << min(misses, 20)  # jump past the damaged page, further each time
    finally:
        connection.close()
    return rows


def _plain_row(folder: str, key: Any, raw: Any, value: Any, mode: Any, filename: Any, expire_time: Any = None,
               tag: Any = None, access_time: Any = None) -> SalvagedRow | None:
    text = _plain_value(folder, key, raw, value, mode, filename)
    if text is None:
        return None
    return SalvagedRow(key, text, _number(expire_time), tag if isinstance(tag, str | int) else None,
                       _number(access_time) or 0.0)


def _number(value: Any) -> float | None:
    """A time column read back: a number, else None (a damaged row's garbage)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _plain_value(folder: str, key: Any, raw: Any, value: Any, mode: Any, filename: Any) -> str | int | float | None:
    if not raw or not isinstance(key, str):
        return None
    if mode == diskcache.core.MODE_RAW and isinstance(value, str | int | float) and not isinstance(value, bool):
        return value
    if mode == diskcache.core.MODE_RAW and isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if mode == diskcache.core.MODE_TEXT and isinstance(filename, str):
        try:
            with open(os.path.join(folder, filename), encoding="utf-8") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError):
            return None
    return None
