"""Duplicates: the same recording in several files (another codec, bit depth or
sample rate, or a byte-identical copy), recognised by the records' duplicate keys
(``fpcli.dsp.dupes``).

* ``duplicate_groups``: every group of records of one recording in the store
  (``fpcli cache dupes``). Candidates are records of similar duration (sorted by
  duration, compared within DURATION_TOLERANCE_S), so the cost is n log n plus the
  pairs of near-equal duration, not n^2.
* ``drop_duplicates``: search hits without the query's duplicates and without a
  second copy of an earlier hit.
* ``starts_like``: a hit that a partial query (a preview, a stream) may be the start
  of (its key agrees over what both heard), which search marks and does not drop.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from fpcli.dsp.dupes import DURATION_TOLERANCE_S, MAX_BIT_ERRORS, MIN_SHARED_BITS, bit_errors, same_recording
from fpcli.params import FINGERPRINT_VERSION
from fpcli.store import Record


@dataclasses.dataclass(frozen=True)
class DupeGroup:
    """One recording stored as several records (or one record seen at several paths):
    every path, and the digests of the records."""

    paths: tuple[str, ...]
    digests: tuple[str, ...]


def same(a: Record, b: Record) -> bool:
    """Whether two records hold the same recording (same content, or matching keys)."""
    if a.digest == b.digest:
        return True
    if a.dupe_key is None or b.dupe_key is None:
        return False
    return same_recording(a.dupe_key, b.dupe_key, a.audio.duration_s, b.audio.duration_s)


def duplicate_groups(records: Iterable[Record]) -> list[DupeGroup]:
    """Groups (two paths or more) of the v2+ records of one recording: each record joins
    the first group whose first record it matches, else starts one; largest group
    first, then by first path. Not the transitive closure of matching pairs: A like B
    and B like C chained different short tracks into one group (7 tracks of 4-5 s in
    one measured library), which a user would delete as copies."""
    items = sorted((r for r in records if r.fingerprint_version == FINGERPRINT_VERSION),
                   key=lambda r: r.audio.duration_s)
    groups: list[list[Record]] = []
    near: list[list[Record]] = []     # the groups whose first record is within the duration tolerance
    for record in items:
        near = [g for g in near if record.audio.duration_s - g[0].audio.duration_s <= DURATION_TOLERANCE_S]
        home = next((g for g in near if same(g[0], record)), None)
        if home is None:
            home = [record]
            groups.append(home)
            near.append(home)
        else:
            home.append(record)
    found = []
    for group in groups:
        paths = tuple(sorted({p.path for r in group for p in r.paths}))
        if len(paths) > 1:
            found.append(DupeGroup(paths, tuple(sorted({r.digest for r in group}))))
    return sorted(found, key=lambda g: (-len(g.paths), g.paths[0]))


def drop_duplicates(query: Record, hits: Sequence[Record]) -> tuple[list[int], int]:
    """Indices of ``hits`` to keep (in order): not the query's recording, not the
    recording of an earlier kept hit. Returns (kept indices, how many dropped)."""
    kept: list[int] = []
    seen = [query]
    for i, record in enumerate(hits):
        if any(same(record, other) for other in seen):
            continue
        kept.append(i)
        seen.append(record)
    return kept, len(hits) - len(kept)


# Reliable bits a partial query's key must share with a hit's to mark the hit as
# probably the query's own recording (shown, not dropped). ``same`` needs
# MIN_SHARED_BITS; a preview of 2-4 s has 30-55 (real music, the same recording at 0
# errors, five other tracks at 28-61 % errors), so it was never marked: the query's
# own WAV copy came back as the first hit, unmarked. Below MIN_SHARED_BITS the share
# of errors allowed is SHORT_KEY_ERRORS: tracks made alike (one generator, other
# seeds) agreed on 39 of 42 bits of their first 3 s.
MIN_MARK_BITS = 24
SHORT_KEY_ERRORS = 0.03


def starts_like(query: Record, other: Record) -> bool:
    """Whether ``other`` may be the recording that a partial query (a preview, or a
    stream stopped after its first seconds) is the start of: ``other`` lasts as long
    as the query's stated length (or, when no header stated one, at least as long as
    what it heard), and their keys agree over the windows both heard, on at least
    MIN_MARK_BITS bits.

    Not proof enough to drop the hit, as the query's digest or a whole key would be:
    two different tracks may share their opening (measured: two tracks of one game
    score agree on 95 % of the bits of their first 10 s, 75 % over a minute), and which
    of them the query is, its first seconds cannot tell. False for a complete query."""
    if query.complete or query.dupe_key is None or other.dupe_key is None:
        return False
    heard = query.streaming.seconds
    if query.audio.duration_s > heard + DURATION_TOLERANCE_S:  # a stated length: the same length
        if abs(query.audio.duration_s - other.audio.duration_s) > DURATION_TOLERANCE_S:
            return False
    elif other.audio.duration_s < heard - DURATION_TOLERANCE_S:
        return False
    errors, count = bit_errors(query.dupe_key, other.dupe_key)
    return count >= MIN_MARK_BITS and errors <= (MAX_BIT_ERRORS if count >= MIN_SHARED_BITS else SHORT_KEY_ERRORS)
