"""A shared store on Redis, behind the same small interface as ``DiskcacheBackend``.

Selected by ``--store redis://[user:password@]host:port/db`` (or ``rediss://``; the
password may also come from FPCLI_REDIS_PASSWORD). Values are JSON text, never
pickles. Keys live under ``fpcli:data:`` (records, path entries, failures) and
``fpcli:meta:`` (counters and the change journal, shared by every client);
``fpcli bench`` uses a private namespace instead and deletes it afterwards.

Eviction is Redis's: set ``maxmemory`` and ``maxmemory-policy volatile-lru``. Every
data key carries an expiry (the store's TTL, or a year), meta keys never do, so
under volatile-lru Redis evicts least-recently-used fingerprints and never the shared
counters; ``cache stats`` warns about any other policy. Evictions and expiries are
Redis's own INFO counters (server-wide).
"""

from __future__ import annotations

import hashlib
import os
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import platformdirs
import redis
import redis.backoff
import redis.exceptions
import redis.retry

from fpcli.errors import StoreError
from fpcli.store.protocol import JOURNAL_LIMIT

DEFAULT_EXPIRY_S = 365 * 24 * 3600  # data keys always expire, so volatile-lru can evict them
RECOMMENDED_POLICY = "volatile-lru"
SCHEMES = ("redis://", "rediss://")
T = TypeVar("T")


def is_redis_url(location: str | os.PathLike | None) -> bool:
    return isinstance(location, str) and location.startswith(SCHEMES)


class RedisBackend:
    """Key/value storage in a Redis database; values are JSON-able data."""

    def __init__(self, url: str, *, ttl_s: float | None = None, namespace: str = "fpcli") -> None:
        self._data = f"{namespace}:data:"
        self._meta = f"{namespace}:meta:"
        parsed = urllib.parse.urlparse(url)
        try:
            port = parsed.port
        except ValueError:
            raise StoreError(f"{_redact(url)}: the port must be a number from 1 to 65535") from None
        if not parsed.hostname:
            raise StoreError(f"{_redact(url)}: not a Redis URL (redis://[user:password@]host:port/db)")
        self.host, self.port = parsed.hostname, port or 6379
        self.location = _redact(url)
        self.ttl_s = ttl_s
        password = parsed.password or os.environ.get("FPCLI_REDIS_PASSWORD")
        try:
            db = int((parsed.path or "/0").lstrip("/") or 0)
        except ValueError:
            raise StoreError(f"{self.location}: the database must be a number (redis://host:port/0)") from None
        # About 4 s of retries of a refused or dropped connection: rides through a restart,
        # yet a dead server is reported quickly. A timeout is not retried: a TLS handshake
        # with a plain server (rediss:// by mistake) would otherwise hang 7 x 10 s.
        retry = redis.retry.Retry(redis.backoff.ExponentialBackoff(cap=1.0, base=0.1), retries=6,
                                  supported_errors=(redis.exceptions.ConnectionError,))
        self._client = redis.Redis(
            host=self.host, port=self.port, db=db, username=parsed.username or None, password=password,
            ssl=parsed.scheme == "rediss", socket_timeout=10, socket_connect_timeout=3, retry=retry,
            retry_on_error=[redis.exceptions.ConnectionError], decode_responses=True,
        )
        self._call(self._client.ping)

    # -- error translation -----------------------------------------------------------------

    def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a Redis command; any Redis failure becomes one StoreError naming the server."""
        try:
            return function(*args, **kwargs)
        except redis.exceptions.AuthenticationError as exc:
            raise StoreError(f"Redis at {self.host}:{self.port}: authentication failed ({exc})") from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StoreError(f"Redis at {self.host}:{self.port}: cannot connect ({_first_line(exc)})") from None
        except redis.exceptions.RedisError as exc:
            raise StoreError(f"Redis at {self.host}:{self.port}: {_first_line(exc)}") from None

    # -- the store interface ---------------------------------------------------------------

    @property
    def index_dir(self) -> Path:
        """Search indexes of a Redis store live in the local user cache directory."""
        digest = hashlib.sha256(f"{self.location}|{self._data}".encode()).hexdigest()[:16]
        return Path(platformdirs.user_cache_dir("fpcli")) / "redis-index" / digest

    @property
    def size_limit(self) -> int:
        return int(self.config().get("maxmemory", 0))

    def config(self) -> dict[str, Any]:
        """maxmemory and maxmemory-policy (empty when CONFIG is not allowed, as on some hosted Redis)."""
        try:
            return {str(k): v for k, v in dict(self._client.config_get("maxmemory*")).items()}
        except redis.exceptions.RedisError:
            return {}

    def policy_warning(self) -> str | None:
        policy = self.config().get("maxmemory-policy")
        if policy is None or policy == RECOMMENDED_POLICY:
            return None
        return (f"Redis maxmemory-policy is {policy}; set {RECOMMENDED_POLICY} (with maxmemory) so that "
                "fingerprints, not the shared counters, are evicted")

    def get(self, key: str) -> str | None:
        text = self._call(self._client.get, self._data + key)
        return text if text is None or isinstance(text, str) else text.decode("utf-8", "replace")

    def put(self, key: str, text: str) -> None:
        expiry = int(self.ttl_s) if self.ttl_s and key.startswith("rec:") else DEFAULT_EXPIRY_S
        self._call(self._client.set, self._data + key, text, ex=max(expiry, 1))

    def delete(self, key: str) -> bool:
        return bool(self._call(self._client.delete, self._data + key))

    def keys(self, prefix: str = "") -> Iterator[str]:
        pattern = _glob_escape(self._data + prefix) + "*"
        for key in self._call(lambda: list(self._client.scan_iter(match=pattern, count=1000))):
            yield key[len(self._data):]

    def count(self, prefix: str) -> int:
        return sum(1 for _ in self.keys(prefix))

    def volume(self) -> int:
        return int(self._call(self._client.info, "memory").get("used_memory", 0))

    def add_counters(self, deltas: dict[str, int]) -> None:
        pipe = self._client.pipeline()
        for name, delta in deltas.items():
            if delta:
                pipe.incrby(self._meta + name, delta)
        self._call(pipe.execute)

    def counter(self, name: str) -> int:
        if name in ("evictions", "expiries"):
            stats = self._call(self._client.info, "stats")
            return int(stats.get("evicted_keys" if name == "evictions" else "expired_keys", 0))
        text = self._call(self._client.get, self._meta + name)
        try:
            return int(text or 0)
        except ValueError:  # a damaged counter counts from 0 rather than stopping every command
            return 0

    def journal_append(self, key: str) -> int:
        """INCR the generation and push the key on a list capped at JOURNAL_LIMIT, in one
        transaction (so the list's tail always ends at the generation)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(self._meta + "generation")
        pipe.rpush(self._meta + "journal", key)
        pipe.ltrim(self._meta + "journal", -JOURNAL_LIMIT, -1)
        return int(self._call(pipe.execute)[0])

    def journal_since(self, generation: int) -> list[str] | None:
        pipe = self._client.pipeline(transaction=True)
        pipe.get(self._meta + "generation")
        pipe.lrange(self._meta + "journal", 0, -1)
        current_text, journal = self._call(pipe.execute)
        missing = int(current_text or 0) - generation
        if missing < 0 or missing > len(journal):
            return None
        return list(journal[len(journal) - missing:]) if missing else []

    def generation(self) -> int:
        return self.counter("generation")

    def maintain(self) -> tuple[int, int]:
        """Nothing to do: Redis enforces expiry and maxmemory itself."""
        return 0, 0

    def clear(self) -> int:
        """Delete every fpcli key; the epoch survives and goes up by one."""
        epoch = self.counter("epoch")
        removed = 0
        for namespace in (self._data, self._meta):
            keys = self._call(lambda ns=namespace: list(self._client.scan_iter(match=ns + "*", count=1000)))
            for start in range(0, len(keys), 1000):
                deleted = self._call(self._client.delete, *keys[start : start + 1000])
                removed += deleted if namespace == self._data else 0
        self._call(self._client.set, self._meta + "epoch", epoch + 1)
        return removed

    def delete_namespace(self) -> None:
        """Remove every key of this namespace, the epoch included (for temporary stores)."""
        keys = self._call(lambda: list(self._client.scan_iter(match=_glob_escape(self._meta) + "*", count=1000)))
        if keys:
            self._call(self._client.delete, *keys)

    def check(self) -> list[str]:
        self._call(self._client.ping)
        return []

    def unsafe_keys(self) -> int:
        return 0  # values are strings parsed as JSON: nothing can be unpickled

    def remove_unsafe(self) -> int:
        return 0

    def reset_meta(self, name: str) -> None:
        self._call(self._client.delete, self._meta + name)

    def close(self) -> None:
        self._client.close()


def _redact(url: str) -> str:
    """The URL without its password (it goes into messages and stats)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.password is None:
        return url
    host_and_port = parsed.netloc.rpartition("@")[2]
    netloc = f"{parsed.username + ':' if parsed.username else ':'}***@{host_and_port}"
    return urllib.parse.urlunparse(parsed._replace(netloc=netloc))


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
