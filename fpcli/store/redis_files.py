"""Named sets of files kept in Redis for every client of a store (``SharedFiles``).

A set (the search index of one kind, say) is a JSON header under
``<prefix><name>`` and each file's bytes in chunks of CHUNK bytes under
``<prefix><name>:<token>:<file>:<i>``. A new set is written under a new random token
first and the header is swapped last (``SET ... GET``), then the chunks of the set it
replaced are deleted: a reader sees one whole set or, if the set was replaced while
it copied, finds a chunk gone and gives up (the caller then does without it). Every
file is checked against the size and SHA-256 its header names, so a damaged or
hostile set is never used. The names of the sets are kept in a Redis set at
``<prefix>`` without its colon, so that listing them needs no scan of the keyspace.
The keys live in the meta space: never expired nor evicted under volatile-lru, and
removed by ``cache clear``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

# Bytes per Redis value: one round trip well within the socket timeout. Just under
# 8 MiB, because Redis's allocator rounds a value of 8 MiB plus its header up to its
# next size class, 10 MiB: a quarter of the memory wasted.
CHUNK = (8 << 20) - 4096
MAX_CHUNKS = 1 << 20            # per file (8 TiB): a header naming more is not fpcli's
FILE_NAME = re.compile(r"[A-Za-z0-9_]{1,64}\Z")   # a file's short name: no path can be made of it
TOKEN = re.compile(r"[0-9a-f]{16}\Z")
SHA256 = re.compile(r"[0-9a-f]{64}\Z")


class IncompleteSet(Exception):
    """A chunk is missing or a file does not match its header."""


class RedisFileSets:
    """The shared file sets of one namespace; ``call`` runs a Redis command and turns
    its errors into ``StoreError`` (the backend's ``_call``)."""

    def __init__(self, call: Callable[..., Any], text: redis.Redis, binary: redis.Redis, prefix: str) -> None:
        self._call = call
        self._text = text
        self._binary = binary
        self._prefix = prefix

    def _key(self, name: str, *parts: str) -> str:
        return self._prefix + ":".join([name, *parts])

    @property
    def _registry(self) -> str:
        """The set of the names of the sets (listing them needs no scan of the keyspace)."""
        return self._prefix.rstrip(":")

    def names(self) -> list[str]:
        return sorted(str(name) for name in self._call(self._text.smembers, self._registry))

    def header(self, name: str) -> dict[str, Any] | None:
        text = self._call(self._text.get, self._key(name))
        try:
            header = json.loads(text) if text is not None else None
        except ValueError:
            return None
        return header if valid_header(header) else None

    def share(self, name: str, files: dict[str, Path], info: dict[str, Any]) -> int:
        token = secrets.token_hex(8)
        try:
            entries = {short: self._upload(self._key(name, token, short), path) for short, path in files.items()}
        except BaseException:
            self._delete_token(name, token)   # a failed upload (Redis out of memory...) leaves nothing behind
            raise
        header = {**info, "token": token, "files": entries}
        previous = self._call(self._text.set, self._key(name), json.dumps(header), get=True)
        self._call(self._text.sadd, self._registry, name)
        self._drop(name, previous)
        return sum(int(entry["bytes"]) for entry in entries.values())

    def _upload(self, stem: str, path: Path) -> dict[str, Any]:
        digest, size, chunks = hashlib.sha256(), 0, 0
        with open(path, "rb") as source:
            while chunk := source.read(CHUNK):
                self._call(self._binary.set, f"{stem}:{chunks}", chunk)
                digest.update(chunk)
                size += len(chunk)
                chunks += 1
        return {"chunks": chunks, "bytes": size, "sha256": digest.hexdigest()}

    def fetch(self, name: str, header: dict[str, Any], folder: Path) -> dict[str, Path] | None:
        if not valid_header(header):
            return None
        fetched: dict[str, Path] = {}
        try:
            for short, entry in header["files"].items():
                fetched[short] = self._download(self._key(name, header["token"], short), entry, folder)
        except IncompleteSet:
            for path in fetched.values():
                path.unlink(missing_ok=True)
            return None
        return fetched

    def _download(self, stem: str, entry: dict[str, Any], folder: Path) -> Path:
        """One file of a set into a new file in ``folder``, checked; raises IncompleteSet."""
        handle, temporary = tempfile.mkstemp(prefix=".fpcli-shared-", suffix=".npy", dir=folder)
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(handle, "wb") as out:
                for i in range(entry["chunks"]):
                    chunk = self._call(self._binary.get, f"{stem}:{i}")
                    size += len(chunk) if chunk is not None else 0
                    if chunk is None or size > entry["bytes"]:
                        raise IncompleteSet(stem)
                    digest.update(chunk)
                    out.write(chunk)
            if size != entry["bytes"] or digest.hexdigest() != entry["sha256"]:
                raise IncompleteSet(stem)
        except BaseException:
            os.unlink(temporary)
            raise
        return Path(temporary)

    def remove(self, name: str) -> int:
        previous = self._call(self._text.getdel, self._key(name))
        self._call(self._text.srem, self._registry, name)
        return self._drop(name, previous)

    def _drop(self, name: str, header_text: str | None) -> int:
        """Delete the chunks of the set ``header_text`` described; returns its bytes."""
        try:
            header = json.loads(header_text) if header_text is not None else None
        except ValueError:
            return 0
        if header is None or not valid_header(header):
            return 0
        self._delete_token(name, header["token"])
        return sum(int(entry["bytes"]) for entry in header["files"].values())

    def _delete_token(self, name: str, token: str) -> None:
        pattern = glob_escape(self._key(name, token)) + ":*"
        keys = self._call(lambda: list(self._text.scan_iter(match=pattern, count=1000)))
        for start in range(0, len(keys), 1000):
            self._call(self._text.delete, *keys[start : start + 1000])


def valid_header(header: Any) -> bool:
    """A header as ``share`` writes it: its token and file entries well formed."""
    if not isinstance(header, dict) or not isinstance(header.get("token"), str) or not TOKEN.match(header["token"]):
        return False
    files = header.get("files")
    return isinstance(files, dict) and all(
        isinstance(short, str) and FILE_NAME.match(short) and isinstance(entry, dict)
        and _count(entry.get("chunks"), MAX_CHUNKS) and _count(entry.get("bytes"), MAX_CHUNKS * CHUNK)
        and isinstance(entry.get("sha256"), str) and SHA256.match(entry["sha256"])
        for short, entry in files.items())


def _count(value: Any, most: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
