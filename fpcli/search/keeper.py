"""Search indexes kept current through a bulk import, so that the first search after
``cache import`` loads a saved index instead of reading every record again.

An import already parses every record it writes; ``ImportedRows`` takes each written
record's index row as it goes (``index_row_of``: the row a build would take from the
stored text) and, when the import ends, saves the index of the store as it now is:
the rows of the index that was current when the import began, less the records the
import rewrote, plus the imported rows. This holds only when nothing else changed the
store meanwhile: the store's generation must have moved by exactly the import's own
changes and its epoch (evictions, expiries, clears) not at all. Otherwise, and when
the store held records but no current index, nothing is saved and the first search
builds (or refreshes) the index as it always does.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from fpcli.params import FINGERPRINT_VERSION
from fpcli.search.index import KINDS, Index, decode_paths, index_of, row_fields, row_values
from fpcli.search.saved import keep_shared_current, loaded_index, save_index
from fpcli.store import FingerprintStore
from fpcli.store.census import census_summary
from fpcli.store.index_rows import IndexRow, index_row_of
from fpcli.store.reading import ImportedBatch


@dataclasses.dataclass
class _Taken:
    """What the imported records give every kind's index, kept once however many kinds
    take a record (at a million records the second copy was gigabytes): ``row_fields``
    (packed timbres, keys, paths and digests as UTF-8 bytes), in import order, one chunk
    per batch."""

    chunks: list[tuple[np.ndarray, ...]] = dataclasses.field(default_factory=list)
    count: int = 0

    def add(self, rows: list[IndexRow]) -> np.ndarray:
        """Keep the shared fields of ``rows`` (one per record); returns their positions (m,)."""
        self.chunks.append(row_fields(rows))
        positions = np.arange(self.count, self.count + len(rows))
        self.count += len(rows)
        return positions

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(timbre, keys, paths, digests) of every record taken, each one array (joined
        once: every kind then indexes into it)."""
        if len(self.chunks) != 1:
            self.chunks = [row_fields([]) if not self.chunks else
                           tuple(np.concatenate(part) for part in zip(*self.chunks, strict=True))]
        return self.chunks[0]


@dataclasses.dataclass
class _Rows:
    """The rows of one kind taken from imported records, in import order (their values,
    and their positions among the ``_Taken`` fields), and the base index they extend
    (None: an empty store)."""

    kind: str
    base: Index | None
    values: list[np.ndarray] = dataclasses.field(default_factory=list)     # (m, d) float32 chunks
    positions: list[np.ndarray] = dataclasses.field(default_factory=list)  # (m,) into the _Taken fields
    rewritten: set[str] = dataclasses.field(default_factory=set)           # every key written, indexed or not

    def add(self, keys: list[str], rows: list[tuple[int, IndexRow]]) -> None:
        """``keys``: of every record written; ``rows``: (position among the taken fields,
        row) of the records with a row of this kind."""
        if self.base is not None and len(self.base):
            self.rewritten.update(keys)
        if not rows:
            return
        self.values.append(row_values([row for _, row in rows], self.kind))
        self.positions.append(np.array([position for position, _ in rows], dtype=np.intp))

    def index(self, taken: _Taken, params_key: str, generation: int, epoch: tuple[int, int]) -> Index:
        """The base's rows that the import left alone, then the last imported row of each key."""
        d = len(KINDS[self.kind])
        all_timbre, all_keys, all_paths, all_contents = taken.arrays()
        positions = np.concatenate(self.positions or [np.zeros(0, dtype=np.intp)])
        last = _last_of_each(all_keys[positions])
        values = np.concatenate(self.values or [np.zeros((0, d), np.float32)])[last]
        rows = positions[last]
        keys, contents = decode_paths(all_keys[rows]), decode_paths(all_contents[rows])
        paths, timbre = all_paths[rows], all_timbre[rows]
        base = self.base
        if base is not None and len(base):
            kept = ~np.isin(base.keys, np.array(sorted(self.rewritten), dtype=str))
            values = np.concatenate([base.values[kept], values])
            timbre = np.concatenate([base.timbre_rows()[kept], timbre])
            keys = np.concatenate([base.keys[kept], keys]).astype(str)
            paths = np.concatenate([base.encoded_paths()[kept], paths])
            contents = np.concatenate([base.contents[kept], contents]).astype(str)
        return index_of(self.kind, params_key, values, keys, paths, contents, timbre, generation, epoch)


def _last_of_each(keys: np.ndarray) -> np.ndarray:
    """Positions of the last occurrence of each key, in order of position."""
    if not len(keys):
        return np.zeros(0, dtype=np.intp)
    _, first_from_end = np.unique(keys[::-1], return_index=True)
    return np.sort(len(keys) - 1 - first_from_end)


class ImportedRows:
    """Collects index rows of the records an import writes (``add``, given to
    ``import_store`` as ``on_records``) and saves the indexes at the end (``finish``)."""

    def __init__(self, store: FingerprintStore, params_key: str) -> None:
        self.store = store
        self.params_key = params_key
        self.started = (store.generation(), store.index_epoch())
        self.changes = 0
        counts, note = store.backend.census()
        empty = counts is not None and note is None and census_summary(counts)["entries"] == 0
        self.kinds: dict[str, _Rows] = {}
        self.taken = _Taken()
        for kind in KINDS:
            base = loaded_index(store.backend.index_dir, kind, params_key)
            if base is not None and (base.generation, tuple(base.epoch)) == self.started:
                self.kinds[kind] = _Rows(kind, base)
            elif empty:
                self.kinds[kind] = _Rows(kind, None)

    def add(self, batch: ImportedBatch) -> None:
        self.changes += 2 * len(batch)  # import_batch journals each record it returns before and after
        if not self.kinds:
            return
        rows = {kind: [index_row_of(r, kind, self.params_key, FINGERPRINT_VERSION) for r in batch.records] +
                [v.index_row(kind, self.params_key, FINGERPRINT_VERSION) for v in batch.vouched]
                for kind in self.kinds}
        # A record's key, path, digest and timbre are the same in every kind: kept once.
        firsts = [next((row for row in per_record if row is not None), None)
                  for per_record in zip(*rows.values(), strict=True)]
        indexed = [(i, row) for i, row in enumerate(firsts) if row is not None]
        position = dict(zip([i for i, _ in indexed], self.taken.add([row for _, row in indexed]).tolist(),
                            strict=True)) if indexed else {}
        keys = batch.keys()
        for kind, kept in self.kinds.items():
            kept.add(keys, [(position[i], row) for i, row in enumerate(rows[kind]) if row is not None])

    def finish(self) -> dict[str, Any]:
        """Save the indexes kept (and share them again when the store shares its index);
        returns what was done: ``saved`` {kind: rows}, the kinds that could not be saved
        (``unsaved``: a full disk, a folder not writable), the seconds it took and the
        ``shared_bytes``, or ``skipped`` with the reason."""
        started = time.perf_counter()
        generation, epoch = self.store.generation(), self.store.index_epoch()
        if not self.kinds:
            return {"skipped": "the store held records but no current search index"}
        if (generation, epoch) != (self.started[0] + self.changes, self.started[1]):
            return {"skipped": "the store changed during the import (another writer, an eviction or an expiry)"}
        folder = self.store.backend.index_dir
        saved: dict[str, int] = {}
        unsaved: list[str] = []
        shared = 0
        for kind in list(self.kinds):
            # One kind at a time, each let go once saved: at a million records the rows
            # and the index of one kind are gigabytes.
            index = self.kinds.pop(kind).index(self.taken, self.params_key, generation, epoch)
            if save_index(index, folder):
                saved[kind] = len(index)
                shared += keep_shared_current(self.store, index, rebuilt=True)
            else:
                unsaved.append(kind)
            del index
        self.taken = _Taken()
        return {"saved": saved, "unsaved": unsaved, "seconds": time.perf_counter() - started,
                "shared_bytes": shared}
