"""Where a store lives: the one place a location string becomes a backend.

A ``redis://`` or ``rediss://`` URL selects the shared Redis backend (its size limit
is Redis's maxmemory); anything else is a diskcache directory, by default in the user
cache directory (platformdirs). A ``StoreSpec`` is plain picklable data, so a Dask
worker can open the same store.
"""

from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from pathlib import Path

import platformdirs

from fpcli.errors import StoreError
from fpcli.store.protocol import Backend

DEFAULT_SIZE_LIMIT_MB = 256
# The largest size limit kept as given: 2**42 MiB (4 EiB), beyond any disk. A larger one
# means "no limit" and is kept as this one: diskcache stores the limit in bytes as a
# SQLite INTEGER, which ends at 2**63 - 1 (8 EiB), and 1e308 MiB is an infinite float.
MAX_SIZE_LIMIT_MB = 2**42
REDIS_SCHEMES = ("redis://", "rediss://")


def default_store_path() -> Path:
    """The user cache directory, e.g. ~/.cache/fpcli/store on Linux."""
    return Path(platformdirs.user_cache_dir("fpcli")) / "store"


def is_redis_url(location: str | os.PathLike[str] | None) -> bool:
    return isinstance(location, str) and location.startswith(REDIS_SCHEMES)


# "scheme:" then a slash: what a URL looks like (http://x, redis:/host, s3://bucket,
# REDIS://host: Redis URLs are taken in lower case only).
# One letter is a Windows drive (C:/Music), not a scheme.
URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/")


def _refuse_url_like(location: str) -> None:
    """A location that looks like a URL but is not a Redis one is a mistake (a typo
    such as ``redis:/host:6379/0``, or a store fpcli does not have): as a folder
    name it silently made ./redis:/host:6379/0. (Write ./http:/x for such a folder.)"""
    if not URL_LIKE.match(location):
        return
    scheme = location.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss"):
        raise StoreError(f"{location}: write a Redis URL as {scheme}://host:port/db")
    raise StoreError(f"{location}: a store is a folder or a Redis URL (redis://host:port/db), not {scheme}:// "
                     f"(for a folder of that name, write ./{location})")


@dataclasses.dataclass(frozen=True)
class RedisAddress:
    """Where a Redis URL points: host, port, database, user, password (``None`` when the
    URL holds none; the caller may take one from the environment) and TLS
    (``rediss://``). ``location`` is the URL without its password, for messages."""

    location: str
    host: str
    port: int
    db: int
    user: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """The address of ``redis://[user:password@]host[:port][/db]``; ``StoreError``
        saying what is wrong with any other form. Checked before anything connects, so
        the command line reports a malformed URL as a bad option (exit 2)."""
        try:
            parsed = urllib.parse.urlparse(url)
            port = parsed.port
            if port == 0:   # urllib reads ":0" as port 0, which ``port or 6379`` made the default port
                raise ValueError("port out of range")
        except ValueError as exc:
            # "redis://[::1" (an unclosed IPv6 bracket) raised from urlparse itself
            what = "the port must be a number from 1 to 65535" if "port" in str(exc) else \
                "not a Redis URL (redis://[user:password@]host:port/db)"
            raise StoreError(f"{_redacted(url)}: {what}") from None
        location = _redacted(url)
        if not parsed.hostname:
            raise StoreError(f"{location}: not a Redis URL (redis://[user:password@]host:port/db)")
        if parsed.query or parsed.fragment or parsed.params:
            # Nothing after the database is read: "?password=..." was ignored (and printed),
            # "?db=3" wrote to db 0.
            raise StoreError(f"{location}: a Redis URL is redis://[user:password@]host:port/db, nothing after "
                             "the database (a password goes before the host, or in FPCLI_REDIS_PASSWORD)")
        db_text = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
        # Digits only: int() also takes "+2", " 1" and "1_0"; Redis numbers its databases
        # from 0 (a server has 16 unless configured otherwise).
        if not (db_text == "" or (db_text.isascii() and db_text.isdigit() and len(db_text) <= 9)):
            raise StoreError(f"{location}: the database must be a number from 0 (redis://host:port/0)")
        db = int(db_text or 0)
        # Percent-encoded in the URL (a password with @ : / # ? can only be written so).
        user = urllib.parse.unquote(parsed.username) if parsed.username else None
        password = urllib.parse.unquote(parsed.password) if parsed.password else None
        return cls(location, parsed.hostname, port or 6379, db, user, password, parsed.scheme == "rediss")


def _redacted(url: str) -> str:
    """The URL without its password or anything after the database, where a password
    may have been put (it goes into messages and stats); a URL too malformed to parse
    is cut at its ``@`` for the same reason."""
    try:
        parsed = urllib.parse.urlparse(url)._replace(params="", query="", fragment="")
        password = parsed.password
        if password is None and not (parsed.params or parsed.query or parsed.fragment or "?" in url or "#" in url):
            return url   # nothing to hide (urlunparse turned "redis://" into "redis:")
    except ValueError:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else url.split("?")[0].split("#")[0]
    if password is not None:
        host_and_port = parsed.netloc.rpartition("@")[2]
        parsed = parsed._replace(netloc=f"{parsed.username + ':' if parsed.username else ':'}***@{host_and_port}")
    return urllib.parse.urlunparse(parsed)


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """How to open a store: location (None: FPCLI_STORE or the default directory),
    size limit in MiB (diskcache; any beyond MAX_SIZE_LIMIT_MB is that one, in effect no
    limit) and TTL in seconds (None: no expiry). A location starting with ``~`` is in the
    user's home, as in a shell (a quoted ``~`` in a config file made a folder named ~)."""

    location: str | None = None
    size_limit_mb: float = DEFAULT_SIZE_LIMIT_MB
    ttl_s: float | None = None

    def resolved(self) -> StoreSpec:
        """The same spec with the location made explicit (an absolute directory or a URL)."""
        location = self.location
        if location is None:
            location = os.environ.get("FPCLI_STORE")
            if location == "":
                location = None
        if location is None:
            location = str(default_store_path())
        if not location.strip():
            raise StoreError("the store location is empty: give a directory or a redis:// URL")
        if is_redis_url(location):
            RedisAddress.parse(location)   # a malformed URL is refused before anything connects
        else:
            _refuse_url_like(location)
            location = os.path.abspath(os.path.expanduser(location))
        return dataclasses.replace(self, location=location, size_limit_mb=min(self.size_limit_mb, MAX_SIZE_LIMIT_MB))

    def open_backend(self) -> Backend:
        spec = self.resolved()
        assert spec.location is not None
        if is_redis_url(spec.location):
            from fpcli.store.redis_backend import RedisBackend  # only Redis users need the client

            return RedisBackend(spec.location, ttl_s=spec.ttl_s)
        from fpcli.store.diskcache_backend import DiskcacheBackend

        return DiskcacheBackend(spec.location, size_limit_mb=spec.size_limit_mb, ttl_s=spec.ttl_s)
