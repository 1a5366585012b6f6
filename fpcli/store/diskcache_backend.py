"""The embedded default backend: a diskcache directory (SQLite + files).

Values are JSON text. ``SafeDisk`` refuses to write or read pickles, so a store
shared with others cannot run code on load. Culling is done here rather than inside
diskcache's ``set`` so that only records are evicted and each evicted record is
counted once; the store then forgets the identity entries of the records removed
(``removed_records``), which would otherwise fill the size limit over time.

The census (``cache stats``): every row carries its census tag in diskcache's
``tag`` column, and a small ``FpcliCensus`` table in the same SQLite database holds
the count per tag. Every write, delete, expiry and eviction reads the tag of the row
it replaces or removes and adjusts the counts in the same transaction, so the counts
are exact and reading them costs one tiny query at any size. A store written before
the census existed (or rebuilt from a damaged database) is counted once, on first use.
"""

from __future__ import annotations

import collections
import contextlib
import os
import secrets
import sqlite3
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core

from fpcli.errors import BadEntryError, DamagedStoreError, StoreError
from fpcli.store.diskcache_meta import MetaCounters
from fpcli.store.diskcache_sqlite import (
    DATABASE,
    SIZE_LIMIT_KEY,
    BadValueFile,
    LenientCache,
    SafeDisk,
    as_sql_text,
    finish_rebuilds,
    guard,
    is_text,
    kept_size_limit,
    salvage,
)
from fpcli.store.protocol import BATCH, DATA_LOST_KEY, DATA_LOST_PROBLEM, Put, Tag, TagOf, kept_counts
from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB

RECORD_PREFIX = "rec:"
META_COUNTERS = ("hits", "misses", "evictions", "expiries", "generation", "epoch")
_NOT_DAMAGE = ("readonly", "read-only", "locked", "disk is full", "disk I/O")  # sqlite3 errors that are no damage
CENSUS_TABLE = "FpcliCensus"
EVICT_ROW_BYTES = 8192  # bytes freed per record evicted, at least (a v2 record's row is about 6 KB)

# maintain()'s selections. The record key range is written ``+key`` so that SQLite does
# not answer them through the key index, which made each one walk every record (2 us a
# row: 0.1 s per call at 50,000 records, seconds at 1,000,000, on every save and every
# import batch); they use diskcache's expire_time and access_time indexes instead and
# read only the rows they return.
EXPIRED_RECORDS = ("SELECT rowid, tag, filename, key, mode, value FROM Cache WHERE raw = 1 AND expire_time IS NOT NULL "
                   "AND expire_time < ? AND +key >= 'rec:' AND +key < 'rec;' LIMIT 100")
LEAST_RECENT_RECORDS = ("SELECT rowid, tag, filename, key, mode, value FROM Cache WHERE raw = 1 AND +key >= 'rec:' "
                        "AND +key < 'rec;' ORDER BY access_time LIMIT ?")
LOOKUP_CHUNK = 500  # keys per ``IN (...)`` query (SQLite allows 999 parameters in older builds)
CENSUS_READY = ""  # the row whose presence says the counts are complete (set by a recount)
_ABSENT = object()  # what ``_fetch`` gives for a key without an entry (a NULL value is an entry: damaged)
# SQLite's own memory per connection. diskcache's defaults (a 32 MiB page cache and a
# 64 MiB memory map, for each of data and meta) let a command's RSS grow with the store
# it writes: 60 -> 111 MiB over 2,000 -> 10,000 new files, flat at 57-60 MiB with these.
# Reads come from the OS page cache either way: a warm 10,000-file run, an import of
# 10,000 records and an index build from them took the same time with both settings.
# An import (a bulk write) was 6-9 % slower so (100,000 records, three pairs); it holds
# hundreds of MB of rows anyway, and gets diskcache's defaults meanwhile.
SQLITE_MEMORY = {"sqlite_cache_size": 1024, "sqlite_mmap_size": 0}  # pages of 4 KiB; bytes
BULK_SQLITE_MEMORY = {name: int(diskcache.core.DEFAULT_SETTINGS[name]) for name in SQLITE_MEMORY}
WAL_PAGES, BULK_WAL_PAGES = 1000, 16384   # SQLite's default; 64 MiB of 4 KiB pages (bulk_writes)


NEARLY_FULL_BYTES = 1 << 20   # free space below which a store cannot be opened (SQLite's files need ~200 KiB)


def _free_bytes(directory: str) -> int:
    """Bytes an unprivileged process may still write on ``directory``'s file system."""
    facts = os.statvfs(directory)
    return facts.f_bavail * facts.f_frsize


def _nearly_full(directory: str) -> bool:
    try:
        return _free_bytes(directory) < NEARLY_FULL_BYTES
    except OSError:
        return False


def _read_only_folder(directory: str) -> bool:
    """Whether ``directory`` is on a read-only file system or not writable by this
    process: SQLite then says "unable to open database file", which is no damage (a
    repair would only fail to move the database aside)."""
    try:
        read_only_mount = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only_mount = False
    return read_only_mount or not os.access(directory, os.W_OK)


class DiskcacheBackend(MetaCounters):
    """Key/value text in a diskcache directory: ``data`` (records and identity entries,
    size-limited) and ``meta`` (counters and the change journal, never evicted)."""

    expires_identities = False
    atomic_batches = True

    def __init__(self, directory: str, *, size_limit_mb: float | None, ttl_s: float | None = None) -> None:
        """``size_limit_mb`` None: the store's own limit (set by the last run that gave one),
        DEFAULT_SIZE_LIMIT_MB for a new store. A run without one set the default on every
        store it opened, and its next write evicted most of an 8,000 MiB catalogue
        without a word."""
        self.location = directory
        self.ttl_s = ttl_s
        self._size_limit_mb = size_limit_mb
        self._removed: list[tuple[str, str]] = []   # records maintain() removed (removed_records)
        try:
            os.makedirs(directory, exist_ok=True)
            self._open()
        except FileExistsError:
            # makedirs' "File exists" for a path that is a file, or a link to nothing.
            dangling = os.path.islink(directory) and not os.path.exists(directory)
            what = "a link to nothing" if dangling else "not a folder"
            raise StoreError(f"cannot open the store at {directory}: it is {what} (a store is a folder)") from None
        except OSError as exc:
            raise StoreError(f"cannot open the store at {directory}: {exc.strerror or exc}") from None
        except (sqlite3.Error, diskcache.Timeout) as exc:
            message = f"cannot open the store at {directory}: {exc}"
            read_only = "readonly" in str(exc) or _read_only_folder(directory)
            if read_only:
                message = (f"cannot open the store at {directory}: it is read-only ({exc}); fpcli writes to its "
                           "store even to read it (counters, journal): copy it to a writable place to read it")
            if "disk I/O" in str(exc) and _nearly_full(directory):
                # SQLite says "disk I/O error" when the disk is full while it maps its
                # shared-memory file: the common case of a full disk read as failing hardware.
                message += f" (its disk is full: {_free_bytes(directory) // 1024} KiB free)"
            if "disk is full" in str(exc) or "its disk is full" in message:
                # Not "remove the store's folder": what it holds is committed (an import that
                # filled the disk left 800 records in its write-ahead log), only not openable here.
                message += ("; opening a store writes to it (SQLite's settings), and what it holds is kept: free "
                            "some space on its disk, or copy the store's folder to a disk with room (cp -a) and "
                            "use that copy (an export works there)")
            if read_only or isinstance(exc, diskcache.Timeout) or any(w in str(exc) for w in _NOT_DAMAGE):
                raise StoreError(message) from None
            raise DamagedStoreError(message, directory) from None

    @staticmethod
    def holds_store(directory: str) -> bool:
        """Whether ``directory`` holds a store (either part's database: a store whose
        other part is damaged or gone is still one, for ``cache verify --repair``)."""
        return any(os.path.isfile(_database(directory, part)) for part in ("data", "meta"))

    def _open(self) -> None:
        finish_rebuilds(self.location)
        # A data part that is gone while the meta part is not (deleted by hand, or lost)
        # is made again empty: the epoch moves on, or a search index saved before passed
        # for current and answered every query with no hits (its rows all gone). An
        # emptied file (0 bytes: SQLite's empty database) is one gone: a search then
        # said "index refreshed, 4 tracks" and showed no hit, without a word.
        data_path = _database(self.location, "data")
        data_found = os.path.isfile(data_path)
        data_missing = not data_found or os.path.getsize(data_path) == 0
        data_lost = data_missing and os.path.isfile(_database(self.location, "meta"))
        size_mb = self._size_limit_mb
        if size_mb is None and data_missing:
            # A new store (diskcache's own default is 1 GiB), or a data part lost whose
            # limit the meta part kept a copy of.
            kept = kept_size_limit(os.path.join(self.location, "meta"))
            size_mb = DEFAULT_SIZE_LIMIT_MB if kept is None else kept / 2**20
        limit = {} if size_mb is None else {"size_limit": int(size_mb * 2**20)}   # else the one it holds
        self._data = LenientCache(
            os.path.join(self.location, "data"), disk=SafeDisk, eviction_policy="least-recently-used",
            cull_limit=0, statistics=False, **limit, **SQLITE_MEMORY,
        )
        self._meta = LenientCache(os.path.join(self.location, "meta"), disk=SafeDisk,
                                     eviction_policy="none", cull_limit=0, **SQLITE_MEMORY)
        # A copy of the limit beside the data part: a repair of a data part whose first
        # page is damaged reads it there (``diskcache_sqlite._size_limit_of``).
        with contextlib.suppress(sqlite3.Error, OSError):
            if self._meta.get(SIZE_LIMIT_KEY) != int(self._data.size_limit):
                self._meta.set(SIZE_LIMIT_KEY, int(self._data.size_limit))
        # The epoch starts at a random number, not 0: a meta part rebuilt empty (cache
        # verify --repair of a damaged one) must not pass for the old one, whose epoch
        # and generation the saved search index names. (Read-only stores keep theirs.)
        with contextlib.suppress(sqlite3.Error, OSError):
            self._meta.add("epoch", secrets.randbelow(1 << 48))
            if data_lost:
                self._meta.incr("epoch", 1)
            if data_lost and int(self._meta.get("generation", 0) or 0) > 0:   # records were written to it
                # Kept until a repair takes note of it: verify found such a store sound
                # ("0 problems") with every record gone.
                how = "emptied (0 bytes)" if data_found else "missing"
                self._meta.set(DATA_LOST_KEY, f"{time.strftime('%Y-%m-%d %H:%M')}, its database file {how}")
        self._data._sql(f"CREATE TABLE IF NOT EXISTS {CENSUS_TABLE} (tag TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        self._census_start()
        self._journal_start()

    def _census_start(self) -> None:
        """An empty store's census is exact from the start (all zero): without this,
        the first ``cache stats`` after filling a new store (an import of a million
        records) would count every entry once."""
        with self._data.transact():
            ready = self._data._sql(f"SELECT 1 FROM {CENSUS_TABLE} WHERE tag = ?", (CENSUS_READY,)).fetchone()
            if not ready and not self._data._sql("SELECT 1 FROM Cache LIMIT 1").fetchone():
                self._census_reset({})

    @property
    def size_limit(self) -> int:
        return int(self._data.size_limit)

    @property
    def index_dir(self) -> Path:
        """Search indexes of this store are kept beside it."""
        return Path(self.location) / "index"

    def policy_warning(self) -> str | None:
        """What ``stats`` warns of: a records' part found gone (until a repair notes it)."""
        with contextlib.suppress(sqlite3.Error, OSError):
            lost = self._meta.get(DATA_LOST_KEY)
            if lost is not None:
                return (f"the records' part (data/) was found gone and made again empty on {lost}: its records "
                        "are gone (a check of the store says more, and a repair takes note of it)")
        return None

    # -- entries ---------------------------------------------------------------------------

    # One indexed SELECT. diskcache's own ``get`` under the LRU policy runs a write
    # transaction on every read to move access_time (half of a cached look-up). Recency
    # comes from writes instead: a served record is rewritten when its last_used_at is
    # a day old (core.LAST_USED_RESOLUTION_S), so eviction is least-recently-used to
    # the day.
    _SELECT = ("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = 1 "
               "AND (expire_time IS NULL OR expire_time > ?)")

    def get(self, key: str) -> str | None:
        try:
            with guard(self.location):
                value = self._fetch(key)
            if value is _ABSENT:
                return None
        except UnicodeDecodeError:   # a large value's file with a damaged byte
            raise BadEntryError(key, ["not UTF-8 text (a damaged byte)"]) from None
        except StoreError as exc:
            if isinstance(exc, BadValueFile) or "refusing to unpickle" in str(exc) or "decode" in str(exc):
                raise BadEntryError(key, [str(exc)]) from None
            raise
        if isinstance(value, str) and not is_text(value):
            raise BadEntryError(key, ["not UTF-8 text (a damaged byte)"])
        if value is None:   # a row whose value is NULL: it was taken for no entry, and no repair removed it
            raise BadEntryError(key, ["no value (an empty field of the database)"])
        if isinstance(value, str):
            return value
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadEntryError(key, ["not UTF-8 text"]) from None
        raise BadEntryError(key, [f"a {type(value).__name__}, not JSON text"])

    def _fetch(self, key: str) -> Any:
        """The row's value as diskcache decodes it; ``_ABSENT`` when there is none."""
        rows = self._data._sql(self._SELECT, (key, time.time())).fetchall()
        if not rows:
            return _ABSENT
        ((mode, filename, value),) = rows
        try:
            return self._data._disk.fetch(mode, filename, value, False)
        except OSError:  # a large value's file was removed between the SELECT and the read
            return _ABSENT

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """The texts of unexpired entries under ``keys``, one query per LOOKUP_CHUNK
        keys. Like ``get``, a read leaves the rows' last-used time (LRU order) alone."""
        found: dict[str, str | None] = {}
        now = time.time()
        with guard(self.location):
            for start in range(0, len(keys), LOOKUP_CHUNK):
                chunk = list(keys[start:start + LOOKUP_CHUNK])
                rows = self._data._sql(
                    f"SELECT key, mode, filename, value FROM Cache WHERE raw = 1 AND key IN "
                    f"({','.join('?' * len(chunk))}) AND (expire_time IS NULL OR expire_time > ?)",
                    [*chunk, now]).fetchall()
                for key, mode, filename, value in rows:
                    found[key] = self._text(mode, filename, value)
        return [found.get(key) for key in keys]

    def put(self, key: str, text: str, tag: Tag = None) -> None:
        self.put_many([(key, text, tag)])

    def swap(self, key: str, expected: str | None, text: str | None, tag: Tag = None) -> bool:
        # One SQLite write transaction (BEGIN IMMEDIATE): other processes' writes wait.
        with guard(self.location), self._data.transact():
            try:
                current = self.get(key)
            except BadEntryError:
                current = None   # unreadable: no one's record to keep (``verify`` lists such entries)
            if current != expected:
                return False
            if text is None:
                deltas: collections.Counter[str] = collections.Counter()
                self._delete_counted(key, deltas)
                self._census_add(deltas)
            else:
                self.put_many([(key, text, tag)])
        return True

    def put_many(self, items: Sequence[Put]) -> None:
        """Write in one transaction (one commit for a whole import batch), adjusting
        the census by the tag of each row replaced.

        The rows replaced are found by one query per LOOKUP_CHUNK keys and the new
        rows written by two ``executemany`` (updates, inserts) straight into
        diskcache's table, exactly as its ``set`` writes them: ``set`` costs five
        statements a key, which made an import of 4 KB records spend most of its
        time in SQLite. Its count and size, which its triggers keep one row at a
        time (half of the SQL time of an import), are adjusted once for the rows
        written so (``_row_triggers_paused``). Text too long for a row (diskcache
        keeps it in a file) still goes through ``set``."""
        latest = {key: (text, tag) for key, text, tag in items}  # a key written twice: the last text wins
        now = time.time()
        expire = None if self.ttl_s is None else now + self.ttl_s
        deltas: collections.Counter[str] = collections.Counter()
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        replaced_size = 0   # diskcache's size of the rows the updates replace (0 for text kept in a row)
        with guard(self.location), self._data.transact():
            old = self._old_rows(list(latest))
            # A record read after its expiry is a miss; analysed again, its new text
            # replaces the expired row here, before maintain() could count it as expired.
            expired = sum(key.startswith(RECORD_PREFIX) and _expired(old.get(key), now) for key in latest)
            for key, (text, tag) in latest.items():
                rowid, old_tag, old_file, _, old_size = old.get(key, (None, None, None, None, 0))
                if old_tag:
                    deltas[old_tag] -= 1
                if tag:
                    deltas[tag] += 1
                when = expire if key.startswith(RECORD_PREFIX) else None
                if len(text) >= self._data._disk.min_file_size or old_file:
                    self._data.set(key, text, expire=None if when is None else when - now, tag=tag)
                elif rowid is None:
                    inserts.append((key, now, when, now, tag, diskcache.core.MODE_RAW, text))
                else:
                    updates.append((now, when, now, tag, diskcache.core.MODE_RAW, text, rowid))
                    replaced_size += old_size
            con = self._data._con
            with _row_triggers_paused(con, len(inserts), len(updates), -replaced_size):
                con.executemany("UPDATE Cache SET store_time = ?, expire_time = ?, access_time = ?, "
                                "access_count = 0, tag = ?, size = 0, mode = ?, filename = NULL, value = ? "
                                "WHERE rowid = ?", updates)
                con.executemany("INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, "
                                "tag, size, mode, filename, value) VALUES (?, 1, ?, ?, ?, 0, ?, 0, ?, NULL, ?)",
                                inserts)
            self._census_add(deltas)
        if expired:
            self.add_counters({"expiries": expired})

    def put_many_unless_changed(self, items: Sequence[Put], expected: Mapping[str, str | None]) -> set[str]:
        """Compared and written in one write transaction (other writers wait)."""
        with guard(self.location), self._data.transact():
            keys = list(expected)
            changed = {key for key, text in zip(keys, self.get_many(keys), strict=True) if text != expected[key]}
            self.put_many([item for item in items if item[0] not in changed])
        return changed

    def _old_rows(self, keys: list[str]) -> dict[str, tuple[int, Tag, str | None, float | None, int]]:
        """rowid, census tag, file name, expiry time and diskcache's size of the rows now
        under ``keys``."""
        found: dict[str, tuple[int, Tag, str | None, float | None, int]] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            rows = self._data._sql(f"SELECT key, rowid, tag, filename, expire_time, size FROM Cache WHERE raw = 1 "
                                   f"AND key IN ({','.join('?' * len(chunk))})", chunk).fetchall()
            for key, rowid, tag, filename, expire_time, size in rows:
                found[key] = (rowid, _row_tag_value(tag), filename, expire_time, size if isinstance(size, int) else 0)
        return found

    def delete(self, key: str) -> bool:
        deltas: collections.Counter[str] = collections.Counter()
        with guard(self.location), self._data.transact():
            deleted = self._delete_counted(key, deltas)
            self._census_add(deltas)
        return deleted

    def _row_tag(self, key: str) -> Tag:
        row = self._data._sql("SELECT tag FROM Cache WHERE key = ? AND raw = 1", (key,)).fetchone()
        return _row_tag_value(row[0]) if row else None

    def _delete_counted(self, key: str, deltas: collections.Counter[str]) -> bool:
        """Delete ``key`` (inside the caller's transaction), counting its tag as gone."""
        tag = self._row_tag(key)
        deleted = bool(self._data.delete(key))
        if deleted and tag:
            deltas[tag] -= 1
        return deleted

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Readable keys with ``prefix`` in key order, BATCH at a time by an indexed
        range query on diskcache's table (its private ``_sql``; ``iterkeys`` would
        unpickle a pickled key). Memory does not grow with the store."""
        for rows in self._ranges("key", prefix):
            yield from (key for (key,) in rows)

    def items(self, prefix: str = "") -> Iterator[tuple[str, str | None]]:
        """(key, text) of unexpired entries with ``prefix`` in key order, read BATCH at
        a time without touching their last-used time (a bulk read is no use); text is
        None for an entry fpcli cannot read (``get`` says why)."""
        for rows in self._ranges("key, mode, filename, value", prefix, unexpired=True):
            for key, mode, filename, value in rows:
                yield key, self._text(mode, filename, value)

    def _ranges(self, columns: str, prefix: str, *, unexpired: bool = False) -> Iterator[list[tuple[Any, ...]]]:
        """Batches of rows whose str key starts with ``prefix``, each batch one query
        resuming after the last key (no cursor is held between batches). A key that
        is not UTF-8 text is left out (``unsafe_keys`` counts it, a repair removes it)."""
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else None
        last: Any = prefix
        while True:
            # The last key as its bytes: a damaged one, read with a lone surrogate, can be bound so.
            after = "CAST(? AS TEXT)" if isinstance(last, str) else "?"
            query = f"SELECT {columns} FROM Cache WHERE raw = 1 AND key > {after}"
            args: list[Any] = [as_sql_text(last) if isinstance(last, str) else last]
            if upper is not None:
                query += " AND key < ?"
                args.append(upper)
            if unexpired:
                query += " AND (expire_time IS NULL OR expire_time > ?)"
                args.append(time.time())
            with guard(self.location):
                rows = self._data._sql(query + f" ORDER BY key LIMIT {BATCH}", args).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield [row for row in rows if isinstance(row[0], str) and is_text(row[0])]
            if len(rows) < BATCH:
                return

    def _text(self, mode: int, filename: str | None, value: Any) -> str | None:
        try:
            data = self._data._disk.fetch(mode, filename, value, False)
        except (StoreError, OSError, UnicodeDecodeError):   # a large value's file with a damaged byte
            return None
        if isinstance(data, bytes):
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return data if isinstance(data, str) and is_text(data) else None

    def count(self, prefix: str) -> int:
        with guard(self.location):
            if not prefix:
                return int(self._data._sql("SELECT COUNT(*) FROM Cache WHERE raw = 1").fetchone()[0])
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            return int(self._data._sql("SELECT COUNT(*) FROM Cache WHERE raw = 1 AND key >= ? AND key < ?",
                                       (prefix, upper)).fetchone()[0])

    # -- census ------------------------------------------------------------------------------

    def _census_add(self, deltas: collections.Counter[str]) -> None:
        changed = [(tag, n) for tag, n in deltas.items() if n]
        if changed:
            self._data._con.executemany(
                f"INSERT INTO {CENSUS_TABLE} (tag, n) VALUES (?, ?) ON CONFLICT(tag) DO UPDATE SET n = n + excluded.n",
                changed)

    def census(self) -> tuple[dict[str, int] | None, str | None]:
        """The maintained counts; None when this store was never counted."""
        with guard(self.location):
            rows = self._data._sql(f"SELECT tag, n FROM {CENSUS_TABLE}").fetchall()
        counts = kept_counts(rows)
        if counts is None or counts.pop(CENSUS_READY, None) is None:
            return None, None
        return {tag: n for tag, n in counts.items() if n}, None

    def recount(self, tag_of: TagOf) -> dict[str, int]:
        """Tag the rows written before the census (reading them once), then count the
        rows per tag and store that as the census, in one transaction."""
        with guard(self.location), self._data.transact():
            # A tag that is not UTF-8 text (a damaged byte) is dropped, and its row tagged anew.
            damaged = [(rowid,) for rowid, tag in self._data._sql(
                "SELECT rowid, tag FROM Cache WHERE tag IS NOT NULL AND raw = 1") if _row_tag_value(tag) is None]
            self._data._con.executemany("UPDATE Cache SET tag = NULL WHERE rowid = ?", damaged)
            untagged = self._data._sql(
                "SELECT rowid, key, mode, filename, value FROM Cache WHERE tag IS NULL AND raw = 1 AND "
                "((key >= 'rec:' AND key < 'rec;') OR (key >= 'fail:' AND key < 'fail;'))").fetchall()
            for rowid, key, mode, filename, value in untagged:
                text = self._text(mode, filename, value)
                tag = None if text is None else tag_of(key, text)
                if tag:
                    self._data._sql("UPDATE Cache SET tag = ? WHERE rowid = ?", (tag, rowid))
            rows = self._data._sql("SELECT tag, COUNT(*) FROM Cache WHERE tag IS NOT NULL AND raw = 1 "
                                   "GROUP BY tag").fetchall()
            counts = {tag: int(n) for tag, n in rows if _row_tag_value(tag)}
            self._census_reset(counts)
        return counts

    def _census_reset(self, counts: dict[str, int]) -> None:
        self._data._sql(f"DELETE FROM {CENSUS_TABLE}")
        self._data._con.executemany(f"INSERT INTO {CENSUS_TABLE} (tag, n) VALUES (?, ?)",
                                    [*counts.items(), (CENSUS_READY, 1)])

    def unsafe_keys(self) -> int:
        """Rows with a pickled key, or a key that is not UTF-8 text (a damaged byte: no
        command can name it, so only a repair removes it), in either part (the meta
        part's pickled entries are ``check``'s). Read as a cursor: memory stays flat."""
        with guard(self.location):
            return sum(1 for _ in self._unsafe_rows(self._data, pickled=True)) + \
                sum(1 for _ in self._unsafe_rows(self._meta, pickled=False))

    @staticmethod
    def _unsafe_rows(cache: diskcache.Cache, *, pickled: bool, pickled_values: bool = False
                     ) -> Iterator[tuple[int, str | None]]:
        """(rowid, filename) of the rows fpcli never writes: with ``pickled``, pickled
        keys (and with ``pickled_values`` values); always, keys that are not UTF-8 text."""
        if pickled:
            yield from cache._sql("SELECT rowid, filename FROM Cache WHERE raw = 0" +
                                  (" OR mode = ?" if pickled_values else ""),
                                  (diskcache.core.MODE_PICKLE,) if pickled_values else ())
        for rowid, key, filename in cache._sql("SELECT rowid, key, filename FROM Cache WHERE raw = 1"):
            if isinstance(key, str) and not is_text(key):
                yield rowid, filename

    def remove_unsafe(self) -> int:
        """Delete rows with pickled keys or values (fpcli never writes either) and rows
        whose key is not UTF-8 text."""
        removed = 0
        with guard(self.location):
            for cache in (self._data, self._meta):
                for rowid, filename in list(self._unsafe_rows(cache, pickled=True, pickled_values=True)):
                    cache._sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
                    if filename:
                        cache._disk.remove(filename)
                    removed += 1
        return removed

    def volumes(self) -> tuple[int, int | None]:
        with guard(self.location):
            return int(self._data.volume()), int(self._meta.volume())

    # -- maintenance -------------------------------------------------------------------------

    def maintain(self, *, evict: bool = True) -> tuple[int, int]:
        """Remove expired records, then least-recently-used records down to the size
        limit, each selected then deleted here (not by diskcache's ``expire`` or cull,
        which delete silently) so the census loses exactly the kinds removed."""
        expired = evicted = 0
        with guard(self.location):
            # A look before the write transaction: a search on a store with nothing
            # expired takes no write lock.
            while self._data._sql(EXPIRED_RECORDS, (time.time(),)).fetchone() and \
                    (removed := self._remove_batch(EXPIRED_RECORDS, (time.time(),))):
                expired += removed
            if evict and self._size_limit_mb is None:
                # The store's own limit as it is now: a Dask worker keeps its store open
                # across runs, and evicted a catalogue raised to 5000 MiB since down to
                # the limit it had read when it opened it (every record, in a review).
                self._data.reset("size_limit")
            # One transaction per batch: SQLite gives freed pages back (auto_vacuum) at
            # commit, so the volume only drops once a batch is committed. A batch is
            # the excess over EVICT_ROW_BYTES (more than a record takes, so it rarely
            # overshoots): ten rows a commit made an import into a full store evict
            # a thousand records per batch in a hundred commits.
            while evict and (excess := self._data.volume() - self._data.size_limit) > 0 and (
                    removed := self._remove_batch(
                        LEAST_RECENT_RECORDS, (min(1000, max(10, excess // EVICT_ROW_BYTES)),))):
                evicted += removed
        self.add_counters({"expiries": expired, "evictions": evicted})
        return expired, evicted

    def _remove_batch(self, query: str, args: tuple[Any, ...]) -> int:
        """Delete the rows (rowid, tag, filename, key, mode, value) ``query`` selects,
        expired or not (diskcache's ``delete`` skips expired rows), and their census
        counts, in one transaction; diskcache's triggers keep its count and size. Their
        keys and texts wait in ``removed_records`` for the store to forget them."""
        deltas: collections.Counter[str] = collections.Counter()
        with self._data.transact():
            rows = self._data._sql(query, args).fetchall()
            for rowid, tag, *_ in rows:
                self._data._sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
                if _row_tag_value(tag):
                    deltas[tag] -= 1
            self._census_add(deltas)
        for _, _, filename, key, mode, value in rows:
            text = self._removed_text(mode, filename, value)
            if text is not None:
                self._removed.append((key, text))
            if filename:
                self._data._disk.remove(filename)
        return len(rows)

    def _removed_text(self, mode: int, filename: str | None, value: Any) -> str | None:
        """The text of a row just deleted (a large one is still in its file); None when
        it cannot be read."""
        try:
            text = self._data._disk.fetch(mode, filename, value, False)
        except (OSError, StoreError, ValueError):   # UnicodeDecodeError is a ValueError
            return None
        return text if isinstance(text, str) and is_text(text) else None

    def removed_records(self) -> list[tuple[str, str]]:
        """(key, text) of the records ``maintain`` removed since the last call."""
        removed, self._removed = self._removed, []
        return removed

    def clear(self) -> int:
        """Remove all data and counters; the epoch survives and goes up by one, so an
        index built before the clear knows it is stale."""
        epoch = self.counter("epoch")
        with guard(self.location):
            # Rows and census in one transaction: diskcache's own clear deletes in slices,
            # and an import committing a batch between them and the census reset left
            # stats a batch short of the entries (seen with `cache clear` during an import).
            with self._data.transact():
                files = [row[0] for row in self._data._sql("SELECT filename FROM Cache WHERE filename IS NOT NULL")]
                removed = int(self._data._sql("SELECT COUNT(*) FROM Cache").fetchone()[0])
                self._data._sql("DELETE FROM Cache")
                self._census_reset({})
            for filename in files:
                self._data._disk.remove(filename)
            self._meta.clear()
            self._meta.set("epoch", epoch + 1)
        return removed

    def check(self) -> list[str]:
        """SQLite's own integrity check of both databases, diskcache's files-vs-rows
        check, and the type of every meta entry."""
        problems = []
        for name, cache in (("data", self._data), ("meta", self._meta)):
            try:
                rows = cache._sql("PRAGMA integrity_check").fetchall()
            except sqlite3.DatabaseError as exc:
                problems.append(f"{name}: SQLite cannot check the database ({exc})")
                continue
            problems += [f"{name}: SQLite: {row[0]}" for row in rows if row[0] != "ok"][:20]
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    cache.check(fix=False)
                problems += [f"{name}: diskcache: {w.message}" for w in caught]
            except (sqlite3.DatabaseError, OSError) as exc:
                problems.append(f"{name}: diskcache cannot check its files ({exc})")
        problems += self._meta_problems()
        return problems

    def _meta_problems(self) -> list[str]:
        problems = []
        try:
            rows = self._meta._sql("SELECT key, raw, mode, value FROM Cache").fetchall()
        except sqlite3.DatabaseError as exc:
            return [f"meta: unreadable ({exc})"]
        for key, raw, mode, value in rows:
            if not raw or mode == diskcache.core.MODE_PICKLE:
                problems.append("meta: a pickled entry (not written by fpcli)")
            elif key in META_COUNTERS and not isinstance(value, int):
                problems.append(f"meta: counter {key} is not a number")
        try:
            problems += self.journal_problems()
        except (sqlite3.DatabaseError, StoreError) as exc:
            problems.append(f"meta: the journal is unreadable ({exc})")
        lost = next((value for key, _, _, value in rows if key == DATA_LOST_KEY), None)
        if lost is not None:
            problems.append(f"{DATA_LOST_PROBLEM}: the records' part (data/) was made again empty on {lost}: the "
                            "records it held are gone (restore the store's folder from a backup, or analyse the "
                            "library again); a repair takes note of it")
        return problems

    def rebuild(self) -> dict[str, int]:
        """Repair: each part whose database SQLite finds damaged is moved aside (kept
        as ``<part>.damaged-<time>``) and rebuilt from the rows that can still be read.
        Returns {"moved_aside": parts, "rebuilt": rows kept}, with "records_moved_aside"
        and "records_read_back" when the records' part was one (``salvage``)."""
        damaged = [name for name, problem in ((p.split(":")[0], p) for p in self.check()) if "SQLite" in problem]
        if not damaged:
            return {"moved_aside": 0, "rebuilt": 0}
        self.close()
        done = salvage(self.location, damaged)   # the rebuilt part keeps the store's size limit
        self._open()
        records = {"records_moved_aside": 1, "records_read_back": done["records_read_back"]} \
            if done.get("records_moved_aside") else {}
        return {"moved_aside": done["moved_aside"], "rebuilt": done["salvaged"], **records}

    def reset_meta(self, name: str) -> None:
        """Repair: drop one meta entry (a damaged counter restarts from 0, a data loss is
        taken note of) or journal row."""
        if self.forget_journal_entry(name):
            return
        with guard(self.location):
            self._meta.delete(name)

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        self._sqlite_memory(BULK_SQLITE_MEMORY)
        self._wal_pages(BULK_WAL_PAGES)
        try:
            yield
        finally:
            self._sqlite_memory(SQLITE_MEMORY)
            self._wal_pages(WAL_PAGES)

    def _wal_pages(self, pages: int) -> None:
        """Let the write-ahead log grow to ``pages`` before a commit copies it into the
        database (a checkpoint): a bulk write commits a batch of 1,000 records (about 4
        MB) at a time, and SQLite's default of 1,000 pages checkpointed after every
        one, rewriting the table's and the indexes' inner pages each time."""
        for cache in (self._data, self._meta):
            cache._sql(f"PRAGMA wal_autocheckpoint = {int(pages)}").fetchall()

    def _sqlite_memory(self, settings: dict[str, int]) -> None:
        """Set the page cache (pages) and memory map (bytes) of both connections."""
        for cache in (self._data, self._meta):
            cache._sql(f"PRAGMA cache_size = {int(settings['sqlite_cache_size'])}")
            cache._sql(f"PRAGMA mmap_size = {int(settings['sqlite_mmap_size'])}").fetchall()

    def close(self) -> None:
        """Close both parts; ``StoreError`` when the data part's database file is gone
        (its folder removed meanwhile): SQLite went on writing to the deleted file, and a
        run that lost every result ended "analysed 126", exit 0. (Only a missing file is
        taken as removed: some network file systems do not keep inode numbers stable.)"""
        self._data.close()
        self._meta.close()
        if not os.path.isfile(_database(self.location, "data")):
            raise StoreError(f"the store at {self.location} was removed while fpcli used it: what this run "
                             "stored is lost (run it again)")




# diskcache's triggers that keep its count and size of rows one row at a time.
ROW_TRIGGERS = ("Settings_count_insert", "Settings_size_insert", "Settings_size_update")
PAUSE_MIN_ROWS = 64   # fewer rows: not worth two schema changes


@contextlib.contextmanager
def _row_triggers_paused(con: sqlite3.Connection, inserted: int, updated: int, size_change: int) -> Iterator[None]:
    """Inside the caller's transaction: diskcache's row triggers dropped while the
    block writes ``inserted`` rows (of size 0) and updates rows to size 0, then made
    again from their own SQL, and diskcache's count and size changed once by what
    they would have added (``size_change``: the sizes the updates replaced, negated).
    Each trigger is an UPDATE of diskcache's Settings per row: 1.6 of 3.4 s for the
    60,000 rows of 20,000 imported records. All in one transaction, so no other
    connection ever sees the store without them, and a failure or a kill rolls the
    whole back (the triggers with it: none is made again after an error, which in a
    transaction SQLite rolled back itself would find them there). A schema this does
    not know (other triggers) is left alone."""
    if inserted + updated < PAUSE_MIN_ROWS:
        yield
        return
    names = ",".join("?" * len(ROW_TRIGGERS))
    made = dict(con.execute(f"SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND name IN ({names})",
                            ROW_TRIGGERS).fetchall())
    if sorted(made) != sorted(ROW_TRIGGERS):
        yield
        return
    for name in ROW_TRIGGERS:
        con.execute(f"DROP TRIGGER {name}")
    yield
    for name in ROW_TRIGGERS:
        con.execute(made[name])
    con.execute("UPDATE Settings SET value = value + ? WHERE key = 'count'", (inserted,))
    con.execute("UPDATE Settings SET value = value + ? WHERE key = 'size'", (size_change,))


def _database(directory: str, part: str) -> str:
    """The SQLite file of a store part ("data" or "meta"), as diskcache names it."""
    return os.path.join(directory, part, DATABASE)


def _expired(row: tuple[int, Tag, str | None, float | None, int] | None, now: float) -> bool:
    """Whether a row found by ``DiskcacheBackend._old_rows`` had expired by ``now``."""
    expire_time = None if row is None else row[3]
    return expire_time is not None and expire_time <= now


def _row_tag_value(tag: Any) -> str | None:
    """A row's census tag as read, or None when it is none or not UTF-8 text (a damaged
    byte: bound back into the census table, it raised UnicodeEncodeError)."""
    return tag if isinstance(tag, str) and tag and is_text(tag) else None
