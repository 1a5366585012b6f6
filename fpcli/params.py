"""Analysis parameters: every tunable of the fingerprint in one frozen dataclass.

``AnalysisParams.key()`` goes into every cache key, so changing any field makes stored
fingerprints a miss instead of a wrong answer.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from fpcli.errors import ParameterError

FINGERPRINT_VERSION = 2   # 2: timbre block, duplicate key (docs/fingerprint.md)


@dataclasses.dataclass(frozen=True)
class AnalysisParams:
    """Parameters of both analyzers (FINGERPRINT.md, "Front end").

    Frequencies are in Hz, times in seconds unless the name says otherwise.
    """

    n_fft: int = 2048
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

    def key(self) -> str:
        """A short stable hash of the fingerprint version and every field."""
        payload = json.dumps(
            {"version": FINGERPRINT_VERSION, **dataclasses.asdict(self)}, sort_keys=True
        )
        return f"v{FINGERPRINT_VERSION}-" + hashlib.sha256(payload.encode()).hexdigest()[:16]
