"""The persistent fingerprint store (ARCHITECTURE.md, "The store").

Two layers:

* ``DiskcacheBackend``: a small key/value interface (get, put, delete, iterate,
  counters, maintenance) over ``diskcache.Cache``. Values are JSON text; the
  ``SafeDisk`` below refuses to write or read pickles, so a store shared with others
  cannot run code on load. A networked backend only has to offer the same methods.
* ``FingerprintStore``: track identity, records, failures and statistics on top.

Keys::

    rec:<content_key>:<params_key>   one record per content and analysis parameters
    path:<resolved path>             size, mtime_ns and content key last seen there
    fail:<resolved path>             a file that could not be analysed

Identity: a path seen before with the same size and mtime_ns is unchanged, and its
content key is taken from the path entry without reading the file; a path seen
before with another size or mtime is changed (a miss, whatever its content); a path
never seen is identified by its content key (sha256 of size + first and last 64 KiB),
so a moved or renamed file is still a hit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import diskcache
import diskcache.core
import platformdirs

from fpcli.errors import FpcliError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS, Fingerprint
from fpcli.params import FINGERPRINT_VERSION
from fpcli.results import TrackResult

DEFAULT_SIZE_LIMIT_MB = 256
RECORD_SCHEMA = 1
CONTENT_SAMPLE_BYTES = 64 * 1024
COUNTERS = ("hits", "misses", "evictions", "expiries")
LAST_USED_RESOLUTION_S = 3600.0  # refresh a record's last_used at most hourly (saves a write per hit)
STATS_FLUSH_LOOKUPS = 256        # lookups counted in memory before being added to the store


class StoreError(FpcliError):
    """The store cannot be opened, read or written, or holds something unsafe."""


def default_store_path() -> Path:
    """The user cache directory (platformdirs), e.g. ~/.cache/fpcli/store on Linux."""
    return Path(platformdirs.user_cache_dir("fpcli")) / "store"


class SafeDisk(diskcache.Disk):
    """diskcache serialisation that never pickles: keys and values must be str, bytes,
    int or float, and a pickled row found on disk is an error, not code to run."""

    _PLAIN = (str, bytes, int, float)

    def put(self, key):
        if type(key) not in self._PLAIN:
            raise StoreError(f"store keys must be str/bytes/int/float, not {type(key).__name__}")
        return super().put(key)

    def get(self, key, raw):
        if not raw:
            raise StoreError("the store holds a pickled key; refusing to unpickle it")
        return super().get(key, raw)

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if not read and type(value) not in self._PLAIN:
            raise StoreError(f"store values must be str/bytes/int/float, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode, filename, value, read):
        if mode == diskcache.core.MODE_PICKLE:
            raise StoreError("the store holds a pickled value; refusing to unpickle it")
        return super().fetch(mode, filename, value, read)


class DiskcacheBackend:
    """Key/value storage in a diskcache directory; values are JSON-able data.

    Culling is done explicitly after writes (``maintain``) rather than inside
    diskcache's ``set``, so that evictions and expiries can be counted.
    """

    def __init__(self, directory: str | os.PathLike, *, size_limit_mb: float = DEFAULT_SIZE_LIMIT_MB,
                 ttl_s: float | None = None) -> None:
        self.location = str(directory)
        self.ttl_s = ttl_s
        try:
            os.makedirs(directory, exist_ok=True)
            self._data = diskcache.Cache(
                os.path.join(directory, "data"), disk=SafeDisk, eviction_policy="least-recently-used",
                size_limit=int(size_limit_mb * 2**20), cull_limit=0, statistics=False,
            )
            # Counters live apart from the data so that eviction can never remove them.
            self._meta = diskcache.Cache(os.path.join(directory, "meta"), disk=SafeDisk,
                                         eviction_policy="none", cull_limit=0)
        except (OSError, diskcache.Timeout) as exc:
            raise StoreError(f"cannot open the store at {directory}: {exc}") from None
        except Exception as exc:  # sqlite3.DatabaseError for a file that is not a store
            raise StoreError(f"cannot open the store at {directory}: {exc}") from None

    @property
    def size_limit(self) -> int:
        return int(self._data.size_limit)

    @property
    def index_dir(self) -> Path:
        """Where search indexes of this store are kept: beside it."""
        return Path(self.location) / "index"

    def policy_warning(self) -> str | None:
        return None

    def get(self, key: str) -> Any | None:
        text = self._data.get(key)
        return None if text is None else json.loads(text)

    def put(self, key: str, value: Any) -> None:
        self._data.set(key, json.dumps(value, separators=(",", ":"), allow_nan=False), expire=self.ttl_s)

    def delete(self, key: str) -> bool:
        return bool(self._data.delete(key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        """String keys starting with ``prefix``. Read straight from diskcache's table
        (its private ``_sql``): ``iterkeys`` would unpickle a pickled key, and one
        hostile key must not stop a listing or a verify."""
        rows = self._data._sql("SELECT key FROM Cache WHERE raw = 1 ORDER BY rowid").fetchall()
        for (key,) in rows:
            if isinstance(key, str) and key.startswith(prefix):
                yield key

    def unsafe_keys(self) -> int:
        """Rows whose key is pickled (never written by fpcli): a sign of tampering."""
        return int(self._data._sql("SELECT COUNT(*) FROM Cache WHERE raw = 0").fetchone()[0])

    def __len__(self) -> int:
        return len(self._data)

    def volume(self) -> int:
        """Bytes on disk (SQLite pages plus value files)."""
        return int(self._data.volume())

    def add_counters(self, deltas: dict[str, int]) -> None:
        for name, delta in deltas.items():
            if delta:
                self._meta.incr(name, delta)

    def counter(self, name: str) -> int:
        return int(self._meta.get(name, 0))

    def next_counter(self, name: str) -> int:
        """Atomically increment a counter and return its new value."""
        return int(self._meta.incr(name, 1))

    def get_meta(self, name: str) -> Any | None:
        text = self._meta.get(name)
        return None if text is None else json.loads(text)

    def put_meta(self, name: str, value: Any) -> None:
        self._meta.set(name, json.dumps(value, separators=(",", ":")))

    def maintain(self) -> tuple[int, int]:
        """Remove expired entries, then evict least-recently-used ones down to the size
        limit. Returns (expired, evicted)."""
        expired = int(self._data.expire())
        evicted = int(self._data.cull())
        self.add_counters({"expiries": expired, "evictions": evicted})
        return expired, evicted

    def clear(self) -> int:
        """Remove all data and counters; the epoch survives and goes up by one, so an
        index built before the clear knows it is stale."""
        removed = int(self._data.clear())
        epoch = self.counter("epoch")
        self._meta.clear()
        self._meta.set("epoch", epoch + 1)
        return removed

    def check(self) -> list[str]:
        """diskcache's own consistency check (SQLite integrity, files vs rows)."""
        import warnings

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self._data.check(fix=False)
            self._meta.check(fix=False)
        return [str(w.message) for w in caught]

    def close(self) -> None:
        self._data.close()
        self._meta.close()


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """Who a file is: resolved path, size, mtime_ns and content key."""

    path: str
    size: int
    mtime_ns: int
    content_key: str


def content_key(path: str, size: int) -> str:
    """sha256 of the size and the first and last 64 KiB: cheap, and survives renames."""
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(CONTENT_SAMPLE_BYTES))
        if size > CONTENT_SAMPLE_BYTES:
            fh.seek(max(size - CONTENT_SAMPLE_BYTES, CONTENT_SAMPLE_BYTES))
            digest.update(fh.read(CONTENT_SAMPLE_BYTES))
    return digest.hexdigest()[:32]


@dataclasses.dataclass
class Lookup:
    """The answer of ``FingerprintStore.lookup``: the record (None on a miss) and the
    file's identity (None when the file cannot be read)."""

    record: dict[str, Any] | None
    identity: FileIdentity | None
    failure: dict[str, Any] | None = None  # a recorded failure for this unchanged file
    error: str | None = None               # why the file could not be identified


class FingerprintStore:
    """Records of analysed tracks, failures and hit statistics over a backend."""

    def __init__(self, backend: DiskcacheBackend, *, opened_with: dict[str, Any] | None = None) -> None:
        self.backend = backend
        # How to open this store again elsewhere (a Dask worker): location (a Redis URL
        # with its password), size limit and TTL.
        self.opened_with = opened_with or {"location": backend.location, "size_limit_mb": DEFAULT_SIZE_LIMIT_MB,
                                           "ttl_s": backend.ttl_s}
        self._pending = dict.fromkeys(COUNTERS[:2], 0)
        self._pending_lookups = 0

    @classmethod
    def open(cls, location: str | os.PathLike | None = None, *, size_limit_mb: float = DEFAULT_SIZE_LIMIT_MB,
             ttl_s: float | None = None) -> FingerprintStore:
        """Open (creating) the store at ``location``, FPCLI_STORE, or the user cache dir.

        A ``redis://`` or ``rediss://`` URL selects the shared Redis backend (its size
        limit is Redis's maxmemory); anything else is a diskcache directory.
        """
        location = location or os.environ.get("FPCLI_STORE") or default_store_path()
        if isinstance(location, str) and location.startswith(("redis://", "rediss://")):
            from fpcli.redis_store import RedisBackend  # only Redis users need the client

            backend: Any = RedisBackend(location, ttl_s=ttl_s)
        else:
            location = os.path.abspath(location)
            backend = DiskcacheBackend(location, size_limit_mb=size_limit_mb, ttl_s=ttl_s)
        return cls(backend, opened_with={"location": str(location), "size_limit_mb": size_limit_mb, "ttl_s": ttl_s})

    @property
    def location(self) -> str:
        return self.backend.location

    def close(self) -> None:
        self.flush_stats()
        self.backend.close()

    def __enter__(self) -> FingerprintStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ---------------------------------------------------------------------

    def identify(self, path: str | os.PathLike) -> FileIdentity:
        """Identity of a file; reads 128 KiB only for a path not seen unchanged before."""
        return self._identify(path)[0]

    def _identify(self, path: str | os.PathLike) -> tuple[FileIdentity, dict[str, Any] | None, bool]:
        """(identity, the path's stored entry or None, whether the file is unchanged
        since that entry). The content key is read from the entry when unchanged."""
        resolved = str(Path(path).resolve())
        st = os.stat(resolved)
        known = self.backend.get(f"path:{resolved}")
        unchanged = bool(known) and (known["size"], known["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        key = known["content_key"] if unchanged else content_key(resolved, st.st_size)
        return FileIdentity(resolved, st.st_size, st.st_mtime_ns, key), known, unchanged

    # -- lookups (counted) ------------------------------------------------------------------

    def lookup(self, path: str | os.PathLike, params_key: str, *, need_batch: bool = False) -> Lookup:
        """The stored record for ``path`` under ``params_key``, counted as a hit or a miss.

        A miss: no record, a record of another version or parameters, a file changed at
        its path, or (``need_batch``) a record without batch values. A file whose
        failure is recorded and which has not changed returns that failure (not counted).
        """
        try:
            identity, known, unchanged = self._identify(path)
        except OSError as exc:
            return Lookup(None, None, error=f"{path}: {exc.strerror or exc}")
        failure = self.backend.get(f"fail:{identity.path}")
        if failure and (failure["size"], failure["mtime_ns"]) == (identity.size, identity.mtime_ns):
            return Lookup(None, identity, failure=failure)
        record = None
        if unchanged or not known:  # a file changed at its path is a miss, whatever its content
            record = self.backend.get(record_key(identity.content_key, params_key))
        if record is not None and (record.get("fingerprint_version") != FINGERPRINT_VERSION
                                   or (need_batch and not record.get("batch"))):
            record = None
        self._count("hits" if record is not None else "misses")
        if record is not None:
            self._touch(record, identity, moved=not known)
        return Lookup(record, identity)

    def _touch(self, record: dict[str, Any], identity: FileIdentity, *, moved: bool) -> None:
        """Remember a moved file's new path; refresh last_used at most hourly."""
        now = time.time()
        if moved:
            record["path"] = identity.path
            self.backend.put(f"path:{identity.path}", _path_entry(identity))
        if moved or now - record.get("last_used_at", 0) > LAST_USED_RESOLUTION_S:
            record["last_used_at"] = now
            key = record_key(identity.content_key, record["params_key"])
            self.backend.put(key, record)
            if moved:
                self._journal(key)  # the index shows paths

    def _count(self, name: str) -> None:
        self._pending[name] += 1
        self._pending_lookups += 1
        if self._pending_lookups >= STATS_FLUSH_LOOKUPS:
            self.flush_stats()

    def flush_stats(self) -> None:
        """Add the lookups counted in memory to the shared counters."""
        if self._pending_lookups:
            self.backend.add_counters(self._pending)
            self._pending = dict.fromkeys(self._pending, 0)
            self._pending_lookups = 0

    # -- change journal (for incremental index refresh) ---------------------------------

    def _journal(self, key: str) -> None:
        """Record that ``key`` changed: generation N -> key, in the meta cache (never
        evicted). A search index replays the keys since its own generation."""
        generation = self.backend.next_counter("generation")
        self.backend.put_meta(f"change:{generation}", key)

    def generation(self) -> int:
        return self.backend.counter("generation")

    def changes_since(self, generation: int) -> list[str] | None:
        """Record keys changed after ``generation``, or None when the journal cannot
        tell (entries missing): the caller must then rebuild from all records."""
        keys = []
        for g in range(generation + 1, self.generation() + 1):
            key = self.backend.get_meta(f"change:{g}")
            if key is None:
                return None
            keys.append(key)
        return keys

    def index_epoch(self) -> tuple[int, int]:
        """(epoch, evictions + expiries): when either moves, records vanished without
        passing through the journal, and indexes must be rebuilt."""
        return self.backend.counter("epoch"), self.backend.counter("evictions") + self.backend.counter("expiries")

    # -- writes -----------------------------------------------------------------------

    def save(self, identity: FileIdentity, result: TrackResult, *, previous: dict[str, Any] | None = None) -> dict:
        """Store the record of an analysed file (keeping a previous record's validation
        and batch values when the new result has none) and forget any failure."""
        record = record_from_result(identity, result)
        if previous is not None and previous.get("content_key") == identity.content_key:
            record["batch"] = record["batch"] or previous.get("batch")
            record["validation"] = previous.get("validation")
        key = record_key(identity.content_key, record["params_key"])
        self.backend.put(key, record)
        self.backend.put(f"path:{identity.path}", _path_entry(identity))
        self.backend.delete(f"fail:{identity.path}")
        self._journal(key)
        self.backend.maintain()
        return record

    def update_record(self, record: dict[str, Any]) -> None:
        """Write back a record changed by the caller (e.g. a validation result)."""
        key = record_key(record["content_key"], record["params_key"])
        self.backend.put(key, record)
        self._journal(key)
        self.backend.maintain()

    def save_failure(self, identity: FileIdentity | None, path: str, error_type: str, message: str) -> None:
        """Record that ``path`` could not be analysed; skipped until it changes."""
        resolved = identity.path if identity else str(Path(path).resolve())
        try:
            st = os.stat(resolved)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime_ns = -1, -1
        self.backend.put(f"fail:{resolved}", {
            "path": resolved, "error_type": error_type, "message": message,
            "size": size, "mtime_ns": mtime_ns, "failed_at": time.time(),
        })
        self.backend.maintain()

    # -- reading everything -----------------------------------------------------------

    def records(self) -> Iterator[dict[str, Any]]:
        for key in list(self.backend.keys("rec:")):
            record = self.backend.get(key)
            if record is not None:
                yield record

    def failures(self) -> Iterator[dict[str, Any]]:
        for key in list(self.backend.keys("fail:")):
            failure = self.backend.get(key)
            if failure is not None:
                yield failure

    def record_for_path(self, path: str | os.PathLike) -> dict[str, Any] | None:
        """The newest record for a file (any parameters), without counting a lookup."""
        identity = self.identify(path)
        candidates = [self.backend.get(k) for k in self.backend.keys(f"rec:{identity.content_key}:")]
        candidates = [c for c in candidates if c]
        return max(candidates, key=lambda r: r.get("analysed_at", 0), default=None)

    def stats(self) -> dict[str, Any]:
        """Counts kept across runs, plus a census of the store. Plain data."""
        self.flush_stats()
        counters = {name: self.backend.counter(name) for name in COUNTERS}
        lookups = counters["hits"] + counters["misses"]
        versions: dict[str, int] = {}
        entries = 0
        with_batch = 0
        validated = 0
        for record in self.records():
            entries += 1
            version = str(record.get("fingerprint_version"))
            versions[version] = versions.get(version, 0) + 1
            with_batch += bool(record.get("batch"))
            validated += bool(record.get("validation"))
        return {
            "location": self.location,
            "entries": entries,
            "with_batch": with_batch,
            "validated": validated,
            "failures": sum(1 for _ in self.backend.keys("fail:")),
            "size_bytes": self.backend.volume(),
            "size_limit_bytes": self.backend.size_limit,
            "ttl_s": self.backend.ttl_s,
            **counters,
            "lookups": lookups,
            "hit_rate": counters["hits"] / lookups if lookups else None,
            "by_version": versions,
            "warnings": [w for w in [self.backend.policy_warning()] if w],
        }

    def delete_record(self, record: dict[str, Any]) -> None:
        key = record_key(record["content_key"], record["params_key"])
        self.backend.delete(key)
        self._journal(key)
        path = record.get("path")
        if path:
            entry = self.backend.get(f"path:{path}")
            if entry and entry.get("content_key") == record["content_key"]:
                self.backend.delete(f"path:{path}")

    def delete_failure(self, path: str) -> None:
        self.backend.delete(f"fail:{path}")

    def clear(self) -> int:
        """Remove every record, failure and counter; returns the entries removed."""
        self._pending = dict.fromkeys(self._pending, 0)
        self._pending_lookups = 0
        return self.backend.clear()


def record_key(content: str, params_key: str) -> str:
    return f"rec:{content}:{params_key}"


def _path_entry(identity: FileIdentity) -> dict[str, Any]:
    return {"size": identity.size, "mtime_ns": identity.mtime_ns, "content_key": identity.content_key}


def record_from_result(identity: FileIdentity, result: TrackResult) -> dict[str, Any]:
    """The stored form of an analysed track (plain JSON data, RECORD_SCHEMA)."""
    streaming = result.streaming
    now = time.time()
    return {
        "schema": RECORD_SCHEMA,
        "fingerprint_version": FINGERPRINT_VERSION,
        "params_key": streaming.params_key,
        "content_key": identity.content_key,
        "path": identity.path,
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "audio": {
            "duration_s": result.duration_s, "samplerate": result.samplerate, "channels": result.channels,
            "format": result.format, "subtype": result.subtype, "partial": result.status == "partial",
            "partial_reason": result.partial_reason,
        },
        "streaming": {
            "values": streaming.values, "confidence": streaming.confidence, "reasons": streaming.reasons,
            "chunks": streaming.chunks, "seconds": streaming.seconds,
        },
        "batch": None if result.batch is None else {"values": result.batch.values, "reasons": result.batch.reasons},
        "validation": None,
        "analysed_at": now,
        "last_used_at": now,
    }


def result_from_record(record: dict[str, Any], path: str | None = None) -> TrackResult:
    """A ``TrackResult`` (cached=True) rebuilt from a stored record."""
    audio, streaming, batch = record["audio"], record["streaming"], record.get("batch")
    common = {"params_key": record["params_key"], "complete": True, "version": record["fingerprint_version"]}
    return TrackResult(
        path=path or record["path"],
        status="partial" if audio["partial"] else "ok",
        duration_s=audio["duration_s"], samplerate=audio["samplerate"], channels=audio["channels"],
        format=audio["format"], subtype=audio["subtype"], partial_reason=audio["partial_reason"],
        streaming=Fingerprint(kind="streaming", values=streaming["values"], reasons=streaming["reasons"],
                              seconds=streaming["seconds"], confidence=streaming["confidence"],
                              chunks=streaming["chunks"], **common),
        batch=None if not batch else Fingerprint(kind="batch", values=batch["values"], reasons=batch["reasons"],
                                                 seconds=audio["duration_s"] or 0.0, **common),
        cached=True,
    )


# -- schema checks (verify and import) ----------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_dims(values: Any, names: tuple[str, ...], where: str) -> list[str]:
    if not isinstance(values, dict):
        return [f"{where} is not an object"]
    problems = []
    if set(values) != set(names):
        problems.append(f"{where} has dims {sorted(set(values) ^ set(names))[:3]} wrong")
    for name, value in values.items():
        if value is not None and not _is_number(value):
            problems.append(f"{where}.{name} is {value!r}, not a finite number or null")
    return problems


def check_record(record: Any) -> list[str]:
    """Every problem of a record's schema ([] when valid)."""
    if not isinstance(record, dict):
        return ["record is not a JSON object"]
    problems = []
    for key, kind in (("schema", int), ("fingerprint_version", int), ("params_key", str), ("content_key", str),
                      ("path", str), ("size", int), ("mtime_ns", int), ("audio", dict), ("streaming", dict),
                      ("analysed_at", (int, float))):
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            problems.append(f"{key} missing or not {getattr(kind, '__name__', 'a number')}")
    if problems:
        return problems
    if record["schema"] != RECORD_SCHEMA:
        problems.append(f"schema {record['schema']} is not {RECORD_SCHEMA}")
    if not all(c in "0123456789abcdef" for c in record["content_key"]) or len(record["content_key"]) != 32:
        problems.append("content_key is not 32 hex digits")
    streaming = record["streaming"]
    problems += _check_dims(streaming.get("values"), STREAMING_DIMS, "streaming.values")
    confidence = streaming.get("confidence")
    if not isinstance(confidence, dict) or set(confidence) != set(STREAMING_DIMS) or not all(
            _is_number(c) and 0 <= c <= 1 for c in confidence.values()):
        problems.append("streaming.confidence must give each streaming dim a number in [0, 1]")
    if not isinstance(streaming.get("reasons"), dict):
        problems.append("streaming.reasons is not an object")
    batch = record.get("batch")
    if batch is not None:
        if not isinstance(batch, dict):
            problems.append("batch is not an object")
        else:
            problems += _check_dims(batch.get("values"), BATCH_DIMS, "batch.values")
    audio = record["audio"]
    for key in ("duration_s", "samplerate", "channels"):
        if not _is_number(audio.get(key)):
            problems.append(f"audio.{key} is not a number")
    if not isinstance(audio.get("partial"), bool):
        problems.append("audio.partial is not true/false")
    validation = record.get("validation")
    if validation is not None and not isinstance(validation, dict):
        problems.append("validation is not an object")
    return problems


def check_failure(failure: Any) -> list[str]:
    if not isinstance(failure, dict):
        return ["failure is not a JSON object"]
    problems = []
    for key, kind in (("path", str), ("error_type", str), ("message", str), ("size", int), ("mtime_ns", int)):
        if not isinstance(failure.get(key), kind):
            problems.append(f"{key} missing or not {kind.__name__}")
    return problems


# -- maintenance: prune, verify, export, import ------------------------------------------

EXPORT_FORMAT = "fpcli-store-export"
MAX_IMPORT_LINE = 1 << 20  # a record is a few KiB; a longer line is rejected unread


def prune(store: FingerprintStore) -> list[tuple[str, str]]:
    """Drop records and failures of files that are gone or changed: [(path, why)]."""
    removed = []
    for record in list(store.records()):
        why = _file_state(record["path"], record["size"], record["mtime_ns"])
        if why:
            store.delete_record(record)
            removed.append((record["path"], why))
    for failure in list(store.failures()):
        why = _file_state(failure["path"], failure["size"], failure["mtime_ns"])
        if why:
            store.delete_failure(failure["path"])
            removed.append((failure["path"], f"failure: {why}"))
    return removed


def _file_state(path: str, size: int, mtime_ns: int) -> str | None:
    try:
        st = os.stat(path)
    except OSError:
        return "gone"
    return None if (st.st_size, st.st_mtime_ns) == (size, mtime_ns) else "changed"


def verify(store: FingerprintStore) -> list[str]:
    """Every integrity problem of the store: diskcache's own check, then each entry's
    schema and key consistency. [] when the store is sound."""
    problems = [f"diskcache: {w}" for w in store.backend.check()]
    unsafe = store.backend.unsafe_keys()
    if unsafe:
        problems.append(f"{unsafe} pickled key(s): refusing to unpickle them (not written by fpcli)")
    for key in list(store.backend.keys()):
        try:
            value = store.backend.get(key)
        except (StoreError, ValueError) as exc:
            problems.append(f"{key}: unreadable ({exc})")
            continue
        if value is None:
            continue  # expired or evicted meanwhile
        if key.startswith("rec:"):
            issues = check_record(value)
            if not issues and key != record_key(value["content_key"], value["params_key"]):
                issues.append("content_key/params_key do not match the key")
        elif key.startswith("fail:"):
            issues = check_failure(value)
        elif key.startswith("path:"):
            ok = isinstance(value, dict) and all(isinstance(value.get(k), t) for k, t in
                                                 (("size", int), ("mtime_ns", int), ("content_key", str)))
            issues = [] if ok else ["path entry is not {size, mtime_ns, content_key}"]
        else:
            issues = ["unknown key kind"]
        problems += [f"{key[:80]}: {issue}" for issue in issues]
    return problems


def export_store(store: FingerprintStore, destination: str | os.PathLike) -> dict[str, int]:
    """Write every record and failure as JSON Lines, atomically (temp file + rename)."""
    destination = Path(destination)
    temporary = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    counts = {"records": 0, "failures": 0}
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(json.dumps({"type": EXPORT_FORMAT, "version": 1, "exported_at": time.time()}) + "\n")
            for kind, items in (("record", store.records()), ("failure", store.failures())):
                for item in items:
                    out.write(json.dumps({"type": kind, "data": item}, allow_nan=False) + "\n")
                    counts[f"{kind}s"] += 1
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, destination)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise StoreError(f"cannot write {destination}: {exc.strerror or exc}") from None
    return counts


def import_store(store: FingerprintStore, source: str | os.PathLike) -> tuple[dict[str, int], list[str]]:
    """Read an export: every line is parsed as JSON only and checked against the
    schema; valid records and failures are stored, others rejected with a reason.
    Returns (counts, rejections as "line N: reason")."""
    counts = {"records": 0, "failures": 0}
    rejected: list[str] = []
    try:
        handle = open(source, "rb")
    except OSError as exc:
        raise StoreError(f"cannot read {source}: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(iter(lambda: handle.readline(MAX_IMPORT_LINE + 1), b""), start=1):
            reason = _import_line(store, raw, number, counts)
            if reason:
                rejected.append(f"line {number}: {reason}")
    store.backend.maintain()
    return counts, rejected


def _import_line(store: FingerprintStore, raw: bytes, number: int, counts: dict[str, int]) -> str | None:
    if len(raw) > MAX_IMPORT_LINE:
        return f"longer than {MAX_IMPORT_LINE} bytes"
    if not raw.strip():
        return None
    try:
        item = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        return f"not valid JSON ({str(exc)[:60]})"
    if not isinstance(item, dict) or "type" not in item:
        return "not an export line (an object with a 'type')"
    kind, data = item.get("type"), item.get("data")
    if kind == EXPORT_FORMAT:
        return None if number == 1 else "export header in the middle of the file"
    if kind == "record":
        problems = check_record(data)
        if problems:
            return "invalid record: " + "; ".join(problems[:3])
        key = record_key(data["content_key"], data["params_key"])
        store.backend.put(key, data)
        store._journal(key)
        store.backend.put(f"path:{data['path']}", {"size": data["size"], "mtime_ns": data["mtime_ns"],
                                                   "content_key": data["content_key"]})
        counts["records"] += 1
        return None
    if kind == "failure":
        problems = check_failure(data)
        if problems:
            return "invalid failure: " + "; ".join(problems[:3])
        store.backend.put(f"fail:{data['path']}", data)
        counts["failures"] += 1
        return None
    return f"unknown type {str(kind)[:40]!r}"


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")
