"""How long a search takes to ask the store's journal what changed since its index,
on a journal kept full (JOURNAL_LIMIT changes), for an index that is current and one a
few changes behind.

    python benchmarks/bench_journal.py --store redis://127.0.0.1:6379/15 [--calls 50]
    python benchmarks/bench_journal.py --store /tmp/journal-store

The store given is cleared first (use a spare Redis database or a new folder).
"""

from __future__ import annotations

import argparse
import statistics
import time

from fpcli.store import FingerprintStore
from fpcli.store.protocol import JOURNAL_LIMIT


def timed_ms(call, calls: int) -> float:
    """Median wall time of ``call`` in ms over ``calls`` calls."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    with FingerprintStore.open(args.store) as store:
        store.clear()
        for start in range(0, JOURNAL_LIMIT, 50):
            store.backend.journal_extend([f"rec:{n}" for n in range(start, start + 50)])
        now = store.generation()
        print(f"journal of {JOURNAL_LIMIT:,} changes, {args.store}")
        for behind in (0, 10):
            ms = timed_ms(lambda behind=behind: store.changes_since(now - behind), args.calls)
            print(f"  changes since an index {behind} changes behind: {ms:.2f} ms (median of {args.calls})")
        store.clear()


if __name__ == "__main__":
    main()
