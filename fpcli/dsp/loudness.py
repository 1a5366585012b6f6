"""ITU-R BS.1770-4 K-weighting and gating, EBU Tech 3342 loudness range.

``LoudnessMeter`` turns sample blocks into the mean squares of 100 ms segments and
from them the momentary (400 ms) and short-term (3 s) block energies, every 100 ms,
carrying filter state and partial segments across blocks. The gated statistics are
plain functions of those block energies, so batch and streaming share them.
"""

from __future__ import annotations

import math

import numpy as np

from fpcli.dsp.blockfilter import BlockFilter

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0        # BS.1770-4 integrated loudness
LRA_RELATIVE_GATE_LU = -20.0    # EBU Tech 3342
LOUDNESS_OFFSET = -0.691        # BS.1770-4 eq. (2)
SEGMENTS_PER_MOMENTARY = 4      # 400 ms blocks, 75 % overlap, step 100 ms
SEGMENTS_PER_SHORT_TERM = 30    # 3 s windows every 100 ms (Tech 3342)


def k_weighting_sos(samplerate: int) -> np.ndarray:
    """BS.1770 K-weighting (pre-filter shelf + RLB high-pass) as a (2, 6) SOS array.

    Coefficients for any rate from the analogue prototypes of the 48 kHz filters
    (B. De Man's derivation, as pyloudnorm's "DeMan" filter); at 48 kHz they equal
    the coefficients printed in BS.1770-4 Tables 1 and 2.
    """
    # Stage 1: high shelf.
    gain_db, f0, q = 3.999843853973347, 1681.974450955533, 0.7071752369554196
    k = math.tan(math.pi * f0 / samplerate)
    vh = 10 ** (gain_db / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0,
             1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    # Stage 2: RLB high-pass.
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / samplerate)
    a0 = 1 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770-4 channel weights G_i.

    5 channels are taken as L R C Ls Rs and 6 as L R C LFE Ls Rs (SMPTE/WAVE order):
    surrounds weigh 1.41, the LFE is excluded; any other layout weighs 1.0 each.
    """
    weights = np.ones(channels)
    if channels == 5:
        weights[3:5] = 1.41
    elif channels == 6:
        weights[3] = 0.0
        weights[4:6] = 1.41
    return weights


class LoudnessMeter:
    """Stateful K-weighted energy meter over blocks of (frames, channels) float32."""

    def __init__(self, samplerate: int, channels: int) -> None:
        self.samplerate = samplerate
        self._filter = BlockFilter(k_weighting_sos(samplerate), channels)
        self._weights = channel_weights(channels).astype(np.float32)
        self._position = 0            # samples consumed so far
        self._segment = 0             # index of the segment in progress
        self._partial_energy = 0.0    # weighted energy of the segment in progress
        self._history = np.zeros((0, 2))  # last 29 complete segments: (energy, samples)

    def _boundary(self, k: int) -> int:
        """Start sample of segment k: floor(k * sr / 10), exact for every rate."""
        return k * self.samplerate // 10

    def push(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed samples; return (momentary, short_term) mean-square energies completed now.

        Energies are channel-weighted sums of mean squares (BS.1770-4 eq. 2 before the
        log); loudness = -0.691 + 10 log10(energy).
        """
        power = self._filter.weighted_power(block, self._weights)  # (n,) weighted square per sample
        segments = self._complete_segments(power)
        return self._blocks(segments)

    def _complete_segments(self, power: np.ndarray) -> np.ndarray:
        start, end = self._position, self._position + len(power)
        bounds = []
        k = self._segment + 1
        while self._boundary(k) <= end:
            bounds.append(self._boundary(k))
            k += 1
        if not bounds:
            self._partial_energy += float(power.sum(dtype=np.float64))
            self._position = end
            return np.zeros((0, 2))
        cuts = np.array(bounds) - start
        energies = _segment_sums(power, cuts)
        energies[0] += self._partial_energy
        lengths = np.diff([self._boundary(self._segment), *bounds])
        self._partial_energy = float(power[cuts[-1]:].sum(dtype=np.float64))
        self._segment = k - 1
        self._position = end
        return np.column_stack([energies, lengths])

    def _blocks(self, segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        series = np.concatenate([self._history, segments])
        self._history = series[-(SEGMENTS_PER_SHORT_TERM - 1):]
        new = len(segments)
        return _window_means(series, SEGMENTS_PER_MOMENTARY, new), _window_means(series, SEGMENTS_PER_SHORT_TERM, new)


def _segment_sums(power: np.ndarray, cuts: np.ndarray) -> np.ndarray:
    """Sums (float64) of power[prev_cut:cut] for each cut (the first from index 0)."""
    bounds = np.concatenate([[0], cuts])
    # reduceat sums bounds[i]:bounds[i+1] (the last to the end, dropped here); a zero
    # appended keeps every index in range. An empty slice gives power[start]: zero it.
    sums = np.add.reduceat(np.append(power, np.float32(0)), bounds, dtype=np.float64)[: len(cuts)]
    return np.where(bounds[1:] > bounds[:-1], sums, 0.0)


def _window_means(series: np.ndarray, width: int, new: int) -> np.ndarray:
    """Mean square over each window of ``width`` segments ending at one of the last ``new``."""
    if len(series) < width or new == 0:
        return np.zeros(0)
    energy = np.convolve(series[:, 0], np.ones(width), mode="valid")
    samples = np.convolve(series[:, 1], np.ones(width), mode="valid")
    means = energy / samples
    return means[-min(new, len(means)):]


def energy_to_lufs(energy: np.ndarray) -> np.ndarray:
    """Loudness (LUFS) of mean-square block energies, elementwise (BS.1770-4 eq. 2)."""
    with np.errstate(divide="ignore"):
        return LOUDNESS_OFFSET + 10 * np.log10(energy)


def energy_to_lufs_scalar(energy: float) -> float:
    with np.errstate(divide="ignore"):
        return float(LOUDNESS_OFFSET + 10 * np.log10(energy))


def integrated_loudness(momentary: np.ndarray) -> float:
    """BS.1770-4 gated integrated loudness (LUFS) from 400 ms block energies; NaN if all gated."""
    loud = energy_to_lufs(momentary)
    above_absolute = momentary[loud > ABSOLUTE_GATE_LUFS]
    if above_absolute.size == 0:
        return math.nan
    relative_gate = energy_to_lufs(above_absolute.mean()) + RELATIVE_GATE_LU
    gated = momentary[(loud > ABSOLUTE_GATE_LUFS) & (loud > relative_gate)]
    return float(energy_to_lufs(gated.mean()))


def gated_momentary_loudness(momentary: np.ndarray) -> np.ndarray:
    """Loudness (LUFS) of the 400 ms blocks that pass both gates of integrated loudness."""
    loud = energy_to_lufs(momentary)
    above_absolute = loud > ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return np.zeros(0)
    relative_gate = energy_to_lufs_scalar(float(momentary[above_absolute].mean())) + RELATIVE_GATE_LU
    return loud[above_absolute & (loud > relative_gate)]


def loudness_range(short_term: np.ndarray) -> float:
    """EBU Tech 3342 LRA (LU) from 3 s block energies: 95th - 10th percentile after gating
    (inverted-CDF percentiles: Tech 3342 does not fix the interpolation)."""
    loud = energy_to_lufs(short_term)
    above_absolute = loud > ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return math.nan
    relative_gate = energy_to_lufs_scalar(float(short_term[above_absolute].mean())) + LRA_RELATIVE_GATE_LU
    gated = loud[above_absolute & (loud > relative_gate)]
    if gated.size < 2:
        return math.nan
    # Inverted-CDF percentiles (actual block values), as for the spectral medians, so
    # the streaming histogram stays within one bin even when the blocks are few.
    low, high = np.percentile(gated, [10, 95], method="inverted_cdf")
    return float(high - low)
