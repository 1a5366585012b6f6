"""Per-frame fundamental frequency (YIN-style) and pitch stability (#19).

The autocorrelation comes from the power spectrum we already have (Wiener-Khinchin),
divided by the window's own autocorrelation (Boersma 1993) so a periodic frame keeps
r(T) close to r(0) despite the Hann taper. At rates >= 32 kHz only the bins below
sr / (2 x decimation) are used, i.e. the ACF of the signal low-passed and decimated
(by 2 at 32-48 kHz, 4 at 88.2-96 kHz, 8 at 176.4-192 kHz), as YIN implementations
commonly do: f0 <= 2100 Hz needs no more bandwidth, and the inverse FFT and the
difference function cost a fraction; a parabola restores sub-lag precision. YIN's cumulative-mean-normalised
difference d'(tau) with an absolute threshold picks the period (de Cheveigne & Kawahara
2002, steps 2-5).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft

from fpcli.params import AnalysisParams, frame_scale

STABLE_CENTS = 50.0
DECIMATE_FROM_HZ = 32000


class PitchTracker:
    """Power frames (n, n_bins) -> f0 per frame in Hz (NaN when unvoiced)."""

    def __init__(self, samplerate: int, window: np.ndarray, params: AnalysisParams) -> None:
        # Frames are scaled with the rate (AnalysisParams.at_rate), so the decimation is
        # too: the ACF always has about n_fft/2 lags at 44.1 kHz's, whatever the rate.
        decimation = round(2 * frame_scale(samplerate)) if samplerate >= DECIMATE_FROM_HZ else 1
        n_acf = params.n_fft // decimation
        self.samplerate = samplerate / decimation   # rate of the ACF's lag axis
        self.threshold = params.yin_threshold
        # The circular ACF of a frame is trustworthy to about half the frame, and the
        # search needs the lag after tau_max (the parabola): at most n_acf / 2 - 1. With
        # frames of 33-66 ms at every rate, f0_min_hz sets the lowest f0 found (a fixed
        # 2048-sample frame stopped it at 94 Hz at 96 kHz and 188 Hz at 192 kHz).
        self.tau_max = min(math.ceil(self.samplerate / params.f0_min_hz), n_acf // 2 - 1)
        self.tau_min = max(2, math.floor(self.samplerate / params.f0_max_hz))
        self._bins = n_acf // 2 + 1
        window_power = np.abs(np.fft.rfft(window.astype(np.float64))) ** 2
        window_acf = np.fft.irfft(window_power[: self._bins], n=n_acf)[: self.tau_max + 2]
        self._window_acf = (window_acf / window_acf[0]).astype(np.float32)
        self._n_acf = n_acf

    def push(self, power: np.ndarray, voiced_candidate: np.ndarray) -> np.ndarray:
        """f0 (Hz) per frame; frames not in ``voiced_candidate`` (e.g. silent) are NaN."""
        f0 = np.full(len(power), np.nan)
        rows = np.flatnonzero(voiced_candidate)
        if rows.size == 0:
            return f0
        # The power spectrum is real and even, so its inverse DFT (the circular ACF) is a
        # DCT-I of the n_acf / 2 + 1 bins: a real transform, ~30 % cheaper than irfft.
        # It lacks irfft's 1 / n_acf, which YIN's d'(tau) (a ratio) does not see.
        acf = scipy.fft.dct(power[rows, : self._bins], type=1, axis=1)[:, : self.tau_max + 2]
        acf /= self._window_acf
        difference = np.maximum(acf[:, :1] - acf, 0.0)      # d(tau) ~ 2 (r0 - r(tau)) / 2
        difference[:, 0] = 0.0
        cumulative = np.cumsum(difference[:, 1:], axis=1)
        taus = np.arange(1, difference.shape[1], dtype=np.float32)
        cmnd = np.ones_like(cumulative)                     # d'(tau) = 1 where the sum is 0
        np.divide(difference[:, 1:] * taus, cumulative, out=cmnd, where=cumulative > 0)
        # cmnd[:, j] is d'(tau = j + 1); search tau in [tau_min, tau_max].
        lo, hi = self.tau_min - 1, self.tau_max
        below = cmnd[:, lo:hi] < self.threshold
        voiced = np.flatnonzero(below.any(axis=1))         # the dip is searched in these rows only
        cmnd = cmnd[voiced]
        best = _first_dip(cmnd[:, lo:hi], below[voiced]) + lo  # column in cmnd
        tau = best + 1 + _parabolic_offset(cmnd, best)
        f0[rows[voiced]] = self.samplerate / tau
        return f0


def _first_dip(values: np.ndarray, below: np.ndarray) -> np.ndarray:
    """Per row of (n, m) ``values``: the column of the minimum of the first run of
    columns where ``below`` is True (0 for a row without one).

    The first run ends at the row's first True -> False step (none: at the last
    column); the columns before the run are not ``below``, so masking the rest of
    the row (and every column not ``below``) leaves exactly the run, without a
    running logical-and along the row.
    """
    m = values.shape[1]
    falls = below[:, :-1] & ~below[:, 1:]
    end = falls.argmax(axis=1) + 1
    end = np.where(falls[np.arange(len(end)), end - 1], end, m)[:, None]   # no fall: the run reaches the end
    return np.where(below & (np.arange(m) < end), values, np.inf).argmin(axis=1)


def _parabolic_offset(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    rows = np.arange(len(columns))
    left = values[rows, np.maximum(columns - 1, 0)]
    centre = values[rows, columns]
    right = values[rows, np.minimum(columns + 1, values.shape[1] - 1)]
    denominator = left - 2 * centre + right
    with np.errstate(divide="ignore", invalid="ignore"):
        offset = np.where(denominator > 0, 0.5 * (left - right) / denominator, 0.0)
    return np.clip(offset, -0.5, 0.5)


def stable_pairs(f0: np.ndarray, previous: float) -> tuple[int, int]:
    """(voiced pairs, stable pairs) among consecutive frames, ``previous`` = f0 before f0[0].

    A pair is both frames voiced; it is stable when they differ by < 50 cents.
    """
    series = np.concatenate([[previous], f0])
    a, b = series[:-1], series[1:]
    both = np.isfinite(a) & np.isfinite(b)
    cents = 1200 * np.abs(np.log2(b[both] / a[both]))
    return int(both.sum()), int((cents < STABLE_CENTS).sum())
