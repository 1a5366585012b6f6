"""Duplicates: the same recording in several files (another codec, bit depth or
sample rate, or a byte-identical copy), recognised by the records' duplicate keys
(``fpcli.dsp.dupes``), and lossless copies (the same decoded audio in another
container or codec) also by their identical fingerprints (``same_decoded_audio``).

* ``duplicate_groups``: every group of records of one recording in the store
  (``fpcli cache dupes``). Candidates are records of similar duration (sorted by
  duration, compared within DURATION_TOLERANCE_S), each record with all of its
  candidates in one numpy pass (``RecordingTable``).
* ``same``: whether two records hold one recording; search drops a hit that is the
  query's recording or an earlier hit's.
* ``starts_like``: a hit that a partial query (a preview, a stream) may be the start
  of (its key agrees over what both heard), which search marks and does not drop.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Iterable

import numpy as np

from fpcli.dsp.dupes import (
    DURATION_TOLERANCE_S,
    MAX_BIT_ERRORS,
    MIN_SHARED_BITS,
    DupeKey,
    KeyRows,
    bit_errors,
    same_recording,
)
from fpcli.params import FINGERPRINT_VERSION
from fpcli.store import Record
from fpcli.store.records import PathSeen


@dataclasses.dataclass(frozen=True)
class DupeGroup:
    """One recording stored as several records (or one record seen at several paths):
    every path, and the digests of the records."""

    paths: tuple[str, ...]
    digests: tuple[str, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Recording:
    """What the duplicate rules read of a record: about 3 KB in memory against 20 KB
    for the record (its batch values, its timbre's covariance and confidences left
    behind). ``cache dupes`` holds one per record of the store: 16 KB a record more
    was 16 GB at 1,000,000 records. ``decoded`` is (params key, sample rate,
    channels, length in samples) for a complete record, None for a partial one;
    ``values`` the streaming values as (dim, value) pairs in dim order."""

    digest: str
    content_key: str
    size: int                  # bytes of the file (of the album image, for a CUE track)
    paths: tuple[PathSeen, ...]
    version: int
    seconds: float
    key: DupeKey | None
    decoded: tuple[str, int, int, int] | None
    values: tuple[tuple[str, float | None], ...]
    timbre_mean: tuple[float, ...] | None
    record_key: str = ""       # where the record is stored (a touched file's time is written there)

    @classmethod
    def of(cls, record: Record) -> Recording:
        audio = record.audio
        decoded = (record.params_key, audio.samplerate, audio.channels, round(audio.duration_s * audio.samplerate)) \
            if record.complete else None
        return cls(record.digest, record.content_key, record.size, record.paths, record.fingerprint_version,
                   audio.duration_s, record.dupe_key, decoded, tuple(sorted(record.streaming.values.items())),
                   None if record.timbre is None else record.timbre.mean, record.key)


def same(a: Record, b: Record) -> bool:
    """Whether two records hold the same recording (same content, the same decoded
    audio, or matching keys)."""
    return _same(Recording.of(a), Recording.of(b))


def _same(a: Recording, b: Recording) -> bool:
    """``same`` of two recordings. The exact rule goes first: its cheap comparisons
    reject most pairs before the keys' bits are unpacked."""
    if a.digest == b.digest or _decoded_alike(a, b):
        return True
    return a.key is not None and b.key is not None and same_recording(a.key, b.key, a.seconds, b.seconds)


# Streaming values and timbre means of one decoded audio differ only by float rounding,
# which depends on how the stream was cut into blocks: over blocks of 777 to 65,536
# frames, measured up to 1.1e-6 relative (a loudness std of 4.55 LU), 8e-7 absolute
# (a std of 0 LU) and 1.2e-7 in the timbre mean (stored as float32: one unit in the
# last place of a c0 near -100 is 7.6e-6). Other audio lies far outside: a shift of
# one sample moves some streaming value of 3 s of music or noise by 1.6e-4 relative or
# more, a gain change of 0.1 dB the timbre mean's c0 (the level) by 0.07-0.18 (a sine,
# music, noise), which the keys and the streaming values do not see.
VALUE_TOLERANCE = 1e-5          # relative, and absolute near 0 (values in their own units)
TIMBRE_MEAN_TOLERANCE = 1e-4    # absolute, in the MFCCs' natural-log units


def same_decoded_audio(a: Record, b: Record) -> bool:
    """Whether two complete records were analysed, with the same parameters, from the
    same decoded audio (WAV, FLAC, ALAC... of the same samples): same sample rate,
    channels and length to the sample, identical duplicate keys (bits and mask), and
    equal streaming values and timbre means up to float rounding.

    ``same_recording`` needs MIN_SHARED_BITS reliable key bits in common, which a steady
    signal (white noise, a sine, a click track: 0-37 in 5 s) or a track of 2-3 s (38-60)
    does not reach, so a lossless copy of one stayed a search hit at distance 0 and
    outside ``cache dupes``. Here every bit counts, reliable or not (the unreliable
    ones follow the audio's smallest changes), and the values cover the whole track.
    Not identical audio, and so left to ``same_recording``: another gain (the keys
    and streaming values agree, the timbre's c0 does not), a shift by one sample,
    another rounding to 16 bits, another sample rate."""
    return _decoded_alike(Recording.of(a), Recording.of(b))


def _decoded_alike(a: Recording, b: Recording) -> bool:
    """``same_decoded_audio`` of two recordings. Two without a key (a clip shorter than
    two key windows, 1 s) are alike on their values alone: lossless copies of a 0.1 s
    clip were search hits at distance 0 and no duplicates."""
    if a.decoded is None or a.decoded != b.decoded or a.key != b.key:
        return False
    return _values_agree(a.values, b.values) and _timbre_means_agree(a.timbre_mean, b.timbre_mean)


def _values_agree(a: tuple[tuple[str, float | None], ...], b: tuple[tuple[str, float | None], ...]) -> bool:
    """The same dims, each null on both sides or equal within VALUE_TOLERANCE."""
    return len(a) == len(b) and all(dim_a == dim_b and _value_agrees(x, y)
                                    for (dim_a, x), (dim_b, y) in zip(a, b, strict=True))


def _value_agrees(x: float | None, y: float | None) -> bool:
    if x is None or y is None:
        return x is y
    return math.isclose(x, y, rel_tol=VALUE_TOLERANCE, abs_tol=VALUE_TOLERANCE)


def _timbre_means_agree(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> bool:
    """Both without a timbre (every frame silent), or means within TIMBRE_MEAN_TOLERANCE."""
    if a is None or b is None:
        return a is b
    return len(a) == len(b) and all(abs(x - y) <= TIMBRE_MEAN_TOLERANCE for x, y in zip(a, b, strict=True))


class RecordingTable:
    """Records added one by one, each to be told whether it holds the recording of one
    added earlier (``same``), against all of them in one pass: digests and identical
    keys (``same_decoded_audio``) are looked up, and the keys' bits compared for every
    row at once (``KeyRows``). ``first_same`` gives what the first ``same`` in a loop
    over the rows would, without the loop: ``cache dupes`` over 20,000 records, and
    ``search -k 1000`` whose hits share one duration, spent minutes in that loop."""

    def __init__(self) -> None:
        self.records: list[Recording] = []
        self._keys = KeyRows()
        self._by_digest: dict[str, list[int]] = {}
        self._by_audio: dict[tuple[DupeKey | None, tuple[str, int, int, int]], list[int]] = {}

    def add(self, record: Recording) -> int:
        """Append ``record``; returns its row."""
        row = self._keys.add(record.key, record.seconds)
        self.records.append(record)
        self._by_digest.setdefault(record.digest, []).append(row)
        if record.decoded is not None:   # what ``_decoded_alike`` needs equal: key (or none) and decoded facts
            self._by_audio.setdefault((record.key, record.decoded), []).append(row)
        return row

    def first_same(self, record: Recording, start: int = 0) -> int | None:
        """The first row from ``start`` on whose recording is ``_same`` as ``record``, or None.
        Rows of one digest or key are looked at from ``start`` on only (their lists are
        in row order): 50,000 tracks opening with a minute of silence share one key,
        and walking every earlier row of it made ``cache dupes`` quadratic."""
        rows = _from(self._by_digest.get(record.digest, []), start)[:1]
        if record.decoded is not None:
            rows += next(([row] for row in _from(self._by_audio.get((record.key, record.decoded), []), start)
                          if _decoded_alike(self.records[row], record)), [])
        if record.key is not None:
            matched = np.flatnonzero(self._keys.matches(record.key, record.seconds, start))
            if len(matched):
                rows.append(start + int(matched[0]))
        return min(rows, default=None)

    def __len__(self) -> int:
        return len(self.records)


def _from(rows: list[int], start: int) -> list[int]:
    """The rows of an ascending list from ``start`` on."""
    return rows[bisect.bisect_left(rows, start):]


def duplicate_groups(records: Iterable[Record | Recording]) -> list[DupeGroup]:
    """Groups (two paths or more) of the v2+ records of one recording: each record joins
    the first group whose first record it matches, else starts one; largest group
    first, then by first path. Not the transitive closure of matching pairs: A like B
    and B like C chained different short tracks into one group (7 tracks of 4-5 s in
    one measured library), which a user would delete as copies.

    Records are taken in order of duration, so the groups whose first record lies
    within DURATION_TOLERANCE_S of a record are the last ones started: the rows of
    ``leaders`` (one per group) from ``near`` on."""
    kept = (r if isinstance(r, Recording) else Recording.of(r) for r in records)  # records not held: read lazily
    items = sorted((r for r in kept if r.version == FINGERPRINT_VERSION), key=lambda r: r.seconds)
    groups: list[list[Recording]] = []
    leaders = RecordingTable()
    near = 0
    for record in items:
        while near < len(leaders) and record.seconds - leaders.records[near].seconds > DURATION_TOLERANCE_S:
            near += 1
        home = leaders.first_same(record, near)
        if home is None:
            leaders.add(record)
            groups.append([record])
        else:
            groups[home].append(record)
    found = []
    for group in groups:
        paths = tuple(sorted({p.path for r in group for p in r.paths}))
        if len(paths) > 1:
            found.append(DupeGroup(paths, tuple(sorted({r.digest for r in group}))))
    return sorted(found, key=lambda g: (-len(g.paths), g.paths[0]))


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
