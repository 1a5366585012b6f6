"""The diskcache backend's meta part: shared counters and the change journal, in a
second diskcache (``meta``) beside the data, so that counting never competes with
the records for the size limit or for eviction."""

from __future__ import annotations

from collections.abc import Sequence

import diskcache

from fpcli.errors import StoreError
from fpcli.store.diskcache_sqlite import guard, is_text
from fpcli.store.protocol import JOURNAL_LIMIT

JOURNAL_TABLE = "Journal"   # in the meta database: generation (the change's number), key


class MetaCounters:
    """Counters (``incr``) and the journal of changed record keys (``JOURNAL_TABLE``)."""

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

    def _journal_start(self) -> None:
        """The journal's table in the meta database (made on open, as the census table).
        The ``change:N`` entries a store journaled in before it are removed: no read
        looks at them any more (an index older than the table is rebuilt once)."""
        self._meta._sql(f"CREATE TABLE IF NOT EXISTS {JOURNAL_TABLE} "
                        "(generation INTEGER PRIMARY KEY, key TEXT NOT NULL)")
        old = "key >= 'change:' AND key < 'change;' AND raw = 1"   # the key index's range of "change:*"
        if self._meta._sql(f"SELECT 1 FROM Cache WHERE {old} LIMIT 1").fetchone():
            self._meta._sql(f"DELETE FROM Cache WHERE {old}")

    def journal_extend(self, keys: Sequence[str], *, making_room: bool = False) -> int:
        """Append many changes in one meta transaction: rows numbered by generation,
        the rows that fall out of the journal removed as one range. A table of its own
        (a row is a rowid and a key) instead of ``change:N`` entries of diskcache's
        table, whose key, expiry and value columns and two indexes made the journal
        cost as much SQL as the records of an import."""
        if not keys:
            return self.generation()
        with guard(self.location), self._meta.transact():
            start = self.counter("generation")
            kept = keys[-JOURNAL_LIMIT:]
            con = self._meta._con
            con.executemany(f"INSERT OR REPLACE INTO {JOURNAL_TABLE} (generation, key) VALUES (?, ?)",
                            enumerate(kept, start=start + 1 + len(keys) - len(kept)))
            con.execute(f"DELETE FROM {JOURNAL_TABLE} WHERE generation <= ?", (start + len(keys) - JOURNAL_LIMIT,))
            return self._incr("generation", len(keys))

    def journal_since(self, generation: int) -> list[str] | None:
        current = self.generation()
        # Behind the index (a damaged counter restarted from 0): the changes are unknown, as
        # on Redis; [] kept a stale index current until the counter passed its old value.
        if current < generation or current - generation > JOURNAL_LIMIT:
            return None
        try:
            with guard(self.location):
                rows = self._meta._sql(f"SELECT key FROM {JOURNAL_TABLE} WHERE generation > ? AND generation <= ? "
                                       "ORDER BY generation", (generation, current)).fetchall()
        except StoreError:
            return None
        keys = [key for (key,) in rows]
        # Rows missing (a meta part rebuilt, a store journaled before the table) or a
        # damaged one: the changes are unknown, and an index is rebuilt.
        if len(keys) != current - generation or not all(isinstance(key, str) and is_text(key) for key in keys):
            return None
        return keys

    def journal_problems(self) -> list[str]:
        """``meta: journal entry N is not a key`` for each damaged row (``reset_meta``
        of ``journal:N`` removes it)."""
        with guard(self.location):
            rows = self._meta._sql(f"SELECT generation, key FROM {JOURNAL_TABLE}").fetchall()
        return [f"meta: journal entry journal:{generation} is not a key" for generation, key in rows
                if not (isinstance(key, str) and is_text(key))]

    def forget_journal_entry(self, name: str) -> bool:
        """Remove the journal row ``journal:N`` names; False for any other name."""
        number = name.removeprefix("journal:")
        if number == name or not number.isdigit():
            return False
        with guard(self.location):
            self._meta._sql(f"DELETE FROM {JOURNAL_TABLE} WHERE generation = ?", (int(number),))
        return True

    def generation(self) -> int:
        return self.counter("generation")
