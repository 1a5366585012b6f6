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
from fpcli.search.index import KINDS, Index, decode_paths, encode_paths, index_of
from fpcli.search.saved import loaded_index, save_index
from fpcli.search.timbre import TIMBRE_COLUMNS
from fpcli.store import FingerprintStore, Record
from fpcli.store.census import census_summary
from fpcli.store.index_rows import IndexRow, index_row_of


@dataclasses.dataclass
class _Taken:
    """What the imported records give every kind's index, kept once however many kinds
    take a record (at a million records the second copy was gigabytes): record keys,
    latest paths and content digests as UTF-8 bytes (a Python string per row costs
    50 bytes more), and packed timbres, float32; in import order, one chunk per batch."""

    keys: list[np.ndarray] = dataclasses.field(default_factory=list)
    paths: list[np.ndarray] = dataclasses.field(default_factory=list)
    contents: list[np.ndarray] = dataclasses.field(default_factory=list)
    timbres: list[np.ndarray] = dataclasses.field(default_factory=list)   # (m, TIMBRE_COLUMNS)
    count: int = 0

    def add(self, rows: list[IndexRow]) -> np.ndarray:
        """Keep the shared fields of ``rows`` (one per record); returns their positions (m,)."""
        self.keys.append(encode_paths(np.array([row.key for row in rows], dtype=object)))
        self.paths.append(encode_paths(np.array([row.path for row in rows], dtype=object)))
        self.contents.append(encode_paths(np.array([row.digest for row in rows], dtype=object)))
        no_timbre = np.full(TIMBRE_COLUMNS, np.nan, dtype=np.float32)
        self.timbres.append(np.array([no_timbre if row.timbre is None else row.timbre for row in rows],
                                     dtype=np.float32).reshape(len(rows), TIMBRE_COLUMNS))
        positions = np.arange(self.count, self.count + len(rows))
        self.count += len(rows)
        return positions

    def joined(self) -> None:
        """Each list made one array (once: every kind then indexes into it)."""
        for name in ("keys", "paths", "contents"):
            chunks = getattr(self, name)
            if len(chunks) != 1:
                setattr(self, name, [np.concatenate(chunks) if chunks else np.zeros(0, dtype="S1")])
        if len(self.timbres) != 1:
            self.timbres = [np.concatenate(self.timbres or [np.zeros((0, TIMBRE_COLUMNS), np.float32)])]


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

    def add(self, records: list[Record], rows: list[tuple[int, IndexRow]]) -> None:
        """``rows``: (position among the taken fields, row) of the records with a row of this kind."""
        if self.base is not None and len(self.base):
            self.rewritten.update(r.key for r in records)
        if not rows:
            return
        self.values.append(np.array([[np.nan if v is None else v for v in row.values] for _, row in rows],
                                    dtype=np.float32).reshape(len(rows), len(KINDS[self.kind])))
        self.positions.append(np.array([position for position, _ in rows], dtype=np.intp))

    def index(self, taken: _Taken, params_key: str, generation: int, epoch: tuple[int, int]) -> Index:
        """The base's rows that the import left alone, then the last imported row of each key."""
        d = len(KINDS[self.kind])
        taken.joined()
        positions = np.concatenate(self.positions or [np.zeros(0, dtype=np.intp)])
        last = _last_of_each(taken.keys[0][positions])
        values = np.concatenate(self.values or [np.zeros((0, d), np.float32)])[last]
        rows = positions[last]
        keys, contents = decode_paths(taken.keys[0][rows]), decode_paths(taken.contents[0][rows])
        paths, timbre = taken.paths[0][rows], taken.timbres[0][rows]
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

    def add(self, records: list[Record]) -> None:
        self.changes += len(records)  # import_records journals one change per record it returns
        if not self.kinds:
            return
        rows = {kind: [index_row_of(r, kind, self.params_key, FINGERPRINT_VERSION) for r in records]
                for kind in self.kinds}
        # A record's key, path, digest and timbre are the same in every kind: kept once.
        firsts = [next((row for row in per_record if row is not None), None)
                  for per_record in zip(*rows.values(), strict=True)]
        indexed = [(i, row) for i, row in enumerate(firsts) if row is not None]
        position = dict(zip([i for i, _ in indexed], self.taken.add([row for _, row in indexed]).tolist(),
                            strict=True)) if indexed else {}
        for kind, kept in self.kinds.items():
            kept.add(records, [(position[i], row) for i, row in enumerate(rows[kind]) if row is not None])

    def finish(self) -> dict[str, Any]:
        """Save the indexes kept; returns what was done: ``saved`` {kind: rows} and the
        seconds it took, or ``skipped`` with the reason."""
        started = time.perf_counter()
        generation, epoch = self.store.generation(), self.store.index_epoch()
        if not self.kinds:
            return {"skipped": "the store held records but no current search index"}
        if (generation, epoch) != (self.started[0] + self.changes, self.started[1]):
            return {"skipped": "the store changed during the import (another writer, an eviction or an expiry)"}
        folder = self.store.backend.index_dir
        saved: dict[str, int] = {}
        for kind in list(self.kinds):
            # One kind at a time, each let go once saved: at a million records the rows
            # and the index of one kind are gigabytes.
            index = self.kinds.pop(kind).index(self.taken, self.params_key, generation, epoch)
            if save_index(index, folder):
                saved[kind] = len(index)
            del index
        self.taken = _Taken()
        return {"saved": saved, "seconds": time.perf_counter() - started}
