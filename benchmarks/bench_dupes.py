"""Duplicate finding at catalogue scale: ``duplicate_groups`` (``fpcli cache dupes``)
and the dropping of duplicate hits of ``search -k N``, each against the pair-by-pair
loop it replaced, on the same synthetic records in the same run.

    python benchmarks/bench_dupes.py --count 20000 --hits 1000

Records come from ``make_records`` (distinct random duplicate keys: no pair is a
duplicate, so every candidate pair is compared in full, as most pairs of a real
library are). Durations are either spread over 90-480 s (a library's songs) or all
the template's 65 s, the worst case: every record is then a candidate of every other.
The pairwise loop over records of one duration is timed on the first
``--pairwise-limit`` of them (it is quadratic there), and the table says so.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from make_records import records, template_record

from fpcli.dsp.dupes import DURATION_TOLERANCE_S
from fpcli.search.dupes import Recording, RecordingTable, _same, duplicate_groups
from fpcli.store import Record


def pairwise_groups(items: list[Record]) -> list[list[Recording]]:
    """The former ``duplicate_groups`` loop (each record against each near group's
    first record, one ``same`` at a time, on the records' Recordings): every group,
    of one record or more (``tests/test_dupes_table.py`` holds the new one to it)."""
    groups: list[list[Recording]] = []
    near: list[list[Recording]] = []
    for record in sorted(map(Recording.of, items), key=lambda r: r.seconds):
        near = [g for g in near if record.seconds - g[0].seconds <= DURATION_TOLERANCE_S]
        home = next((g for g in near if _same(g[0], record)), None)
        if home is None:
            home = [record]
            groups.append(home)
            near.append(home)
        else:
            home.append(record)
    return groups


def pairwise_kept(hits: list[Record]) -> int:
    """The former search loop: each hit against every hit kept."""
    kept: list[Recording] = []
    for hit in map(Recording.of, hits):
        if not any(_same(hit, other) for other in kept):
            kept.append(hit)
    return len(kept)


def table_kept(hits: list[Record]) -> int:
    """The search loop now: each hit against every hit kept in one pass."""
    kept = RecordingTable()
    for hit in map(Recording.of, hits):
        if kept.first_same(hit) is None:
            kept.add(hit)
    return len(kept)


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="records for cache dupes")
    parser.add_argument("--hits", type=int, default=1000, help="hits for search -k")
    parser.add_argument("--pairwise-limit", type=int, default=3000,
                        help="records of one duration for the pairwise loop (it is quadratic there)")
    args = parser.parse_args()
    template = template_record()
    rows = ["| case | records | pairwise loop | one pass per record | ratio |", "|---|---|---|---|---|"]
    for label, spread in (("cache dupes, durations 90-480 s", True), ("cache dupes, all 65 s", False)):
        items = list(records(args.count, template=template, spread=spread))
        table_s = timed(lambda items=items: duplicate_groups(items))
        sliced = items if spread else items[:args.pairwise_limit]
        part = timed(lambda sliced=sliced: duplicate_groups(sliced)) if len(sliced) < len(items) else table_s
        pair_s = timed(lambda sliced=sliced: pairwise_groups(sliced))
        rows.append(f"| {label} | {len(items):,} | {pair_s:.2f} s (first {len(sliced):,}) | "
                    f"{table_s:.2f} s ({part:.2f} s for the first {len(sliced):,}) | {pair_s / part:.1f}x |")
    hits = list(records(args.hits, template=template))
    pair_s, table_s = timed(lambda: pairwise_kept(hits)), timed(lambda: table_kept(hits))
    rows.append(f"| search -k {args.hits}, hits of one duration | {args.hits:,} | {pair_s:.2f} s | "
                f"{table_s:.2f} s | {pair_s / table_s:.1f}x |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
