"""Analysis parameters: every tunable of the fingerprint in one frozen dataclass.

``AnalysisParams.key()`` goes into every cache key, so changing any field makes stored
fingerprints a miss instead of a wrong answer.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math

from fpcli.errors import ParameterError

# 2: timbre block, duplicate key. 3: frames of the same duration at every sample rate,
# chroma spread over the pitch classes a bin spans, flatness up to 11,025 Hz
# (docs/fingerprint.md, "Version history").
FINGERPRINT_VERSION = 3
REFERENCE_RATE = 44100    # n_fft and hop are given for this rate (and any within a factor of sqrt(2))


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """Parameters of both analyzers (FINGERPRINT.md, "Front end").

    Frequencies are in Hz, times in seconds unless the name says otherwise.
    """

    n_fft: int = 2048   # samples at REFERENCE_RATE (46 ms); scaled with the rate, see at_rate
    hop: int = 512
    silence_db: float = -60.0
    rolloff_fraction: float = 0.85
    n_mel_bands: int = 64
    # Harmonic/percussive separation on the mel spectrogram (Fitzgerald 2010):
    # median filters of 2*radius+1 frames in time and 2*radius+1 bands in frequency.
    hpss_time_radius: int = 4
    hpss_freq_radius: int = 4
    onset_max_s: float = 0.030
    onset_mean_s: float = 0.100
    onset_delta: float = 1.0  # dB of mean log-mel flux above the local mean
    f0_min_hz: float = 65.0
    f0_max_hz: float = 2100.0
    yin_threshold: float = 0.15
    chroma_min_hz: float = 55.0
    chroma_max_hz: float = 5000.0
    tempo_min_bpm: float = 40.0
    tempo_max_bpm: float = 220.0
    tempo_prior_bpm: float = 120.0
    tempo_prior_octaves: float = 1.5

    def __post_init__(self) -> None:
        if self.n_fft < 256 or self.n_fft & (self.n_fft - 1):
            raise ParameterError(f"n_fft={self.n_fft}: must be a power of two >= 256")
        if not 0 < self.hop <= self.n_fft:
            raise ParameterError(f"hop={self.hop}: must be in (0, n_fft={self.n_fft}]")
        if not 0 < self.rolloff_fraction < 1:
            raise ParameterError(f"rolloff_fraction={self.rolloff_fraction}: must be in (0, 1)")
        if not 0 < self.tempo_min_bpm < self.tempo_max_bpm:
            raise ParameterError("tempo_min_bpm must be positive and below tempo_max_bpm")

    def at_rate(self, samplerate: int) -> AnalysisParams:
        """These parameters with ``n_fft`` and ``hop`` scaled by ``frame_scale``, so
        that a frame lasts about as long at any rate: with 2048 samples at 192 kHz
        (11 ms, bins 94 Hz apart) the onset envelope, pitch range, harmonic ratio and
        sub-bass band of a hi-res copy were another track's (a tempo of 200 for 100)."""
        scale = frame_scale(samplerate)
        n_fft = max(256, round(self.n_fft * scale))
        return dataclasses.replace(self, n_fft=n_fft, hop=max(1, self.hop * n_fft // self.n_fft))

    def key(self) -> str:
        """A short stable hash of the fingerprint version and every field."""
        return _params_key(self)


def frame_scale(samplerate: int) -> float:
    """The power of two nearest to samplerate / REFERENCE_RATE (0.25 at 8-12 kHz,
    0.5 at 16-24 kHz, 1 at 32-48 kHz, 2 at 88.2-96 kHz, 4 at 176.4-192 kHz, ...): frames
    of a power-of-two length whose duration stays within a factor of sqrt(2) of 46 ms."""
    return float(2.0 ** round(math.log2(samplerate / REFERENCE_RATE)))


@functools.lru_cache(maxsize=32)
def _params_key(params: AnalysisParams) -> str:
    """Cached: every look-up asks for the key, and hashing the fields each time was a
    third of a warm look-up (params are frozen, so the key cannot go stale)."""
    payload = json.dumps({"version": FINGERPRINT_VERSION, **dataclasses.asdict(params)}, sort_keys=True)
    return f"v{FINGERPRINT_VERSION}-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
