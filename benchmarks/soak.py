"""Hostile-input and fault soak: a larger seeded run of the tests/hostile suite.

    python benchmarks/soak.py --mutants 200 --kills 10 --writers 4 --redis-restarts 3 --out benchmarks/soak.md

Cases: every file of a mutant library (its status must be reported and correct),
kill -9 points (the store must verify and no finished track be lost), every SQLite
corruption variant of data/ and meta/ (each command must end in one clear line; then
``cache verify --repair`` must leave a sound store), hostile import lines, concurrent
writers and Redis restarts. Prints (and writes) the table: cases / clear errors /
tracebacks / hangs / crashes / data lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.conftest import RedisServer  # noqa: E402
from tests.hostile.faults import (  # noqa: E402
    CORRUPTIONS,
    a_record_line,
    clean_library,
    copy_store,
    corrupt_store,
    hostile_import_lines,
)
from tests.hostile.harness import Run, cli_subprocess  # noqa: E402
from tests.hostile.mutants import build  # noqa: E402

COLUMNS = ("cases", "clear errors", "tracebacks", "hangs", "crashes", "data lost")


class Tally:
    def __init__(self) -> None:
        self.rows: dict[str, Counter[str]] = {}
        self.notes: list[str] = []

    def add(self, area: str, outcome: str) -> None:
        self.rows.setdefault(area, Counter())["cases"] += 1
        if outcome != "ok":
            self.rows[area][outcome] += 1

    def run(self, area: str, run: Run, *, error_expected: bool = True) -> Run:
        verdict = {"clear": "clear errors" if run.code not in (0,) and error_expected else "ok",
                   "traceback": "tracebacks", "hang": "hangs", "crash": "crashes", "unclear": "unclear"}[run.verdict]
        if verdict == "unclear":
            self.notes.append(f"{area}: unclear output: {run.describe()[:400]}")
            verdict = "tracebacks"
        elif verdict in ("tracebacks", "hangs", "crashes"):
            self.notes.append(f"{area}: {run.describe()[:600]}")
        self.add(area, verdict)
        return run

    def table(self) -> str:
        lines = ["| area | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        total: Counter[str] = Counter()
        for area, counts in self.rows.items():
            total.update(counts)
            lines.append(f"| {area} | " + " | ".join(str(counts[c]) for c in COLUMNS) + " |")
        lines.append("| **total** | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " |")
        return "\n".join(lines)


def cli(*args, store, timeout=300.0) -> Run:
    return cli_subprocess(*args, store=store, timeout=timeout)


def soak_library(tally: Tally, work: Path, seed: int, mutants: int) -> None:
    cases = build(work / "lib", seed, mutants)
    store = work / "lib-store"
    run = tally.run("library run (whole)", cli("analyze", work / "lib", "--json", "--jobs", "2", "--timeout", "60",
                                               store=store), error_expected=False)
    rows: dict[bytes, list[dict]] = {}
    for row in run.json_lines():
        rows.setdefault(os.fsencode(row["path"]), []).append(row)
    for case in cases:
        got = rows.get(case.path, [])
        if run.verdict != "clear":
            tally.add("mutant files", "crashes")
        elif len(got) != 1 or got[0]["status"] not in case.expect:
            tally.add("mutant files", "data lost")
            tally.notes.append(f"mutant {case.kind}: {got[:1]}")
        else:
            tally.add("mutant files", "clear errors" if got[0]["status"] == "error" else "ok")
    tally.run("library run (verify)", cli("cache", "verify", store=store), error_expected=False)


def soak_kills(tally: Tally, work: Path, kills: int, seed: int) -> None:
    library = clean_library(work / "kill-lib", 10, seconds=3.0)
    store = work / "kill-store"
    rng = random.Random(seed)
    finished: set[str] = set()
    for point in range(kills):
        process = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(store), "analyze", str(library),
                                    "--json", "--jobs", "2", "--force" if point % 3 == 2 else "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(rng.uniform(0.5, 6.0))
        if point % 2:
            process.kill()
        else:
            os.killpg(process.pid, 9)
        out, err = process.communicate(timeout=60)
        finished |= {json.loads(x)["path"] for x in out.decode().splitlines()
                     if x.endswith("}") and json.loads(x)["status"] == "ok"}
        outcome = "tracebacks" if b"Traceback" in err else "ok"
        check = cli("cache", "verify", store=store)
        if check.code != 0:
            outcome = "data lost"
            tally.notes.append(f"kill {point}: verify {check.describe()[:300]}")
        tally.add("kill -9 points", outcome)
    rerun = cli("analyze", library, "--json", store=store)
    cached = {r["path"] for r in rerun.json_lines() if r["cached"]}
    tally.add("kill -9 resume", "ok" if finished <= cached else "data lost")


def soak_corruption(tally: Tally, work: Path) -> None:
    library = clean_library(work / "corrupt-lib", 4)
    source = work / "corrupt-source"
    cli("analyze", library, store=source)
    for n, variant in enumerate(CORRUPTIONS):
        store = copy_store(source, work / f"corrupt-{n}")
        corrupt_store(store, variant)
        for args in (("analyze", library), ("cache", "stats"), ("cache", "list"), ("cache", "failures"),
                     ("cache", "export", work / f"rescue-{n}.jsonl"), ("cache", "verify")):
            tally.run("SQLite corruption: commands", cli(*args, store=store))
        repaired = cli("cache", "verify", "--repair", store=store)
        tally.run("SQLite corruption: repair", repaired, error_expected=False)
        after = cli("cache", "verify", store=store)
        if after.code != 0:
            tally.add("SQLite corruption: sound after repair", "data lost")
            tally.notes.append(f"{variant}: not sound after --repair: {after.describe()[:300]}")
        else:
            tally.add("SQLite corruption: sound after repair", "ok")


def soak_imports(tally: Tally, work: Path) -> None:
    library = clean_library(work / "import-lib", 3)
    store = work / "import-store"
    cli("analyze", library, store=store)
    cli("cache", "export", work / "good.jsonl", store=store)
    record = a_record_line(work / "good.jsonl")
    for name, line in hostile_import_lines(record).items():
        path = work / "bad.jsonl"
        path.write_text(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n" + line + "\n")
        run = tally.run("hostile import lines", cli("cache", "import", path, store=store))
        if run.code != 3:
            tally.notes.append(f"import {name}: exit {run.code}")
    for args in (("cache", "stats"), ("cache", "list"), ("cache", "verify"), ("analyze", library)):
        tally.run("commands after imports", cli(*args, store=store), error_expected=False)


def soak_writers(tally: Tally, work: Path, writers: int) -> None:
    library = clean_library(work / "writers-lib", 12, seconds=2.0)
    store = work / "writers-store"
    runs = [subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(store), "analyze", str(library),
                              "--jobs", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(writers)]
    for process in runs:
        _, err = process.communicate(timeout=600)
        tally.add("concurrent writers", "tracebacks" if b"Traceback" in err else "ok")
    check = cli("cache", "verify", store=store)
    tally.add("concurrent writers: verify", "ok" if check.code == 0 else "data lost")


def soak_redis(tally: Tally, work: Path, restarts: int) -> None:
    library = clean_library(work / "redis-lib", 6, seconds=2.0)
    server = RedisServer(work / "redis")
    try:
        tally.run("Redis restarts", cli("analyze", library, store=server.url), error_expected=False)
        for _ in range(restarts):
            server.stop()
            tally.run("Redis restarts", cli("cache", "stats", store=server.url, timeout=60))
            server.start()
            again = tally.run("Redis restarts", cli("analyze", library, "--json", store=server.url),
                              error_expected=False)
            ok = [r for r in again.json_lines() if r["status"] == "ok"]
            tally.add("Redis restarts: data kept", "ok" if ok and all(r["cached"] for r in ok) else "data lost")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--redis-restarts", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tally = Tally()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fpcli-soak-") as folder:
        work = Path(folder)
        soak_library(tally, work, args.seed, args.mutants)
        soak_kills(tally, work, args.kills, args.seed)
        soak_corruption(tally, work)
        soak_imports(tally, work)
        soak_writers(tally, work, args.writers)
        soak_redis(tally, work, args.redis_restarts)
        subprocess.run(["chmod", "-R", "u+rwX", folder], check=False)
    command = " ".join(["python", "benchmarks/soak.py", *sys.argv[1:]])
    text = (f"# Hostile-input and fault soak\n\n`{command}` ({time.monotonic() - started:.0f} s, seed {args.seed})\n\n"
            "A case is one file of a mutant library, one kill -9 point, one command on a corrupted store, one "
            "hostile import line, one writer or one Redis step. *clear errors*: the case failed as it should, "
            "with one clear line or a recorded reason; *data lost*: a wrong status, a finished track missing "
            "after a kill, or a store not sound after `cache verify --repair`.\n\n" + tally.table() + "\n")
    if tally.notes:
        text += "\nFindings:\n\n" + "\n".join(f"- {note}" for note in tally.notes[:40]) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
