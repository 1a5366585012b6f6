"""The interface both backends implement (diskcache on one machine, Redis shared).

Backends store *text* (JSON produced by ``records.dumps``) under string keys and know
nothing of records; the core parses and checks what they return. Three key spaces:
``rec:`` records (the only evictable entries, and the only ones counted as
evictions or expiries), ``path:`` / ``cand:`` / ``fail:`` small identity entries, and
the meta space (counters and the bounded change journal), which is never evicted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

# Changes kept; an index further behind rebuilds instead of replaying. Each write is
# journaled twice (before and after it: reading.StoreReader.journaled): 10,000 writes.
JOURNAL_LIMIT = 20_000
BATCH = 1000            # keys read or written per round trip / transaction by the bulk operations
DATA_LOST_KEY = "data_lost"            # meta entry: when a store part holding records was found gone
DATA_LOST_PROBLEM = "meta: data lost"  # how ``check`` begins the problem it reports (a repair notes it)

# A census tag names the kind of an entry for ``cache stats`` (``FingerprintStore``
# makes them: "rec:v1:b-p" ...; "fail"); None for entries that are not counted.
Tag = str | None
Put = tuple[str, str, Tag]                 # (key, text, tag), for ``put_many``
TagOf = Callable[[str, str], Tag]          # (key, text) -> tag, to recount legacy entries


class Backend(Protocol):
    location: str
    ttl_s: float | None
    # Whether identity entries (path and candidate entries) expire and are evicted by
    # the backend itself, as records are (Redis); else the store forgets them.
    expires_identities: bool
    # Whether put_many writes all or nothing (diskcache: one transaction); a Redis
    # pipeline is not (a MULTI would be refused whole at maxmemory): a batch that fails
    # midway may leave part of it stored.
    atomic_batches: bool

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

    def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """``get`` of each key in one round trip; a bad entry reads as None."""
        ...

    def put(self, key: str, text: str, tag: Tag = None) -> None:
        """Store ``text``; ``rec:`` keys carry the TTL and may be evicted. The census
        count of ``tag`` goes up by one, and that of the entry replaced down."""
        ...

    def swap(self, key: str, expected: str | None, text: str | None, tag: Tag = None) -> bool:
        """Write ``text`` under ``key`` (None: delete the entry, its census count going
        down) only if the entry there is still ``expected`` (None: absent), atomically
        across processes and clients; False, writing nothing, when another writer
        changed it first (read it again and retry)."""
        ...

    def put_many(self, items: Sequence[Put]) -> None:
        """``put`` of each item in one transaction (diskcache) or pipeline (Redis)."""
        ...

    def put_many_unless_changed(self, items: Sequence[Put], expected: Mapping[str, str | None]) -> set[str]:
        """``put_many`` of the items, but for each key of ``expected`` only while the
        entry there is still that text (None: absent), compared atomically per key
        with its write (a batch's compare-and-swap: an import's merges never write over
        what another process stored meanwhile). Returns the keys that had changed,
        none of which was written (read them again, merge, retry)."""
        ...

    def delete(self, key: str) -> bool:
        """Remove ``key`` (its census count goes down)."""
        ...

    def keys(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` that fpcli can read (never a pickled key),
        fetched in batches: memory does not grow with the store."""
        ...

    def items(self, prefix: str = "") -> Iterator[tuple[str, str | None]]:
        """(key, text) of entries with ``prefix``, read in batches (key order on
        diskcache, SCAN order on Redis); text None when fpcli cannot read it."""
        ...

    def census(self) -> tuple[dict[str, int] | None, str | None]:
        """(entries per census tag, None when exact or a note saying why the counts may
        be stale), read from maintained counters: never a scan."""
        ...

    def recount(self, tag_of: TagOf) -> dict[str, int]:
        """Count every entry again (a scan) and store the counts as the census."""
        ...

    def count(self, prefix: str) -> int: ...

    def add_counters(self, deltas: dict[str, int]) -> None: ...

    def counter(self, name: str) -> int: ...

    def journal_extend(self, keys: Sequence[str], *, making_room: bool = False) -> int:
        """Record that ``keys`` changed, in order, in one transaction or pipeline;
        returns the new generation. ``making_room``: the changes delete or shrink (a
        store full under noeviction still journals them)."""
        ...

    def journal_since(self, generation: int) -> list[str] | None:
        """Keys changed after ``generation``; None when the journal no longer holds them."""
        ...

    def generation(self) -> int: ...

    def maintain(self, *, evict: bool = True) -> tuple[int, int]:
        """Enforce TTL and (with ``evict``) the size limit: (records expired, records
        evicted). A check or a search removes expired records only: the size limit is
        the running command's, and a `cache verify` without the user's usual one evicted
        most of a store."""
        ...

    def removed_records(self) -> list[tuple[str, str]]:
        """(key, text) of the records ``maintain`` removed since the last call, so that
        the store can forget their identity entries (none where the backend expires
        and evicts those itself)."""
        ...

    def volumes(self) -> tuple[int, int | None]:
        """Bytes used: (what the size limit covers, what lies outside it or None). A
        diskcache store: its records' database, then its counters and journal (never
        evicted); Redis: the server's used memory (all of it under maxmemory), None."""
        ...

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

    def bulk_writes(self) -> AbstractContextManager[None]:
        """A context for writing many entries in a row (an import): the backend may hold
        more memory meanwhile to write faster."""
        ...

    def close(self) -> None: ...


# How a backend hands on a value it cannot give as text (a Redis key of another type, a
# value that does not decode): this mark, then the reason. It parses as no JSON: the
# entry is one bad entry, reported with that reason.
UNREADABLE_MARK = "\x00 "


@runtime_checkable
class SharedFiles(Protocol):
    """A backend that keeps named sets of files for every client of the store (Redis:
    the search index, which a diskcache store keeps in its own folder instead). A set
    is replaced whole: readers see the old set or the new one, never a mix."""

    def shared_names(self) -> list[str]:
        """The names of the sets kept."""
        ...

    def shared_header(self, name: str) -> dict[str, Any] | None:
        """The header of set ``name`` (``info`` as shared, plus ``files``), or None."""
        ...

    def share_files(self, name: str, files: dict[str, Path], info: dict[str, Any]) -> int:
        """Replace set ``name`` with these files (short name -> path) and ``info`` (JSON
        data); returns the bytes stored."""
        ...

    def fetch_files(self, name: str, header: dict[str, Any], folder: Path) -> dict[str, Path] | None:
        """Copy the files of the set ``header`` describes into new files in ``folder``;
        returns short name -> new file, or None (every copy removed) when the set is
        incomplete, replaced meanwhile or fails its checksums."""
        ...

    def unshare(self, name: str) -> int:
        """Remove set ``name``; returns the bytes freed."""
        ...


def kept_counts(pairs: Any) -> dict[str, int] | None:
    """The census as kept, (tag, count) pairs read from the store, as {tag: count};
    None when a count is not a whole number of at least 0 (a hand-edited table or
    hash): the census is then taken as never counted, and counted again by the first
    ``stats``, as a store's first one is. ``int("y")`` had stopped stats and verify with
    a traceback, and verify --repair could not mend it."""
    counts: dict[str, int] = {}
    for tag, count in pairs:
        text = count.decode("ascii", "replace") if isinstance(count, bytes) else count
        if type(text) is int and text >= 0:
            counts[str(tag)] = text
        elif isinstance(text, str) and text.isascii() and text.isdigit():
            counts[str(tag)] = int(text)
        else:
            return None
    return counts
