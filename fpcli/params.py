"""Analysis parameters: every tunable of the fingerprint in one frozen dataclass.

``AnalysisParams.key()`` goes into every cache key, so changing any field makes stored
fingerprints a miss instead of a wrong answer.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import math
import numbers

from fpcli.errors import ParameterError

# 2: timbre block, duplicate key. 3: frames of the same duration at every sample rate,
# chroma spread over the pitch classes a bin spans, flatness up to 11,025 Hz. 4: the
# harmonic ratio of bass, no tempo without an onset. 5: onsets at any playback level.
# 6: the tempo's 3:2 and 4:3 level checks by beat tracking (docs/fingerprint.md,
# "Version 4" to "Version 6").
FINGERPRINT_VERSION = 6
# The analyzers need a few hundred Hz of spectrum and 46 ms frames: below 8 kHz the
# band edges fall outside the spectrum, and headers claiming 1 or 7 Hz are damage,
# not audio. Above 768 kHz (4 x 192 kHz) no recorded music exists; a larger value is
# a broken header whose STFT frames would cover microseconds.
MIN_SAMPLERATE = 8000
MAX_SAMPLERATE = 768000
# A channel count fits in 16 bits (WAV's field, FFmpeg's limit); the analyzers' state
# grows with it: 10**9 channels asked for 29.8 GiB (a MemoryError, not an answer).
MAX_CHANNELS = 65535
REFERENCE_RATE = 44100    # n_fft and hop are given for this rate (and any within a factor of sqrt(2))


# Limits of the frame (samples at REFERENCE_RATE, see at_rate) that need their own words.
MIN_N_FFT = 256           # 5.8 ms
MAX_N_FFT = 8192          # 186 ms
MAX_HOP = 2048            # 46 ms: with 93 ms hops a 120 BPM track read as 215 BPM
MAX_OVERLAP = 16          # hop >= n_fft / 16: a smaller hop adds frames, not information
MAX_F0_MIN_HZ = 2000.0    # the pitch range ends (see _check_related)
MIN_F0_MAX_HZ = 500.0


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """The type and range of one field of AnalysisParams. A range is closed unless an
    end is marked open; a value must be finite."""

    kind: type            # int or float
    low: float
    high: float
    unit: str = ""
    low_open: bool = False
    high_open: bool = False

    def admits(self, value: float) -> bool:
        above = self.low < value if self.low_open else self.low <= value
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """The rule as the error messages say it, e.g. "a number in (0, 1)"."""
        what = "an integer" if self.kind is int else "a number"
        interval = f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        return f"{what} in {interval}{' ' + self.unit if self.unit else ''}"


# Ranges wide enough for any physically sensible analysis (and every value fpcli, its
# tests and benchmarks use), narrow enough that the analyzers neither fail nor allocate
# without bound (an onset window of 1e9 s asked for 321 GiB). The rules between fields
# (n_fft a power of two, hop within n_fft, ordered pairs) are in _check_related.
FIELD_RULES: dict[str, FieldRule] = {
    "n_fft": FieldRule(int, MIN_N_FFT, MAX_N_FFT, "samples"),
    "hop": FieldRule(int, 1, MAX_HOP, "samples"),
    "silence_db": FieldRule(float, -200.0, 0.0, "dBFS"),
    "rolloff_fraction": FieldRule(float, 0.0, 1.0, low_open=True, high_open=True),
    "n_mel_bands": FieldRule(int, 13, 128),   # at least the 13 MFCCs taken from them (dsp/timbre.py)
    "hpss_time_radius": FieldRule(int, 1, 32, "frames"),
    "hpss_freq_radius": FieldRule(int, 1, 32, "bands"),
    "onset_max_s": FieldRule(float, 0.001, 0.5, "s"),
    "onset_mean_s": FieldRule(float, 0.001, 2.0, "s"),
    "onset_delta": FieldRule(float, 0.0, 60.0, "dB"),
    "f0_min_hz": FieldRule(float, 20.0, MAX_F0_MIN_HZ, "Hz"),
    "f0_max_hz": FieldRule(float, MIN_F0_MAX_HZ, 20000.0, "Hz"),
    "yin_threshold": FieldRule(float, 0.0, 1.0, low_open=True),
    "chroma_min_hz": FieldRule(float, 20.0, 10000.0, "Hz"),
    "chroma_max_hz": FieldRule(float, 40.0, 20000.0, "Hz"),
    "tempo_min_bpm": FieldRule(float, 20.0, 500.0, "BPM"),
    "tempo_max_bpm": FieldRule(float, 20.0, 500.0, "BPM"),
    "tempo_prior_bpm": FieldRule(float, 20.0, 500.0, "BPM"),
    "tempo_prior_octaves": FieldRule(float, 0.1, 10.0, "octaves"),
}


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
        """ParameterError naming the first field of a wrong type or outside its range
        (``FIELD_RULES``; the cross-field rules after them). Each out-of-range value
        used to fail deep in the analyzers (a ZeroDivisionError, a 321 GiB allocation)
        or, worse, give a plausible wrong fingerprint (a NaN tempo prior: tempo 220)."""
        for field in dataclasses.fields(self):
            value = _checked_value(field.name, getattr(self, field.name), FIELD_RULES[field.name])
            # Numbers are stored as the field's own type, so that AnalysisParams(silence_db=-60)
            # is the default (the same key()) and numpy scalars serialise.
            object.__setattr__(self, field.name, value)
        _check_related(self)

    def at_rate(self, samplerate: int) -> AnalysisParams:
        """These parameters with ``n_fft`` and ``hop`` scaled by ``frame_scale``, so
        that a frame lasts about as long at any rate: with 2048 samples at 192 kHz
        (11 ms, bins 94 Hz apart) the onset envelope, pitch range, harmonic ratio and
        sub-bass band of a hi-res copy were another track's (a tempo of 200 for 100)."""
        scale = frame_scale(checked_rate(samplerate))
        n_fft = max(MIN_N_FFT, round(self.n_fft * scale))
        # Not dataclasses.replace: the ranges of n_fft and hop are samples at
        # REFERENCE_RATE, and the scaled frames last as long as those (16 x the
        # samples at 768 kHz), so the copy is not checked against them again.
        scaled = copy.copy(self)
        object.__setattr__(scaled, "n_fft", n_fft)
        object.__setattr__(scaled, "hop", max(1, self.hop * n_fft // self.n_fft))
        return scaled

    def key(self) -> str:
        """A short stable hash of the fingerprint version and every field."""
        return _params_key(self)


def _checked_value(name: str, value: object, rule: FieldRule) -> int | float:
    """``value`` as the rule's type, or a ParameterError naming the field and its range."""
    number = _as_number(value, rule.kind)
    if number is None or not rule.admits(number):
        raise ParameterError(f"{value!r}: must be {rule.describe()}", name)
    # -0.0 + 0.0 is 0.0: equal params, one key. json writes -0.0 apart, and the cached
    # key of equal params was that of whichever was keyed first in the process.
    return number + 0 if isinstance(number, float) else number


def _as_number(value: object, kind: type) -> int | float | None:
    """``value`` as a finite int or float (``as_number``), else None."""
    number = as_number(value, kind)
    return number if number is not None and (isinstance(number, int) or math.isfinite(number)) else None


def as_number(value: object, kind: type = float) -> int | float | None:
    """``value`` as an int or a float (Python's or numpy's; NaN and infinity stay), else
    None: a bool is not a number here (True passed as one channel), nor is a numeric
    string, and for ``kind`` int a float is not an integer. The one test of the numbers
    a caller hands the analyzers, before each checks its own range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if kind is int:
        return int(value) if isinstance(value, numbers.Integral) else None
    try:
        return float(value)
    except OverflowError:   # an integer beyond any float (10**400): beyond every range, as infinity is
        return math.inf if value > 0 else -math.inf  # type: ignore[operator]  # Real: ordered, untyped so


def _check_related(params: AnalysisParams) -> None:
    """The rules between fields, once each field is in its own range."""
    n_fft, hop = params.n_fft, params.hop
    if n_fft & (n_fft - 1):
        raise ParameterError(f"{n_fft}: must be a power of two in [{MIN_N_FFT}, {MAX_N_FFT}]", "n_fft")
    if not n_fft // MAX_OVERLAP <= hop <= min(n_fft, MAX_HOP):
        raise ParameterError(f"{hop}: must be an integer in [{n_fft // MAX_OVERLAP}, {min(n_fft, MAX_HOP)}] "
                             f"(n_fft / {MAX_OVERLAP} to n_fft, at most {MAX_HOP}; n_fft={n_fft})", "hop")
    # Both ranges span an octave at least: a chroma over less leaves pitch classes out;
    # with MAX_F0_MIN_HZ and MIN_F0_MAX_HZ, an octave of pitch keeps two lags or more in
    # the pitch search at every rate and n_fft (one lag stopped the analyzer).
    for low, high in (("f0_min_hz", "f0_max_hz"), ("chroma_min_hz", "chroma_max_hz")):
        if 2 * getattr(params, low) > getattr(params, high):
            raise ParameterError(f"{getattr(params, low)!r}: must be at most half {high}={getattr(params, high)!r} "
                                 "(an octave below it)", low)
    if params.tempo_min_bpm >= params.tempo_max_bpm:
        raise ParameterError(f"{params.tempo_min_bpm!r}: must be below tempo_max_bpm={params.tempo_max_bpm!r}",
                             "tempo_min_bpm")
    if not params.tempo_min_bpm <= params.tempo_prior_bpm <= params.tempo_max_bpm:
        raise ParameterError(f"{params.tempo_prior_bpm!r}: must be in [tempo_min_bpm={params.tempo_min_bpm!r}, "
                             f"tempo_max_bpm={params.tempo_max_bpm!r}]", "tempo_prior_bpm")


def checked_params(params: object) -> AnalysisParams:
    """``params`` if it is an AnalysisParams, the defaults for None, else a
    ParameterError: the functions and classes that take one met a dict of fields with
    an AttributeError far from its cause (an empty dict, being false, meant the
    defaults)."""
    if params is None:
        return AnalysisParams()
    if not isinstance(params, AnalysisParams):
        raise ParameterError(f"a {type(params).__name__}: must be an AnalysisParams "
                             "(AnalysisParams(**fields) makes one from a dict)", "params")
    return params


def checked_rate(samplerate: object) -> int:
    """``samplerate`` as a Python int, or a ParameterError unless it is an integer the
    analyzers support (MIN_SAMPLERATE to MAX_SAMPLERATE Hz, as for files)."""
    # bool is an int to Python: True would pass as 1 Hz.
    rate = as_number(samplerate, int)
    if rate is None or not MIN_SAMPLERATE <= rate <= MAX_SAMPLERATE:
        raise ParameterError(f"{samplerate!r}: an integer rate from {MIN_SAMPLERATE} to {MAX_SAMPLERATE} Hz",
                             "samplerate")
    return int(rate)


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
