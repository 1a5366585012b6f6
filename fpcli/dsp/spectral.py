"""STFT front end and the per-frame spectral features (FINGERPRINT.md #1-7, 15-17, 20).

All functions take and return arrays over frames; shapes are (n_frames, n_bins) with
n_bins = n_fft // 2 + 1 unless stated.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.fft

from fpcli.fingerprint import BANDS_HZ
from fpcli.params import AnalysisParams

FLATNESS_FLOOR = 1e-10  # magnitude floor of spectral_flatness (FINGERPRINT.md #17)

# Krumhansl-Kessler key profiles, C major / C minor (Krumhansl 1990, table 4.1).
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclasses.dataclass(frozen=True, eq=False)
class SpectralTools:
    """Precomputed window, frequencies and filter banks for one sample rate."""

    samplerate: int
    params: AnalysisParams
    window: np.ndarray        # (n_fft,) float32 periodic Hann
    freqs: np.ndarray         # (n_bins,) float64 bin centre frequencies, Hz
    band_matrix: np.ndarray   # (n_bins, 7) float32, 1 where a bin belongs to a band
    mel_matrix: np.ndarray    # (n_bins, n_mel) float32 triangular mel filters
    chroma_matrix: np.ndarray  # (n_bins, 12) float32 pitch-class membership
    full_scale_power: float   # power of a full-scale sine's peak bin (dB reference)

    @classmethod
    def create(cls, samplerate: int, params: AnalysisParams) -> SpectralTools:
        n_fft = params.n_fft
        # Periodic Hann: w[n] = 0.5 - 0.5 cos(2 pi n / N), n = 0..N-1.
        window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
        freqs = np.arange(n_fft // 2 + 1) * samplerate / n_fft
        return cls(
            samplerate=samplerate,
            params=params,
            window=window,
            freqs=freqs,
            band_matrix=_band_matrix(freqs),
            mel_matrix=_mel_matrix(freqs, params.n_mel_bands, samplerate),
            chroma_matrix=_chroma_matrix(freqs, params.chroma_min_hz, params.chroma_max_hz),
            full_scale_power=float(window.sum() / 2) ** 2,
        )

    def power(self, frames: np.ndarray) -> np.ndarray:
        """|rfft(frame * window)|^2, (n, n_fft) -> (n, n_bins) float32."""
        spectrum = scipy.fft.rfft(frames * self.window, axis=1)
        parts = spectrum.view(np.float32)
        parts *= parts
        return parts[:, 0::2] + parts[:, 1::2]


def spectral_centroid(magnitude: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Magnitude-weighted mean frequency per frame, Hz; NaN for an all-zero frame."""
    total = magnitude.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (magnitude @ freqs.astype(np.float32)).astype(np.float64) / total


def spectral_rolloff(power: np.ndarray, freqs: np.ndarray, fraction: float) -> np.ndarray:
    """Frequency below which ``fraction`` of each frame's power lies (a bin centre), Hz."""
    cumulative = np.cumsum(power, axis=1, dtype=np.float32)
    threshold = fraction * cumulative[:, -1:]
    index = (cumulative < threshold).sum(axis=1)
    return freqs[np.minimum(index, len(freqs) - 1)]


def spectral_flatness(power: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Geometric / arithmetic mean of the magnitude spectrum per frame, in [0, 1].

    Magnitudes are floored at 1e-10 (FINGERPRINT.md #17); log|X| = 0.5 log|X|^2.
    """
    floor = FLATNESS_FLOOR ** 2
    log_mean = 0.5 * np.log(np.maximum(power, floor)).mean(axis=1, dtype=np.float64)
    arith = np.maximum(magnitude.mean(axis=1, dtype=np.float64), FLATNESS_FLOOR)
    return np.minimum(np.exp(log_mean) / arith, 1.0)


def key_clarity(mean_chroma: np.ndarray) -> float:
    """Best Pearson correlation of a 12-bin chroma with the 24 K-K profiles, clipped to [0, 1].

    NaN when the chroma has no variation (no tonal content to correlate).
    """
    chroma = np.asarray(mean_chroma, dtype=np.float64)
    if not np.isfinite(chroma).all() or chroma.std() == 0:
        return float("nan")
    profiles = np.stack([np.roll(p, k) for p in (KK_MAJOR, KK_MINOR) for k in range(12)])
    c = (chroma - chroma.mean()) / chroma.std()
    p = (profiles - profiles.mean(axis=1, keepdims=True)) / profiles.std(axis=1, keepdims=True)
    best = float((p @ c).max() / 12)
    return min(max(best, 0.0), 1.0)


def _band_matrix(freqs: np.ndarray) -> np.ndarray:
    """Bins whose centre lies in [low, high) of each band; bands above Nyquist are empty."""
    return np.stack([(freqs >= low) & (freqs < high) for _, low, high in BANDS_HZ], axis=1).astype(np.float32)


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_matrix(freqs: np.ndarray, n_mel: int, samplerate: int) -> np.ndarray:
    """Triangular filters equally spaced on the HTK mel scale, 30 Hz to min(16 kHz, Nyquist)."""
    top = min(16000.0, samplerate / 2)
    edges_mel = np.linspace(_hz_to_mel(30.0), _hz_to_mel(top), n_mel + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # A filter narrower than the bin spacing gets its nearest bin, so no band is empty.
    empty = weights.sum(axis=1) == 0
    weights[empty, np.abs(freqs[None, :] - centre[empty]).argmin(axis=1)] = 1.0
    return weights.T.astype(np.float32)


def _chroma_matrix(freqs: np.ndarray, low: float, high: float) -> np.ndarray:
    """Each bin in [low, high] Hz goes to its nearest equal-tempered pitch class (C = 0)."""
    matrix = np.zeros((len(freqs), 12), dtype=np.float32)
    inside = (freqs >= low) & (freqs <= high)
    midi = 69 + 12 * np.log2(freqs[inside] / 440.0)
    matrix[np.flatnonzero(inside), np.round(midi).astype(int) % 12] = 1.0
    return matrix
