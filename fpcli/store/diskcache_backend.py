"""The embedded default backend: a diskcache directory (SQLite + files).

Values are JSON text. ``SafeDisk`` refuses to write or read pickles, so a store
shared with others cannot run code on load. Culling is done here rather than inside
diskcache's ``set`` so that only records are evicted and each evicted record is
counted once (identity entries are small and removed by ``cache prune``).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core

from fpcli.errors import BadEntryError, DamagedStoreError, StoreError
from fpcli.store.protocol import JOURNAL_LIMIT

RECORD_PREFIX = "rec:"
META_COUNTERS = ("hits", "misses", "evictions", "expiries", "generation", "epoch")
_NOT_DAMAGE = ("readonly", "read-only", "locked", "disk is full", "disk I/O")  # sqlite3 errors that are no damage


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
        return super().fetch(mode, filename, value, read)


@contextlib.contextmanager
def _guard(location: str) -> Iterator[None]:
    """SQLite and file errors become one StoreError naming the store and the way out."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "disk is full" in str(exc) or "disk I/O" in str(exc):
            raise StoreError(f"the store at {location}: {exc} (finished tracks are kept)") from None
        if "readonly" in str(exc) or "read-only" in str(exc):
            raise StoreError(f"the store at {location} is read-only ({exc})") from None
        raise StoreError(f"the store at {location} is damaged ({exc})", repairable=True) from None
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"the store at {location} is damaged ({exc})", repairable=True) from None
    except diskcache.Timeout:
        raise StoreError(f"the store at {location} is locked by another process for too long") from None
    except OSError as exc:
        raise StoreError(f"the store at {location}: {exc.strerror or exc}") from None


class DiskcacheBackend:
    """Key/value text in a diskcache directory: ``data`` (records and identity entries,
    size-limited) and ``meta`` (counters and the change journal, never evicted)."""

    def __init__(self, directory: str, *, size_limit_mb: float, ttl_s: float | None = None) -> None:
        self.location = directory
        self.ttl_s = ttl_s
        self._size_limit_mb = size_limit_mb
        try:
            os.makedirs(directory, exist_ok=True)
            self._open()
        except OSError as exc:
            raise StoreError(f"cannot open the store at {directory}: {exc.strerror or exc}") from None
        except (sqlite3.Error, diskcache.Timeout) as exc:
            message = f"cannot open the store at {directory}: {exc}"
            if "readonly" in str(exc):
                message = f"cannot open the store at {directory}: it is read-only ({exc})"
            if isinstance(exc, diskcache.Timeout) or any(w in str(exc) for w in _NOT_DAMAGE):
                raise StoreError(message) from None
            raise DamagedStoreError(message, directory) from None

    def _open(self) -> None:
        self._data = diskcache.Cache(
            os.path.join(self.location, "data"), disk=SafeDisk, eviction_policy="least-recently-used",
            size_limit=int(self._size_limit_mb * 2**20), cull_limit=0, statistics=False,
        )
        self._meta = diskcache.Cache(os.path.join(self.location, "meta"), disk=SafeDisk,
                                     eviction_policy="none", cull_limit=0)

    @property
    def size_limit(self) -> int:
        return int(self._data.size_limit)

    @property
    def index_dir(self) -> Path:
        """Search indexes of this store are kept beside it."""
        return Path(self.location) / "index"

    def policy_warning(self) -> str | None:
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
            with _guard(self.location):
                value = self._fetch(key)
        except StoreError as exc:
            if "refusing to unpickle" in str(exc) or "decode" in str(exc):
                raise BadEntryError(key, [str(exc)]) from None
            raise
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadEntryError(key, ["not UTF-8 text"]) from None
        raise BadEntryError(key, [f"a {type(value).__name__}, not JSON text"])

    def _fetch(self, key: str) -> Any:
        rows = self._data._sql(self._SELECT, (key, time.time())).fetchall()
        if not rows:
            return None
        ((mode, filename, value),) = rows
        try:
            return self._data._disk.fetch(mode, filename, value, False)
        except OSError:  # a large value's file was removed between the SELECT and the read
            return None

    def put(self, key: str, text: str) -> None:
        expire = self.ttl_s if key.startswith(RECORD_PREFIX) else None
        with _guard(self.location):
            self._data.set(key, text, expire=expire)

    def delete(self, key: str) -> bool:
        with _guard(self.location):
            return bool(self._data.delete(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Readable keys with ``prefix``, by an indexed range query on diskcache's table
        (its private ``_sql``): ``iterkeys`` would unpickle a pickled key."""
        if prefix:
            query = "SELECT key FROM Cache WHERE raw = 1 AND key >= ? AND key < ? ORDER BY key"
            args: tuple[str, ...] = (prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1))
        else:
            query, args = "SELECT key FROM Cache WHERE raw = 1 ORDER BY key", ()
        with _guard(self.location):
            rows = self._data._sql(query, args).fetchall()
        yield from (key for (key,) in rows if isinstance(key, str))

    def count(self, prefix: str) -> int:
        return sum(1 for _ in self.keys(prefix))

    def unsafe_keys(self) -> int:
        with _guard(self.location):
            return int(self._data._sql("SELECT COUNT(*) FROM Cache WHERE raw = 0").fetchone()[0])

    def remove_unsafe(self) -> int:
        """Delete rows with pickled keys or values (fpcli never writes either)."""
        removed = 0
        with _guard(self.location):
            for cache in (self._data, self._meta):
                rows = cache._sql("SELECT rowid, filename FROM Cache WHERE raw = 0 OR mode = ?",
                                  (diskcache.core.MODE_PICKLE,)).fetchall()
                for rowid, filename in rows:
                    cache._sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
                    if filename:
                        cache._disk.remove(filename)
                    removed += 1
        return removed

    def volume(self) -> int:
        with _guard(self.location):
            return int(self._data.volume()) + int(self._meta.volume())

    # -- meta: counters and journal --------------------------------------------------------

    def add_counters(self, deltas: dict[str, int]) -> None:
        with _guard(self.location):
            for name, delta in deltas.items():
                if delta:
                    self._incr(name, delta)

    def _incr(self, name: str, delta: int) -> int:
        try:
            return int(self._meta.incr(name, delta))
        except (TypeError, ValueError, StoreError):  # a damaged counter restarts rather than stops every run
            self._meta.set(name, delta)
            return delta

    def counter(self, name: str) -> int:
        try:
            with _guard(self.location):
                value = self._meta.get(name, 0)
        except StoreError:
            return 0
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def journal_append(self, key: str) -> int:
        with _guard(self.location):
            generation = self._incr("generation", 1)
            self._meta.set(f"change:{generation}", key)
            self._meta.delete(f"change:{generation - JOURNAL_LIMIT}")
        return generation

    def journal_since(self, generation: int) -> list[str] | None:
        current = self.generation()
        if current - generation > JOURNAL_LIMIT:
            return None
        keys = []
        with _guard(self.location):
            for g in range(generation + 1, current + 1):
                try:
                    key = self._meta.get(f"change:{g}")
                except StoreError:
                    return None
                if not isinstance(key, str):
                    return None
                keys.append(key)
        return keys

    def generation(self) -> int:
        return self.counter("generation")

    # -- maintenance -------------------------------------------------------------------------

    def maintain(self) -> tuple[int, int]:
        """Remove expired records, then least-recently-used records down to the size
        limit. Only records carry an expiry, so ``expire`` counts records."""
        with _guard(self.location):
            expired = int(self._data.expire())
            evicted = 0
            while self._data.volume() > self._data.size_limit:
                oldest = self._data._sql(
                    "SELECT key FROM Cache WHERE raw = 1 AND key >= 'rec:' AND key < 'rec;' "
                    "ORDER BY access_time LIMIT 10").fetchall()
                if not oldest:
                    break
                evicted += sum(bool(self._data.delete(key)) for (key,) in oldest)
            self.add_counters({"expiries": expired, "evictions": evicted})
        return expired, evicted

    def clear(self) -> int:
        """Remove all data and counters; the epoch survives and goes up by one, so an
        index built before the clear knows it is stale."""
        epoch = self.counter("epoch")
        with _guard(self.location):
            removed = int(self._data.clear())
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
            elif isinstance(key, str) and key.startswith("change:") and not isinstance(value, str):
                problems.append(f"meta: journal entry {key} is not a key")
        return problems

    def rebuild(self) -> int:
        """Repair: each part whose database SQLite finds damaged is moved aside and
        rebuilt from the rows that can still be read. Returns the rows kept."""
        damaged = [name for name, problem in ((p.split(":")[0], p) for p in self.check()) if "SQLite" in problem]
        if not damaged:
            return 0
        self.close()
        kept = sum(_salvage_part(os.path.join(self.location, name)) for name in dict.fromkeys(damaged))
        self._open()
        return kept

    def reset_meta(self, name: str) -> None:
        """Repair: drop one meta entry (a damaged counter restarts from 0)."""
        with _guard(self.location):
            self._meta.delete(name)

    def close(self) -> None:
        self._data.close()
        self._meta.close()


# -- salvage: a database too damaged to open ------------------------------------------------

def salvage(directory: str) -> dict[str, int]:
    """Rebuild each part (``data``, ``meta``) of the store at ``directory`` whose
    database cannot be opened: read every row SQLite can still read, move the damaged
    part aside (``data.damaged-<time>``, kept for the user) and write the rows into a
    fresh database. Pickled rows are dropped. Returns what was done."""
    counts = {"moved_aside": 0, "salvaged": 0}
    for part in ("data", "meta"):
        folder = os.path.join(directory, part)
        try:
            diskcache.Cache(folder, disk=SafeDisk).close()
            continue
        except (sqlite3.Error, OSError):
            pass
        counts["salvaged"] += _salvage_part(folder)
        counts["moved_aside"] += 1
    return counts


def _salvage_part(folder: str) -> int:
    """Move the part at ``folder`` aside and write its readable rows into a fresh one."""
    rows = _readable_rows(folder)
    try:
        os.rename(folder, f"{folder}.damaged-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        with diskcache.Cache(folder, disk=SafeDisk) as fresh:
            for key, value in rows:
                fresh.set(key, value)
    except (OSError, sqlite3.Error) as exc:
        raise StoreError(f"cannot rebuild the store part {folder}: {exc}; move the store folder aside and "
                         "import an export into a new store") from None
    return len(rows)


def _readable_rows(folder: str) -> list[tuple[str, str | int | float]]:
    """(key, value) of every plain row SQLite can still read from ``folder``'s
    database, skipping past damaged pages (rowid order)."""
    db = os.path.join(folder, "cache.db")
    if not os.path.isfile(db):
        return []
    rows: list[tuple[str, str | int | float]] = []
    try:
        connection = sqlite3.connect(db, timeout=5)
    except sqlite3.Error:
        return rows
    last, misses = 0, 0
    try:
        while misses < 40:
            try:
                for rowid, key, raw, value, mode, filename in connection.execute(
                        "SELECT rowid, key, raw, value, mode, filename FROM Cache WHERE rowid > ? ORDER BY rowid",
                        (last,)):
                    last = rowid
                    item = _plain_row(folder, key, raw, value, mode, filename)
                    if item is not None:
                        rows.append(item)
                break
            except sqlite3.DatabaseError:
                misses += 1
                last += 1 << min(misses, 20)  # jump past the damaged page, further each time
    finally:
        connection.close()
    return rows


def _plain_row(folder: str, key: Any, raw: Any, value: Any, mode: Any,
               filename: Any) -> tuple[str, str | int | float] | None:
    if not raw or not isinstance(key, str):
        return None
    if mode == diskcache.core.MODE_RAW and isinstance(value, str | int | float) and not isinstance(value, bool):
        return key, value
    if mode == diskcache.core.MODE_RAW and isinstance(value, bytes):
        try:
            return key, value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if mode == diskcache.core.MODE_TEXT and isinstance(filename, str):
        try:
            with open(os.path.join(folder, filename), encoding="utf-8") as fh:
                return key, fh.read()
        except (OSError, UnicodeDecodeError):
            return None
    return None
