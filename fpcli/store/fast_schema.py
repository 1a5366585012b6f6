"""A fast gate in front of the record parser's checks (``schema.parse_records``).

msgspec checks a record's JSON (``sound_texts``: an export, which writes the text of
each sound record as stored) or its parsed data (``vouched``: every bulk parse, which
then builds the records without the Python checks) against typed structs with the
same types and bounds as the parser's checks, at C speed (13-25 us a record,
against about 150 us for the Python checks); what the structs cannot say (which dims
a reasons map names, a duplicate key's length, a timbre's numbers) is checked after,
the timbre covariances as one stacked array as the parser does.

The gate may only say yes to records the parser accepts: anything it refuses (a
record of an older form, with listed timbre values or a non-ASCII path, or a bad
one) goes to the parser, which accepts it or says what is wrong. Its structs are
stricter than the parser where the two differ (a schema of 2.0, an integer beyond 64
bits): those take the slow path. ``tests/test_fast_schema.py`` checks the promise
on generated records and on every mutation of them the parser refuses.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from fpcli.dsp.dupes import MAX_WINDOWS
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from fpcli.store.index_rows import IndexRow, is_current
from fpcli.store.limits import (
    CHANNELS_RANGE,
    MTIME_NS_RANGE,
    PATH_PATTERN,
    SAMPLERATE_RANGE,
    TIME_LIMIT,
    VALUE_LIMIT,
    plausible,
    value_bounds,
)
from fpcli.store.records import MAX_PATHS, READABLE_SCHEMAS, RECORD_SCHEMA, record_key
from fpcli.store.schema import RECORD_LINE_PREFIX
from fpcli.store.timbre_block import TIMBRE_VALUES, packed_values, sound_covariances

if TYPE_CHECKING:
    import numpy as np

_INT64 = 2**63 - 1
_FLOAT_MAX = sys.float_info.max
Count = Annotated[int, msgspec.Meta(ge=0, le=_INT64)]
Positive = Annotated[int, msgspec.Meta(ge=1, le=_INT64)]
Time = Annotated[float, msgspec.Meta(ge=0.0, le=TIME_LIMIT)]
Seconds = Annotated[float, msgspec.Meta(ge=0.0, le=VALUE_LIMIT)]
Share = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
# \Z, not $: "$" also matches before a final newline, which the parser refuses.
Hex32 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{32}\Z")]
Hex = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]*\Z")]
# What ``_params_key`` accepts, in ASCII: letters or digits, with dashes, not dashes alone.
ParamsKey = Annotated[str, msgspec.Meta(pattern=r"^-*[A-Za-z0-9][A-Za-z0-9-]*\Z", max_length=64)]
Schema = Literal[READABLE_SCHEMAS]  # type: ignore[valid-type]
StreamingDim = Literal[STREAMING_DIMS]  # type: ignore[valid-type]


def _dims_struct(name: str, names: tuple[str, ...], kind: Any) -> Any:
    """A struct of exactly these dims (every one present, no other), each of the type
    ``kind(dim)``."""
    return msgspec.defstruct(name, [(dim, kind(dim)) for dim in names], forbid_unknown_fields=True)


def _value_or_null(dim: str) -> Any:
    """A dim's value as the parser bounds it (``schema.value_bounds``), or null."""
    low, high = value_bounds(dim)
    return Annotated[float, msgspec.Meta(ge=low, le=high)] | None


StreamingValues = _dims_struct("StreamingValues", STREAMING_DIMS, _value_or_null)
StreamingConfidence = _dims_struct("StreamingConfidence", STREAMING_DIMS, lambda dim: Share)
BatchValues = _dims_struct("BatchValues", BATCH_DIMS, _value_or_null)


# Every struct forbids fields it does not name: the parser drops them, and a line the
# gate stores as it came would keep them (a field of 900 KB a record filled a store).
class PathSeen(msgspec.Struct, forbid_unknown_fields=True):
    path: Annotated[str, msgspec.Meta(pattern=PATH_PATTERN)]
    # msgspec bounds only int64: a time past 2262 is left to the parser (which allows it)
    mtime_ns: Annotated[int, msgspec.Meta(ge=MTIME_NS_RANGE[0], le=_INT64)]


class Audio(msgspec.Struct, forbid_unknown_fields=True):
    duration_s: Seconds
    samplerate: Annotated[int, msgspec.Meta(ge=SAMPLERATE_RANGE[0], le=SAMPLERATE_RANGE[1])]
    channels: Annotated[int, msgspec.Meta(ge=CHANNELS_RANGE[0], le=CHANNELS_RANGE[1])]
    format: str
    subtype: str
    partial: bool
    partial_reason: str | None = None


class Streaming(msgspec.Struct, forbid_unknown_fields=True):
    values: StreamingValues  # type: ignore[valid-type]
    confidence: StreamingConfidence  # type: ignore[valid-type]
    reasons: dict[str, str]
    chunks: Count
    seconds: Seconds


class Batch(msgspec.Struct, forbid_unknown_fields=True):
    values: BatchValues  # type: ignore[valid-type]
    reasons: dict[str, str]


class Validation(msgspec.Struct, forbid_unknown_fields=True):
    status: Literal["valid", "invalid"]
    threshold: Share
    confidence_quality: Literal["high", "medium", "low"]
    failed_metrics: list[StreamingDim]
    errors: dict[str, Annotated[float, msgspec.Meta(ge=0.0, le=_FLOAT_MAX)] | None]
    validated_at: Time
    similarity: Annotated[float, msgspec.Meta(ge=-1.0, le=1.0)] | None = None


class PackedTimbre(msgspec.Struct, forbid_unknown_fields=True):
    packed: str
    frames: Positive


class DupeKey(msgspec.Struct, forbid_unknown_fields=True):
    windows: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOWS - 1)]
    bits: Hex
    mask: Hex


class Record(msgspec.Struct, forbid_unknown_fields=True):
    schema: Schema
    digest: Hex32
    content_key: Hex32
    params_key: ParamsKey
    fingerprint_version: Count
    size: Count
    paths: Annotated[list[PathSeen], msgspec.Meta(min_length=1, max_length=MAX_PATHS)]
    complete: bool
    audio: Audio
    streaming: Streaming
    analysed_at: Time
    last_used_at: Time
    batch: Batch | None = None
    validation: Validation | None = None
    timbre: PackedTimbre | None = None
    dupe_key: DupeKey | None = None


_DECODER = msgspec.json.Decoder(Record)
_STREAMING_NAMES = frozenset(STREAMING_DIMS)
_BATCH_NAMES = frozenset(BATCH_DIMS)


def sound_texts(texts: Sequence[str | None]) -> list[bool]:
    """Which stored record texts are certainly sound (what ``parse_records`` accepts)
    and one line of ASCII (an export writes them as they are). False means "ask the
    parser", not "bad"."""
    records = [_decoded(text) for text in texts]
    return _with_sound_timbres(records)


_LINE_PREFIX = RECORD_LINE_PREFIX.encode("ascii")
# The base64 length of a packed timbre of float32 values (what a record written now holds).
_PACKED_LENGTH = 4 * -(-4 * TIMBRE_VALUES // 3)


@dataclasses.dataclass(frozen=True)
class VouchedRecord:
    """A record line of an export that the gate vouches for, kept as it came: its key,
    its text (what a store holds: stored as is), the checked struct (whose fields a
    census tag, path entries, candidates and index rows read) and its timbre's packed
    values ((TIMBRE_VALUES,) float64, or None without a timbre)."""

    key: str
    text: str
    record: Record
    timbre: np.ndarray | None

    def index_row(self, kind: str, params_key: str, version: int) -> IndexRow | None:
        """``index_row_of`` the record (the same row, or None: not a complete record of
        these parameters and version, or no values of ``kind``)."""
        record = self.record
        source = record.streaming if kind == "streaming" else record.batch
        if source is None or not is_current(record, params_key, version):
            return None
        values = msgspec.structs.astuple(source.values)   # the struct's fields are the dims in order
        if all(v is None for v in values):
            return None
        return IndexRow(self.key, record.digest, record.paths[-1].path, values, self.timbre)


def vouched_lines(lines: Sequence[bytes]) -> list[VouchedRecord | None]:
    """The records of export lines (bytes, without their line end) that can be stored as
    they are: lines of exactly the form ``export_store`` writes, whose record text the
    gate vouches for (``_decoded``: one line of ASCII the parser accepts) and which is
    of the current schema with a single-precision timbre, as ``record_text`` would
    write it again. None means "parse the line", not "bad"."""
    texts = [_record_text_of(line) for line in lines]
    records = [_decoded(text) for text in texts]
    records = [r if r is not None and text is not None and r.schema == RECORD_SCHEMA and
               (r.timbre is None or len(r.timbre.packed) == _PACKED_LENGTH) and _compact(text, r) else None
               for r, text in zip(records, texts, strict=True)]
    sound, timbres = _sound_timbres(records)
    return [VouchedRecord(record_key(r.digest, r.params_key), text, r, timbres.get(position))
            if ok and r is not None and text is not None else None
            for position, (r, text, ok) in enumerate(zip(records, texts, sound, strict=True))]


_ENCODER = msgspec.json.Encoder()
_SPELLING_SLACK = 0.1   # how much longer than msgspec's own text a record's may be: numbers spelt
                        # another way (0.0000325 or 3.25e-05), a few escaped characters


def _compact(text: str, record: Record) -> bool:
    """Whether ``text`` is about as long as the record written compactly: padding
    (whitespace, numbers of a thousand digits, escapes) is what the parser's path drops
    when it writes the record again, and a text stored as it came would keep it."""
    return len(text) <= (1 + _SPELLING_SLACK) * _escaped_length(_ENCODER.encode(record)) + 64


def _escaped_length(encoded: bytes) -> int:
    """The length of msgspec's UTF-8 JSON with its non-ASCII characters escaped as an
    export writes them (\\uXXXX, 6 characters; a pair of them beyond the BMP): a path
    in Cyrillic is not padding."""
    if encoded.isascii():
        return len(encoded)
    text = encoded.decode("utf-8")
    return len(text) + sum(5 if ord(c) < 0x10000 else 11 for c in text if ord(c) > 127)


def _record_text_of(line: bytes) -> str | None:
    """The record text inside an export line of exactly ``schema.record_line``'s form.
    A valid record text between the prefix and the final brace makes the whole line
    the object {"type": "record", "data": text}, whatever the text holds."""
    if not (line.startswith(_LINE_PREFIX) and line.endswith(b"}")):
        return None
    try:
        return line[len(_LINE_PREFIX):-1].decode("ascii")
    except UnicodeDecodeError:
        return None


def vouched(items: Sequence[Any]) -> list[bool]:
    """Which parsed records (JSON data) pass every check of the parser but those of
    the timbre's numbers, which the parser makes for a whole batch at once. False
    means "ask the parser", not "bad"."""
    return [_converted(data) is not None for data in items]


def _converted(data: Any) -> Record | None:
    try:
        record = msgspec.convert(data, Record)
    except (msgspec.ValidationError, UnicodeEncodeError):  # text with a lone surrogate: the parser judges
        return None
    return record if _rest_sound(record) else None


def _decoded(text: str | None) -> Record | None:
    """The checked struct of one text; None when the gate cannot vouch for it."""
    if text is None or not text.isascii() or "\n" in text or "\r" in text:
        return None
    try:
        record = _DECODER.decode(text)
    except msgspec.DecodeError:  # ValidationError too
        return None
    return record if _rest_sound(record) else None


def _rest_sound(record: Record) -> bool:
    """The checks the structs cannot state: the parameter key of the record's version,
    the dims a reasons or errors map names, a duplicate key's length (4 hex digits a
    window), paths named once."""
    streaming, batch, validation, dupe = record.streaming, record.batch, record.validation, record.dupe_key
    return (record.params_key.startswith(f"v{record.fingerprint_version}-")
            and len({seen.path for seen in record.paths}) == len(record.paths)
            and streaming.reasons.keys() <= _STREAMING_NAMES
            and (batch is None or batch.reasons.keys() <= _BATCH_NAMES)
            and (validation is None or validation.errors.keys() <= _STREAMING_NAMES)
            and (dupe is None or len(dupe.bits) == len(dupe.mask) == 4 * dupe.windows))


def _with_sound_timbres(records: list[Record | None]) -> list[bool]:
    """Whether each record passed and its packed timbre (if any) holds plausible values
    (``schema.plausible``) whose covariance is positive semi-definite, checked as one
    stack (``sound_covariances``, what the parser and index builds apply)."""
    return _sound_timbres(records)[0]


def _sound_timbres(records: list[Record | None]) -> tuple[list[bool], dict[int, np.ndarray]]:
    """``_with_sound_timbres``, and the packed values of each sound timbre by position.
    The blocks of single-precision values (what fpcli writes) are decoded and checked
    as one stack (a base64 decode each, then one array: a check per record was a
    quarter of an export's time); others one at a time (``packed_values``)."""
    import numpy as np

    sound = [record is not None for record in records]
    found: dict[int, np.ndarray] = {}
    single: list[int] = []
    raw: list[bytes] = []
    for position, record in enumerate(records):
        if record is None or record.timbre is None:
            continue
        data = _single_precision_block(record.timbre.packed)
        if data is not None:
            single.append(position)
            raw.append(data)
            continue
        values = packed_values(record.timbre.packed, finite=False)   # None unless TIMBRE_VALUES of them
        if values is None or not plausible(values):
            sound[position] = False
            continue
        found[position] = values
    if raw:
        stack = np.frombuffer(b"".join(raw), dtype="<f4").reshape(len(raw), TIMBRE_VALUES).astype(np.float64)
        within = np.all(np.abs(stack) <= VALUE_LIMIT, axis=1).tolist()   # ``plausible`` of each row
        for position, row, ok in zip(single, stack, within, strict=True):
            if ok:
                found[position] = row
            else:
                sound[position] = False
    if found:
        positions = sorted(found)
        for position, ok in zip(positions, sound_covariances(np.stack([found[p] for p in positions])).tolist(),
                                strict=True):
            if not ok:
                sound[position] = False
                del found[position]
    return sound, found


def _single_precision_block(packed: str) -> bytes | None:
    """The bytes of a packed timbre of TIMBRE_VALUES float32 values (base64 of the
    length fpcli writes, valid), else None (``packed_values`` decides)."""
    if len(packed) != _PACKED_LENGTH:
        return None
    try:
        data = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if len(data) == 4 * TIMBRE_VALUES else None
