"""Harmonic ratio by median-filter harmonic/percussive separation (Fitzgerald 2010), #18.

Runs on the mel power spectrogram (a reduced spectrogram, as FINGERPRINT.md allows).
Medians commute with the monotone map power -> magnitude, so filtering power gives the
magnitude medians squared, and the soft mask H^2 / (H^2 + P^2) on magnitudes is
H_pow / (H_pow + P_pow) on powers.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from fpcli.dsp.framing import CenteredWindow


class HarmonicRatio:
    """Accumulates harmonic and total mel energy; frames are delayed by ``time_radius``."""

    def __init__(self, n_bands: int, time_radius: int, freq_radius: int) -> None:
        self.time_radius = time_radius
        self.freq_radius = freq_radius
        self._window = CenteredWindow(time_radius, shape=(n_bands,))

    def push(self, mel_power: np.ndarray) -> tuple[float, float]:
        """(harmonic energy, total energy) of the frames emitted now."""
        return self._energies(self._window.push(mel_power))

    def finish(self) -> tuple[float, float]:
        return self._energies(self._window.finish())

    def _energies(self, context: np.ndarray) -> tuple[float, float]:
        r = self.time_radius
        n = CenteredWindow.emitted(context, r)
        if n == 0:
            return 0.0, 0.0
        harmonic = scipy.ndimage.median_filter(context, size=(2 * r + 1, 1), mode="nearest")[r : r + n]
        centre = context[r : r + n]
        percussive = scipy.ndimage.median_filter(centre, size=(1, 2 * self.freq_radius + 1), mode="nearest")
        with np.errstate(invalid="ignore", divide="ignore"):
            mask = np.where(harmonic + percussive > 0, harmonic / (harmonic + percussive), 0.0)
        return float((centre * mask).sum(dtype=np.float64)), float(centre.sum(dtype=np.float64))
