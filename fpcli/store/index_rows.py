"""What a search index keeps of a record (``IndexRow``), and the fast path that takes it
from a record's parsed JSON without parsing the whole record (the first search after
an import reads every record so)."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any

from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS
from fpcli.store.records import Record, RecordFacts, record_key
from fpcli.store.schema import FLOAT_OR_NULL, dim_bounds, integer_at_least, is_hex32
from fpcli.store.timbre_block import packed_values

if TYPE_CHECKING:
    import numpy as np


@dataclasses.dataclass(frozen=True)
class IndexRow:
    """What a search index keeps of a complete record: its key, digest and latest path,
    the values of one kind in ``dims`` order (None for null) and the packed timbre
    (``pack_timbre``'s layout, float64; None without one)."""

    key: str
    digest: str
    path: str
    values: tuple[float | None, ...]
    timbre: np.ndarray | None


def index_row_of(record: Record, kind: str, params_key: str, version: int) -> IndexRow | None:
    """``index_row`` of a parsed record (the same row, or None)."""
    values = measured_values(record, kind)
    if not is_current(record, params_key, version) or values is None:
        return None
    names = STREAMING_DIMS if kind == "streaming" else BATCH_DIMS
    timbre = None if record.timbre is None else record.timbre.packed()
    return IndexRow(record.key, record.digest, record.path, tuple(values.get(n) for n in names), timbre)


@functools.cache
def _bounds_of(names: tuple[str, ...]) -> tuple[tuple[float, float], ...]:
    """``schema.dim_bounds`` of ``names``, in their order (1.4 us a row checked, not 2)."""
    return tuple(dim_bounds()[name] for name in names)


def is_current(record: RecordFacts, params_key: str, version: int) -> bool:
    """A complete record (no preview) of these parameters and fingerprint version."""
    return record.params_key == params_key and record.fingerprint_version == version and record.complete


def measured_values(record: Record, kind: str) -> dict[str, float | None] | None:
    """The record's values of ``kind`` (by dim name, None for null); None when it has
    none or only nulls (a file of a few frames: it would be equally near everything)."""
    source = record.streaming if kind == "streaming" else record.batch
    if source is None or all(v is None for v in source.values.values()):
        return None
    return source.values


def index_row(key: str, data: Any, kind: str, params_key: str, version: int) -> IndexRow | None | bool:
    """The index row of a record's parsed JSON, by a fast path that checks only what an
    index uses: None when the record is not for this index (other parameters or
    version, a preview, no values of ``kind``); False when it is anything but a plain
    current record (a list-form timbre, a field of the wrong type or out of range),
    which the caller then gives to ``parse_records`` so that the full checks decide
    and a bad entry is reported. (A record whose other fields are damaged is indexed;
    reading it for a hit reports it, and ``cache verify`` finds it.)"""
    if type(data) is not dict:
        return False
    if data.get("params_key") != params_key or data.get("fingerprint_version") != version \
            or data.get("complete") is not True:
        return None if type(data.get("params_key")) is str and type(data.get("complete")) is bool else False
    source = data.get(kind)
    if source is None:
        return None
    names = STREAMING_DIMS if kind == "streaming" else BATCH_DIMS
    values = source.get("values") if type(source) is dict else None
    digest, paths = data.get("digest"), data.get("paths")
    if type(values) is not dict or len(values) != len(names) or not is_hex32(digest) \
            or type(paths) is not list or not paths or type(paths[-1]) is not dict \
            or type(paths[-1].get("path")) is not str or not paths[-1]["path"]:
        return False
    if key != record_key(str(digest), params_key):
        return False   # a record stored under another's key: the parser reports it (search indexed it silently)
    row = tuple(values.get(name) for name in names)
    # Out of a dim's range (an edited 1e300, which overflowed the index's float32):
    # the parser reports it, and it stays out of the index as out of every reader.
    if not set(map(type, row)) <= FLOAT_OR_NULL or not all(
            low <= v <= high for v, (low, high) in zip(row, _bounds_of(names), strict=True) if v is not None):
        return False
    timbre = data.get("timbre")
    packed = None
    if timbre is not None:
        if type(timbre) is not dict or not integer_at_least(1)(timbre.get("frames")):
            return False
        packed = packed_values(timbre.get("packed"))
        if packed is None:
            return False
    if all(v is None for v in row):
        return None  # nothing measured: as row_of, not indexed
    return IndexRow(key, str(digest), paths[-1]["path"], row, packed)
