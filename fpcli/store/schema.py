"""The one place records become JSON text and back: ``dumps``/``loads`` and the
checkers used by store reads, imports and ``cache verify`` alike (so an import cannot
hold what a read refuses). Every field is checked for type and range; a value that
breaks a rule is one ``BadEntryError`` listing every problem.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from fpcli.errors import BadEntryError, UnstorableError
from fpcli.fingerprint import (
    BATCH_DIMS,
    DOMAINS,
    STREAMING_DIMS,
    asymmetric_covariances,
    indefinite_covariances,
)
from fpcli.store.limits import (
    CHANNELS_RANGE,
    MTIME_NS_RANGE,
    SAMPLERATE_RANGE,
    STREAM_PREFIX,
    TIME_LIMIT,
    VALUE_LIMIT,
    plausible,
    storable_path,
    value_bounds,
)
from fpcli.store.protocol import UNREADABLE_MARK
from fpcli.store.records import (
    MAX_PATHS,
    READABLE_SCHEMAS,
    RECORD_SCHEMA,
    AudioFacts,
    BatchValues,
    Failure,
    PathSeen,
    Record,
    StreamingValues,
    Validation,
    record_key,
)
from fpcli.store.timbre_block import (
    TIMBRE_VALUES,
    pack_timbre,
    packed_values,
    plain_numbers,
    unpack_stack,
)

if TYPE_CHECKING:
    import numpy as np

    from fpcli.dsp.dupes import DupeKey


# -- JSON: the one place records become text and back -----------------------------------------

def dumps(data: Any) -> str:
    """Compact JSON text; ASCII only (lone surrogates of undecodable path bytes become
    ``\\udcXX`` escapes, which every backend can store)."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def dumps_finite(data: Any) -> str:
    """``dumps`` of data whose floats are all finite, three times faster (orjson). The
    text may differ from ``dumps``'s in how a number is spelt, never in what it parses
    to. Data orjson cannot write as ``dumps`` would goes to ``dumps``: non-ASCII
    text (``dumps`` escapes it), lone surrogates, integers beyond 64 bits. (orjson
    writes NaN and infinity as null without a word: hence "finite", which the caller
    guarantees.)"""
    try:
        text = orjson.dumps(data)
    except orjson.JSONEncodeError:
        return dumps(data)
    return text.decode("ascii") if text.isascii() else dumps(data)


def loads(key: str, text: str | bytes) -> Any:
    """Parse stored JSON; anything else (including NaN/Infinity) is a bad entry.

    orjson parses first (4-5x faster than ``json``: a store read, an import and an
    index build parse every record). What it refuses goes to ``json``, which decides:
    lone surrogates (undecodable path bytes, written as ``\\udcXX``), numbers beyond a
    double, nesting past 1024. The one difference in what parses: an integer beyond
    64 bits comes back as a float of the same value, and every such field is refused
    or turned into a float by the checks anyway."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass
    if isinstance(text, str) and text.startswith(UNREADABLE_MARK):
        raise BadEntryError(key, [text[len(UNREADABLE_MARK):]])   # a backend's reason, said as it is
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise BadEntryError(key, [f"not valid JSON ({str(exc)[:120]})"]) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


def record_to_json(record: Record) -> dict[str, Any]:
    """The record's JSON object (the inverse of ``parse_record``); the timbre packed."""
    data = {name: pack_timbre(value) if name == "timbre" and value is not None else _plain(value)
            for name, value in ((name, getattr(record, name)) for name in Record.__dataclass_fields__)}
    data["schema"] = RECORD_SCHEMA
    return data


def _plain(value: Any) -> Any:
    """``dataclasses.asdict`` without its deep copies (imports and exports convert
    every record): dataclasses become dicts (``DupeKey`` too, which gives the same
    object as its ``to_dict``), tuples lists, scalars are shared."""
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

# An export's record line: this, the record's stored text, and "}" (``record_line``).
RECORD_LINE_PREFIX = '{"type":"record","data":'


def record_line(text: str) -> str:
    """The export line of a record's stored text (one line of JSON: the text must be)."""
    return RECORD_LINE_PREFIX + text + "}"


def record_text(record: Record) -> str:
    """``dumps(record_to_json(record))``, three times faster: the JSON is written
    straight from the dataclasses' own attribute dicts (fields in declaration order,
    as ``record_to_json`` gives them; ``json`` writes tuples as arrays), with no
    intermediate copy. What every store write and export of a record uses."""
    fields = vars(record)
    data = {**fields, "paths": [vars(p) for p in record.paths], "audio": vars(record.audio),
            "streaming": vars(record.streaming),
            "batch": None if record.batch is None else vars(record.batch),
            "validation": None if record.validation is None else vars(record.validation),
            "timbre": None if record.timbre is None else pack_timbre(record.timbre),
            "dupe_key": None if record.dupe_key is None else vars(record.dupe_key),
            "schema": RECORD_SCHEMA}
    return dumps_finite(data) if _finite_numbers(record) else dumps(data)


def checked_for_storing(record: Record) -> None:
    """An UnstorableError (a ParameterError) naming its problems unless ``record`` reads back from its text:
    what the store writes it must be able to read. A fingerprint changed after its
    analysis (a tempo of -5) or a stream named with a NUL was stored, then every read
    of it rejected it as a bad entry, and the caller never heard. About 0.3 ms a record,
    once per analysed file (not on a cached hit)."""
    try:
        text = record_text(record)
    except ValueError as exc:   # a value that is no finite number: dumps refuses it
        raise UnstorableError(f"not stored: {exc}") from None
    try:
        result = parse_records_checked([(record.key, loads(record.key, text))])[0]
    except BadEntryError as exc:
        result = exc
    if isinstance(result, BadEntryError):
        raise UnstorableError(f"not stored, as it could not be read back: {'; '.join(result.problems[:3])}")


def _finite_numbers(record: Record) -> bool:
    """Whether every float of the record is finite (``dumps`` refuses the record
    otherwise, as it should): one sum, which is NaN or infinite if any term is
    (or if finite terms overflow, which only sends the record to the slower writer)."""
    streaming, batch, validation = record.streaming, record.batch, record.validation
    numbers = [record.audio.duration_s, record.analysed_at, record.last_used_at, streaming.seconds,
               *streaming.values.values(), *streaming.confidence.values(),
               *(batch.values.values() if batch is not None else ()),
               *((validation.similarity, validation.threshold, validation.validated_at,
                  *validation.errors.values()) if validation is not None else ())]
    return math.isfinite(sum(v for v in numbers if v is not None))


def path_entry_text(path: str, size: int, mtime_ns: int, digest: str, content_key: str,
                    inode: int | None = None) -> str:
    """The JSON of a path entry (what ``parse_path_entry`` reads): no floats in it. The
    inode number, when known, tells another file put at the path with the same size
    and time (entries written before it was kept have none)."""
    fields = {"path": path, "size": size, "mtime_ns": mtime_ns, "digest": digest, "content_key": content_key}
    return dumps_finite(fields if inode is None else {**fields, "inode": inode})


def failure_to_json(failure: Failure) -> dict[str, Any]:
    return dataclasses.asdict(failure)


class _Checker:
    """Collects every problem of one JSON object against the schema."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def field(self, data: Mapping[str, Any], name: str, check: Callable[[Any], bool], rule: str,
              where: str = "") -> Any:
        value = data.get(name) if isinstance(data, dict) else None
        if not check(value):
            self.problems.append(f"{where}{name} is {_show(value)}, not {rule}")
            return None  # never converted (float(10**400) overflows)
        return value

    def obj(self, data: Any, name: str, where: str = "") -> Mapping[str, Any]:
        value = data.get(name) if isinstance(data, dict) else None
        if not isinstance(value, dict):
            self.problems.append(f"{where}{name} is {_show(value)}, not an object")
            return {}
        return value


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: Any) -> bool:
    """A finite JSON number; an integer too large for a float (10**400) is not one.
    (JSON gives plain dicts, lists, floats and ints: exact type tests are enough and
    much cheaper than ABC checks on the look-up path.)"""
    if type(value) is float:  # the common case first: a parse checks ~90 numbers a record
        return value - value == 0.0  # False for inf and nan
    if isinstance(value, float):
        return math.isfinite(value)
    return type(value) is int and abs(value) <= sys.float_info.max


def integer_at_least(low: int = 0) -> Callable[[Any], bool]:
    return integer_in(low, 2**63 - 1)


def integer_in(low: int, high: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and low <= v <= high


def mtime_ns_value(value: Any) -> bool:
    return type(value) is int and MTIME_NS_RANGE[0] <= value <= MTIME_NS_RANGE[1]


def _nonneg(value: Any) -> bool:
    return _number(value) and value >= 0


def _time(value: Any) -> bool:
    return _nonneg(value) and value <= TIME_LIMIT


def _seconds(value: Any) -> bool:
    return _nonneg(value) and value <= VALUE_LIMIT


def _text(value: Any) -> bool:
    return isinstance(value, str)


def is_hex32(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 32 and _lower_hex(value) is not None


_lower_hex = re.compile("[0-9a-f]*").fullmatch  # twice as fast as a set of the characters


def _params_key(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and value.replace("-", "").isalnum()


def _dims(c: _Checker, values: Any, names: tuple[str, ...], where: str) -> dict[str, float | None]:
    if not isinstance(values, dict) or values.keys() != _name_set(names):
        c.problems.append(f"{where} must map exactly the {len(names)} dims to numbers or null")
        return {}
    bounds = dim_bounds()
    if set(map(type, values.values())) <= FLOAT_OR_NULL and all(
            bounds[name][0] <= v <= bounds[name][1] for name, v in values.items() if v is not None):
        return {name: values[name] for name in names}  # all finite floats or null: nothing to convert
    for name, value in values.items():
        if value is None:
            continue
        if not (_number(value) and abs(value) <= VALUE_LIMIT):
            c.problems.append(f"{where}.{name} is {_show(value)}, not a number within +-{VALUE_LIMIT:g} or null")
        elif not bounds[name][0] <= value <= bounds[name][1]:
            low, high = DOMAINS[name]
            c.problems.append(f"{where}.{name} is {_show(value)}, outside its domain [{low:g}, {high:g}]")
    return {name: (float(values[name]) if _number(values[name]) else None) for name in names}


@functools.cache
def dim_bounds() -> dict[str, tuple[float, float]]:
    """(lowest, highest) value a record may hold, by dim (``limits.value_bounds``)."""
    return {name: value_bounds(name) for name in BATCH_DIMS}


FLOAT_OR_NULL = frozenset({float, type(None)})


@functools.cache
def _name_set(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(names)


def _reasons(c: _Checker, values: Any, names: tuple[str, ...], where: str) -> dict[str, str]:
    if not isinstance(values, dict) or not values.keys() <= _name_set(names) or not all(
            isinstance(v, str) for v in values.values()):
        c.problems.append(f"{where} must map dims to text")
        return {}
    return dict(values)


def parse_record(key: str, data: Any) -> Record:
    """A ``Record`` from its JSON form, every field checked for type and range;
    raises ``BadEntryError`` listing every problem."""
    result = parse_records([(key, data)])[0]
    if isinstance(result, BadEntryError):
        raise result
    return result


GATE_MIN_BATCH = 16
KEY_MISMATCH = "digest/params_key do not match the key"   # a sound record stored under another's key


def parse_records(items: Sequence[tuple[str, Any]]) -> list[Record | BadEntryError]:
    """``parse_record`` of each (key, JSON data), in order: the record, or the
    ``BadEntryError`` listing its problems (one bad entry never stops the others).
    The same checks, made for a whole batch at once where that is cheaper: the
    timbre covariances are checked for symmetry and positive semi-definiteness as
    one stacked array (one ``eigvalsh`` call instead of one per record, which was a
    third of an import's parse time). A batch smaller than GATE_MIN_BATCH is checked
    in Python alone: the typed gate saves little per record and costs about 15 ms to
    import (msgspec and its structs), a cached single look-up's whole budget."""
    if len(items) < GATE_MIN_BATCH:
        return parse_records_checked(items)
    from fpcli.store.fast_schema import vouched

    drafts = [(_trusted_draft(key, data) if sound else None) or _draft(key, data)
              for (key, data), sound in zip(items, vouched([data for _, data in items]), strict=True)]
    _check_covariances([d for d in drafts if d.cov is not None or d.packed is not None])
    return [d.finish() for d in drafts]


def parse_records_checked(items: Sequence[tuple[str, Any]]) -> list[Record | BadEntryError]:
    """``parse_records`` with every check made in Python (what the fast gate must agree
    with: the tests compare the two)."""
    drafts = [_draft(key, data) for key, data in items]
    _check_covariances([d for d in drafts if d.cov is not None or d.packed is not None])
    return [d.finish() for d in drafts]


@dataclasses.dataclass
class _Draft:
    """A record whose scalar fields are checked, its timbre matrix not yet."""

    key: str
    checker: _Checker
    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    mean: Any = None           # (N_MFCC,) float64 once its numbers are checked
    cov: Any = None            # (N_MFCC, N_MFCC) float64 awaiting the batch checks
    packed: Any = None         # or (TIMBRE_VALUES,) float64, a packed timbre awaiting them
    frames: int = 0
    dupe_key: DupeKey | None = None

    def finish(self) -> Record | BadEntryError:
        if self.checker.problems:
            return BadEntryError(self.key, self.checker.problems)
        if self.key.startswith("rec:") and record_key(self.fields["digest"], self.fields["params_key"]) != self.key:
            # Another track's record under this key (a copy made by hand, a bug) was served
            # as this track's: its values, its tempo, its hits. Only verify said so.
            return BadEntryError(self.key, [KEY_MISMATCH])
        timbre = None
        if self.cov is not None:
            from fpcli.dsp.timbre import Timbre

            timbre = Timbre.from_packed(self.packed, self.cov, self.frames) if self.packed is not None else \
                Timbre.rounded(self.mean, self.cov, self.frames)
        return Record(**self.fields, timbre=timbre, dupe_key=self.dupe_key)


def _draft(key: str, data: Any) -> _Draft:
    c = _Checker()
    draft = _Draft(key, c)
    if not isinstance(data, dict):
        c.problems.append("record is not a JSON object")
        return draft
    c.field(data, "schema", lambda v: v in READABLE_SCHEMAS, f"schema {' or '.join(map(str, READABLE_SCHEMAS))}")
    digest = c.field(data, "digest", is_hex32, "32 hex digits")
    ck = c.field(data, "content_key", is_hex32, "32 hex digits")
    params_key = c.field(data, "params_key", _params_key, "a parameter key")
    version = c.field(data, "fingerprint_version", integer_at_least(0), "a version number")
    if version is not None and params_key is not None and not params_key.startswith(f"v{version}-"):
        # A parameter key names its fingerprint version (params.py): v99 under a v5 key
        # was imported, and counted as a version 99 record.
        c.problems.append(f"params_key {_show(params_key)} is not of fingerprint_version {version}")
    size = c.field(data, "size", integer_at_least(0), "a size in bytes")
    complete = c.field(data, "complete", lambda v: isinstance(v, bool), "true/false")
    analysed_at = c.field(data, "analysed_at", _time, "a time")
    last_used_at = c.field(data, "last_used_at", _time, "a time")
    paths = _paths(c, data.get("paths"))
    audio = _audio(c, c.obj(data, "audio"))
    streaming = _streaming(c, c.obj(data, "streaming"))
    batch = None if data.get("batch") is None else _batch(c, c.obj(data, "batch"))
    validation = None if data.get("validation") is None else _validation(c, c.obj(data, "validation"))
    if data.get("timbre") is not None:
        _timbre(c, data.get("timbre"), draft)
    draft.dupe_key = None if data.get("dupe_key") is None else _dupe_key(c, c.obj(data, "dupe_key"))
    if not c.problems:
        draft.fields = dict(digest=digest, content_key=ck, params_key=params_key, fingerprint_version=version,
                            size=size, paths=paths, complete=complete, audio=audio, streaming=streaming,
                            batch=batch, validation=validation, analysed_at=float(analysed_at),
                            last_used_at=float(last_used_at))
    return draft


def _trusted_draft(key: str, data: dict[str, Any]) -> _Draft | None:
    """The draft ``_draft`` makes of data the fast gate (``fast_schema.vouched``) passed,
    built without checking it again: the same values, converted as ``_draft`` converts
    them (ints to floats where it does so). None when its timbre block must be read by
    ``_draft`` (not packed, or not a plausible packed block: ``_draft`` says why)."""
    draft = _Draft(key, _Checker())
    timbre = data.get("timbre")
    if timbre is not None:
        values = packed_values(timbre.get("packed"), finite=False)
        if values is None or not plausible(values):
            return None
        draft.packed, draft.frames = values, timbre["frames"]
    if (dupe := data.get("dupe_key")) is not None:
        from fpcli.dsp.dupes import DupeKey

        draft.dupe_key = DupeKey(dupe["bits"], dupe["mask"], dupe["windows"])
    a, s, b, v = data["audio"], data["streaming"], data.get("batch"), data.get("validation")
    draft.fields = dict(
        digest=data["digest"], content_key=data["content_key"], params_key=data["params_key"],
        fingerprint_version=data["fingerprint_version"], size=data["size"],
        paths=tuple(PathSeen(p["path"], p["mtime_ns"]) for p in data["paths"]), complete=data["complete"],
        audio=AudioFacts(a["duration_s"], a["samplerate"], a["channels"], a["format"], a["subtype"], a["partial"],
                         a.get("partial_reason")),
        streaming=StreamingValues(_floats(s["values"], STREAMING_DIMS),
                                  {k: float(c) for k, c in s["confidence"].items()}, dict(s["reasons"]),
                                  s["chunks"], float(s["seconds"])),
        batch=None if b is None else BatchValues(_floats(b["values"], BATCH_DIMS), dict(b["reasons"])),
        validation=None if v is None else Validation(
            v["status"], v.get("similarity"), v["threshold"], v["confidence_quality"], tuple(v["failed_metrics"]),
            dict(v["errors"]), v["validated_at"]),
        analysed_at=float(data["analysed_at"]), last_used_at=float(data["last_used_at"]))
    return draft


def _floats(values: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, float | None]:
    """Checked dims in ``names`` order, numbers as floats (what ``_dims`` gives)."""
    return {name: None if values[name] is None else float(values[name]) for name in names}


def _paths(c: _Checker, items: Any) -> tuple[PathSeen, ...]:
    """At least one path: a record whose last path is forgotten is deleted, and one
    with none would be a search hit with no file. Each problem names its path: a
    relative path, a NUL in one or a time past 2**64 ns were all rejected as "paths
    must be a non-empty list", which is what the user had given."""
    if not isinstance(items, list) or not items:
        c.problems.append("paths must be a non-empty list of {path, mtime_ns}")
        return ()
    problems = [f"paths[{i}]{problem}" for i, item in enumerate(items) if (problem := _path_seen_problem(item))]
    c.problems += problems
    if problems:
        return ()
    # A record keeps each path once and its latest MAX_PATHS (oldest first): an import
    # of one listing 5,000 kept them all, and every look-up, list and prune read them.
    # Kept, not refused: fpcli before 2026-11-26 wrote records of more, with batch
    # values and verdicts that a refusal would lose.
    latest = {p["path"]: i for i, p in enumerate(items)}   # a path listed twice: its later sighting
    kept = [items[i] for i in sorted(latest.values())][-MAX_PATHS:]
    return tuple(PathSeen(p["path"], p["mtime_ns"]) for p in kept)


def _path_seen_problem(item: Any) -> str | None:
    """What is wrong with one {path, mtime_ns} of a record (None: nothing)."""
    if not isinstance(item, dict):
        return " must be an object {path, mtime_ns}"
    path = item.get("path")
    if not isinstance(path, str):
        return ".path must be text"
    if not storable_path(path):
        if "\x00" in path:
            return ".path holds a NUL character, which no file name can"
        if not path.startswith(("/", STREAM_PREFIX)):
            return f".path {_show(path)} must be absolute (or {STREAM_PREFIX}NAME for a named stream)"
        if path == STREAM_PREFIX:
            return ".path names a stream without its name"
        return ".path holds a character no file name can (a lone surrogate outside U+DC80-U+DCFF)"
    if not mtime_ns_value(item.get("mtime_ns")):
        return f".mtime_ns must be a whole number of ns from {MTIME_NS_RANGE[0]} to {MTIME_NS_RANGE[1]}"
    return None


def _audio(c: _Checker, a: Mapping[str, Any]) -> AudioFacts:
    w = "audio."
    values = (
        c.field(a, "duration_s", _seconds, f"seconds in [0, {VALUE_LIMIT:g}]", w),
        c.field(a, "samplerate", integer_in(*SAMPLERATE_RANGE), "a rate in Hz, {} to {}".format(*SAMPLERATE_RANGE), w),
        c.field(a, "channels", integer_in(*CHANNELS_RANGE), "a channel count, {} to {}".format(*CHANNELS_RANGE), w),
        c.field(a, "format", _text, "text", w),
        c.field(a, "subtype", _text, "text", w),
        c.field(a, "partial", lambda v: isinstance(v, bool), "true/false", w),
        c.field(a, "partial_reason", lambda v: v is None or isinstance(v, str), "text or null", w),
    )
    return AudioFacts(*values) if not c.problems else AudioFacts(0.0, 1, 1, "", "", False, None)


def _streaming(c: _Checker, s: Mapping[str, Any]) -> StreamingValues:
    values = _dims(c, s.get("values"), STREAMING_DIMS, "streaming.values")
    confidence = s.get("confidence")
    if not isinstance(confidence, dict) or confidence.keys() != _name_set(STREAMING_DIMS) or not (
            all(type(v) is float and 0.0 <= v <= 1.0 for v in confidence.values())
            or all(_number(v) and 0 <= v <= 1 for v in confidence.values())):
        c.problems.append("streaming.confidence must give each streaming dim a number in [0, 1]")
        confidence = {}
    reasons = _reasons(c, s.get("reasons"), STREAMING_DIMS, "streaming.reasons")
    chunks = c.field(s, "chunks", integer_at_least(0), "a count", "streaming.")
    seconds = c.field(s, "seconds", _seconds, f"seconds in [0, {VALUE_LIMIT:g}]", "streaming.")
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
    if not isinstance(errors, dict) or not set(errors) <= set(STREAMING_DIMS) or not all(
            e is None or (_number(e) and e >= 0) for e in errors.values()):
        c.problems.append("validation.errors must map streaming dims to numbers >= 0 or null")
        errors = {}
    validated_at = c.field(v, "validated_at", _time, "a time", w)
    return Validation(status, similarity, threshold, quality, tuple(failed or ()), dict(errors), validated_at)


def _timbre(c: _Checker, t: Any, draft: _Draft) -> None:
    """A timbre block, packed (``pack_timbre``) or as plain lists (records written before
    packing, and imports written by hand): mean of N_MFCC finite numbers, an N_MFCC x
    N_MFCC finite covariance, frames >= 1; the values go to the draft for the batch
    checks (``_check_covariances``: symmetric, positive semi-definite)."""

    if not isinstance(t, dict):
        c.problems.append(f"timbre is {_show(t)}, not an object")
        return
    problems = len(c.problems)
    frames = c.field(t, "frames", integer_at_least(1), "a frame count >= 1", "timbre.")
    if "packed" in t:
        values = packed_values(t.get("packed"), finite=False)
        if values is None:
            c.problems.append(f"timbre.packed must be the base64 of {TIMBRE_VALUES} float32 values")
        elif len(c.problems) == problems and not plausible(values):
            c.problems.append(TIMBRE_NOT_PLAUSIBLE)
        elif len(c.problems) == problems:
            draft.packed, draft.frames = values, frames  # unpacked with the batch's
        return
    arrays = _listed_timbre(c, t)
    if arrays is None or len(c.problems) > problems:
        return
    mean, cov = arrays
    if not (plausible(mean) and plausible(cov)):
        c.problems.append(TIMBRE_NOT_PLAUSIBLE)
        return
    draft.mean, draft.cov, draft.frames = mean, cov, frames


TIMBRE_NOT_PLAUSIBLE = f"timbre holds a value that is not a finite number within +-{VALUE_LIMIT:g}"




def _listed_timbre(c: _Checker, t: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    import numpy as np

    from fpcli.dsp.timbre import N_MFCC
    mean: Any = t.get("mean")
    cov: Any = t.get("cov")
    # Checked as whole arrays, not 182 numbers one by one.
    if not (isinstance(mean, list) and len(mean) == N_MFCC and plain_numbers(mean)):
        c.problems.append(f"timbre.mean must be a list of {N_MFCC} finite numbers")
        return None
    if not (isinstance(cov, list) and len(cov) == N_MFCC and all(
            isinstance(row, list) and len(row) == N_MFCC for row in cov) and plain_numbers(
            [v for row in cov for v in row])):
        c.problems.append(f"timbre.cov must be a {N_MFCC} x {N_MFCC} list of finite numbers")
        return None
    return np.array(mean, dtype=np.float64), np.array(cov, dtype=np.float64)


def _check_covariances(drafts: list[_Draft]) -> None:
    """Symmetric and positive semi-definite within COV_TOLERANCE (relative to the
    largest entry), for the covariances of a batch as stacked arrays: packed timbres
    are unpacked as one (n, TIMBRE_VALUES) stack and symmetric by their form; listed
    ones are tested for symmetry too. A draft that fails gets the problem (and no
    timbre)."""
    import numpy as np

    listed = [d for d in drafts if d.cov is not None]
    if listed:
        stack = np.stack([d.cov for d in listed])
        for draft, asym, indef in zip(listed, asymmetric_covariances(stack).tolist(),
                                      indefinite_covariances(stack).tolist(),
                                      strict=True):
            if asym or indef:
                draft.checker.problems.append("timbre.cov is not symmetric" if asym else
                                              "timbre.cov is not positive semi-definite")
                draft.cov = None
    packed = [d for d in drafts if d.packed is not None]
    if packed:
        means, covs = unpack_stack(np.stack([d.packed for d in packed]))
        for draft, mean, cov, indef in zip(packed, means, covs, indefinite_covariances(covs).tolist(),
                                           strict=True):
            if indef:
                draft.checker.problems.append("timbre.cov is not positive semi-definite")
            else:
                draft.mean, draft.cov = mean, cov


def _dupe_key(c: _Checker, d: Mapping[str, Any]) -> DupeKey | None:
    """A duplicate key: windows in [1, MAX_WINDOWS - 1]; bits and mask hex strings of
    16 bits per window."""
    from fpcli.dsp.dupes import MAX_WINDOWS, DupeKey, bad_key_fields

    bad = bad_key_fields(d)
    windows: Any = d.get("windows")
    if bad == ["windows"]:
        c.problems.append(f"dupe_key.windows is {_show(windows)}, not a count in [1, {MAX_WINDOWS - 1}]")
    c.problems.extend(f"dupe_key.{name} is {_show(d.get(name))}, not {4 * windows} hex digits"
                      for name in bad if name != "windows")
    return None if bad else DupeKey(d["bits"], d["mask"], windows)


def parse_failure(key: str, data: Any) -> Failure:
    """A ``Failure`` from its JSON form; raises ``BadEntryError``."""
    c = _Checker()
    if not isinstance(data, dict):
        raise BadEntryError(key, ["failure is not a JSON object"])
    values = (
        c.field(data, "path", storable_path, "a path"),
        c.field(data, "error_type", _text, "text"),
        c.field(data, "message", _text, "text"),
        c.field(data, "size", integer_at_least(-1), "a size in bytes"),
        c.field(data, "mtime_ns", mtime_ns_value, "a time in ns"),   # -1: not known
        c.field(data, "failed_at", _time, "a time"),
        c.field(data, "limit_s", lambda v: v is None or (_number(v) and v > 0), "a time limit in s or null"),
    )
    if c.problems:
        raise BadEntryError(key, c.problems)
    return Failure(*values[:5], float(values[5]), None if values[6] is None else float(values[6]))


def parse_path_entry(key: str, data: Any) -> dict[str, Any]:
    """A path entry {path, size, mtime_ns, digest, content_key, and an inode number or
    not}; raises ``BadEntryError``."""
    c = _Checker()
    c.field(data, "path", storable_path, "a path")
    c.field(data, "size", integer_at_least(0), "a size")
    c.field(data, "mtime_ns", mtime_ns_value, "a time in ns")
    c.field(data, "digest", is_hex32, "32 hex digits")
    c.field(data, "content_key", is_hex32, "32 hex digits")
    if isinstance(data, dict) and "inode" in data:
        c.field(data, "inode", integer_at_least(0), "an inode number")
    if c.problems:
        raise BadEntryError(key, c.problems)
    return dict(data)
