"""Compare a streaming fingerprint with the batch reference, per metric and overall.

Always by dimension name (never by position). Each metric has a kind that decides
its error measure; the overall similarity is a cosine in a fixed normalised space
(FINGERPRINT.md, "Normalised space"), reproducible across libraries. Results are
plain data.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fpcli.analyze import checkpoints_or_failure, preload
from fpcli.errors import FpcliError, ParameterError, StoreError, StoreFullError, StoreReadOnlyError, UnstorableError
from fpcli.executors.local import Task, run_tasks
from fpcli.fingerprint import DIM_BY_NAME, STREAMING_DIMS, Fingerprint, mean_confidence
from fpcli.library import RunOptions, run_library
from fpcli.results import TIMEOUT_ERROR_TYPE, TrackResult
from fpcli.store import FingerprintStore, Record
from fpcli.store.core import storing_optional
from fpcli.store.records import ACCESS_ERROR_TYPE, Validation

DEFAULT_THRESHOLD = 0.95
# The error_type of the failed result ``fpcli.library.run_library`` reports for a scan
# problem (a missing path, an unreadable folder, a loop): nothing was there to decode.
SCAN_PROBLEM = "ScanError"
FAILED_STATUSES = ("error", "timed_out", "not_analysable", "not_stored")  # tracks that could not be validated


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """A metric passes when its error is within ``limit``; kind says which error:

    ``absolute`` |s - b| (fractions and 0-1 metrics), ``relative`` |s - b| / |b| (Hz,
    onsets/s), ``lu`` |s - b| in LU, ``tempo`` relative error after naming the
    relation (same, double, half, 3:2, 2:3, 4:3, 3:4, miss). ``floor`` is an absolute
    allowance added to relative tolerances (one FFT bin for the rolloff, say), so tiny
    reference values do not turn rounding into failures.
    """

    kind: str
    limit: float
    floor: float = 0.0


# Defaults: the streaming approximation bounds of docs/fingerprint.md, with margin.
# Dims reduced identically by both analyzers get tolerances that only absorb float
# rounding; the histogram-based ones get their bin-width bound.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "tempo_bpm": Tolerance("tempo", 0.02),
    "rhythm_stability": Tolerance("absolute", 0.02),
    "transient_density": Tolerance("relative", 0.02, floor=0.01),
    "silence_ratio": Tolerance("absolute", 0.005),
    "spectral_centroid_hz": Tolerance("relative", 0.01),             # bound 0.7 %
    # Bound: one FFT bin, sr / n_fft, at most 44.1 kHz * sqrt(2) / 2048 = 30.45 Hz (frame_scale
    # keeps frames within sqrt(2) of 46 ms; the floor of 23.5 Hz was under one bin at 62 kHz).
    "spectral_rolloff_hz": Tolerance("relative", 0.01, floor=30.5),
    "spectral_flatness": Tolerance("absolute", 0.005),               # bound 0.5 % of a value <= 1
    "harmonic_ratio": Tolerance("absolute", 0.02),
    "pitch_stability": Tolerance("absolute", 0.02),
    "key_clarity": Tolerance("absolute", 0.02),
    "loudness_range_lu": Tolerance("lu", 0.1),                       # bound 0.02 LU
    "loudness_std_lu": Tolerance("lu", 0.1),
    "peak_consistency": Tolerance("absolute", 0.02),
}

TEMPO_RELATIONS = (("same", 1.0), ("double", 2.0), ("half", 0.5), ("3:2", 1.5), ("2:3", 2 / 3),
                   ("4:3", 4 / 3), ("3:4", 3 / 4))


def normalise(name: str, value: float) -> float:
    """A value on the fixed validation scale (FINGERPRINT.md): Hz as log2 above 20 Hz
    over 10 octaves, BPM as log2 over [40, 220], LU / 20, onsets/s / 10, fractions
    and 0-1 metrics as they are."""
    unit = DIM_BY_NAME[name].unit
    if unit == "Hz":
        return math.log2(max(value, 20.0) / 20.0) / 10.0
    if unit == "BPM":
        return math.log2(max(value, 1e-9) / 40.0) / math.log2(220.0 / 40.0)
    if unit in ("LU", "LUFS", "dB"):
        return value / 20.0
    if unit == "onsets/s":
        return value / 10.0
    return value


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """One metric of one comparison."""

    name: str
    kind: str
    streaming: float | None
    batch: float | None
    error: float | None     # in the kind's measure; None when a value is missing
    tolerance: float
    passed: bool
    relation: str | None = None  # tempo only: same, double, half, 3:2, ..., miss
    note: str | None = None      # why a metric without an error passed or failed


@dataclasses.dataclass(frozen=True)
class ValidationResult:
    """A streaming-vs-batch comparison: per-metric results and the overall verdict."""

    metrics: tuple[MetricResult, ...]
    similarity: float | None
    threshold: float
    is_valid: bool
    confidence_quality: str  # high, medium or low

    @property
    def failed_metrics(self) -> list[str]:
        return [m.name for m in self.metrics if not m.passed]

    @property
    def comparable(self) -> bool:
        """Whether any metric was measured: a track shorter than one analysis frame has
        every value null on both sides, which is no evidence for or against the
        streaming analyzer (a value on one side only is a failed metric instead)."""
        return any(m.streaming is not None or m.batch is not None for m in self.metrics)

    @property
    def status(self) -> str:
        """valid, invalid, or not_comparable (see ``comparable``)."""
        if not self.comparable:
            return "not_comparable"
        return "valid" if self.is_valid else "invalid"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "similarity": self.similarity,
            "threshold": self.threshold,
            "confidence_quality": self.confidence_quality,
            "failed_metrics": self.failed_metrics,
            "errors": {m.name: finite_error(m.error) for m in self.metrics},
            "metrics": [{**dataclasses.asdict(m), "error": finite_error(m.error)} for m in self.metrics],
        }


def finite_error(error: float | None) -> float | None:
    """An error as a report or a record holds it: the infinite relative error of a
    batch value of 0 is null (``validate --json`` stopped with a traceback on it)."""
    return error if error is not None and math.isfinite(error) else None


def parse_tolerances(overrides: list[str]) -> dict[str, Tolerance]:
    """``["tempo_bpm=0.05", ...]`` applied to the defaults (the limit only)."""
    tolerances = dict(DEFAULT_TOLERANCES)
    given: dict[str, str] = {}
    for item in overrides:
        name, _, text = item.partition("=")
        if name not in tolerances:
            raise ParameterError(f"{item!r}: {name!r} is not a streaming dimension ({', '.join(STREAMING_DIMS)})",
                                 "tolerances")
        if name in given:   # the last one won without a word
            raise ParameterError(f"{item!r}: {name} is given twice (also {given[name]!r})", "tolerances")
        given[name] = item
        if not text.strip():   # it said "'' is not a number" (for "tempo_bpm" and "tempo_bpm=")
            raise ParameterError(f"{item!r}: write METRIC=LIMIT, e.g. {name}={DEFAULT_TOLERANCES[name].limit:g}",
                                 "tolerances")
        try:
            limit = float(text)
        except ValueError:
            raise ParameterError(f"{item!r}: {text!r} is not a number", "tolerances") from None
        if not (math.isfinite(limit) and limit >= 0):   # inf broke the JSON report; nan compares as nothing
            raise ParameterError(f"{item!r}: must be a finite number >= 0", "tolerances")
        tolerances[name] = dataclasses.replace(tolerances[name], limit=limit)
    return tolerances


def compare(streaming: Mapping[str, float | None], batch: Mapping[str, float | None], *,
            confidence: Mapping[str, float] | None = None,
            tolerances: Mapping[str, Tolerance] = DEFAULT_TOLERANCES,
            threshold: float = DEFAULT_THRESHOLD) -> ValidationResult:
    """Validate streaming values against batch values, by name, over the 13 streaming dims.

    Extra keys (the batch-only dims) are ignored; order never matters.
    """
    metrics = tuple(_metric(name, streaming.get(name), batch.get(name), tolerances[name])
                    for name in STREAMING_DIMS)
    similarity = cosine_similarity(streaming, batch)
    passed = all(m.passed for m in metrics)
    is_valid = passed and similarity is not None and similarity >= threshold
    return ValidationResult(metrics, similarity, threshold, is_valid, confidence_quality(confidence, streaming))


def _metric(name: str, s: float | None, b: float | None, tolerance: Tolerance) -> MetricResult:
    common = functools.partial(MetricResult, name, tolerance.kind, s, b, tolerance=tolerance.limit)
    if s is None or b is None:
        both = s is None and b is None
        return common(error=None, passed=both,
                      note="null in both" if both else f"null in {'streaming' if s is None else 'batch'} only")
    if tolerance.kind == "tempo":
        relation, error = tempo_relation(s, b, tolerance.limit)
        return common(error=error, passed=relation == "same", relation=relation)
    difference = abs(s - b)
    if tolerance.kind == "relative":
        error = difference / abs(b) if b != 0 else (0.0 if difference == 0 else math.inf)
        passed = error <= tolerance.limit or difference <= tolerance.floor
        if math.isinf(error):
            return common(error=error, passed=passed, note="the batch value is 0: no relative error")
    else:
        error = difference
        passed = error <= tolerance.limit
    return common(error=error, passed=passed)


def tempo_relation(streaming_bpm: float, batch_bpm: float, limit: float) -> tuple[str, float]:
    """Name how the streaming tempo relates to the batch tempo.

    Returns (relation, relative error against the plain batch tempo). The relation is
    the first of same, double, half, 3:2, 2:3, 4:3, 3:4 within ``limit`` (relative),
    else "miss".
    """
    error = abs(streaming_bpm - batch_bpm) / batch_bpm
    for relation, ratio in TEMPO_RELATIONS:
        if abs(streaming_bpm - ratio * batch_bpm) <= limit * ratio * batch_bpm:
            return relation, error
    return "miss", error


def cosine_similarity(a: Mapping[str, float | None], b: Mapping[str, float | None]) -> float | None:
    """Cosine of the two fingerprints on the fixed validation scales, over the streaming
    dims that both have. None when no dim is shared or a vector is zero."""
    pairs = [(normalise(n, x), normalise(n, y)) for n in STREAMING_DIMS
             if (x := a.get(n)) is not None and (y := b.get(n)) is not None]
    dot = sum(x * y for x, y in pairs)
    norm = math.sqrt(sum(x * x for x, _ in pairs)) * math.sqrt(sum(y * y for _, y in pairs))
    return dot / norm if norm > 0 else None


def confidence_quality(confidence: Mapping[str, float] | None,
                       values: Mapping[str, float | None] | None = None) -> str:
    """high (mean >= 0.9), medium (>= 0.6) or low, from the streaming confidences of the
    dims with a value in ``values`` (all of them if none has one), as ``search --strategy
    auto`` takes the mean: a null dim's confidence is 0, so a whole track of silence or
    of 50 ms, every value it has at confidence 1, was "low"."""
    if not confidence:
        return "low"
    mean = mean_confidence(confidence, values or {})
    return "high" if mean >= 0.9 else "medium" if mean >= 0.6 else "low"


# -- libraries -------------------------------------------------------------------------------

CONFIDENCE_BUCKETS = ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0), (1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class TrackValidation:
    path: str
    # valid, invalid, not_comparable (nothing measured), error (could not be decoded),
    # timed_out (the run's time limit, not the file), not_analysable (scan problem) or
    # not_stored (its fingerprints are not in the store)
    status: str
    result: ValidationResult | None = None
    error: str | None = None
    verdict_not_stored: str | None = None   # why the store refused the verdict (it still stands)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "status": self.status}
        if self.result is not None:
            out.update(self.result.to_json())
            out["status"] = self.status
        if self.error:
            out["error"] = self.error
        if self.verdict_not_stored:
            out["verdict_not_stored"] = self.verdict_not_stored
        return out


@dataclasses.dataclass
class LibraryValidation:
    """Everything ``fpcli validate`` reports; plain data."""

    tracks: list[TrackValidation]
    tolerances: dict[str, Tolerance]
    threshold: float
    partial: dict[str, Any] | None = None
    interrupted: bool = False
    partial_interrupted: bool = False   # the comparison done, the partial streams stopped (no table)
    # The error that ended the run (Redis gone, a cluster lost): the report covers the
    # tracks done before it, and the command raises it after the report.
    stopped_by: FpcliError | None = None
    verdicts_stored: bool = True   # False: a what-if run (--no-store, or other criteria)

    @property
    def compared(self) -> list[TrackValidation]:
        """The tracks with a verdict: valid or invalid (not the not comparable ones)."""
        return [t for t in self.tracks if t.status in ("valid", "invalid")]

    @property
    def results(self) -> list[ValidationResult]:
        return [t.result for t in self.compared if t.result is not None]

    @property
    def valid_share(self) -> float | None:
        """The share of valid tracks among those compared (None when none was): a
        file that could not be decoded says nothing about the streaming analyzer, so
        it is not in the share; it is counted in ``failed`` (exit code 3) instead. A
        track not comparable (nothing measured) is in neither."""
        compared = self.compared
        return sum(t.status == "valid" for t in compared) / len(compared) if compared else None

    @property
    def failed(self) -> int:
        """Tracks that could not be validated: undecodable files and scan problems."""
        return sum(t.status in FAILED_STATUSES for t in self.tracks)

    @property
    def partial_failed(self) -> int:
        """Tracks whose ``--partial`` streams failed (a timeout, a file gone since)."""
        return len(self.partial.get("failed", ())) if self.partial else 0

    def metric_table(self) -> list[dict[str, Any]]:
        """Per metric: kind, tolerance, mean and max error, pass rate, tracks."""
        rows = []
        for name in STREAMING_DIMS:
            metrics = [m for result in self.results for m in result.metrics if m.name == name]
            errors = [m.error for m in metrics if m.error is not None and math.isfinite(m.error)]
            rows.append({
                "metric": name, "kind": self.tolerances[name].kind, "tolerance": self.tolerances[name].limit,
                "floor": self.tolerances[name].floor,
                "mean_error": sum(errors) / len(errors) if errors else None,
                "max_error": max(errors) if errors else None,
                "pass_rate": sum(m.passed for m in metrics) / len(metrics) if metrics else None,
                "tracks": len(metrics),
                "relations": _relations(metrics) if name == "tempo_bpm" else None,
            })
        return rows

    def summary(self) -> dict[str, Any]:
        similarities = sorted(r.similarity for r in self.results if r.similarity is not None)
        return {
            "tracks": len(self.tracks),
            "valid": sum(t.status == "valid" for t in self.tracks),
            "invalid": sum(t.status == "invalid" for t in self.tracks),
            "failed_to_decode": sum(t.status == "error" for t in self.tracks),
            "timed_out": sum(t.status == "timed_out" for t in self.tracks),
            "not_analysable": sum(t.status == "not_analysable" for t in self.tracks),
            "not_stored": sum(t.status == "not_stored" for t in self.tracks),
            "verdicts_not_stored": sum(t.verdict_not_stored is not None for t in self.tracks),
            "not_comparable": sum(t.status == "not_comparable" for t in self.tracks),
            "partial_failed": self.partial_failed,
            "compared": len(self.compared),
            "valid_share": self.valid_share,
            "median_similarity": _median(similarities),
            "worst_similarity": similarities[0] if similarities else None,
            "threshold": self.threshold,
        }

    def worst(self, n: int = 5) -> list[TrackValidation]:
        """The invalid tracks first (most failed metrics), then the lowest similarity."""
        def badness(t: TrackValidation) -> tuple[int, float]:
            if t.result is None:
                return (0, 2.0)
            return (-len(t.result.failed_metrics), t.result.similarity if t.result.similarity is not None else -1)
        return sorted(self.compared, key=badness)[:n]

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "metrics": self.metric_table(),
            "tracks": [t.to_json() for t in self.tracks],
            "partial": self.partial,
            "interrupted": self.interrupted,
            "partial_interrupted": self.partial_interrupted,
            "stopped": None if self.stopped_by is None else str(self.stopped_by),
            # False too when the store did not take them all (read-only, full, or lost).
            "verdicts_stored": self.verdicts_stored and not any(t.verdict_not_stored for t in self.tracks),
        }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def _relations(metrics: list[MetricResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for m in metrics:
        if m.relation:
            counts[m.relation] = counts.get(m.relation, 0) + 1
    return counts


def validate_record(record: Record, *, tolerances: Mapping[str, Tolerance] = DEFAULT_TOLERANCES,
                    threshold: float = DEFAULT_THRESHOLD) -> ValidationResult:
    """Compare a stored record's streaming values with its batch values."""
    if record.batch is None:
        raise ValueError("the record has no batch values to validate against")
    return compare(record.streaming.values, record.batch.values, confidence=record.streaming.confidence,
                   tolerances=tolerances, threshold=threshold)


RISE_FLOOR_SHARE = 0.01  # of a metric's tolerance: a smaller rise of mean error is no rise to a user


def confidence_buckets(samples: list[tuple[str, float, MetricResult]]) -> dict[str, Any]:
    """Error by confidence bucket per metric, from (metric, confidence, result) samples.

    ``monotone`` says whether, in expectation, error does not grow with confidence:
    no step from a non-empty bucket to the next more confident one raises the mean
    error by more than two standard errors of the difference (a rise within sampling
    noise is not evidence against the confidence model) nor by more than
    RISE_FLOOR_SHARE of the metric's tolerance (a bucket of one sample, or of equal
    errors, has a standard error of 0: a step from 0 to 1e-9, float rounding of the
    complete track, read as "monotone: no"). It is None for a metric with no error
    measured in any bucket (every sample null on one side or both): nothing says
    either way.
    """
    table: dict[str, list[dict[str, Any]]] = {}
    monotone: dict[str, bool | None] = {}
    for name in STREAMING_DIMS:
        rows: list[dict[str, Any]] = []
        for low, high in CONFIDENCE_BUCKETS:
            inside = [m for metric, c, m in samples if metric == name
                      and (low <= c < high or (low == high == c))]
            errors = [m.error for m in inside if m.error is not None and math.isfinite(m.error)]
            rows.append({"confidence": f"{low:.1f}-{high:.1f}" if low != high else "1.0 (complete)",
                         "samples": len(inside),
                         "mean_error": sum(errors) / len(errors) if errors else None,
                         "standard_error": _standard_error(errors) if errors else None,   # no error: no spread
                         "pass_rate": sum(m.passed for m in inside) / len(inside) if inside else None})
        table[name] = rows
        filled = [(r["mean_error"], r["standard_error"]) for r in rows if r["mean_error"] is not None]
        floor = RISE_FLOOR_SHARE * max((m.tolerance for metric, _, m in samples if metric == name), default=0.0)
        monotone[name] = None if not filled else all(   # None: no error measured in any bucket
            later - earlier <= max(2 * math.hypot(error_a, error_b), floor)
            for (earlier, error_a), (later, error_b) in zip(filled, filled[1:], strict=False))
    return {"buckets": table, "monotone": monotone}


def _standard_error(errors: list[float]) -> float:
    if len(errors) < 2:
        return 0.0
    mean = sum(errors) / len(errors)
    variance = sum((e - mean) ** 2 for e in errors) / (len(errors) - 1)
    return math.sqrt(variance / len(errors))


def validate_library(paths: list[str], store: FingerprintStore, options: RunOptions, *,
                     tolerances: Mapping[str, Tolerance] = DEFAULT_TOLERANCES, threshold: float = DEFAULT_THRESHOLD,
                     partial_seconds: list[float] | None = None, store_verdicts: bool = True,
                     on_event: Callable[[str, Any], None] = lambda kind, payload: None) -> LibraryValidation:
    """Validate every track under ``paths``: streaming and batch fingerprints come from
    the store or are computed (and stored) in worker processes; each track's verdict
    is stored in its record (unless ``store_verdicts`` is False: a what-if run). With
    ``partial_seconds``, also stream each track's first N seconds and measure the
    error by confidence bucket.
    """
    results: list[TrackResult] = []

    def collect(kind: str, payload: Any) -> None:
        if kind == "track":
            results.append(payload)
        on_event(kind, payload)

    records: dict[str, Record] = {}
    tracks: list[TrackValidation] = []
    stopped_by: FpcliError | None = None
    store_lost: StoreError | None = None
    with storing_optional(store):   # a full store: each track said not stored, not the run stopped
        try:
            interrupted = run_library(paths, store, dataclasses.replace(options, batch=True, seconds=None),
                                      collect).interrupted
        except FpcliError as exc:
            # Redis gone, a cluster lost: the tracks done are still reported (there was
            # no report at all, and --json wrote nothing), then the error. One before
            # any track (a scheduler never reached), or a bad parameter, is itself alone.
            if isinstance(exc, ParameterError) or not results:
                raise
            stopped_by, interrupted = exc, False

        def judged(result: TrackResult) -> tuple[TrackValidation, Record | None]:
            nonlocal store_lost, stopped_by
            if store_lost is None or result.failed:   # a failed result needs no store
                try:
                    return _validate_one(store, result, options.params.key(), tolerances, threshold, store_verdicts)
                except StoreError as exc:
                    # The store failed (or had failed) the run: not asked again for each track;
                    # the tracks are judged from their results and the error ends the run.
                    store_lost = exc
                    stopped_by = stopped_by or exc
            return _validate_computed(result, tolerances, threshold, f"the store failed: {store_lost}")

        for result in results:
            track, record = judged(result)
            tracks.append(track)
            if record is not None:
                records[result.path] = record
    report = LibraryValidation(tracks, dict(tolerances), threshold, interrupted=interrupted, stopped_by=stopped_by,
                               verdicts_stored=store_verdicts)
    if partial_seconds and records and not interrupted and stopped_by is None:
        try:
            report.partial = _partial(records, partial_seconds, options, tolerances, on_event)
        except KeyboardInterrupt:
            # The comparison stands (an interrupt here threw the whole report away); a
            # confidence table of the tracks streamed so far would read as the library's.
            report.interrupted = report.partial_interrupted = True
    return report


def _validate_one(store: FingerprintStore, result: TrackResult, params_key: str,
                  tolerances: Mapping[str, Tolerance], threshold: float,
                  store_verdict: bool) -> tuple[TrackValidation, Record | None]:
    if result.failed:
        # A missing path is not a file that failed to decode (as in fpcli analyze: "not analysable"),
        # nor is one that cannot be read (a Dask worker's copy missing: "failed to decode 10").
        status = "not_analysable" if result.error_type in (SCAN_PROBLEM, ACCESS_ERROR_TYPE) else \
            "timed_out" if result.error_type == TIMEOUT_ERROR_TYPE else "error"  # a timeout: not the file's fault
        return TrackValidation(result.path, status, error=result.error), None
    try:
        record = store.record_for_path(result.path, params_key)  # one read, not a scan of every key
    except OSError as exc:
        return TrackValidation(result.path, "error", error=f"cannot read the file again: {exc.strerror}"), None
    if record is None or record.batch is None:
        if store.unsaved and result.streaming is not None and result.batch is not None:
            # Computed, and refused by the store (a user who may only read, a full Redis):
            # compared as computed. Said "not stored" instead, the whole analysis of a
            # library was thrown away.
            return _validate_computed(result, tolerances, threshold,
                                      f"its fingerprints could not be stored: {store.refused}")
        # Not a file that failed to decode: validate compares the fingerprints stored.
        return TrackValidation(result.path, "not_stored", error="no stored fingerprints (evicted meanwhile?)"), None
    verdict = validate_record(record, tolerances=tolerances, threshold=threshold)
    if store_verdict:
        stored = _stored_verdict(verdict)
        try:
            record = store.set_validation(record, stored) or dataclasses.replace(record, validation=stored)
        except UnstorableError as exc:
            return TrackValidation(result.path, "not_stored", error=f"the verdict could not be stored: {exc.reason}"), \
                None
        except (StoreReadOnlyError, StoreFullError) as exc:
            # A user who may only read, or a Redis full under noeviction: the verdict
            # stands, said unstored (the run stopped at the first, exit 1, no report).
            return TrackValidation(result.path, verdict.status, verdict, verdict_not_stored=str(exc)), \
                dataclasses.replace(record, validation=stored)
    return TrackValidation(result.path, verdict.status, verdict), record


def _validate_computed(result: TrackResult, tolerances: Mapping[str, Tolerance], threshold: float,
                       not_stored: str) -> tuple[TrackValidation, None]:
    """A track's verdict from the fingerprints its (successful) result carries, when the
    store does not hold them: said not stored, with ``not_stored`` as the reason."""
    if result.streaming is None or result.batch is None:
        return TrackValidation(result.path, "not_stored", error=not_stored), None
    verdict = compare(result.streaming.values, result.batch.values, confidence=result.streaming.confidence,
                      tolerances=tolerances, threshold=threshold)
    return TrackValidation(result.path, verdict.status, verdict, verdict_not_stored=not_stored), None


def _stored_verdict(verdict: ValidationResult) -> Validation | None:
    """The verdict to keep in the record. None for a track not comparable: it was
    neither valid nor invalid, and a stale "invalid" must not make search auto doubt it."""
    if not verdict.comparable:
        return None
    return Validation(
        verdict.status, verdict.similarity, verdict.threshold, verdict.confidence_quality,
        tuple(verdict.failed_metrics),
        {m.name: finite_error(m.error) for m in verdict.metrics},
        time.time())


def _partial(records: dict[str, Record], seconds: list[float], options: RunOptions,
             tolerances: Mapping[str, Tolerance], on_event: Callable[[str, Any], None]) -> dict[str, Any]:
    samples: list[tuple[str, float, MetricResult]] = []
    failed: list[dict[str, str]] = []   # reported: a track left out without a word skewed the table unseen
    on_event("start", (len(records), "streaming first seconds"))
    for path, outcome in _checkpoints(list(records), seconds, options):
        if isinstance(outcome, tuple):
            failed.append({"path": path, "error": outcome[1]})
            # Said as it happens, as the main pass's failures are (its error: line on stderr).
            on_event("track", TrackResult(path=path, status="error", error_type=outcome[0],
                                          error=f"streaming its first seconds failed: {outcome[1]}"))
            continue
        on_event("progress", path)
        batch = records[path].batch.values  # type: ignore[union-attr]  # validated records have batch values
        for snapshot in _distinct_snapshots(outcome):
            confidence = snapshot.confidence or {}  # streaming snapshots always carry it
            for name in STREAMING_DIMS:
                metric = _metric(name, snapshot.values[name], batch[name], tolerances[name])
                samples.append((name, confidence[name], metric))
    return {"seconds": sorted(seconds), "tracks": len(records) - len(failed), "failed": failed,
            **confidence_buckets(samples)}


def _distinct_snapshots(snapshots: list[Fingerprint]) -> list[Fingerprint]:
    """The snapshots that heard more than the one before: every cut at or beyond a
    track's end is the same whole-track fingerprint, counted once (``--partial 5,10,30``
    on 8 s tracks counted each complete stream twice in the "1.0 (complete)" bucket)."""
    kept: list[Fingerprint] = []
    for snapshot in snapshots:
        if not kept or snapshot.seconds > kept[-1].seconds:
            kept.append(snapshot)
    return kept


def _checkpoints(paths: list[str], seconds: list[float], options: RunOptions) -> Iterator[tuple[str, Any]]:
    """(path, snapshots or (error_type, message)) per track, on the chosen executor."""
    if options.executor == "dask":
        from fpcli.executors.dask import PathMap, run_on_dask

        path_map = PathMap.parse(list(options.path_map))
        calls = [(p, functools.partial(checkpoints_or_failure, path_map.to_worker(p), seconds, options.params))
                 for p in paths]
        yield from run_on_dask(calls, options.scheduler or "", timeout_s=options.timeout_s)
        return
    tasks = [Task(p, functools.partial(checkpoints_or_failure, p, seconds, options.params)) for p in paths]
    for task, outcome in run_tasks(tasks, jobs=options.jobs, timeout_s=options.timeout_s, warm_up=preload):
        yield task.label, outcome
