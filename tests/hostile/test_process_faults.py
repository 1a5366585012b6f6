"""Process faults: kill -9 at seeded random moments, four concurrent writers, a full
disk, Redis restarts and a Redis memory limit. Finished results are never lost and
the store always verifies clean afterwards."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import RedisServer, new_store
from tests.hostile.faults import clean_library
from tests.hostile.harness import assert_clear, cli, cli_subprocess

TRACKS = 8


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return clean_library(tmp_path_factory.mktemp("proc") / "lib", TRACKS, seconds=3.0)


def kill_at(library, store, delay_s: float, *, group: bool = True):
    """Start ``analyze --json``, SIGKILL it (its process group, or the parent only)
    after ``delay_s``; returns (results printed before, stderr)."""
    process = subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(store), "analyze", str(library),
                                "--json", "--jobs", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    time.sleep(delay_s)
    if group:
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    out, err = process.communicate(timeout=60)
    if not group:
        time.sleep(0.5)  # orphaned workers notice the closed pipe and leave
    rows = [json.loads(line) for line in out.decode().splitlines() if line.endswith("}")]
    return rows, err.decode("utf-8", "replace")


@pytest.mark.parametrize("seed", [1])  # benchmarks/soak.py kills at many more points
def test_kill_9_at_random_points_then_verify_and_resume(library, tmp_path, seed):
    store = tmp_path / "store"
    rng = random.Random(seed)
    finished: set[str] = set()
    for point in range(2):
        rows, err = kill_at(library, store, rng.uniform(1.0, 4.0), group=bool(point % 2 == 0))
        assert "Traceback" not in err, err
        finished |= {r["path"] for r in rows if r["status"] == "ok"}
        assert_clear(cli("cache", "verify", store=store), 0)
    rerun = assert_clear(cli("analyze", library, "--json", "--jobs", "2", store=store), 3)
    rows = rerun.json_lines()
    assert finished <= {r["path"] for r in rows if r["cached"]}  # nothing finished was lost
    assert len([r for r in rows if r["status"] == "ok"]) == TRACKS


def test_four_concurrent_writers(library, tmp_path):
    store = tmp_path / "store"
    export = tmp_path / "e.jsonl"
    runs = [subprocess.Popen([sys.executable, "-m", "fpcli", "--store", str(store), "analyze", str(library),
                              "--jobs", "1", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(4)]
    outputs = [run.communicate(timeout=300) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 3 and b"Traceback" not in err, err.decode()
    assert_clear(cli("cache", "verify", store=store), 0)
    assert_clear(cli("cache", "export", export, store=store), 0)
    records = [line for line in export.read_text().splitlines() if '"type":"record"' in line]
    assert len(records) == TRACKS


def _tmpfs(folder, size_kib: int):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")


def test_disk_full_stops_cleanly_and_keeps_finished_tracks(library, tmp_path):
    """Defect 8: a store on a full disk; analyze and import say one line, exit 1."""
    disk = tmp_path / "disk"
    _tmpfs(disk, 2048)
    try:
        store = disk / "store"
        new_store(store)
        assert_clear(cli("cache", "stats", store=store), 0)
        filler = disk / "filler"
        with open(filler, "wb") as fh:  # leave about 40 KiB
            free = shutil.disk_usage(disk).free
            fh.write(bytes(max(0, free - 40 * 1024)))
        run = assert_clear(cli("analyze", library, "--jobs", "2", "--json", store=store), 1, 3)
        kept = {r["path"] for r in run.json_lines() if r["status"] == "ok"}
        if run.code == 1:
            assert "full" in run.stderr or "space" in run.stderr, run.describe()
        big = tmp_path / "big.jsonl"
        assert_clear(cli("cache", "export", big, store=store), 0, 1)
        if big.exists():
            lines = big.read_text().splitlines()
            record = next((json.loads(x)["data"] for x in lines if '"type":"record"' in x), None)
            if record is not None:
                with open(big, "a") as out:
                    for i in range(400):
                        record["digest"] = f"{i:032x}"
                        out.write(json.dumps({"type": "record", "data": record}) + "\n")
                imported = assert_clear(cli("cache", "import", big, store=store), 0, 1, 3)
                assert imported.code != 0 or shutil.disk_usage(disk).free > 0
        filler.unlink()
        assert_clear(cli("cache", "verify", "--repair", store=store), 0)
        rerun = assert_clear(cli("analyze", library, "--json", store=store), 3)
        assert kept <= {r["path"] for r in rerun.json_lines() if r["cached"]}
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_redis_restart_and_memory_limit(library, tmp_path):
    """Defect 9 and Redis restarts: a stopped server is one line (exit 1) in seconds; after
    a restart the data are there; with maxmemory 3mb and volatile-lru, four imports
    of 500 records each (6 MiB of records) still leave every command working."""
    server = RedisServer(tmp_path / "redis")
    try:
        url = server.url
        assert_clear(cli("analyze", library, "--jobs", "2", store=url), 3)
        server.stop()
        started = time.monotonic()
        assert_clear(cli_subprocess("cache", "stats", store=url, timeout=60), 1)
        assert time.monotonic() - started < 30
        server.start()
        again = assert_clear(cli("analyze", library, "--json", store=url), 3)
        assert all(r["cached"] for r in again.json_lines())
        import redis

        redis.Redis(port=server.port).config_set("maxmemory", "3mb")
        export = tmp_path / "e.jsonl"
        assert_clear(cli("cache", "export", export, store=url), 0)
        record = next(json.loads(x)["data"] for x in export.read_text().splitlines() if '"type":"record"' in x)
        for round_ in range(4):
            with open(tmp_path / f"i{round_}.jsonl", "w") as out:
                for i in range(500):
                    record["digest"] = f"{round_:08x}{i:024x}"
                    record["paths"] = [{"path": f"/music/{round_}/{i}.wav", "mtime_ns": 1}]
                    out.write(json.dumps({"type": "record", "data": record}) + "\n")
            assert_clear(cli("cache", "import", tmp_path / f"i{round_}.jsonl", store=url), 0, 1)
        for args in (("cache", "stats"), ("cache", "list", "--limit", "5"), ("cache", "verify"),
                     ("search", library / "track001.wav", "-s", "fast"), ("analyze", library)):
            assert_clear(cli(*args, store=url), 0, 3)
    finally:
        server.stop()
