"""The interface both backends implement (diskcache on one machine, Redis shared).

Backends store *text* (JSON produced by ``records.dumps``) under string keys and know
nothing of records; the core parses and checks what they return. Three key spaces:
``rec:`` records (the only evictable entries, and the only ones counted as
evictions or expiries), ``path:`` / ``cand:`` / ``fail:`` small identity entries, and
the meta space (counters and the bounded change journal), which is never evicted.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

JOURNAL_LIMIT = 10_000  # changes kept; an index further behind rebuilds instead of replaying


class Backend(Protocol):
    location: str
    ttl_s: float | None

    @property
    def index_dir(self) -> Path:
        """Where search indexes of this store are kept."""
        ...

    @property
    def size_limit(self) -> int:
        """Bytes the data may take (0: no limit known)."""
        ...

    def get(self, key: str) -> str | None:
        """The text under ``key``, None if absent; ``BadEntryError`` if it is not text
        fpcli wrote (a pickle, undecodable bytes)."""
        ...

    def put(self, key: str, text: str) -> None:
        """Store ``text``; ``rec:`` keys carry the TTL and may be evicted."""
        ...

    def delete(self, key: str) -> bool: ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` that fpcli can read (never a pickled key)."""
        ...

    def count(self, prefix: str) -> int: ...

    def add_counters(self, deltas: dict[str, int]) -> None: ...

    def counter(self, name: str) -> int: ...

    def journal_append(self, key: str) -> int:
        """Record that ``key`` changed; returns the new generation."""
        ...

    def journal_since(self, generation: int) -> list[str] | None:
        """Keys changed after ``generation``; None when the journal no longer holds them."""
        ...

    def generation(self) -> int: ...

    def maintain(self) -> tuple[int, int]:
        """Enforce TTL and size limit: (records expired, records evicted)."""
        ...

    def volume(self) -> int: ...

    def clear(self) -> int: ...

    def check(self) -> list[str]:
        """Problems of the storage itself (database integrity, unreadable meta entries)."""
        ...

    def unsafe_keys(self) -> int:
        """Entries whose key fpcli cannot read (pickled keys): a sign of tampering."""
        ...

    def remove_unsafe(self) -> int:
        """Delete entries fpcli never writes (pickled keys or values); returns how many."""
        ...

    def reset_meta(self, name: str) -> None:
        """Repair: drop one meta entry (a damaged counter restarts from 0)."""
        ...

    def policy_warning(self) -> str | None: ...

    def close(self) -> None: ...
