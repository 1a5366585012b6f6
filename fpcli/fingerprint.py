"""The 25 fingerprint dimensions (FINGERPRINT.md), their units and groups, and the
``Fingerprint`` value both analyzers return.

Dimensions are always addressed by name: the streaming 13 are *not* the first 13 of the
batch vector.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fpcli.errors import ParameterError
from fpcli.params import FINGERPRINT_VERSION

if TYPE_CHECKING:  # they bring numpy and scipy: the CLI's start-up does not pay for them
    import numpy as np

    from fpcli.dsp.dupes import DupeKey
    from fpcli.dsp.timbre import Timbre


@dataclasses.dataclass(frozen=True)
class Dim:
    """One dimension: name, physical unit, group, whether streaming computes it, range."""

    name: str
    unit: str
    group: str
    streaming: bool
    low: float
    high: float


BANDS_HZ: tuple[tuple[str, float, float], ...] = (
    ("band_sub_bass", 20.0, 60.0),
    ("band_bass", 60.0, 250.0),
    ("band_low_mid", 250.0, 500.0),
    ("band_mid", 500.0, 2000.0),
    ("band_upper_mid", 2000.0, 4000.0),
    ("band_presence", 4000.0, 6000.0),
    ("band_air", 6000.0, 20000.0),
)

DIMS: tuple[Dim, ...] = (
    *(Dim(name, "fraction", "frequency", False, 0.0, 1.0) for name, _, _ in BANDS_HZ),
    Dim("lufs", "LUFS", "dynamics", False, -70.0, 5.0),
    Dim("crest_db", "dB", "dynamics", False, 0.0, 60.0),
    Dim("bass_mid_ratio_db", "dB", "dynamics", False, -60.0, 60.0),
    Dim("tempo_bpm", "BPM", "temporal", True, 40.0, 220.0),
    Dim("rhythm_stability", "0-1", "temporal", True, 0.0, 1.0),
    Dim("transient_density", "onsets/s", "temporal", True, 0.0, 50.0),
    Dim("silence_ratio", "fraction", "temporal", True, 0.0, 1.0),
    Dim("spectral_centroid_hz", "Hz", "spectral", True, 0.0, 24000.0),
    Dim("spectral_rolloff_hz", "Hz", "spectral", True, 0.0, 24000.0),
    Dim("spectral_flatness", "0-1", "spectral", True, 0.0, 1.0),
    Dim("harmonic_ratio", "0-1", "harmonic", True, 0.0, 1.0),
    Dim("pitch_stability", "0-1", "harmonic", True, 0.0, 1.0),
    Dim("key_clarity", "0-1", "harmonic", True, 0.0, 1.0),
    Dim("loudness_range_lu", "LU", "variation", True, 0.0, 60.0),
    Dim("loudness_std_lu", "LU", "variation", True, 0.0, 30.0),
    Dim("peak_consistency", "0-1", "variation", True, 0.0, 1.0),
    Dim("stereo_width", "0-1", "stereo", False, 0.0, 1.0),
    Dim("phase_correlation", "-1..1", "stereo", False, -1.0, 1.0),
)

DIM_BY_NAME: dict[str, Dim] = {d.name: d for d in DIMS}
BATCH_DIMS: tuple[str, ...] = tuple(d.name for d in DIMS)
STREAMING_DIMS: tuple[str, ...] = tuple(d.name for d in DIMS if d.streaming)
GROUPS: tuple[str, ...] = (
    "frequency", "dynamics", "temporal", "spectral", "harmonic", "variation", "stereo",
)

assert len(BATCH_DIMS) == 25 and len(STREAMING_DIMS) == 13

# The values a dim's definition allows, where it bounds them (``low``-``high`` above is
# the typical range, which real audio may leave): shares and clipped scores in [0, 1],
# a correlation in [-1, 1], rates, levels above a floor and ratios of a peak to a mean
# never below 0. A stored value outside its domain was not made by an analyzer (a
# hand-edited import, say); the store refuses it. The others are bounded only as every
# stored number is.
_SHARES = ("band_sub_bass", "band_bass", "band_low_mid", "band_mid", "band_upper_mid", "band_presence",
           "band_air", "rhythm_stability", "silence_ratio", "spectral_flatness", "harmonic_ratio",
           "pitch_stability", "key_clarity", "peak_consistency", "stereo_width")
_NON_NEGATIVE = ("crest_db", "tempo_bpm", "transient_density", "spectral_centroid_hz", "spectral_rolloff_hz",
                 "loudness_range_lu", "loudness_std_lu")
DOMAINS: dict[str, tuple[float, float]] = {
    **{name: (0.0, 1.0) for name in _SHARES},
    **{name: (0.0, math.inf) for name in _NON_NEGATIVE},
    "phase_correlation": (-1.0, 1.0),
}
# Room at a domain's edge for rounding in records written before the analyzers clipped
# their values (a polarity-inverted stereo file's width was 1.0000000055): far below
# any value that means something else (a share of 1.5, a negative tempo).
DOMAIN_SLACK = 1e-4
# The largest magnitude of any value, within its domain or not (a tempo of 1e300): the
# store's bound (store.limits), which a fingerprint made by hand must keep too.
VALUE_LIMIT = 1e9
# The relative asymmetry, or negative eigenvalue, a timbre's covariance may show (its
# values are rounded to float32): the same bound for a stored record and ``from_dict``.
COV_TOLERANCE = 1e-6


def asymmetric_covariances(covs: np.ndarray) -> np.ndarray:
    """(n,) bool: which covariances (n, d, d) differ from their transpose by more than
    COV_TOLERANCE relative to their largest entry."""
    import numpy as np

    scale = 1.0 + np.abs(covs).max(axis=(1, 2))
    return np.asarray(np.abs(covs - covs.transpose(0, 2, 1)).max(axis=(1, 2)) > COV_TOLERANCE * scale)


def indefinite_covariances(covs: np.ndarray) -> np.ndarray:
    """(n,) bool: which covariances (n, d, d) have an eigenvalue below -COV_TOLERANCE
    relative to their largest entry."""
    import numpy as np

    return _indefinite(covs, COV_TOLERANCE * (1.0 + np.abs(covs).max(axis=(1, 2))))


def _indefinite(stack: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """(n,) bool: which matrices of ``stack`` (n, d, d) have an eigenvalue below
    -``tolerance``. Every look-up checks one, so the common case is made cheap: when
    C + tolerance I has a Cholesky factor for every matrix, each smallest eigenvalue is
    above -tolerance and none is indefinite (one LAPACK call, ~10 us); only when one
    has none are the eigenvalues computed (~25 us), to say which."""
    import numpy as np

    shifted = stack + tolerance[:, None, None] * np.eye(stack.shape[-1])
    try:
        np.linalg.cholesky(shifted)
    except np.linalg.LinAlgError:
        return np.asarray(np.linalg.eigvalsh(stack).min(axis=1) < -tolerance)
    return np.zeros(len(stack), dtype=bool)


def within_domains(values: dict[str, float | None]) -> dict[str, float | None]:
    """``values`` with each clipped to its dim's domain: sums and ratios taken in
    float32 overshoot an exact bound by rounding (a stereo width of 1 + 5.5e-9, a
    correlation of -1 - 1e-8), and a value just past the bound means the bound."""
    return {name: value if value is None or name not in DOMAINS
            else min(max(value, DOMAINS[name][0]), DOMAINS[name][1]) for name, value in values.items()}


def mean_confidence(confidence: Mapping[str, float], values: Mapping[str, float | None]) -> float:
    """The mean streaming confidence over the dims that have a value: a null dim (a
    silent or short track has several) is confidently unmeasurable, and its confidence
    0 would call a fully heard track unreliable. Over every dim when none has a value;
    0 without confidences."""
    measured = [c for dim, c in confidence.items() if values.get(dim) is not None]
    chosen = measured or list(confidence.values())
    return sum(chosen) / len(chosen) if chosen else 0.0


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """A fingerprint in physical units.

    ``values`` maps each dimension name to a float, or ``None`` when it cannot be
    computed; ``reasons`` then says why. ``confidence`` (streaming only) maps each
    dimension to [0, 1]. ``complete`` is True once the whole file has been read.
    ``timbre`` is the MFCC Gaussian of the non-silent frames (None when every frame is
    silent); ``dupe_key`` the duplicate key of the first minute (streaming only; None
    for a track shorter than two 0.5 s windows). docs/fingerprint.md describes both.

    ``==`` compares every field, ``chunks`` (the blocks pushed) too: the same audio
    pushed in other blocks gives the same values but another fingerprint; compare
    ``values`` (and ``confidence``) to compare what was measured.
    """

    kind: str  # "batch" or "streaming"
    values: dict[str, float | None]
    reasons: dict[str, str]
    params_key: str
    seconds: float
    complete: bool
    confidence: dict[str, float] | None = None
    chunks: int = 0
    version: int = FINGERPRINT_VERSION
    timbre: Timbre | None = None
    dupe_key: DupeKey | None = None
    # Unhashable, and says so: its values are dicts (the hash dataclass made for a
    # frozen class failed with "unhashable type: 'dict'").
    __hash__ = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        """Values and confidences as plain Python floats: the analyzers' numpy floats
        printed as ``np.float64(...)`` and stopped JSON encoders (orjson) that take only
        Python types. 25 conversions: under 5 us per fingerprint."""
        object.__setattr__(self, "values", {name: _plain(value) for name, value in self.values.items()})
        if self.confidence is not None:
            object.__setattr__(self, "confidence", {name: float(c) for name, c in self.confidence.items()})
        object.__setattr__(self, "seconds", float(self.seconds))   # a numpy rate made it np.float64
        object.__setattr__(self, "chunks", int(self.chunks))

    def copy(self) -> Fingerprint:
        """The same fingerprint with dicts of its own: the analyzers hand out a copy of
        the one they keep, which a caller's change to ``values`` had altered for every
        later ``finish`` (and for the record a ``LiveFingerprint`` then saved)."""
        return dataclasses.replace(self, reasons=dict(self.reasons))   # __post_init__ copies the others

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (NaN never appears: missing values are None); the timbre
        as {"mean": [13], "cov": [[13] x 13], "frames": n}."""
        data = dataclasses.asdict(self)
        data["timbre"] = None if self.timbre is None else self.timbre.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """The fingerprint ``to_dict`` gave; ParameterError saying what is wrong with
        anything else (a missing or unknown field, a value that is no finite number, a
        timbre of another shape): it took them, or failed with a TypeError or an
        AttributeError, and a NaN value came back out of ``to_dict``."""
        try:
            return cls(**_checked_fields(data))
        except ParameterError:
            raise
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ParameterError(f"not a fingerprint as to_dict() gives it: {exc}", "data") from None


def _checked_fields(data: Any) -> dict[str, Any]:
    """``Fingerprint.from_dict``'s data as the constructor's arguments (timbre and
    duplicate key as objects), or a ParameterError naming what is wrong."""
    from fpcli.dsp.dupes import DupeKey
    from fpcli.dsp.timbre import N_MFCC, Timbre

    if not isinstance(data, dict):
        raise ParameterError(f"a dict as to_dict() gives it, not {type(data).__name__}", "data")
    fields = {field.name for field in dataclasses.fields(Fingerprint)}
    required = {field.name for field in dataclasses.fields(Fingerprint)
                if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING}
    if unknown := sorted(set(data) - fields):
        raise ParameterError(f"unknown field(s) {', '.join(map(str, unknown))}", "data")
    if missing := sorted(required - set(data)):
        raise ParameterError(f"missing field(s) {', '.join(missing)}", "data")
    _check_plain_fields(data)
    data = dict(data)
    if data.get("timbre") is not None:
        if not isinstance(data["timbre"], dict):   # "oops" was "timbre.frames must be an integer"
            raise ParameterError(f"timbre must be a dict as to_dict() gives it, not {type(data['timbre']).__name__}",
                                 "data")
        if unknown := sorted(map(str, set(data["timbre"]) - {"mean", "cov", "frames"})):   # taken without a word
            raise ParameterError(f"unknown timbre field(s) {', '.join(unknown)}", "data")
        frames = data["timbre"].get("frames")
        if not (isinstance(frames, int) and not isinstance(frames, bool) and frames >= 1):
            raise ParameterError(f"timbre.frames must be an integer >= 1, not {frames!r}", "data")
        timbre = Timbre.from_dict(data["timbre"])
        mean, cov = timbre.arrays()
        if mean.shape != (N_MFCC,) or cov.shape != (N_MFCC, N_MFCC) or not _all_finite(mean, cov):
            raise ParameterError(f"timbre must hold a finite mean of {N_MFCC} and a {N_MFCC} x {N_MFCC} "
                                 "covariance", "data")
        if asymmetric_covariances(cov[None])[0] or indefinite_covariances(cov[None])[0]:
            raise ParameterError("timbre.cov must be symmetric and positive semi-definite (a covariance)", "data")
        data["timbre"] = timbre
    if data.get("dupe_key") is not None:
        data["dupe_key"] = DupeKey(**data["dupe_key"])
    return data


def _check_plain_fields(data: dict[str, Any]) -> None:
    """ParameterError naming the first field of ``from_dict``'s data that ``to_dict``
    could not have given: each was taken as it came (a NaN ``seconds`` or an infinite
    confidence came back out of ``to_dict``, and a ``kind`` of "foo" was kept)."""
    kind, values, confidence = data["kind"], data["values"], data.get("confidence")
    if kind not in ("batch", "streaming"):
        raise ParameterError(f"kind must be 'batch' or 'streaming', not {kind!r}", "data")
    dims = STREAMING_DIMS if kind == "streaming" else BATCH_DIMS
    if not isinstance(values, dict) or set(values) != set(dims):
        raise ParameterError(f"values must map each {kind} dimension to a finite number or None", "data")
    if bad := next((name for name, v in values.items() if not (v is None or _finite_number(v))), None):
        # Named: a numpy float32 (no Python float) was refused as the whole mapping.
        raise ParameterError(f"values.{bad} must be a finite number or None, not {values[bad]!r}", "data")
    for name, value in values.items():
        low, high = DOMAINS.get(name, (-math.inf, math.inf))
        low, high = max(low, -VALUE_LIMIT), min(high, VALUE_LIMIT)   # a tempo of 1e300 was taken
        if value is not None and not low - DOMAIN_SLACK <= value <= high + DOMAIN_SLACK:
            raise ParameterError(f"values.{name} is {value!r}, outside its domain [{low:g}, {high:g}]", "data")
    if confidence is not None and (not isinstance(confidence, dict) or not set(confidence) <= set(dims) or
                                   not all(_finite_number(c) and 0 <= c <= 1 for c in confidence.values())):
        raise ParameterError("confidence must map dimensions to numbers in [0, 1], or be None", "data")
    reasons = data["reasons"]
    if not isinstance(reasons, dict) or not all(k in dims and isinstance(v, str) for k, v in reasons.items()):
        raise ParameterError(f"reasons must map {kind} dimensions to text", "data")
    if not isinstance(data["params_key"], str):
        raise ParameterError("params_key must be text", "data")
    if not (_finite_number(data["seconds"]) and data["seconds"] >= 0):
        raise ParameterError(f"seconds must be a finite number >= 0, not {data['seconds']!r}", "data")
    if not isinstance(data["complete"], bool):
        raise ParameterError(f"complete must be true or false, not {data['complete']!r}", "data")
    for name, highest in (("chunks", math.inf), ("version", FINGERPRINT_VERSION)):
        value = data.get(name, 0)
        if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= highest):
            raise ParameterError(f"{name} must be an integer from 0 to {highest}, not {value!r}", "data")
    _check_dupe_key(data.get("dupe_key"))


def _check_dupe_key(key: Any) -> None:
    """A duplicate key as ``to_dict`` gives it: None, or what a record may hold
    (``dupes.bad_key_fields``; bits of "zz" were taken, and failed when compared)."""
    from fpcli.dsp.dupes import MAX_WINDOWS, bad_key_fields

    if key is not None and (not isinstance(key, dict) or bad_key_fields(key)):
        raise ParameterError(f"dupe_key must hold windows (a count in [1, {MAX_WINDOWS - 1}]) and bits and mask "
                             "of 4 lowercase hex digits per window", "data")


def _finite_number(value: Any) -> bool:
    """A finite real number: Python's, or numpy's of any width (np.float64 passed as a
    float and np.float32 was refused); not a bool."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:   # an integer of 400 digits (what json.loads gives for one) has no float
        return False


def _all_finite(*arrays: Any) -> bool:
    return all(bool((abs(a) < math.inf).all()) for a in arrays)


def _plain(value: float | None) -> float | None:
    """``value`` as a Python float (None stays None)."""
    return None if value is None else float(value)


def clean(value: float | None) -> float | None:
    """A float, or None for None/NaN/inf: nothing non-finite leaves an analyzer."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def seconds_text(seconds: float) -> str:
    """Seconds heard, for people: "0.5", "2", "12.3" (``:.0f`` made half a second "0")."""
    return f"{seconds:.1f}".removesuffix(".0")
