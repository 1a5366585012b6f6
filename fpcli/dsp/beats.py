"""Beat tracking at a fixed period, to choose between two metrical levels of a tempo.

The onset autocorrelation says which periods recur, not where the beats fall; two
levels a 3:2 or 4:3 apart (a dotted-quarter pulse and the quarter beat, a figure of
three sixteenths and the beat) can recur about as strongly. Tracked as beats, the
level that is the beat lands on stronger onsets per beat. The tracker is Ellis's
dynamic programme (Ellis 2007, "Beat tracking by dynamic programming", as librosa
implements it) at one period: each frame's best score is its onset strength plus the
best earlier beat's score, less a penalty for a gap other than the period.
"""

from __future__ import annotations

import numpy as np

TIGHTNESS = 100.0        # the penalty per squared log ratio of a gap to the period
PEAK_WIDTH = 1 / 32      # the onset strength is smoothed by a Gaussian of period / 32
MIN_SPREAD = 1e-6        # a band whose envelope varies less has no beats to offer


def beat_strength(bands: np.ndarray) -> np.ndarray | None:
    """One onset strength per frame from the tempo bands' envelopes (frames, bands):
    each band standardised (so the kick counts as much as the hi-hats, as in the
    autocorrelation), averaged, standardised again. None when no band varies."""
    bands = np.asarray(bands, dtype=np.float64)
    spread = bands.std(axis=0)
    varied = spread > MIN_SPREAD
    if bands.shape[0] < 2 or not varied.any():
        return None
    standard = (bands[:, varied] - bands[:, varied].mean(axis=0)) / spread[varied]
    mean = standard.mean(axis=1)
    return mean / (mean.std() + 1e-9)


def tracking_per_beat(strength: np.ndarray, period: float) -> float:
    """The tracker's objective per beat (the onset strength its beats collect, less
    its penalties, over the number of beats) for beats ``period`` frames apart
    (fractional) along ``strength`` (frames,). O(frames x period). 0 when ``strength``
    is not longer than two periods: no beat can be tracked there."""
    n = len(strength)
    if n <= 2 * int(period) + 1:
        return 0.0
    offsets = np.arange(-int(period), int(period) + 1)
    local = np.convolve(strength, np.exp(-0.5 * (offsets / (period * PEAK_WIDTH)) ** 2), mode="same")
    shortest, longest = int(round(period / 2)), int(round(2 * period))
    gaps = np.arange(longest, shortest - 1, -1)          # t - (previous beat), for the slice below
    penalty = -TIGHTNESS * np.log(gaps / period) ** 2
    total = np.zeros(n)
    previous = np.full(n, -1, dtype=np.int64)
    total[:shortest] = local[:shortest]
    for t in range(shortest, n):
        start = t - longest
        window = total[max(start, 0) : t - shortest + 1] + penalty[max(-start, 0):]
        best = int(np.argmax(window))
        if window[best] > 0:        # else a new chain starts here (librosa does the same)
            total[t] = local[t] + window[best]
            previous[t] = max(start, 0) + best
        else:
            total[t] = local[t]
    last = max(0, n - int(round(period))) + int(np.argmax(total[max(0, n - int(round(period))):]))
    beats, t = 1, last
    while previous[t] >= 0:
        t = int(previous[t])
        beats += 1
    return float(total[last] / beats)
