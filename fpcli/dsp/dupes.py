"""The duplicate key: a coarse decoded-audio signature that survives re-encoding
(lossless, MP3, Ogg) and resampling, in the spirit of Haitsma & Kalker (2002).

The first ``MAX_WINDOWS`` x 0.5 s of the track (about a minute) are cut into windows
on a time grid in seconds (so the grid does not depend on the sample rate or hop).
Per window, the mean power of 17 bands log-spaced from 300 Hz to 4 kHz (inside every
usable sample rate and below any MP3 low-pass) gives 16 bits: the sign of the change
over time of the difference between neighbouring bands,

    D[t, b] = (L[t, b+1] - L[t, b]) - (L[t-1, b+1] - L[t-1, b])   (L in dB).

A bit is *reliable* where |D| >= RELIABLE_DB and both windows are audible; two keys
are compared on the bits reliable in both (an unreliable bit is near a sign change
and may flip under a lossy codec; silence has no information). Copies of one
recording agree on almost every reliable bit; different recordings agree on about
half (like coin flips), so the threshold ``MAX_BIT_ERRORS`` leaves a wide margin on
both sides. Memory is O(1): a fixed (MAX_WINDOWS, 17) table of sums.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

WINDOW_S = 0.5
MAX_WINDOWS = 121                    # 120 window pairs: 1920 bits at most
BAND_LOW_HZ, BAND_HIGH_HZ, N_BANDS = 300.0, 4000.0, 17
RELIABLE_DB = 1.0                    # |D| below this: the bit is not used
AUDIBLE_DB = -70.0                   # window band power re a full-scale sine (per frame)
FULL_WINDOW_SHARE = 0.9              # a window needs 90 % of its frames (drops the last, cut one)
MIN_SHARED_BITS = 64                 # fewer reliable bits in common: cannot tell (steady or 2-3 s
                                     # tracks: lossless copies are told by fpcli.search.dupes.same_decoded_audio)
MAX_BIT_ERRORS = 0.10                # share of disagreeing shared bits for "same recording"
DURATION_TOLERANCE_S = 1.0           # codec padding and delay are far below this
KEY_BYTES = 2 * (MAX_WINDOWS - 1)    # packed bytes of the longest key: 16 bits a window pair


_LOWER_HEX = re.compile("[0-9a-f]*").fullmatch   # twice as fast as a set of the characters


def bad_key_fields(data: Mapping[str, Any]) -> list[str]:
    """The fields of a duplicate key's data (as a record and ``Fingerprint.to_dict``
    hold it) that are wrong: ``windows`` unless a count in [1, MAX_WINDOWS - 1], else
    ``bits`` and ``mask`` unless 4 lowercase hex digits per window. One rule for the
    record parser and ``Fingerprint.from_dict``."""
    windows = data.get("windows")
    if type(windows) is not int or not 1 <= windows < MAX_WINDOWS:
        return ["windows"]
    return [name for name in ("bits", "mask")
            if not (isinstance(text := data.get(name), str) and len(text) == 4 * windows and _LOWER_HEX(text))]


@dataclasses.dataclass(frozen=True)
class DupeKey:
    """``bits`` and ``mask`` (reliable bits) as hex of packed bits, 16 per window pair,
    over ``windows`` window pairs."""

    bits: str
    mask: str
    windows: int

    @functools.cached_property
    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(bits, mask) as uint8 arrays of packed bits, 2 bytes a window pair; parsed
        once per key (a search or ``cache dupes`` compares one key with many, and
        parsing the hex and unpacking the bits again for every pair was most of the
        cost of a comparison)."""
        return (np.frombuffer(bytes.fromhex(self.bits), dtype=np.uint8),
                np.frombuffer(bytes.fromhex(self.mask), dtype=np.uint8))

    def row(self) -> tuple[np.ndarray, np.ndarray]:
        """(KEY_BYTES,) uint8 bits and mask, zero past the key's windows: the key as a
        row of ``KeyRows``. Made on each call, not kept: a table copies it, and kept on
        every key it was 700 bytes more per record that ``cache dupes`` holds."""
        bits = np.zeros(KEY_BYTES, dtype=np.uint8)
        mask = np.zeros(KEY_BYTES, dtype=np.uint8)
        n = min(2 * self.windows, KEY_BYTES)
        bits[:n] = np.frombuffer(bytes.fromhex(self.bits), dtype=np.uint8)[:n]
        mask[:n] = np.frombuffer(bytes.fromhex(self.mask), dtype=np.uint8)[:n]
        return bits, mask


def band_matrix(freqs: np.ndarray) -> np.ndarray:
    """(n_bins, N_BANDS) float32: 1 where an FFT bin lies in a band (log-spaced edges)."""
    edges = np.geomspace(BAND_LOW_HZ, BAND_HIGH_HZ, N_BANDS + 1)
    index = np.searchsorted(edges, freqs, side="right") - 1
    matrix = np.zeros((len(freqs), N_BANDS), dtype=np.float32)
    inside = (index >= 0) & (index < N_BANDS)
    matrix[np.flatnonzero(inside), index[inside]] = 1.0
    return matrix


class SignatureBuilder:
    """Accumulates band powers of frames into 0.5 s windows; ``key()`` any time."""

    def __init__(self, samplerate: int, n_fft: int, hop: int, freqs: np.ndarray, full_scale_power: float) -> None:
        self.samplerate = samplerate
        self.n_fft, self.hop = n_fft, hop
        self.bands = band_matrix(freqs)
        self.full_scale_power = full_scale_power
        self.sums = np.zeros((MAX_WINDOWS, N_BANDS))
        self.counts = np.zeros(MAX_WINDOWS)
        self.frames = 0

    def push(self, power: np.ndarray) -> None:
        """Fold (n, n_bins) frame powers in (frames numbered from the stream start)."""
        n = len(power)
        first, self.frames = self.frames, self.frames + n
        centres = (np.arange(first, first + n) * self.hop + self.n_fft / 2) / self.samplerate
        window = np.floor(centres / WINDOW_S).astype(np.intp)
        keep = window < MAX_WINDOWS
        if not keep.any():
            return
        energy = power[keep] @ self.bands
        np.add.at(self.sums, window[keep], energy.astype(np.float64))
        np.add.at(self.counts, window[keep], 1.0)

    def key(self) -> DupeKey | None:
        """The key of the full windows so far; None with fewer than two."""
        full = WINDOW_S * self.samplerate / self.hop
        complete = self.counts >= FULL_WINDOW_SHARE * full
        n = int(np.argmin(complete)) if not complete.all() else MAX_WINDOWS
        if n < 2:
            return None
        mean = self.sums[:n] / self.counts[:n, None] / self.full_scale_power
        level = 10 * np.log10(np.maximum(mean, 1e-30))
        audible = level.max(axis=1) >= AUDIBLE_DB
        slope = np.diff(level, axis=1)                  # (n, 16) neighbouring-band differences
        change = np.diff(slope, axis=0)                 # (n - 1, 16) their change over time
        reliable = (np.abs(change) >= RELIABLE_DB) & audible[1:, None] & audible[:-1, None]
        return DupeKey(np.packbits(change > 0).tobytes().hex(), np.packbits(reliable).tobytes().hex(), n - 1)


def bit_errors(a: DupeKey, b: DupeKey) -> tuple[float, int]:
    """(share of disagreeing bits, bits compared) over the bits reliable in both keys
    (NaN share when none)."""
    n = 2 * min(a.windows, b.windows)   # bytes of 8 bits
    bits_a, mask_a = a.packed
    bits_b, mask_b = b.packed
    shared = mask_a[:n] & mask_b[:n]
    count = int(_ONES[shared].sum())
    if count == 0:
        return math.nan, 0
    return int(_ONES[(bits_a[:n] ^ bits_b[:n]) & shared].sum()) / count, count


_ONES = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.int64)   # set bits of each byte


class KeyRows:
    """Duplicate keys (and durations, s) as rows of one table, to compare one key with
    many in a single numpy pass: ``same_recording`` against every row, with its exact
    result. Comparing pair by pair cost about 20 us a pair in Python, and ``cache
    dupes`` over 20,000 records compares millions of pairs (every pair within a second
    of each other's duration), as ``search -k 1000`` compared each hit with every hit
    kept. Rows are appended (``add``) and never removed; ``matches`` takes a range.

    A row holds the key's bits and mask in KEY_BYTES bytes, its mask zero past its own
    windows, so the bits reliable in both keys end where the shorter key ends, as in
    ``bit_errors``. A row without a key (None) has an empty mask and never matches."""

    def __init__(self, capacity: int = 64) -> None:
        self._bits = np.zeros((capacity, KEY_BYTES), dtype=np.uint8)
        self._mask = np.zeros((capacity, KEY_BYTES), dtype=np.uint8)
        self._seconds = np.zeros(capacity)
        self.size = 0

    def add(self, key: DupeKey | None, seconds: float) -> int:
        """Append a row; returns its number."""
        if self.size == len(self._seconds):
            grown = 2 * self.size
            self._bits = np.resize(self._bits, (grown, KEY_BYTES))
            self._mask = np.resize(self._mask, (grown, KEY_BYTES))
            self._seconds = np.resize(self._seconds, grown)
        row = self.size
        if key is None:
            self._bits[row], self._mask[row] = 0, 0
        else:
            self._bits[row], self._mask[row] = key.row()
        self._seconds[row] = seconds
        self.size += 1
        return row

    def matches(self, key: DupeKey | None, seconds: float, start: int = 0, stop: int | None = None) -> np.ndarray:
        """(stop - start,) bool: ``same_recording(row's key, key, row's seconds, seconds)``
        for rows start..stop (stop defaults to every row); all False for a key of None."""
        stop = self.size if stop is None else stop
        if key is None or stop <= start:
            return np.zeros(max(stop - start, 0), dtype=bool)
        bits, mask = key.row()
        shared = self._mask[start:stop] & mask
        count = _popcount_rows(shared)
        errors = _popcount_rows((self._bits[start:stop] ^ bits) & shared)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = errors / count           # the same float division as bit_errors
        return ((np.abs(self._seconds[start:stop] - seconds) <= DURATION_TOLERANCE_S)
                & (count >= MIN_SHARED_BITS) & (share <= MAX_BIT_ERRORS))


def _popcount_rows(rows: np.ndarray) -> np.ndarray:
    """(n,) int64: set bits of each row of an (n, KEY_BYTES) uint8 array."""
    return np.bitwise_count(rows.view(np.uint64)).sum(axis=1, dtype=np.int64)


def same_recording(a: DupeKey, b: DupeKey, seconds_a: float, seconds_b: float) -> bool:
    """Whether two keys (and durations, s) are the same recording: durations within
    DURATION_TOLERANCE_S, at least MIN_SHARED_BITS reliable bits in common and at most
    MAX_BIT_ERRORS of them differing. Steady tracks (white noise, a sine, a click
    track: 0-37 reliable bits in 5 s) and tracks of 2-3 s (38-60) have too few, so
    this is False even for two copies of one decoded audio; the records' rule
    (``fpcli.search.dupes.same``) tells those by their whole fingerprints."""
    if abs(seconds_a - seconds_b) > DURATION_TOLERANCE_S:
        return False
    errors, count = bit_errors(a, b)
    return count >= MIN_SHARED_BITS and errors <= MAX_BIT_ERRORS
