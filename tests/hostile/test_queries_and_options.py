"""Hostile queries and option values: FIFOs and symlink loops as queries, a broken
search candidate, a 1-frame file, bad numbers, bad store locations, a single file
over its time limit. Each ends in one clear line or a clean result."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.hostile.faults import clean_library
from tests.hostile.harness import assert_clear, cli, cli_subprocess
from tests.hostile.mutants import signal, wav_bytes


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    root = tmp_path_factory.mktemp("queries")
    library = clean_library(root / "lib", 6, broken=0)
    store = root / "store"
    assert_clear(cli("analyze", library, "--jobs", "2", store=store), 0)
    return root, library, store


def test_fifo_and_symlink_loop_queries_do_not_block(analysed, tmp_path):
    """Defect 10."""
    _, _, store = analysed
    fifo = tmp_path / "q.wav"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.wav"
    loop.symlink_to(loop)
    # a FIFO could block a reader: run those where a hang can be stopped
    runs = [cli_subprocess("search", fifo, store=store, timeout=60),
            cli_subprocess("cache", "show", fifo, store=store, timeout=60)]
    runs += [cli(*args, store=store) for args in (("search", loop), ("cache", "show", loop), ("analyze", fifo),
                                                  ("analyze", loop), ("validate", "-l", fifo))]
    for run in runs:
        assert_clear(run, 0 if "validate" in run.args else 1, 3)  # validate: failed files are reported, exit 0
        assert "FIFO" in run.stderr or "symlink loop" in run.stderr, run.describe()


def test_accurate_search_skips_a_broken_candidate(analysed, tmp_path):
    """Defect 12: a stored track whose file was replaced by garbage."""
    root, library, source = analysed
    victim = library / "track003.wav"
    original = victim.read_bytes()
    victim.write_bytes(os.urandom(len(original)))
    try:
        run = assert_clear(cli("search", library / "track000.wav", "-s", "accurate", "--json", store=source), 0)
    finally:
        victim.write_bytes(original)
    assert "track003.wav: skipped as a candidate" in run.stderr, run.describe()
    result = json.loads(run.stdout)
    assert [s["path"] for s in result["skipped"]] == [str(victim)] and len(result["hits"]) >= 3


def test_a_one_frame_file_is_not_everyones_neighbour(analysed, tmp_path):
    """A 1-frame file: its nulls have no confidence, it is not indexed, and as a query
    it is one clear line."""
    root, library, store = analysed
    tiny = library / "one-frame.wav"
    tiny.write_bytes(wav_bytes(signal(1.0, 16000, 1, 1)[:1, 0], 16000))
    try:
        run = assert_clear(cli("analyze", tiny, "--json", store=store), 0)
        (row,) = run.json_lines()
        assert all(v["confidence"] == 0 for v in row["streaming"].values() if v["value"] is None)
        hits = assert_clear(cli("search", library / "track000.wav", "-s", "fast", "--json", store=store), 0)
        assert "one-frame" not in hits.stdout
        assert_clear(cli("search", tiny, "-s", "fast", store=store), 3)   # a query that failed, not fatal
    finally:
        tiny.unlink()
        assert_clear(cli("cache", "prune", store=store), 0)


def test_a_newline_in_a_name_does_not_split_its_m3u_entry(analysed, tmp_path):
    root, library, store = analysed
    odd = library / "new\nline.wav"
    odd.write_bytes((library / "track002.wav").read_bytes() + b"\x00\x00")
    try:
        assert_clear(cli("search", odd, "-s", "fast", "--m3u", tmp_path / "p.m3u", store=store), 0)
    finally:
        odd.unlink()
    lines = (tmp_path / "p.m3u").read_text().splitlines()
    # The query and its hits (the other tracks left by earlier tests of this module,
    # 4 or 5), each one #EXTINF line and one location line. track002, the same decoded
    # audio with 2 bytes of trailing junk, is the query's copy: no hit (1 s tracks have
    # too few key bits, but their fingerprints are the same).
    assert lines[0] == "#EXTM3U" and len(lines) in (1 + 2 * 5, 1 + 2 * 6)
    assert all(line.startswith("#EXTINF") for line in lines[1::2])
    assert not any("track002" in line for line in lines)
    assert "new%0Aline.wav" in lines[2]


BAD_OPTIONS = [
    ("search", "{q}", "--weights", "temporal=nan"),
    ("search", "{q}", "--weights", "temporal=inf"),
    ("search", "{q}", "--weights", "temporal=1e400"),
    ("search", "{q}", "--weights", "temporal=-1"),
    ("search", "{q}", "--weights", ",".join(f"{g}=0" for g in ("frequency", "dynamics", "temporal", "spectral",
                                                               "harmonic", "variation", "stereo", "timbre"))),
    ("search", "{q}", "--weights", "[/red]=1"),
    ("search", "{q}", "-k", "0"),
    ("search", "{q}", "--strategy", "[bold]x"),
    ("validate", "-l", "{lib}", "--partial", "nan"),
    ("validate", "-l", "{lib}", "--partial", "inf"),
    ("validate", "-l", "{lib}", "--partial", "1e-9"),
    ("validate", "-l", "{lib}", "--threshold", "nan"),
    ("analyze", "{q}", "--timeout", "0"),
    ("analyze", "{q}", "--timeout", "nan"),
    ("analyze", "{q}", "--jobs", "0"),
    ("analyze", "{q}", "--seconds", "nan"),
    ("analyze", "{q}", "--every", "inf"),
    ("search", "{q}", "--seconds", "nan"),
    ("validate", "-l", "{lib}", "--fail-under", "nan"),
    ("bench", "--tolerance", "nan"),
    ("--store-ttl", "nan", "cache", "stats"),
    ("--store-size-mb", "-inf", "cache", "stats"),   # inf: no limit (test_cli_options)
    ("--store-size-mb", "nan", "cache", "stats"),
    ("--store-size-mb", "0", "cache", "stats"),
    ("--store", "", "cache", "stats"),
    ("--store", "   ", "cache", "stats"),
]


@pytest.mark.parametrize("args", BAD_OPTIONS, ids=lambda a: " ".join(a)[:60])
def test_bad_option_values_are_usage_errors(analysed, args):
    _, library, store = analysed
    filled = [a.format(q=library / "track000.wav", lib=library) for a in args]
    if filled[0] != "--store":
        filled = ["--store", str(store), *filled]
    assert_clear(cli(*filled), 2)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:99999/0", "redis://127.0.0.1:abc/0", "redis://:6379/0",
                                 "redis://127.0.0.1:1/0", "redis://127.0.0.1:6379/x"])
def test_bad_redis_urls_are_one_line(url):
    started = time.monotonic()
    assert_clear(cli("cache", "stats", store=url), 1, 2)
    assert time.monotonic() - started < 15


def test_rediss_against_a_plain_server_fails_quickly(redis_server):
    """Within the connect timeout (3 s) and start-up: the handshake waited for the read
    timeout, 10 s."""
    started = time.monotonic()
    run = assert_clear(cli("cache", "stats", store=redis_server.url.replace("redis://", "rediss://")), 1)
    assert time.monotonic() - started < 8, run.describe()


def test_a_single_file_gets_its_time_limit(tmp_path):
    """Defect 6: --timeout applies to one file too (it runs in a worker)."""
    long = tmp_path / "long.wav"
    long.write_bytes(wav_bytes(signal(1800.0, 16000, 1, 5)[:, 0], 16000))
    run = assert_clear(cli("analyze", long, "--timeout", "1", "--json", store=tmp_path / "s"), 3)
    (row,) = run.json_lines()
    assert row["status"] == "error" and "longer than 1 s" in row["error"]


def test_unreadable_files_and_an_unwritable_index_folder(analysed, tmp_path):
    """An unreadable file is a recorded failure, tried again on the next run (a chmod
    changes neither its size nor its mtime: it was skipped as unreadable for good); an
    index folder the user may not write does not stop a search."""
    root, library, source = analysed
    store = tmp_path / "store"
    shutil.copytree(source, store)
    secret = library / "secret.wav"
    secret.write_bytes(wav_bytes(signal(0.5, 16000, 1, 77)[:, 0], 16000))
    os.chmod(secret, 0)
    shutil.rmtree(store / "index", ignore_errors=True)   # an index saved by an earlier test would be current
    (store / "index").mkdir()
    os.chmod(store / "index", 0o555)
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    try:
        runs = [cli_subprocess("analyze", library, "--json", store=store, prefix=prefix, timeout=120)
                for _ in range(2)]
        found = cli_subprocess("search", library / "track000.wav", "-s", "fast", store=store, prefix=prefix,
                               timeout=120)
    finally:
        secret.unlink()
        os.chmod(store / "index", 0o755)
    for run in runs:
        assert_clear(run, 3)
        (row,) = [r for r in run.json_lines() if r["path"].endswith("secret.wav")]
        assert row["status"] == "error" and "permission denied" in row["error"] and row["cached"] is False
    assert_clear(found, 0)
    assert "the search index could not be saved" in found.stderr   # said, not silently rebuilt every time


def test_an_unreadable_path_on_the_command_line_is_one_failed_entry(analysed, tmp_path):
    """The command line refused an unreadable file or folder before fpcli saw it:
    `analyze ok.wav locked.wav` exited 2 ("Path 'locked.wav' is not readable") with
    nothing analysed, and validate, search and cache show alike."""
    _, library, source = analysed
    store = tmp_path / "store"
    shutil.copytree(source, store)
    locked_file = tmp_path / "locked.wav"
    locked_file.write_bytes(wav_bytes(signal(0.5, 16000, 1, 78)[:, 0], 16000))
    locked_folder = tmp_path / "locked"
    locked_folder.mkdir()
    shutil.copy(locked_file, locked_folder / "inside.wav")
    os.chmod(locked_file, 0)
    os.chmod(locked_folder, 0)
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    try:
        analysed_now = cli_subprocess("analyze", library / "track000.wav", locked_file, locked_folder, "--json",
                                      store=store, prefix=prefix)
        validated = cli_subprocess("validate", "--library", locked_folder, store=store, prefix=prefix)
        searched = cli_subprocess("search", locked_file, store=store, prefix=prefix)
        shown = cli_subprocess("cache", "show", locked_file, store=store, prefix=prefix)
    finally:
        os.chmod(locked_folder, 0o755)
        os.chmod(locked_file, 0o644)
    assert_clear(analysed_now, 3)
    rows = {Path(r["path"]).name: r for r in analysed_now.json_lines()}
    assert rows["track000.wav"]["status"] == "ok"
    assert rows["locked.wav"]["status"] == "error" and "permission denied" in rows["locked.wav"]["error"]
    assert rows["locked"]["status"] == "error" and "permission denied" in rows["locked"]["error"]
    for run in (validated, searched, shown):
        assert_clear(run)
        assert run.code != 2 and "permission denied" in run.stderr, run.describe()
