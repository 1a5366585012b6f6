"""Onset strength, onset peak picking, and the onset autocorrelation behind the tempo (#11-13).

The onset envelope is the half-wave-rectified log-power spectral flux of the mel
spectrogram, one value per hop (~86 Hz at 44.1 kHz). The autocorrelation is
accumulated exactly in O(max_lag) memory, so the batch and streaming tempo agree;
``fpcli.dsp.tempo`` reads the tempo from it.
"""

from __future__ import annotations

import numpy as np

from fpcli.dsp.framing import CenteredWindow
from fpcli.params import AnalysisParams

# The log-mel floor of the flux follows the loudest mel band heard so far, so that the
# same music played quieter has the same onsets (v5). A floor fixed at -80 dB re full
# scale hid the decays of a quiet copy's notes: a track's transient density read 0.43
# at -20 dB, 2.08 at its own level and 2.27 at +6 dB. Near where the fixed floor sat
# for music at its own level (loudest bands -3 to -14 dB); on the quality corpus 65 dB
# stayed within a query of the fixed floor's search figures, 70 dB lost up to 0.012.
ONSET_FLOOR_DB = -65.0
# The floor never goes below this (dB re a full-scale sine): 16-bit dither in a mel band
# lies at about -112 to -129 dB, so it is never onset. Music whose loudest band is above
# -45 dB (30 dB or more below a loud master) is read the same at any level.
ONSET_ABSOLUTE_FLOOR_DB = -110.0
# Tempo bands (Hz): kick and bass / snare, voices and chords / hi-hats and cymbals.
TEMPO_BANDS_HZ = ((0.0, 250.0), (250.0, 3000.0), (3000.0, 1e9))
# An onset envelope whose standard deviation is below this (dB) has no rhythm: a steady
# tone's flux is float rounding (3e-5 to 2e-4 dB measured), which the normalised
# autocorrelation turned into a confident tempo (144 BPM for a 1 kHz sine at 48 kHz).
# Music's envelopes vary by 0.165-4 dB (every clip of the quality corpus). Steady tones with
# low partials beat against the hop and vary by 0.005-0.13 dB: not caught (docs say so).
MIN_ONSET_SPREAD_DB = 0.01


class OnsetEnvelope:
    """Stateful spectral flux: mel power frames (n, bands) -> onset strength, dB.

    Each frame's rise is measured above a floor ONSET_FLOOR_DB below the loudest mel
    band so far (that frame included), applied to the frame and the one before alike:
    a floor that rises between two frames adds no flux of its own.

    ``push`` returns an (n, 1 + len(TEMPO_BANDS_HZ)) array: column 0 is the mean
    half-wave-rectified log-mel flux over all mel bands (the onset picker's input),
    the others the same mean over the mel bands of each tempo band (low, mid, high).
    The tempo estimator needs the bands separately: a kick in the low band and an
    off-beat hi-hat in the high band have different periods, and their mixture in
    column 0 is dominated by the (many) high mel bands (Klapuri 2006: accent bands).
    """

    def __init__(self, full_scale_power: float, mel_centres_hz: np.ndarray | None = None) -> None:
        self._reference = full_scale_power
        self._previous: np.ndarray | None = None
        self._peak_db = ONSET_ABSOLUTE_FLOOR_DB
        self._bands = _band_weights(mel_centres_hz)

    def push(self, mel_power: np.ndarray) -> np.ndarray:
        columns = 1 + self._bands.shape[1]
        if len(mel_power) == 0:
            return np.zeros((0, columns), dtype=np.float32)
        lowest = self._reference * 10 ** (ONSET_ABSOLUTE_FLOOR_DB / 10)
        log_power = 10 * np.log10(np.maximum(mel_power, lowest) / self._reference)
        peaks = np.maximum.accumulate(np.maximum(log_power.max(axis=1), self._peak_db))
        self._peak_db = float(peaks[-1])
        floor = np.maximum(peaks + ONSET_FLOOR_DB, ONSET_ABSOLUTE_FLOOR_DB)[:, None]
        previous = log_power[:1] if self._previous is None else self._previous
        self._previous = log_power[-1:]
        before = np.concatenate([previous, log_power[:-1]])
        rise = np.maximum(np.maximum(log_power, floor) - np.maximum(before, floor), 0)
        out = np.empty((len(rise), columns), dtype=np.float32)
        out[:, 0] = rise.mean(axis=1, dtype=np.float32)
        if self._bands.shape[1]:
            out[:, 1:] = rise @ self._bands
        return out


def _band_weights(mel_centres_hz: np.ndarray | None) -> np.ndarray:
    """(n_mel, n_tempo_bands) float32 averaging weights; (0, 0) without centres."""
    if mel_centres_hz is None:
        return np.zeros((0, 0), dtype=np.float32)
    edges = np.array(TEMPO_BANDS_HZ)
    member = (mel_centres_hz[:, None] >= edges[None, :, 0]) & (mel_centres_hz[:, None] < edges[None, :, 1])
    member[:, member.sum(axis=0) == 0] = False
    weights = member / np.maximum(member.sum(axis=0, keepdims=True), 1)
    return weights.astype(np.float32)


def mel_centres_hz(mel_matrix: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Centre frequency (Hz) of each mel filter: (n_bins, n_mel) -> (n_mel,)."""
    return np.asarray(freqs[np.argmax(mel_matrix, axis=0)], dtype=np.float64)


class OnsetPicker:
    """Peak picking with look-ahead: an onset is a local max in +-30 ms that exceeds
    the local mean in +-100 ms by ``delta``. Emits onset counts with a fixed delay."""

    def __init__(self, frame_rate: float, params: AnalysisParams) -> None:
        self._max_radius = max(1, round(params.onset_max_s * frame_rate))
        self._mean_radius = max(self._max_radius, round(params.onset_mean_s * frame_rate))
        self._delta = params.onset_delta
        self._window = CenteredWindow(self._mean_radius)

    def push(self, envelope: np.ndarray) -> int:
        return self._count(self._window.push(envelope))

    def finish(self) -> int:
        return self._count(self._window.finish())

    def _count(self, context: np.ndarray) -> int:
        r, m = self._mean_radius, self._max_radius
        n = CenteredWindow.emitted(context, r)
        if n == 0:
            return 0
        centre = context[r : r + n]
        local_mean = np.lib.stride_tricks.sliding_window_view(context, 2 * r + 1).mean(axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(context[r - m : r + n + m], 2 * m + 1)
        left_max = windows[:, :m].max(axis=1)
        right_max = windows[:, m + 1 :].max(axis=1)
        # Strict on the left, so a plateau counts once.
        peaks = (centre > left_max) & (centre >= right_max) & (centre >= local_mean + self._delta)
        return int(np.count_nonzero(peaks))


class OnsetHistory:
    """The last ``frames`` rows of onset envelopes (frames, columns), float32: the
    stretch the tempo's level checks track beats over. A ring of fixed size, so the
    memory is the same at the first second and the last (60 s of three bands at
    86 Hz: 62 KB)."""

    def __init__(self, frames: int, columns: int) -> None:
        self._ring = np.zeros((max(frames, 1), columns), dtype=np.float32)
        self._held = 0     # rows written, up to the ring's size
        self._next = 0     # where the next row goes

    def push(self, envelope: np.ndarray) -> None:
        size = len(self._ring)
        rows = np.asarray(envelope, dtype=np.float32)[-size:]
        first = min(len(rows), size - self._next)
        self._ring[self._next : self._next + first] = rows[:first]
        self._ring[: len(rows) - first] = rows[first:]
        self._next = (self._next + len(rows)) % size
        self._held = min(self._held + len(rows), size)

    def recent(self) -> np.ndarray:
        """(rows held, columns), oldest first."""
        if self._held < len(self._ring):
            return self._ring[: self._held].copy()
        return np.concatenate([self._ring[self._next :], self._ring[: self._next]])


class OnsetAutocorrelation:
    """Exact mean-removed autocorrelation of whole onset envelopes for lags 0..max_lag,
    accumulated chunk by chunk in O(max_lag x channels) memory.

    ``push`` takes (n,) or (n, channels) envelopes; ``normalized`` returns
    (max_lag + 1,) or (max_lag + 1, channels) accordingly, each channel on its own.
    """

    def __init__(self, max_lag: int, channels: int | None = None) -> None:
        self.max_lag = max_lag
        self._squeeze = channels is None
        k = 1 if channels is None else channels
        self._products = np.zeros((max_lag + 1, k))           # sum_t o[t] o[t-l]
        self._recent = np.zeros((max_lag, k))                  # last max_lag values (zeros before start)
        self._first = np.zeros((max_lag, k))                   # first max_lag values
        self.count = 0
        self._totals = np.zeros(k)

    @property
    def total(self) -> float:
        return float(self._totals[0])

    def push(self, envelope: np.ndarray) -> None:
        new = np.asarray(envelope, dtype=np.float64)
        if new.ndim == 1:
            new = new[:, None]
        if new.shape[0] == 0:
            return
        joined = np.concatenate([self._recent, new])
        # correlate(...)[k] = sum_j joined[k + j] new[j]: row k is lag max_lag - k. One
        # dot-product loop per channel, 3-4x faster than an einsum over a sliding view.
        for c in range(new.shape[1]):
            self._products[:, c] += np.correlate(joined[:, c], new[:, c], mode="valid")[::-1]
        take = min(self.max_lag - min(self.count, self.max_lag), new.shape[0])
        if take > 0:
            self._first[self.count : self.count + take] = new[:take]
        self._recent = joined[-self.max_lag :]
        self.count += new.shape[0]
        self._totals += new.sum(axis=0)

    @property
    def steady(self) -> bool:
        """Whether the envelope (the first channel) varies, but by less than
        MIN_ONSET_SPREAD_DB: a steady tone, whose rhythm stability is 0 (silence, which
        does not vary at all, has none)."""
        n = self.count
        if n < 2:
            return False
        variance = (self._products[0, 0] - self._totals[0] ** 2 / n) / n
        return 0 < variance < MIN_ONSET_SPREAD_DB ** 2

    def normalized(self) -> np.ndarray:
        """r[l] / r[0] with the global mean removed and each lag scaled by N / (N - l).

        Lags >= N are 0. A channel without variance (a standard deviation below
        MIN_ONSET_SPREAD_DB) is all zeros.
        """
        n = self.count
        lags = np.arange(self.max_lag + 1)[:, None]
        out = np.zeros_like(self._products)
        if n >= 2:
            mean = self._totals / n
            stored = min(n, self.max_lag)
            first_sums = np.concatenate([np.zeros((1, out.shape[1])), np.cumsum(self._first[:stored], axis=0)])
            last_sums = np.concatenate([np.zeros((1, out.shape[1])),
                                        np.cumsum(self._recent[::-1][:stored], axis=0)])
            usable = np.minimum(lags[:, 0], stored)
            head = self._totals - first_sums[usable]   # sum of o[t] for t >= l
            tail = self._totals - last_sums[usable]    # sum of o[t] for t <= n-1-l
            centred = self._products - mean * (head + tail) + (n - lags) * mean * mean
            with np.errstate(divide="ignore", invalid="ignore"):
                unbiased = np.where(lags < n, centred * n / np.maximum(n - lags, 1), 0.0)
            ok = centred[0] > n * MIN_ONSET_SPREAD_DB ** 2
            out[:, ok] = unbiased[:, ok] / unbiased[0, ok]
        return out[:, 0] if self._squeeze else out
