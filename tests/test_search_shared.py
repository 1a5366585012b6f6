"""The search index shared through a Redis store: a client without an index copies the
shared one instead of reading every record, the copy is kept current, and a damaged
or hostile copy is never used (that client builds its own)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import app
from fpcli.errors import FpcliError
from fpcli.params import AnalysisParams
from fpcli.search import build_index, current_index
from fpcli.search import saved as saved_module
from fpcli.search.index import index_stem
from fpcli.search.saved import share_indexes, unshare_indexes
from fpcli.store import FingerprintStore
from fpcli.store.redis_files import RedisFileSets
from tests.conftest import new_store, write

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)

KEY = AnalysisParams().key()
STEM = index_stem("streaming", KEY)


@pytest.fixture
def client(monkeypatch, tmp_path):
    """``client("a")``: make the following store opens those of machine "a" (its own
    user cache folder, where a Redis store's search index lives)."""
    def switch(name):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / f"cache-{name}"))
        saved_module._RECENT.clear()     # a new process on that machine
    return switch


def _fill(url, template, count, start=0):
    """Store records ``start`` to ``count`` of the cloned catalogue."""
    with FingerprintStore.open(url) as store:
        store.import_records(list(make_records.records(count, seed=1, template=template))[start:])


def _rows(index):
    order = np.argsort(index.keys)
    return index.keys[order].tolist(), np.nan_to_num(np.asarray(index.values)[order], nan=-1.0)


def _assert_rebuilt_as_built(location):
    """A new process's first search index of ``location`` is rebuilt, and equals a build."""
    saved_module._RECENT.clear()
    with FingerprintStore.open(location) as store:
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "rebuilt"
        assert _rows(index)[0] == _rows(build_index(store, "streaming", KEY))[0]


def _shared_keys(url):
    import redis

    return sorted(redis.Redis.from_url(url).scan_iter(match="fpcli:meta:shared:*"))


def test_a_second_client_copies_the_shared_index_instead_of_reading_every_record(redis_url, template, client):
    _fill(redis_url, template, 60)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        shared = share_indexes(store, KEY)
        assert [item["kind"] for item in shared] == ["streaming", "batch"] and all(item["bytes"] > 0 for item in shared)
        built, _ = current_index(store, "streaming", KEY)
    client("b")
    with FingerprintStore.open(redis_url) as store:
        store.read_record = lambda key: pytest.fail("read a record")   # no record is read: the copy is current
        copied, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["index_fetched"], info["records_read"]) == ("loaded", True, 0)
    assert _rows(copied)[0] == _rows(built)[0]
    np.testing.assert_array_equal(_rows(copied)[1], _rows(built)[1])
    np.testing.assert_array_equal(copied.terms(), built.terms())          # recomputed, not copied
    with FingerprintStore.open(redis_url) as store:
        files = store.backend.shared_header(STEM)["files"]
        assert "terms" not in files and "content_words" not in files and "embedded" in files
        # ... and saved by the copying client, so that its next process maps them:
        saved = json.loads((store.backend.index_dir / f"{STEM}.json").read_text())
        assert {"terms", "content_words", "embedded", "timbre_logdets"} <= set(saved["derived"])
    with FingerprintStore.open(redis_url) as store:
        assert _rows(build_index(store, "streaming", KEY))[0] == _rows(copied)[0]


def test_the_copy_is_brought_up_to_date_from_the_journal(redis_url, template, client):
    _fill(redis_url, template, 40)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        share_indexes(store, KEY)
    _fill(redis_url, template, 45, start=40)        # 5 more records
    client("b")
    with FingerprintStore.open(redis_url) as store:
        index, info = current_index(store, "streaming", KEY)
        assert info["index_fetched"] and info["index"] in ("patched", "refreshed")
        assert info["records_read"] == 5
        assert _rows(index)[0] == _rows(build_index(store, "streaming", KEY))[0]


def test_nothing_is_shared_until_asked_and_stop_removes_it(redis_url, template, client):
    _fill(redis_url, template, 30)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        current_index(store, "streaming", KEY)
        assert _shared_keys(redis_url) == []
        share_indexes(store, KEY)
        assert _shared_keys(redis_url)
        freed = unshare_indexes(store, KEY)
        assert all(item["bytes"] > 0 for item in freed)
    assert _shared_keys(redis_url) == []
    client("b")
    with FingerprintStore.open(redis_url) as store:
        _, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["index_fetched"]) == ("built", False)


def test_a_stop_with_nothing_shared_says_so(redis_url, template):
    from typer.testing import CliRunner

    from fpcli.cli import app

    _fill(redis_url, template, 3)
    stop = ["--store", redis_url, "cache", "share-index", "--stop"]
    assert CliRunner().invoke(app, stop[:-1]).exit_code == 0   # shared
    assert "stopped sharing the search index" in CliRunner().invoke(app, stop).stderr
    again = CliRunner().invoke(app, stop)
    assert again.exit_code == 0 and "no search index is shared: nothing to stop" in again.stderr, again.stderr


def _shared_by_a(redis_url, template, client):
    """A store of 30 records whose client "a" shared its index: (a Redis connection, the
    shared header of the streaming index)."""
    import redis

    _fill(redis_url, template, 30)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        share_indexes(store, KEY)
    raw = redis.Redis.from_url(redis_url)
    return raw, json.loads(raw.get(f"fpcli:meta:shared:{STEM}"))


def _builds_its_own(redis_url, client, name):
    client(name)
    with FingerprintStore.open(redis_url) as store:
        _, info = current_index(store, "streaming", KEY)
    return (info["index"], info["index_fetched"]) == ("built", False)


def test_a_damaged_shared_copy_is_never_used(redis_url, template, client, tmp_path):
    raw, header = _shared_by_a(redis_url, template, client)
    chunk = f"fpcli:meta:shared:{STEM}:{header['token']}:values:0"
    raw.setrange(chunk, 200, b"\xff\xff\xff\xff")     # one float changed: the checksum fails
    assert _builds_its_own(redis_url, client, "b")
    assert not list(tmp_path.rglob(".fpcli-shared-*"))         # no partial copy left behind


def test_hostile_headers_are_refused(redis_url, template, client, tmp_path):
    raw, good = _shared_by_a(redis_url, template, client)
    entry = good["files"]["values"]
    hostile = [
        {**good, "files": {"../../escape": entry}},                  # a path made of a file name
        {**good, "token": "*"},                                        # a glob for the chunk keys
        {**good, "files": {"values": {**entry, "chunks": 10**9}}},     # endless reads
        {**good, "files": {"values": {**entry, "sha256": "x"}}},
        {**good, "index": {**good["index"], "generation": "soon"}},    # the saved header's types
        {**good, "index": {**good["index"], "epoch": None}},
        {**good, "ascii": ["values"]},                                 # numbers "widened" to text
        {**good, "ascii": 7},
    ]
    for number, header in enumerate(hostile):
        raw.set(f"fpcli:meta:shared:{STEM}", json.dumps(header))
        assert _builds_its_own(redis_url, client, f"b{number}"), header
    raw.set(f"fpcli:meta:shared:{STEM}", json.dumps({**good, "index": {**good["index"], "rows": "many"}}))
    stats = CliRunner().invoke(app, ["--store", redis_url, "cache", "stats"])
    assert stats.exit_code == 0 and "streaming unreadable" in stats.output, stats.output
    raw.set(f"fpcli:meta:shared:{STEM}", b"\x00 not json")
    assert _builds_its_own(redis_url, client, "c")
    assert not list((tmp_path / "cache-b0").rglob("*escape*")) and not list(tmp_path.rglob(".fpcli-shared-*"))


def test_a_client_shares_again_when_far_ahead_or_rebuilt(redis_url, template, client, monkeypatch):
    _fill(redis_url, template, 30)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        share_indexes(store, KEY)
        first = store.backend.shared_header(STEM)["index"]["generation"]
    monkeypatch.setattr(saved_module, "SHARE_LAG", 6)
    # 2 records: 4 changes (each journaled before and after its write), within the lag: not shared again
    _fill(redis_url, template, 32, start=30)
    with FingerprintStore.open(redis_url) as store:
        _, info = current_index(store, "streaming", KEY)
        assert info["index_shared_bytes"] == 0
        assert store.backend.shared_header(STEM)["index"]["generation"] == first
    _fill(redis_url, template, 36, start=32)        # 4 more: ahead by 12 changes
    with FingerprintStore.open(redis_url) as store:
        index, info = current_index(store, "streaming", KEY)
        assert info["index_shared_bytes"] > 0
        assert store.backend.shared_header(STEM)["index"]["generation"] == index.generation
        store.clear()                               # a new epoch: the copy cannot be replayed
        assert _shared_keys(redis_url) == []


def test_a_replaced_set_is_never_read_as_a_mix(redis_url, tmp_path):
    import redis

    text, binary = redis.Redis.from_url(redis_url, decode_responses=True), redis.Redis.from_url(redis_url)
    sets = RedisFileSets(lambda f, *a, **k: f(*a, **k), text, binary, "test:shared:")
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(b"1" * 100)
    two.write_bytes(b"2" * 100)
    assert sets.share("s", {"data": one}, {"n": 1}) == 100
    old = sets.header("s")
    assert sets.share("s", {"data": two}, {"n": 2}) == 100
    assert sets.fetch("s", old, tmp_path) is None                 # its chunks went with it
    copied = sets.fetch("s", sets.header("s"), tmp_path)
    assert copied["data"].read_bytes() == b"2" * 100
    assert set(text.scan_iter(match="test:shared:*")) == {f"test:shared:s:{sets.header('s')['token']}:data:0",
                                                          "test:shared:s"}
    assert sets.remove("s") == 100 and list(text.scan_iter(match="test:shared:*")) == []


def test_the_command(redis_url, template, client, tmp_path):
    _fill(redis_url, template, 20)
    client("a")
    runner = CliRunner()
    query = write(tmp_path / "query.flac", synth.music_like(2.0, 22050, seed=3), 22050)
    assert runner.invoke(app, ["--store", redis_url, "analyze", str(query)]).exit_code == 0
    result = runner.invoke(app, ["--store", redis_url, "cache", "share-index", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    with FingerprintStore.open(redis_url) as store:
        rows = len(build_index(store, "streaming", KEY))
    assert report["shared"] and {item["kind"]: item["rows"] for item in report["indexes"]}["streaming"] == rows
    client("b")
    searched = runner.invoke(app, ["--store", redis_url, "search", str(query), "-k", "3"])
    assert searched.exit_code == 0 and "copied from the store's shared index" in searched.output, searched.output
    stats = runner.invoke(app, ["--store", redis_url, "cache", "stats"])
    assert f"streaming {rows:,} rows" in stats.output, stats.output
    result = runner.invoke(app, ["--store", redis_url, "cache", "share-index", "--stop"])
    assert result.exit_code == 0 and "stopped sharing" in result.output
    assert "off (fpcli cache share-index)" in runner.invoke(app, ["--store", redis_url, "cache", "stats"]).output
    new_store(tmp_path / "disk")
    result = runner.invoke(app, ["--store", str(tmp_path / "disk"), "cache", "share-index"])
    assert result.exit_code == 0 and "nothing to share" in result.output
    assert "shared index" not in runner.invoke(app, ["--store", str(tmp_path / "disk"), "cache", "stats"]).output


def test_an_import_updates_the_shared_index(redis_url, template, client, tmp_path):
    from fpcli.store.schema import record_to_json

    _fill(redis_url, template, 20)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        share_indexes(store, KEY)
    export = tmp_path / "more.jsonl"
    more = list(make_records.records(50, seed=1, template=template))[20:]
    lines = [{"type": "fpcli-store-export", "version": 2}]
    lines += [{"type": "record", "data": record_to_json(record)} for record in more]
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = CliRunner().invoke(app, ["--store", redis_url, "cache", "import", str(export)])
    assert result.exit_code == 0 and "shared index updated" in result.output, result.output
    client("b")
    with FingerprintStore.open(redis_url) as store:
        index, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["index_fetched"], info["records_read"]) == ("loaded", True, 0)
        assert _rows(index)[0] == _rows(build_index(store, "streaming", KEY))[0]


@pytest.mark.parametrize("change", [{"derived": 5}, {"epoch": 7}, {"generation": "soon"}, {"rows": None},
                                    {"timbre_scales": "x"}, {"changed_since_fit": []}])
def test_a_saved_header_of_the_wrong_types_is_never_a_crash(template, tmp_path, change):
    """A saved index header with fields of the wrong type (another program, a tampered
    copy) is read without a traceback: loaded without what is wrong, or built again."""
    location = str(tmp_path / "store")
    with FingerprintStore.open(location) as store:
        store.import_records(list(make_records.records(20, seed=1, template=template)))
        built, _ = current_index(store, "streaming", KEY)
        header_path = store.backend.index_dir / f"{STEM}.json"
        header_path.write_text(json.dumps({**json.loads(header_path.read_text()), **change}))
        saved_module._RECENT.clear()
        index, _ = current_index(store, "streaming", KEY)
        assert sorted(index.keys.tolist()) == sorted(built.keys.tolist())


def test_an_index_folder_that_cannot_be_written_is_a_clear_error(redis_url, template, tmp_path, monkeypatch):
    _fill(redis_url, template, 10)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    result = CliRunner().invoke(app, ["--store", redis_url, "cache", "share-index"])
    # An FpcliError: `fpcli` (cli.main) prints it as one line, exit code 1, no traceback.
    assert isinstance(result.exception, FpcliError) and "could not be saved in" in str(result.exception)
    assert _shared_keys(redis_url) == []
    new_store(tmp_path / "disk")
    disk = CliRunner().invoke(app, ["--store", str(tmp_path / "disk"), "cache", "share-index", "--json"])
    assert disk.exit_code == 0 and json.loads(disk.stdout) == {
        "shared": False, "indexes": [], "reason": json.loads(disk.stdout)["reason"]}


def test_an_index_built_from_every_record_reports_its_progress(template, tmp_path, monkeypatch):
    """Minutes at a million records are never silent: ``build_index`` reports the start
    (with the store's record count) and every BUILD_CHUNK rows; `fpcli search` says so."""
    from fpcli.search import index as index_module

    location = str(tmp_path / "store")
    with FingerprintStore.open(location) as store:
        store.import_records(list(make_records.records(25, seed=1, template=template)))
        monkeypatch.setattr(index_module, "BUILD_CHUNK", 10)
        heard: list[tuple[int, int | None]] = []
        index = build_index(store, "streaming", KEY, lambda rows, total: heard.append((rows, total)))
        assert heard[0] == (0, 25) and [rows for rows, _ in heard[1:]] == list(range(10, len(index) + 1, 10))
    runner = CliRunner()
    query = write(tmp_path / "query.flac", synth.music_like(2.0, 22050, seed=3), 22050)
    first = runner.invoke(app, ["--store", location, "search", str(query), "-k", "2"])
    assert first.exit_code == 0 and "building the streaming search index from every record (26 in the store)" \
        in first.output, first.output
    again = runner.invoke(app, ["--store", location, "search", str(query), "-k", "2"])
    assert again.exit_code == 0 and "building" not in again.output


def test_a_redis_store_whose_keys_were_lost_never_serves_the_old_index(redis_url, template, client):
    """FLUSHDB or a restart without persistence empties the namespace; refilled to the
    same generation, it must not pass for the store a client's saved index was built
    from (the epoch used to restart at 0 and the stale index was loaded as current)."""
    import redis

    client("a")
    _fill(redis_url, template, 20)
    with FingerprintStore.open(redis_url) as store:
        current_index(store, "streaming", KEY)
    redis.Redis.from_url(redis_url).flushdb()
    _fill(redis_url, template, 40, start=20)          # 20 other records: the same generation again
    _assert_rebuilt_as_built(redis_url)


def test_a_redis_back_from_an_older_snapshot_never_serves_the_old_index(template, tmp_path, client):
    """A Redis restarted from an older snapshot (or failed over to a replica that was
    behind) goes back to an older generation; refilled by other records to the number a
    client's saved index had, that index (records since lost, none of those written
    since) was loaded as current: a search answered with 4 hits of 9, exit 0."""
    import contextlib
    import socket
    import subprocess
    import time

    import redis

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--appendonly", "no",
            "--save", ""]

    def start():
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(250):
            try:
                redis.Redis(port=port).ping()
                return process
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    url = f"redis://127.0.0.1:{port}/0"
    server = start()
    try:
        client("a")
        _fill(url, template, 20)
        redis.Redis(port=port).save()                   # the snapshot: 20 records
        snapshot = (tmp_path / "dump.rdb").read_bytes()
        # An ordinary restart first (the data kept): an epoch counted up from the
        # snapshot's would be the same number again after the restore below.
        with contextlib.suppress(redis.exceptions.ConnectionError):
            redis.Redis(port=port).shutdown(save=True)
        server.wait(10)
        server = start()
        _fill(url, template, 25, start=20)
        with FingerprintStore.open(url) as store:
            assert current_index(store, "streaming", KEY)[1]["index"] == "built"   # and saved, at generation 25
        server.kill()                                   # no save on the way out: back to the snapshot
        server.wait(10)
        (tmp_path / "dump.rdb").write_bytes(snapshot)
        server = start()
        _fill(url, template, 30, start=25)              # 5 other records: the same generation again
        _assert_rebuilt_as_built(url)
    finally:
        server.kill()
        server.wait(10)


def test_a_meta_part_rebuilt_empty_never_serves_the_old_index(template, tmp_path):
    """The diskcache analogue: a damaged meta part (counters and journal) that a repair
    rebuilds empty restarted the epoch and the generation at 0."""
    import shutil

    location = str(tmp_path / "store")
    _fill(location, template, 20)
    with FingerprintStore.open(location) as store:
        current_index(store, "streaming", KEY)
    shutil.rmtree(tmp_path / "store" / "meta")
    _fill(location, template, 40, start=20)           # the generation is 20 again
    _assert_rebuilt_as_built(location)


@pytest.mark.parametrize("lost_by", ["deleting its folder", "emptying its database file"])
def test_a_data_part_deleted_never_serves_the_old_index(template, tmp_path, lost_by):
    """The data part removed by hand (the meta part kept), or its database file emptied
    (0 bytes: SQLite's empty database): the store was made again empty under the same
    epoch, and search loaded the saved index of 20 records that were gone (no hits,
    exit 0, "index refreshed, 4 tracks")."""
    import shutil

    location = str(tmp_path / "store")
    _fill(location, template, 20)
    with FingerprintStore.open(location) as store:
        current_index(store, "streaming", KEY)
    if lost_by == "deleting its folder":
        shutil.rmtree(tmp_path / "store" / "data")
    else:
        (tmp_path / "store" / "data" / "cache.db").write_bytes(b"")
    _fill(location, template, 23, start=20)
    saved_module._RECENT.clear()
    with FingerprintStore.open(location) as store:
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "rebuilt" and len(_rows(index)[0]) == 3


@pytest.mark.parametrize("repair_by", ["salvage", "rebuild"])
def test_a_data_part_rebuilt_never_serves_the_old_index(template, tmp_path, repair_by):
    """A damaged data database rebuilt by `cache verify --repair` (``salvage`` when the
    store cannot open, ``rebuild`` when it opens) has lost what could not be read, while
    the meta part kept its epoch and generation: the saved index passed for current and
    search answered from rows whose records were gone (no hits, exit 0)."""
    from fpcli.store.diskcache_sqlite import salvage

    location = str(tmp_path / "store")
    _fill(location, template, 20)
    with FingerprintStore.open(location) as store:
        current_index(store, "streaming", KEY)
    database = tmp_path / "store" / "data" / "cache.db"
    if repair_by == "salvage":
        database.write_bytes(database.read_bytes()[:5000])     # cannot even open
        assert salvage(location)["moved_aside"] == 1
    else:
        from fpcli.store import repair

        damaged = bytearray(database.read_bytes())
        damaged[-8192:-4096] = b"\xff" * 4096                  # a page of records: opens, fails its check
        database.write_bytes(bytes(damaged))
        with FingerprintStore.open(location) as store:
            assert repair(store, tmp_path / "quarantine.jsonl")["rebuilt"] > 0
    _assert_rebuilt_as_built(location)


def test_odd_paths_come_back_from_a_shared_copy(redis_url, template, client):
    """Paths that are not UTF-8, hold a newline, lie outside the BMP or are long travel
    through the shared copy (keys and digests go as ASCII; paths as saved)."""
    import dataclasses

    odd = ["/m/caf\u00e9 \u2603 \U0001f600.flac", "/m/\udcff\udcfe.flac", "/m/line\nbreak.flac",
           "/m/" + "long name [x] " * 40 + ".flac"]
    records = list(make_records.records(12, seed=3, template=template))
    records[:4] = [dataclasses.replace(r, paths=(dataclasses.replace(r.paths[0], path=p),))
                   for r, p in zip(records, odd, strict=False)]
    with FingerprintStore.open(redis_url) as store:
        store.import_records(records)
    client("a")
    with FingerprintStore.open(redis_url) as store:
        share_indexes(store, KEY)
        built = build_index(store, "streaming", KEY)
    client("b")
    with FingerprintStore.open(redis_url) as store:
        copied, info = current_index(store, "streaming", KEY)
    assert info["index_fetched"] and set(odd) <= set(copied.paths.tolist())
    assert sorted(copied.paths.tolist()) == sorted(built.paths.tolist())
