"""The diskcache backend's meta part: shared counters and the change journal, in a
second diskcache (``meta``) beside the data, so that counting never competes with
the records for the size limit or for eviction."""

from __future__ import annotations

import time
from collections.abc import Sequence

import diskcache
import diskcache.core

from fpcli.errors import StoreError
from fpcli.store.diskcache_sqlite import guard, is_text
from fpcli.store.protocol import JOURNAL_LIMIT


class MetaCounters:
    """Counters (``incr``) and the journal of changed record keys (``change:N``)."""

    location: str
    _meta: diskcache.Cache

    def add_counters(self, deltas: dict[str, int]) -> None:
        with guard(self.location):
            for name, delta in deltas.items():
                if delta:
                    self._incr(name, delta)

    def _incr(self, name: str, delta: int) -> int:
        try:
            return int(self._meta.incr(name, delta))
        except (TypeError, ValueError, StoreError):  # a damaged counter restarts rather than stops every run
            self._meta.set(name, delta)
            return delta

    def counter(self, name: str) -> int:
        try:
            with guard(self.location):
                value = self._meta.get(name, 0)
        except StoreError:
            return 0
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def journal_extend(self, keys: Sequence[str]) -> int:
        """Append many changes in one meta transaction (an import batch): the new
        ``change:N`` rows and the removal of those that fall out of the journal are
        two ``executemany`` on the meta table (``set`` costs five statements a row)."""
        if not keys:
            return self.generation()
        with guard(self.location), self._meta.transact():
            start = self.counter("generation")
            now = time.time()
            numbered = list(enumerate(keys[-JOURNAL_LIMIT:], start=start + 1 + max(0, len(keys) - JOURNAL_LIMIT)))
            names = [f"change:{g}" for g, _ in numbered]
            self._meta._con.executemany("DELETE FROM Cache WHERE key = ? AND raw = 1",
                                        [(name,) for name in names] +
                                        [(f"change:{g - JOURNAL_LIMIT}",) for g, _ in numbered])
            self._meta._con.executemany(
                "INSERT INTO Cache (key, raw, store_time, expire_time, access_time, access_count, tag, size, "
                "mode, filename, value) VALUES (?, 1, ?, NULL, ?, 0, NULL, 0, ?, NULL, ?)",
                [(name, now, now, diskcache.core.MODE_RAW, key) for name, (_, key) in zip(names, numbered,
                                                                                        strict=True)])
            return self._incr("generation", len(keys))

    def journal_since(self, generation: int) -> list[str] | None:
        current = self.generation()
        # Behind the index (a damaged counter restarted from 0): the changes are unknown, as
        # on Redis; [] kept a stale index current until the counter passed its old value.
        if current < generation or current - generation > JOURNAL_LIMIT:
            return None
        keys = []
        with guard(self.location):
            for g in range(generation + 1, current + 1):
                try:
                    key = self._meta.get(f"change:{g}")
                except StoreError:
                    return None
                if not isinstance(key, str) or not is_text(key):
                    return None   # a damaged entry: the changes are unknown (an index is rebuilt)
                keys.append(key)
        return keys

    def generation(self) -> int:
        return self.counter("generation")
