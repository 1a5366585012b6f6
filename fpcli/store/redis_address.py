"""Where a Redis URL points, read without the Redis client: the store's location is
checked (a malformed URL is a bad option, exit 2) before anything connects, and only
Redis users import the client."""

from __future__ import annotations

import dataclasses
import urllib.parse

from fpcli.errors import StoreError


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
            what = "the port must be a number from 1 to 65535" if "port" in str(exc).lower() else \
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
