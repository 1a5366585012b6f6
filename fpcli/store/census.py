"""The census of a store: every record and failure is written with a tag naming its
kind (``census_tag``); the backend keeps a count per tag through every write, delete,
expiry and eviction, so ``stats`` reads counts instead of every record."""

from __future__ import annotations

from typing import Any

from fpcli.errors import BadEntryError
from fpcli.store.protocol import Tag
from fpcli.store.records import RecordFacts
from fpcli.store.schema import loads, parse_failure, parse_record

COUNTERS = ("hits", "misses", "evictions", "expiries")
FAILURE_TAG = "fail"


def census_tag(record: RecordFacts) -> str:
    """The kind of a record for ``stats``: its version and whether it has batch values,
    a verdict, or is a preview, e.g. ``rec:v1:bv-`` (``-``: no)."""
    return (f"rec:v{record.fingerprint_version}:{'b' if record.batch is not None else '-'}"
            f"{'v' if record.validation is not None else '-'}{'-' if record.complete else 'p'}")


def tag_of_entry(key: str, text: str) -> Tag:
    """The census tag of stored text (for a recount of entries written untagged);
    None for identity entries and bad ones (which ``stats`` does not count)."""
    try:
        if key.startswith("rec:"):
            return census_tag(parse_record(key, loads(key, text)))
        if key.startswith("fail:"):
            parse_failure(key, loads(key, text))
            return FAILURE_TAG
    except BadEntryError:
        return None
    return None


def census_summary(counts: dict[str, int]) -> dict[str, Any]:
    """entries, with_batch, validated, previews, failures and by_version from the
    counts per census tag."""
    summary: dict[str, Any] = {"entries": 0, "with_batch": 0, "validated": 0, "previews": 0,
                               "failures": counts.get(FAILURE_TAG, 0), "by_version": {}}
    for tag, n in counts.items():
        parts = tag.split(":")
        if len(parts) != 3 or parts[0] != "rec" or len(parts[2]) != 3:
            continue
        version, flags = parts[1].removeprefix("v"), parts[2]
        summary["entries"] += n
        summary["with_batch"] += n * (flags[0] == "b")
        summary["validated"] += n * (flags[1] == "v")
        summary["previews"] += n * (flags[2] == "p")
        summary["by_version"][version] = summary["by_version"].get(version, 0) + n
    return summary
