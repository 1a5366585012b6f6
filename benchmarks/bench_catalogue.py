"""Catalogue scale: the store commands on N synthetic records, on both backends.

    python benchmarks/make_records.py --count 100000 --out records-100k.jsonl
    python benchmarks/bench_catalogue.py --records records-100k.jsonl [--backend diskcache redis] [--out FILE]

Each figure is one run of the real command in a new process (start-up included, as a
user sees it), on a fresh store (diskcache with ``--store-size-mb 20000``, so nothing is evicted):
``cache import`` of the file, ``cache stats``,
``cache list --limit 100``, ``cache export``, ``cache verify`` (each record and its
path and candidate entries), then, with the query already analysed, the first
``search`` after the import (which saved the index: the first search refreshes it by
the query's own record), a second one, and one with the saved index removed (a build
from every record, as on a new machine or a second Redis client). On Redis, ``share``
then times ``cache share-index`` and a search by a client without a saved index,
which copies the shared one. Records/s
are the records of the file over the command's wall time. Redis runs on a free
loopback port (its own ``redis-server``, no persistence); its memory per record is
``used_memory`` after the import, less before, over the records. The load average
before and after is printed: on a shared machine, read the figures with it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, installed_environment  # benchmarks/_report.py (run as a script from this folder)

ROOT = Path(__file__).resolve().parents[1]
QUERY = ROOT / "sample_audio" / "drums_120bpm.flac"
SIZE_LIMIT_MB = 20_000  # a v2 record takes about 6 KB on diskcache: the default 256 MiB holds ~45,000


def run(store: str, *args: str) -> tuple[float, float, str]:
    """(wall s, peak resident MB, last line of output) of ``fpcli --store STORE ARGS``."""
    if not _ENV:
        _ENV.update(installed_environment(), COLUMNS="200", FPCLI_STORE_SIZE_MB=str(SIZE_LIMIT_MB))
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", store, *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=_ENV)
    assert process.stdout is not None
    output = process.stdout.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) not in (0, 3):  # 3: an import or verify that found problems
        raise RuntimeError(f"fpcli {' '.join(args)} failed:\n{output[-2000:]}")
    lines = [line for line in output.splitlines() if line.strip()]
    return wall, usage.ru_maxrss / 1024, lines[-1] if lines else ""


_ENV: dict[str, str] = {}


def start_redis(folder: Path) -> tuple[subprocess.Popen[bytes], str, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0", port


def used_memory(port: int) -> int:
    """Redis's used_memory in bytes."""
    text = subprocess.run(["redis-cli", "-p", str(port), "info", "memory"], capture_output=True, text=True,
                          check=True).stdout
    return int(next(line for line in text.splitlines() if line.startswith("used_memory:")).split(":")[1])


STEPS = ("import", "stats", "list", "export", "verify", "search", "share")   # share: Redis only


def measure(store: str, records: Path, count: int, work: Path, port: int | None,
            steps: tuple[str, ...] = STEPS) -> dict[str, str]:
    """The figures of one backend on a fresh store (``steps``: which commands after
    the import, which always runs)."""
    rows: dict[str, str] = {}
    before = used_memory(port) if port else 0
    wall, rss, said = run(store, "cache", "import", str(records))
    saved = said.partition("; search index saved ")[2]
    rows["cache import"] = (f"{wall:.1f} s ({count / wall:,.0f} records/s, peak RSS {rss:.0f} MB)"
                            + (f"; index saved {saved}" if saved else "; no index saved"))
    if port:
        rows["Redis memory per record"] = f"{(used_memory(port) - before) / count:,.0f} B"
    if "stats" in steps:
        startup, _, _ = run(store, "--version")
        wall, _, _ = run(store, "cache", "stats")
        rows["cache stats"] = f"{wall:.2f} s (`fpcli --version`: {startup:.2f} s)"
    if "list" in steps:
        wall, _, _ = run(store, "cache", "list", "--limit", "100")
        rows["cache list --limit 100"] = f"{wall:.2f} s"
    if "export" in steps:
        wall, rss, _ = run(store, "cache", "export", str(work / "export.jsonl"))
        rows["cache export"] = f"{wall:.1f} s ({count / wall:,.0f} records/s, peak RSS {rss:.0f} MB)"
        (work / "export.jsonl").unlink()
    if "verify" in steps:
        wall, rss, _ = run(store, "cache", "verify")
        rows["cache verify"] = f"{wall:.1f} s ({count / wall:,.0f} records/s, peak RSS {rss:.0f} MB)"
    if "search" in steps:
        run(store, "analyze", str(QUERY))  # the query's own analysis is not what is measured
        first, rss, _ = run(store, "search", str(QUERY), "-k", "10", "--strategy", "fast")
        second, _, _ = run(store, "search", str(QUERY), "-k", "10", "--strategy", "fast")
        rows["first search after the import / next"] = f"{first:.1f} s (peak RSS {rss:.0f} MB) / {second:.1f} s"
        from fpcli.store import FingerprintStore

        with FingerprintStore.open(store, size_limit_mb=SIZE_LIMIT_MB) as opened:
            shutil.rmtree(opened.backend.index_dir, ignore_errors=True)
        built, rss, _ = run(store, "search", str(QUERY), "-k", "10", "--strategy", "fast")
        rows["search with no saved index (built from every record)"] = f"{built:.1f} s (peak RSS {rss:.0f} MB)"
    if "share" in steps and port:
        rows.update(measure_sharing(store, count, port))
    return rows


def measure_sharing(store: str, count: int, port: int) -> dict[str, str]:
    """Redis only: ``cache share-index``, then a search by a client with no saved index
    (its folder removed), which copies the shared one instead of reading every record."""
    from fpcli.store import FingerprintStore

    before = used_memory(port)
    wall, rss, _ = run(store, "cache", "share-index")
    rows = {"cache share-index": f"{wall:.1f} s (peak RSS {rss:.0f} MB); Redis memory "
                                 f"+{(used_memory(port) - before) / count:,.0f} B per record"}
    with FingerprintStore.open(store, size_limit_mb=SIZE_LIMIT_MB) as opened:
        shutil.rmtree(opened.backend.index_dir, ignore_errors=True)
    copied, rss, _ = run(store, "search", str(QUERY), "-k", "10", "--strategy", "fast")
    again, _, _ = run(store, "search", str(QUERY), "-k", "10", "--strategy", "fast")
    rows["search with no saved index, the shared one copied / next"] = \
        f"{copied:.1f} s (peak RSS {rss:.0f} MB) / {again:.1f} s"
    return rows


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=Path, required=True, help="an export from make_records.py")
    parser.add_argument("--backend", nargs="+", default=["diskcache", "redis"], choices=["diskcache", "redis"])
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=STEPS,
                        help="commands to time (the import always runs)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with open(args.records, "rb") as fh:
        count = sum(1 for _ in fh) - 1
    results: dict[str, dict[str, str]] = {}
    loads = [load()]
    with tempfile.TemporaryDirectory(prefix="fpcli-catalogue-") as folder:
        work = Path(folder)
        for backend in args.backend:
            if backend == "diskcache":
                results[backend] = measure(str(work / "store"), args.records, count, work, None,
                                           tuple(args.steps))
                shutil.rmtree(work / "store")
            else:
                server, url, port = start_redis(work)
                try:
                    results[backend] = measure(url, args.records, count, work, port, tuple(args.steps))
                finally:
                    server.terminate()
                    server.wait()
            loads.append(load())
    names = list(dict.fromkeys(name for figures in results.values() for name in figures))
    lines = [f"{count:,} records; load average (1, 5, 15 min) before and after each backend: "
             f"{' -> '.join(loads)}", "",
             "| operation | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    lines += [f"| {name} | " + " | ".join(results[b].get(name, "–") for b in results) + " |" for name in names]
    return emit("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    sys.exit(main())
