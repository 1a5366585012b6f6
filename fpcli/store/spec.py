"""Where a store lives: the one place a location string becomes a backend.

A ``redis://`` or ``rediss://`` URL selects the shared Redis backend (its size limit
is Redis's maxmemory); anything else is a diskcache directory, by default in the user
cache directory (platformdirs). A ``StoreSpec`` is plain picklable data, so a Dask
worker can open the same store.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path

import platformdirs

from fpcli.errors import ParameterError, StoreError
from fpcli.params import as_number
from fpcli.store.protocol import Backend
from fpcli.store.redis_address import RedisAddress

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
    scheme = location.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss") and ":" in location and not URL_LIKE.match(location):
        # redis:host:6379/0, without the slashes: it made the folder ./redis:host:6379/0.
        raise StoreError(f"{location}: write a Redis URL as {scheme}://host:port/db (for a folder of that name, "
                         f"write ./{location})")
    if not URL_LIKE.match(location):
        return
    if scheme in ("redis", "rediss"):
        raise StoreError(f"{location}: write a Redis URL as {scheme}://host:port/db")
    raise StoreError(f"{location}: a store is a folder or a Redis URL (redis://host:port/db), not {scheme}:// "
                     f"(for a folder of that name, write ./{location})")


@dataclasses.dataclass(frozen=True)
class StoreSpec:
    """How to open a store: location (None: FPCLI_STORE or the default directory),
    size limit in MiB (diskcache; any beyond MAX_SIZE_LIMIT_MB is that one, in effect no
    limit; None: the store's own, set by the last run that gave one, and
    DEFAULT_SIZE_LIMIT_MB for a new store) and TTL in seconds (None: no expiry). A
    location starting with ``~`` is in the user's home, as in a shell (a quoted ``~`` in
    a config file made a folder named ~)."""

    location: str | None = None
    size_limit_mb: float | None = None
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        """ParameterError for a value no store can use (the command line's checks, for
        the Python API): a size limit or TTL of 0 or less stored nothing while every
        save returned its record, NaN failed inside diskcache, and Redis read a
        negative TTL as one second."""
        if self.location is not None and not isinstance(self.location, str):
            raise ParameterError(f"{self.location!r}: a folder path or a redis:// URL", "location")
        size = None if self.size_limit_mb is None else as_number(self.size_limit_mb)
        if size is not None and math.isinf(size) and isinstance(self.size_limit_mb, int):
            size = float(MAX_SIZE_LIMIT_MB)   # an int beyond floats (10**400): no limit, as any past the maximum
        if self.size_limit_mb is not None and (size is None or not (math.isfinite(size) and size >= 1)):
            # At least 1 MiB, as on the command line: 1e-7 MiB was a limit of 0 bytes, which stored nothing.
            raise ParameterError(f"{self.size_limit_mb!r}: a finite number of MiB, at least 1 (at least "
                                 f"{MAX_SIZE_LIMIT_MB}: no limit)", "size_limit_mb")
        ttl = None if self.ttl_s is None else as_number(self.ttl_s)
        if self.ttl_s is not None and (ttl is None or not (math.isfinite(ttl) and ttl > 0)):
            raise ParameterError(f"{self.ttl_s!r}: a finite number of seconds above 0, or None for no expiry",
                                 "ttl_s")
        object.__setattr__(self, "size_limit_mb", size)   # numpy scalars as plain floats
        object.__setattr__(self, "ttl_s", ttl)

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
        if "\x00" in location:   # os.makedirs raised a bare "embedded null byte"
            raise StoreError("the store location holds a NUL character, which no directory name can")
        if is_redis_url(location):
            RedisAddress.parse(location)   # a malformed URL is refused before anything connects
        else:
            _refuse_url_like(location)
            location = os.path.abspath(os.path.expanduser(location))
        size = None if self.size_limit_mb is None else min(self.size_limit_mb, MAX_SIZE_LIMIT_MB)
        return dataclasses.replace(self, location=location, size_limit_mb=size)

    def open_backend(self, *, existing: bool = False) -> Backend:
        """The backend; with ``existing``, a Redis database that holds no fpcli store is a
        ParameterError (a diskcache folder is checked by the command line, before)."""
        spec = self.resolved()
        assert spec.location is not None
        if is_redis_url(spec.location):
            from fpcli.store.redis_backend import RedisBackend  # only Redis users need the client

            return RedisBackend(spec.location, ttl_s=spec.ttl_s, existing=existing)
        from fpcli.store.diskcache_backend import DiskcacheBackend

        return DiskcacheBackend(spec.location, size_limit_mb=spec.size_limit_mb, ttl_s=spec.ttl_s)
