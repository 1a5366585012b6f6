"""What the store holds, as types: file identity, the ``Record`` of an analysed track
and the ``Failure`` of a file that could not be analysed; and the one place that turns
them to and from JSON and checks every field (store reads, imports and verify all use
``parse_record`` / ``parse_failure``, so an import cannot hold what a read refuses).

Identity (ARCHITECTURE.md, "The store"):

* ``path_key``: a path is data, not text: keys use a hash of its bytes, so a name that
  is not UTF-8, holds a newline or is very long is as good as any other.
* ``content_key``: blake2b of the size and the first and last 64 KiB; cheap, it only
  proposes *candidates* for a path not seen before (equal heads and tails are common:
  silence-padded WAVs, files damaged in the middle).
* ``file_digest``: blake2b of the whole file, the identity of a record; a candidate
  is served only when the digests are equal.

Paths are ``str`` with undecodable bytes as lone surrogates (``os.fsdecode``,
surrogateescape); JSON text escapes them as ``\\udcXX`` (``ensure_ascii``), so a
record round-trips byte for byte: ``os.fsencode(json.loads(text)["paths"][0]["path"])``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from fpcli.cue import salted, track_of_entry
from fpcli.errors import BadEntryError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS, Fingerprint
from fpcli.params import FINGERPRINT_VERSION
from fpcli.results import TrackResult

RECORD_SCHEMA = 2
STREAM_PREFIX = "stream:"  # paths of named streams (fpcli analyze - --name NAME): no file behind them
CONTENT_SAMPLE_BYTES = 64 * 1024
DIGEST_CHUNK_BYTES = 1 << 20
HEX32 = frozenset("0123456789abcdef")


# -- identity --------------------------------------------------------------------------------

def path_key(path: str) -> str:
    """32 hex digits naming a path in keys, whatever bytes the path holds."""
    return hashlib.blake2b(os.fsencode(path), digest_size=16).hexdigest()


def content_key(path: str, size: int) -> str:
    """blake2b of the size and the first and last 64 KiB (reads at most 128 KiB)."""
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as fh:
        digest.update(fh.read(CONTENT_SAMPLE_BYTES))
        if size > CONTENT_SAMPLE_BYTES:
            fh.seek(max(size - CONTENT_SAMPLE_BYTES, CONTENT_SAMPLE_BYTES))
            digest.update(fh.read(CONTENT_SAMPLE_BYTES))
    return digest.hexdigest()


def file_digest(path: str) -> str:
    """blake2b (128 bits) of the whole file, read in 1 MiB blocks (about 1 GB/s here:
    benchmarks/store.md), far cheaper than decoding it."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(DIGEST_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def entry_file(path: str) -> tuple[str, str]:
    """(the file holding an entry's audio, what sets the entry apart within it): a
    plain path is itself with no salt; a CUE track ``album.flac#03`` is the image with
    the track's number and bounds (see ``fpcli.cue``)."""
    track = track_of_entry(path)
    return (track.image, track.salt) if track else (path, "")


def entry_identity_keys(path: str, size: int, *, digest: bool) -> tuple[str, str | None]:
    """(content key, full digest or None) of an entry, salted for a CUE track."""
    file, salt = entry_file(path)
    content = salted(content_key(file, size), salt)
    return content, (salted(file_digest(file), salt) if digest else None)


@dataclasses.dataclass(frozen=True)
class FileIdentity:
    """Who a file is: its resolved path, size, mtime_ns, content key and (once read)
    its full digest."""

    path: str
    size: int
    mtime_ns: int
    content_key: str
    digest: str | None = None


def printable_path(path: str) -> str:
    """A path for people: undecodable bytes as ``\\xNN``, control characters escaped."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- the typed record ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PathSeen:
    """A path where the record's content was found, with the mtime seen there."""

    path: str
    mtime_ns: int


@dataclasses.dataclass(frozen=True)
class AudioFacts:
    """What decoding found: seconds decoded, rate in Hz, channels, container and codec,
    and whether the file is damaged (``partial``, with the reason)."""

    duration_s: float
    samplerate: int
    channels: int
    format: str
    subtype: str
    partial: bool
    partial_reason: str | None


@dataclasses.dataclass(frozen=True)
class StreamingValues:
    """The 13 streaming dims with their confidences (0..1), null reasons, chunks pushed
    and seconds heard."""

    values: dict[str, float | None]
    confidence: dict[str, float]
    reasons: dict[str, str]
    chunks: int
    seconds: float


@dataclasses.dataclass(frozen=True)
class BatchValues:
    """The 25 batch dims (always of the whole track) and null reasons."""

    values: dict[str, float | None]
    reasons: dict[str, str]


@dataclasses.dataclass(frozen=True)
class Validation:
    """A stored streaming-vs-batch verdict (``fpcli validate``)."""

    status: str                      # valid or invalid
    similarity: float | None
    threshold: float
    confidence_quality: str          # high, medium or low
    failed_metrics: tuple[str, ...]
    errors: dict[str, float | None]
    validated_at: float


@dataclasses.dataclass(frozen=True)
class Record:
    """One analysed content under one set of analysis parameters.

    ``complete`` is False for a preview (the analysis stopped before the end of the
    track; ``streaming.seconds`` says how much was heard): a partial record is never
    served where a complete one is asked for, and is replaced only by one that heard
    more. ``paths`` lists every path where this content was seen (copies, library roots).
    """

    digest: str
    content_key: str
    params_key: str
    fingerprint_version: int
    size: int
    paths: tuple[PathSeen, ...]
    complete: bool
    audio: AudioFacts
    streaming: StreamingValues
    batch: BatchValues | None
    validation: Validation | None
    analysed_at: float
    last_used_at: float

    @property
    def key(self) -> str:
        return record_key(self.digest, self.params_key)

    @property
    def path(self) -> str:
        """The path seen most recently (the last of ``paths``)."""
        return self.paths[-1].path if self.paths else ""

    def covers(self, other: Record) -> bool:
        """Whether this record heard at least as much of the track as ``other``."""
        if self.complete:
            return True
        return not other.complete and self.streaming.seconds >= other.streaming.seconds

    def with_path(self, path: str, mtime_ns: int) -> Record:
        kept = tuple(p for p in self.paths if p.path != path)
        return dataclasses.replace(self, paths=(*kept, PathSeen(path, mtime_ns)))

    def without_path(self, path: str) -> Record:
        return dataclasses.replace(self, paths=tuple(p for p in self.paths if p.path != path))

    def to_result(self, path: str | None = None) -> TrackResult:
        """A ``TrackResult`` (cached=True) rebuilt from the record."""
        s, audio = self.streaming, self.audio
        return TrackResult(
            path=path or self.path, status="partial" if audio.partial else "ok",
            duration_s=audio.duration_s, samplerate=audio.samplerate, channels=audio.channels,
            format=audio.format, subtype=audio.subtype, partial_reason=audio.partial_reason,
            streaming=Fingerprint(kind="streaming", values=dict(s.values), reasons=dict(s.reasons),
                                  params_key=self.params_key, seconds=s.seconds, complete=self.complete,
                                  confidence=dict(s.confidence), chunks=s.chunks, version=self.fingerprint_version),
            batch=None if self.batch is None else Fingerprint(
                kind="batch", values=dict(self.batch.values), reasons=dict(self.batch.reasons),
                params_key=self.params_key, seconds=audio.duration_s, complete=True,
                version=self.fingerprint_version),
            cached=True,
        )


def record_key(digest: str, params_key: str) -> str:
    return f"rec:{digest}:{params_key}"


def record_from_result(identity: FileIdentity, result: TrackResult, now: float) -> Record:
    """The record of a freshly analysed file (``identity.digest`` must be known)."""
    assert identity.digest is not None and result.streaming is not None
    fp = result.streaming
    return Record(
        digest=identity.digest, content_key=identity.content_key, params_key=fp.params_key,
        fingerprint_version=FINGERPRINT_VERSION, size=identity.size,
        paths=(PathSeen(identity.path, identity.mtime_ns),), complete=fp.complete,
        audio=AudioFacts(result.duration_s or 0.0, result.samplerate or 0, result.channels or 0,
                         result.format or "", result.subtype or "", result.status == "partial",
                         result.partial_reason),
        streaming=StreamingValues(dict(fp.values), dict(fp.confidence or {}), dict(fp.reasons), fp.chunks,
                                  fp.seconds),
        batch=None if result.batch is None else BatchValues(dict(result.batch.values), dict(result.batch.reasons)),
        validation=None, analysed_at=now, last_used_at=now,
    )


@dataclasses.dataclass(frozen=True)
class Failure:
    """A file that could not be analysed: skipped until its size or mtime change."""

    path: str
    error_type: str
    message: str
    size: int
    mtime_ns: int
    failed_at: float


# -- JSON: the one place records become text and back -----------------------------------------

def dumps(data: Any) -> str:
    """Compact JSON text; ASCII only (lone surrogates of undecodable path bytes become
    ``\\udcXX`` escapes, which every backend can store)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def loads(key: str, text: str | bytes) -> Any:
    """Parse stored JSON; anything else (including NaN/Infinity) is a bad entry."""
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise BadEntryError(key, [f"not valid JSON ({str(exc)[:60]})"]) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def record_to_json(record: Record) -> dict[str, Any]:
    data = _plain(record)
    data["schema"] = RECORD_SCHEMA
    return data


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copies (imports and exports convert
    every record): dataclasses become dicts, tuples lists, scalars are shared."""
    kind = type(value)
    if kind in _SCALARS:
        return value
    if hasattr(kind, "__dataclass_fields__"):
        return {name: _plain(getattr(value, name)) for name in kind.__dataclass_fields__}
    if kind is dict:
        return {k: v if type(v) in _SCALARS else _plain(v) for k, v in value.items()}
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def failure_to_json(failure: Failure) -> dict[str, Any]:
    return dataclasses.asdict(failure)


class _Checker:
    """Collects every problem of one JSON object against the schema."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def field(self, data: Mapping[str, Any], name: str, check: Callable[[Any], bool], rule: str,
              where: str = "") -> Any:
        value = data.get(name) if isinstance(data, Mapping) else None
        if not check(value):
            self.problems.append(f"{where}{name} is {_show(value)}, not {rule}")
            return None  # never converted (float(10**400) overflows)
        return value

    def obj(self, data: Any, name: str, where: str = "") -> Mapping[str, Any]:
        value = data.get(name) if isinstance(data, Mapping) else None
        if not isinstance(value, Mapping):
            self.problems.append(f"{where}{name} is {_show(value)}, not an object")
            return {}
        return value


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any) -> bool:
    """A finite JSON number; an integer too large for a float (10**400) is not one."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= sys.float_info.max


def _integer(low: int = 0) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v < 2**63


def _nonneg(value: Any) -> bool:
    return _number(value) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str)


def _hex32(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and set(value) <= HEX32


def _params_key(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.replace("-", "").isalnum()


def _dims(c: _Checker, values: Any, names: tuple[str, ...], where: str) -> dict[str, float | None]:
    if not isinstance(values, Mapping) or set(values) != set(names):
        c.problems.append(f"{where} must map exactly the {len(names)} dims to numbers or null")
        return {}
    for name, value in values.items():
        if value is not None and not _number(value):
            c.problems.append(f"{where}.{name} is {_show(value)}, not a finite number or null")
    return {name: (float(values[name]) if _number(values[name]) else None) for name in names}


def _reasons(c: _Checker, values: Any, names: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(values, Mapping) or not set(values) <= set(names) or not all(
            isinstance(v, str) for v in values.values()):
        c.problems.append(f"{where} must map dims to text")
        return {}
    return dict(values)


def parse_record(key: str, data: Any) -> Record:
    """A ``Record`` from its JSON form, every field checked for type and range;
    raises ``BadEntryError`` listing every problem."""
    c = _Checker()
    if not isinstance(data, Mapping):
        raise BadEntryError(key, ["record is not a JSON object"])
    c.field(data, "schema", lambda v: v == RECORD_SCHEMA, f"schema {RECORD_SCHEMA}")
    digest = c.field(data, "digest", _hex32, "32 hex digits")
    ck = c.field(data, "content_key", _hex32, "32 hex digits")
    params_key = c.field(data, "params_key", _params_key, "a parameter key")
    version = c.field(data, "fingerprint_version", _integer(0), "a version number")
    size = c.field(data, "size", _integer(0), "a size in bytes")
    complete = c.field(data, "complete", lambda v: isinstance(v, bool), "true/false")
    analysed_at = c.field(data, "analysed_at", _nonneg, "a time")
    last_used_at = c.field(data, "last_used_at", _nonneg, "a time")
    paths = _paths(c, data.get("paths"))
    audio = _audio(c, c.obj(data, "audio"))
    streaming = _streaming(c, c.obj(data, "streaming"))
    batch = None if data.get("batch") is None else _batch(c, c.obj(data, "batch"))
    validation = None if data.get("validation") is None else _validation(c, c.obj(data, "validation"))
    if c.problems:
        raise BadEntryError(key, c.problems)
    return Record(digest, ck, params_key, version, size, paths, complete, audio, streaming, batch, validation,
                  float(analysed_at), float(last_used_at))


def _paths(c: _Checker, items: Any) -> tuple[PathSeen, ...]:
    if not isinstance(items, list) or not all(
            isinstance(p, Mapping) and isinstance(p.get("path"), str) and p["path"]
            and _integer(0)(p.get("mtime_ns")) for p in items):
        c.problems.append("paths must be a list of {path, mtime_ns}")
        return ()
    return tuple(PathSeen(p["path"], p["mtime_ns"]) for p in items)


def _audio(c: _Checker, a: Mapping[str, Any]) -> AudioFacts:
    w = "audio."
    values = (
        c.field(a, "duration_s", _nonneg, "seconds >= 0", w),
        c.field(a, "samplerate", _integer(1), "a rate in Hz", w),
        c.field(a, "channels", _integer(1), "a channel count", w),
        c.field(a, "format", _text, "text", w),
        c.field(a, "subtype", _text, "text", w),
        c.field(a, "partial", lambda v: isinstance(v, bool), "true/false", w),
        c.field(a, "partial_reason", lambda v: v is None or isinstance(v, str), "text or null", w),
    )
    return AudioFacts(*values) if not c.problems else AudioFacts(0.0, 1, 1, "", "", False, None)


def _streaming(c: _Checker, s: Mapping[str, Any]) -> StreamingValues:
    values = _dims(c, s.get("values"), STREAMING_DIMS, "streaming.values")
    confidence = s.get("confidence")
    if not isinstance(confidence, Mapping) or set(confidence) != set(STREAMING_DIMS) or not all(
            _number(v) and 0 <= v <= 1 for v in confidence.values()):
        c.problems.append("streaming.confidence must give each streaming dim a number in [0, 1]")
        confidence = {}
    reasons = _reasons(c, s.get("reasons"), STREAMING_DIMS, "streaming.reasons")
    chunks = c.field(s, "chunks", _integer(0), "a count", "streaming.")
    seconds = c.field(s, "seconds", _nonneg, "seconds >= 0", "streaming.")
    return StreamingValues(values, {k: float(v) for k, v in confidence.items()}, reasons, chunks or 0,
                           float(seconds or 0.0))


def _batch(c: _Checker, b: Mapping[str, Any]) -> BatchValues:
    return BatchValues(_dims(c, b.get("values"), BATCH_DIMS, "batch.values"),
                       _reasons(c, b.get("reasons"), BATCH_DIMS, "batch.reasons"))


def _validation(c: _Checker, v: Mapping[str, Any]) -> Validation:
    w = "validation."
    status = c.field(v, "status", lambda x: x in ("valid", "invalid"), "valid or invalid", w)
    similarity = c.field(v, "similarity", lambda x: x is None or (_number(x) and -1 <= x <= 1),
                         "a number in [-1, 1] or null", w)
    threshold = c.field(v, "threshold", lambda x: _number(x) and 0 <= x <= 1, "a number in [0, 1]", w)
    quality = c.field(v, "confidence_quality", lambda x: x in ("high", "medium", "low"), "high/medium/low", w)
    failed = c.field(v, "failed_metrics", lambda x: isinstance(x, list) and all(m in STREAMING_DIMS for m in x),
                     "a list of streaming dims", w)
    errors = v.get("errors")
    if not isinstance(errors, Mapping) or not set(errors) <= set(STREAMING_DIMS) or not all(
            e is None or (_number(e) and e >= 0) for e in errors.values()):
        c.problems.append("validation.errors must map streaming dims to numbers >= 0 or null")
        errors = {}
    validated_at = c.field(v, "validated_at", _nonneg, "a time", w)
    return Validation(status, similarity, threshold, quality, tuple(failed or ()), dict(errors), validated_at)


def parse_failure(key: str, data: Any) -> Failure:
    """A ``Failure`` from its JSON form; raises ``BadEntryError``."""
    c = _Checker()
    if not isinstance(data, Mapping):
        raise BadEntryError(key, ["failure is not a JSON object"])
    values = (
        c.field(data, "path", lambda v: isinstance(v, str) and bool(v), "a path"),
        c.field(data, "error_type", _text, "text"),
        c.field(data, "message", _text, "text"),
        c.field(data, "size", _integer(-1), "a size in bytes"),
        c.field(data, "mtime_ns", _integer(-1), "a time in ns"),
        c.field(data, "failed_at", _nonneg, "a time"),
    )
    if c.problems:
        raise BadEntryError(key, c.problems)
    return Failure(*values)


def parse_path_entry(key: str, data: Any) -> dict[str, Any]:
    """A path entry {path, size, mtime_ns, digest, content_key}; raises ``BadEntryError``."""
    c = _Checker()
    c.field(data, "path", lambda v: isinstance(v, str) and bool(v), "a path")
    c.field(data, "size", _integer(0), "a size")
    c.field(data, "mtime_ns", _integer(0), "a time in ns")
    c.field(data, "digest", _hex32, "32 hex digits")
    c.field(data, "content_key", _hex32, "32 hex digits")
    if c.problems:
        raise BadEntryError(key, c.problems)
    return dict(data)
