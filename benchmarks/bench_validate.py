"""Validation on the real-music library (issue: validate, "Targets"), and its speed.

    python benchmarks/bench_validate.py --library /tmp/fpcli-library [--partial 5,10,20,30,45,60,90,120,180]
        [--out benchmarks/validate.md]

Runs ``validate_library`` on a fresh store (streaming and batch computed by 2
workers), prints the per-metric table, the summary, the error-by-confidence table of
``--partial``, and the time of one ``compare`` call (p50/p99 over all pairs, 200
repeats each).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import emit  # benchmarks/_report.py (run as a script from this folder)
from tabulate import tabulate

from fpcli.library import RunOptions
from fpcli.store import FingerprintStore
from fpcli.validate import validate_library, validate_record


def fmt(value, digits=4):
    return "—" if value is None else f"{value:.{digits}g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=Path("/tmp/fpcli-library"))
    parser.add_argument("--partial", default="5,10,20,30,45,60,90,120,180")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    seconds = [float(s) for s in args.partial.split(",")]
    with tempfile.TemporaryDirectory() as folder, FingerprintStore.open(folder) as store:
        started = time.perf_counter()
        report = validate_library([str(args.library)], store, RunOptions(jobs=2), partial_seconds=seconds)
        wall = time.perf_counter() - started
        records = [r for r in store.records() if r.batch is not None]
        timings = []
        for record in records:
            for _ in range(200):
                t = time.perf_counter()
                validate_record(record)
                timings.append(time.perf_counter() - t)
    p50, p99 = np.percentile(np.array(timings) * 1e3, [50, 99])
    metric_rows = [[r["metric"] + (f" {r['relations']}" if r["relations"] else ""), r["kind"], f"{r['tolerance']:g}",
                    fmt(r["mean_error"]), fmt(r["max_error"]), f"{100 * r['pass_rate']:.1f} %", r["tracks"]]
                   for r in report.metric_table()]
    s = report.summary()
    partial = report.partial
    labels = [row["confidence"] for row in next(iter(partial["buckets"].values()))]
    partial_rows = [[name, *[f"{fmt(r['mean_error'], 3)} ({r['samples']})" for r in rows],
                     {True: "yes", False: "NO", None: "-"}[partial["monotone"][name]]]
                    for name, rows in partial["buckets"].items()]
    lines = [
        f"# Validation on the real-music library ({datetime.date.today()})", "",
        f"Command: `python benchmarks/bench_validate.py --library {args.library} --partial {args.partial}`", "",
        "Equivalent CLI: `fpcli validate --library LIB --partial " + args.partial + "`.", "",
        "## Per metric (streaming vs batch, whole tracks)", "",
        tabulate(metric_rows, ["metric", "error", "tolerance", "mean error", "max error", "pass rate", "tracks"],
                 tablefmt="github"), "",
        f"Tracks {s['tracks']}: valid {s['valid']}, invalid {s['invalid']}, failed to decode "
        f"{s['failed_to_decode']} (the library's deliberately broken files); median similarity "
        f"{fmt(s['median_similarity'], 6)}, worst {fmt(s['worst_similarity'], 6)}. "
        f"Wall time {wall:.1f} s (analysis of every track, streaming + batch, 2 workers, plus the partial streams).",
        "",
        f"Targets: every metric within tolerance on >= 95 % of tracks: "
        f"{'met' if all(r['pass_rate'] >= 0.95 for r in report.metric_table()) else 'MISSED'}; "
        f"median similarity >= 0.99: {'met' if s['median_similarity'] >= 0.99 else 'MISSED'}.", "",
        f"## Error by confidence (streams cut at {partial['seconds']} s, {partial['tracks']} tracks)", "",
        "Mean error in each metric's own measure (relative, absolute or LU) with the number of samples; "
        "'monotone' = no rise beyond two standard errors from one bucket to the next.", "",
        tabulate(partial_rows, ["metric", *labels, "monotone"], tablefmt="github"), "",
        "## Speed", "",
        f"One `compare` (13 metrics + normalised cosine) on stored records: p50 {p50 * 1000:.1f} us, "
        f"p99 {p99 * 1000:.1f} us (target < 1 ms).", "",
    ]
    report_text = "\n".join(lines)
    return emit(report_text, args.out)


if __name__ == "__main__":
    sys.exit(main())
