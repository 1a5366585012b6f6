"""STFT front end and the per-frame spectral features (FINGERPRINT.md #1-7, 15-17, 20).

All functions take and return arrays over frames; shapes are (n_frames, n_bins) with
n_bins = n_fft // 2 + 1 unless stated.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import scipy.fft

from fpcli.fingerprint import BANDS_HZ
from fpcli.params import AnalysisParams

FLATNESS_FLOOR = 1e-10  # magnitude floor of spectral_flatness (FINGERPRINT.md #17)
# spectral_flatness's band ends here: lossy codecs cut above 15-20 kHz and a hi-res file
# holds nothing up there, and the empty bins dragged the geometric mean down (MP3 and
# Vorbis copies read half and a third of the FLAC's flatness, a 192 kHz copy a hundredth).
FLATNESS_MAX_HZ = 11025.0
# spectral_centroid's band ends at the top of hearing: the near-empty bins of a hi-res
# copy above its content (resampling noise, weighted by magnitude and by frequency)
# raised the centroid of a dark track by 5-10 % at 88.2-384 kHz.
CENTROID_MAX_HZ = 20000.0
# Chroma weights (Ellis's chromagram, as librosa's chroma filters): a bin's power goes
# to the pitch classes within its own width in semitones, then a Gaussian over octaves
# centred CHROMA_CENTRE_HZ, CHROMA_OCTAVES wide, favours the range where a 46 ms frame
# resolves semitones. Each bin used to go to the pitch class nearest its centre; the
# bass bins span several semitones, and which class their power went to changed with
# the bin spacing: key_clarity 0.93 at 44.1 kHz read 0.72 at 48 kHz.
CHROMA_CENTRE_HZ = 880.0
CHROMA_OCTAVES = 2.0
FLATNESS_PRODUCT_LEVELS = 3  # bins multiplied in 2**3 = 8s before the log (see spectral_flatness)
ROLLOFF_GROUP = 32      # bins per group in the two-step rolloff search

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
    chroma_matrix: np.ndarray  # (n_bins, 12) float32 pitch-class weights
    full_scale_power: float   # power of a full-scale sine's peak bin (dB reference)
    flatness_bins: int        # bins 0 .. flatness_bins - 1 lie at or below FLATNESS_MAX_HZ
    centroid_bins: int        # bins 0 .. centroid_bins - 1 lie at or below CENTROID_MAX_HZ

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
            flatness_bins=int(np.searchsorted(freqs, FLATNESS_MAX_HZ, side="right")),
            centroid_bins=int(np.searchsorted(freqs, CENTROID_MAX_HZ, side="right")),
        )

    def power(self, frames: np.ndarray) -> np.ndarray:
        """|rfft(frame * window)|^2, (n, n_fft) -> (n, n_bins) float32."""
        return self.spectrum(frames)[0]

    def spectrum(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(power |X|^2, magnitude |X|) of rfft(frame * window): (n, n_fft) -> two
        (n, n_bins) float32. One ``np.abs`` of the complex spectrum gives the magnitude,
        its square the power: cheaper than squaring the real and imaginary parts
        (strided) and taking a square root for the magnitude."""
        magnitude = np.abs(scipy.fft.rfft(frames * self.window, axis=1))
        return magnitude * magnitude, magnitude

    @functools.cached_property
    def bank(self) -> np.ndarray:
        """(n_bins, n_mel + 12 + 7) float32: the mel, chroma and band matrices side by
        side, so one matrix product per block projects the power spectrum on all three
        (columns in that order; see ``project``)."""
        return np.concatenate([self.mel_matrix, self.chroma_matrix, self.band_matrix], axis=1)

    def project(self, power: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mel (n, n_mel), chroma (n, 12), band power (n, 7)) float32 of (n, n_bins)
        power frames, from one matrix product; mel is contiguous, the others are views."""
        out = power @ self.bank
        n_mel = self.mel_matrix.shape[1]
        return np.ascontiguousarray(out[:, :n_mel]), out[:, n_mel : n_mel + 12], out[:, n_mel + 12 :]


def spectral_centroid(magnitude: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Magnitude-weighted mean frequency per frame, Hz; NaN for an all-zero frame."""
    total = magnitude.sum(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (magnitude @ freqs.astype(np.float32)).astype(np.float64) / total


def spectral_rolloff(power: np.ndarray, freqs: np.ndarray, fraction: float) -> np.ndarray:
    """Frequency below which ``fraction`` of each frame's power lies (a bin centre), Hz.

    The bin is the first whose cumulative power reaches ``fraction`` of the total. Found
    in two steps, because a cumulative sum along all n_bins of every frame was the
    analyzer's costliest reduction: the cumulative power of groups of ROLLOFF_GROUP bins
    (float64) finds the group, then a cumulative sum inside that group only the bin.
    """
    n, bins = power.shape
    ends = np.cumsum(_group_sums(power), axis=1, dtype=np.float64)   # (n, groups)
    threshold = fraction * ends[:, -1:]
    group = (ends < threshold).sum(axis=1)                           # the group holding the bin
    rows = np.arange(n)
    before = np.where(group > 0, ends[rows, np.maximum(group - 1, 0)], 0.0)
    # Columns past the last bin repeat it: their cumulative power is >= the total, never counted.
    columns = np.minimum(group[:, None] * ROLLOFF_GROUP + np.arange(ROLLOFF_GROUP), bins - 1)
    inside = np.cumsum(power[rows[:, None], columns], axis=1, dtype=np.float64) + before[:, None]
    index = group * ROLLOFF_GROUP + (inside < threshold).sum(axis=1)
    return freqs[np.minimum(index, bins - 1)]


def _group_sums(power: np.ndarray) -> np.ndarray:
    """(n, n_bins) -> (n, ceil(n_bins / ROLLOFF_GROUP)) float64 sums of consecutive bins."""
    starts = np.arange(0, power.shape[1], ROLLOFF_GROUP)
    return np.add.reduceat(power, starts, axis=1, dtype=np.float64)


def spectral_flatness(power: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Geometric / arithmetic mean of the magnitude spectrum per frame, in [0, 1].

    Magnitudes are floored at 1e-10 (FINGERPRINT.md #17); log|X| = 0.5 log|X|^2. The
    sum of the logs is the log of the product: the bins are multiplied in groups of
    eight first (in float64, where eight float32 values can neither overflow nor fall
    below the normal range), an eighth of the logarithms, which dominated this feature.
    """
    floor = np.float32(FLATNESS_FLOOR ** 2)
    floored = np.maximum(power, floor)
    products, rest = _fold_products(floored, FLATNESS_PRODUCT_LEVELS)
    log_sum = np.log(products).sum(axis=1) + np.log(rest.astype(np.float64)).sum(axis=1)
    log_mean = 0.5 * log_sum / power.shape[1]
    arith = np.maximum(magnitude.mean(axis=1, dtype=np.float64), FLATNESS_FLOOR)
    return np.minimum(np.exp(log_mean) / arith, 1.0)


def _fold_products(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiply the columns of (n, m) float32 ``x`` pairwise ``levels`` times, in float64:
    (products (n, w / 2**levels), leftover columns (n, m - w)), w the largest multiple of
    2**levels <= m. Their product over a row equals the product of the row."""
    width = x.shape[1] - x.shape[1] % (1 << levels)
    half = width // 2
    products = np.multiply(x[:, :half], x[:, half:width], dtype=np.float64)
    for _ in range(levels - 1):
        half //= 2
        products = products[:, :half] * products[:, half:]
    return products, x[:, width:]


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
    """Pitch-class weights (C = 0) of the bins in [low, high] Hz: a Gaussian in
    semitones around the bin's pitch, its width the bin's own width in semitones (at
    least one), normalised per bin (unit L2 norm), times the octave weighting (see
    CHROMA_CENTRE_HZ). (n_bins, 12) float32."""
    matrix = np.zeros((len(freqs), 12))
    inside = np.flatnonzero((freqs >= low) & (freqs <= high) & (freqs > 0))
    f = freqs[inside]
    spacing = freqs[1] - freqs[0]
    pitch = 12 * np.log2(f / 440.0) + 69                      # MIDI note number, fractional
    width = np.maximum(12 * np.log2(1 + spacing / f), 1.0)    # the bin's span in semitones
    distance = np.remainder(pitch[:, None] - np.arange(12)[None, :] + 6, 12) - 6
    weights = np.exp(-0.5 * (2 * distance / width[:, None]) ** 2)
    weights /= np.sqrt((weights ** 2).sum(axis=1, keepdims=True))
    weights *= np.exp(-0.5 * (np.log2(f / CHROMA_CENTRE_HZ) / CHROMA_OCTAVES) ** 2)[:, None]
    matrix[inside] = weights
    return matrix.astype(np.float32)
