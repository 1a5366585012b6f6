"""The store contract, run on both backends (diskcache and a real Redis), plus the
Redis-only behaviours: shared counters, eviction policy, restart, bad URLs."""

import dataclasses
import itertools
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.analyze import Want, compute, fingerprint_of
from fpcli.cli import app
from fpcli.errors import StoreFullError
from fpcli.library import RunOptions, run_library
from fpcli.params import AnalysisParams
from fpcli.search import current_index, search
from fpcli.store import FingerprintStore, Need, StoreError, export_store, import_store, prune, verify
from fpcli.store.schema import record_to_json
from fpcli.store.spec import StoreSpec
from fpcli.validate import validate_library
from tests.conftest import RedisServer, write

runner = CliRunner()

KEY = AnalysisParams().key()
NEED = Need(KEY)



@pytest.fixture
def tracks(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    return [write(folder / f"t{i}.flac", synth.music_like(2.0, 22050, seed=i), 22050) for i in range(4)]


def _save(store, path, batch=False):
    found = store.lookup(path, NEED)
    return store.save(*compute(path, Want(batch=batch), found.identity))


def test_hit_miss_and_shared_counters(location, tracks):
    with FingerprintStore.open(location) as store:
        assert store.lookup(tracks[0], NEED).record is None
        _save(store, tracks[0])
        assert store.lookup(tracks[0], NEED).record is not None
    with FingerprintStore.open(location) as again:  # a second client sees the same counters
        stats = again.stats()
        assert (stats["hits"], stats["misses"], stats["entries"]) == (1, 2, 1)  # _save looks up too


def test_identity_rules(location, tracks, tmp_path):
    with FingerprintStore.open(location) as store:
        _save(store, tracks[0])
        moved = tmp_path / "moved.flac"
        os.rename(tracks[0], moved)
        assert store.lookup(moved, NEED).record is not None
        write(moved, synth.music_like(2.0, 22050, seed=99), 22050)
        assert store.lookup(moved, NEED).record is None
        assert store.lookup(tracks[1], Need(AnalysisParams(n_mel_bands=32).key())).record is None


def test_failures_prune_verify_clear(location, tracks):
    with FingerprintStore.open(location) as store:
        for path in tracks[:3]:
            _save(store, path)
        store.save_failure(tracks[3], None, "AudioReadError", "broken")  # a file the store cannot answer
        assert store.lookup(tracks[3], NEED).failure.message == "broken"
        os.remove(tracks[2])
        assert [p.reason for p in prune(store)] == ["gone"]
        assert verify(store) == []
        assert store.clear() >= 3
        assert store.stats()["entries"] == 0


def test_export_import_across_backends(location, tracks, tmp_path, redis_url):
    other = str(tmp_path / "disk") if location.startswith("redis") else redis_url
    with FingerprintStore.open(location) as source:
        for path in tracks:
            _save(source, path, batch=True)
        export_store(source, tmp_path / "dump.jsonl")
        originals = sorted(json.dumps(record_to_json(r), sort_keys=True) for r in source.records())
    with FingerprintStore.open(other) as target:
        target.clear()
        report = import_store(target, tmp_path / "dump.jsonl")
        assert report.rejected == [] and report.records == 4
        assert sorted(json.dumps(record_to_json(r), sort_keys=True) for r in target.records()) == originals
        export_store(target, tmp_path / "back.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "back.jsonl").read_text().splitlines()[1:]]
    assert sorted(json.dumps(x["data"], sort_keys=True) for x in lines) == originals


def test_search_index_refresh_works_on_both(location, tracks):
    with FingerprintStore.open(location) as store:
        for path in tracks[:3]:
            _save(store, path)
        _, info = current_index(store, "streaming", KEY)
        assert info["rows"] == 3
        _save(store, tracks[3])
        _, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["records_read"], info["rows"]) == ("refreshed", 1, 4)
        # A search reads its query's record by key: it never lists the store's keys
        # (a scan of every key on Redis, seconds per query at a million records).
        store.backend.keys = lambda prefix="": pytest.fail(f"listed keys {prefix!r}")
        assert len(search(store, tracks[0], k=2, strategy="fast").hits) == 2


def test_library_run_on_both(location, tracks):
    with FingerprintStore.open(location) as store:
        first = run_library([os.path.dirname(tracks[0])], store, RunOptions(jobs=2))
        second = run_library([os.path.dirname(tracks[0])], store, RunOptions(jobs=2))
    assert (first.analysed, second.cached) == (4, 4)


def _client_writes(url, folder, start):
    with FingerprintStore.open(url) as store:
        for i in range(start, start + 50):
            path = os.path.join(folder, f"{i}.flac")
            fingerprint_of(store, path)


def test_two_clients_share_one_redis_store(redis_url, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(100):
        write(folder / f"{i}.flac", synth.sine(200 + i, 0.2, 8000), 8000)
    context = multiprocessing.get_context("spawn")
    clients = [context.Process(target=_client_writes, args=(redis_url, str(folder), k * 50)) for k in (0, 1)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(120)
        assert c.exitcode == 0
    with FingerprintStore.open(redis_url) as store:
        stats = store.stats()
        assert (stats["entries"], stats["misses"]) == (100, 100)
        assert verify(store) == []


def test_a_record_whose_journal_entry_failed_after_its_write_is_journaled(location, tracks, monkeypatch):
    """A record's journal entry was written after the record alone: a full disk there
    (or a kill between the two) left a record that no search index ever read, and
    verify called the store sound. It is now journaled before its write too."""
    with FingerprintStore.open(location) as store:
        start = store.generation()
        real, calls = store.backend.journal_extend, []

        def second_fails(keys, **how):
            calls.append(list(keys))
            if len(calls) == 2:
                raise StoreError("database or disk is full")
            return real(keys, **how)

        monkeypatch.setattr(store.backend, "journal_extend", second_fails)
        with pytest.raises(StoreError, match="full"):
            _save(store, tracks[0])
        monkeypatch.undo()
        (key,) = calls[0]
        assert key.startswith("rec:") and store.read_record(key) is not None   # stored ...
        assert store.changes_since(start) == [key]                             # ... and journaled


def test_a_journal_behind_an_index_cannot_say_what_changed(location, tracks):
    """A generation counter restarted below an index's (damaged, then reset by a
    repair): diskcache answered "nothing changed" and kept the stale index current until
    the counter passed its old value; Redis said it could not tell (a rebuild)."""
    with FingerprintStore.open(location) as store:
        _save(store, tracks[0])
        assert store.changes_since(store.generation()) == []
        assert store.changes_since(store.generation() + 5) is None


def test_a_redis_that_stops_answering_is_not_called_unreachable(redis_url):
    """A server paused mid-run (DEBUG SLEEP) was reported as "cannot connect"."""
    import redis

    def silent():
        raise redis.exceptions.TimeoutError("Timeout reading from socket")

    def refused():
        raise redis.exceptions.ConnectionError("Error 111 connecting to localhost:1. Connection refused.")

    with FingerprintStore.open(redis_url) as store:
        with pytest.raises(StoreError, match="stopped answering \\(Timeout reading from socket\\)"):
            store.backend._call(silent)
        with pytest.raises(StoreError, match="cannot connect"):   # the server answers again: tried
            store.backend._call(refused)


def test_a_ttl_under_a_second_expires_a_redis_record_in_one(redis_url, tracks):
    """Redis counts whole seconds: a TTL is rounded up (1.5 s read as 1), never down to
    none or to the default expiry of a year."""
    with FingerprintStore.open(redis_url, ttl_s=0.5) as store:
        record = _save(store, tracks[0])
        client = store.backend._client   # the store's own client: the key as it is in Redis
        assert 0 < client.ttl(store.backend._data + record.key) <= 1


def test_redis_ttl_expires_records(redis_url, tracks):
    with FingerprintStore.open(redis_url, ttl_s=1) as store:
        _save(store, tracks[0])
        assert store.lookup(tracks[0], NEED).record is not None
        time.sleep(1.3)
        assert store.lookup(tracks[0], NEED).record is None
        assert store.stats()["expiries"] >= 1


@pytest.mark.parametrize("key,damage", [
    ("generation", ("set", "abc")), ("census", ("set", "xyz")), ("journal", ("set", "1")),
    ("shared", ("set", "1")), ("epoch", ("hset", "e", "1")), ("hits", ("rpush", "1")),
])
def test_redis_meta_keys_of_the_wrong_kind_are_mended_on_open(redis_url, tracks, key, damage):
    """A meta key overwritten with another Redis type or a counter with text in it
    stopped every command (WRONGTYPE, "not an integer", a ValueError traceback from the
    journal), `cache verify --repair` and `cache clear` included. They are reset when
    the store opens; a damaged journal or generation moves the epoch on, so a search
    index saved before is rebuilt, not trusted."""
    import redis

    with FingerprintStore.open(redis_url) as store:
        _save(store, tracks[0])
        index, _ = current_index(store, "streaming", KEY)
        epoch = store.index_epoch()
    client = redis.Redis.from_url(redis_url)
    client.delete(f"fpcli:meta:{key}")
    getattr(client, damage[0])(f"fpcli:meta:{key}", *damage[1:])
    with FingerprintStore.open(redis_url) as store:
        _save(store, tracks[1])
        assert store.lookup(tracks[0], NEED).record is not None
        assert store.stats(recount=True)["entries"] == 2
        _, info = current_index(store, "streaming", KEY)
        if key in ("generation", "journal", "epoch"):
            assert store.index_epoch() != epoch and info["index"] == "rebuilt"
        assert verify(store) == []
        assert store.clear() > 0 and store.stats()["entries"] == 0


def test_redis_eviction_keeps_shared_counters(tmp_path, tracks):
    import redis

    server = RedisServer(tmp_path / "small")
    try:
        redis.Redis(port=server.port).config_set("maxmemory", 3 * 2**20)
        with FingerprintStore.open(server.url) as store:
            record = record_to_json(_save(store, tracks[0]))
            for i in range(4000):  # far more than 3 MiB of records
                store.backend.put(f"rec:{i:032x}:{KEY}", json.dumps({**record, "padding": "x" * 1000}))
            store.backend.add_counters({"hits": 7})
            stats = store.stats()
            assert stats["evictions"] > 0 and stats["entries"] < 4000
            # no policy warning; the census kept since the store was new says Redis evicted
            assert stats["hits"] == 7 and [w for w in stats["warnings"] if "counted again" not in w] == []
            assert not stats["census_exact"]
            assert store.generation() > 0  # the journal (meta) was not evicted
    finally:
        server.stop()


def test_redis_restart_mid_run_retries_and_loses_nothing(tmp_path, tracks):
    server = RedisServer(tmp_path / "restart")
    try:
        with FingerprintStore.open(server.url) as store:
            for path in tracks[:2]:
                _save(store, path)

            def restart():
                server.stop()
                time.sleep(0.5)
                server.start()

            thread = threading.Thread(target=restart)
            thread.start()
            time.sleep(0.1)
            for path in tracks[2:]:  # issued while Redis is down: retried until it is back
                _save(store, path)
            thread.join()
            assert store.stats()["entries"] == 4
    finally:
        server.stop()


def test_redis_down_is_one_clear_error(tmp_path):
    server = RedisServer(tmp_path / "gone")
    server.stop()
    started = time.monotonic()
    with pytest.raises(StoreError, match=f"Redis at 127.0.0.1:{server.port}: cannot connect"):
        FingerprintStore.open(server.url)
    assert time.monotonic() - started < 30


def test_a_redis_given_up_on_fails_every_later_command_at_once(tmp_path):
    """A run whose Redis went away retried each write and tidy-up on its way out, 4 s
    each: 13-17 s from the outage to its one error line, its workers analysing on.
    Until the server answers again: then the store works as before."""
    server = RedisServer(tmp_path / "lost")
    try:
        store = FingerprintStore.open(server.url)
        server.stop()
        with pytest.raises(StoreError, match="cannot connect"):
            store.backend.counter("hits")      # through the retries (about 4 s)
        started = time.monotonic()
        for _ in range(3):
            with pytest.raises(StoreError, match=f"Redis at 127.0.0.1:{server.port}: cannot connect"):
                store.stats()
        assert time.monotonic() - started < 1.0
        # Back: a store kept open (a Dask worker keeps one for its life) works again.
        server.start()
        assert store.stats()["entries"] == 0
        store.close()
    finally:
        server.stop()


def test_wrong_password_and_bad_urls(tmp_path, monkeypatch):
    server = RedisServer(tmp_path / "auth", password="s3cret")
    try:
        with pytest.raises(StoreError, match="authentication failed"):
            FingerprintStore.open(f"redis://:wrong@127.0.0.1:{server.port}/0")
        monkeypatch.setenv("FPCLI_REDIS_PASSWORD", "s3cret")
        with FingerprintStore.open(f"redis://127.0.0.1:{server.port}/0") as store:
            assert store.location == f"redis://127.0.0.1:{server.port}/0"
        with FingerprintStore.open(server.url) as store:
            assert "s3cret" not in store.location
    finally:
        server.stop()
    with pytest.raises(StoreError, match="not a Redis URL"):
        FingerprintStore.open("redis://")
    with pytest.raises(StoreError, match="database must be a number"):
        FingerprintStore.open("redis://localhost:6379/zero")


@pytest.mark.parametrize("location,message", [
    ("redis:/127.0.0.1:6379/0", "write a Redis URL as redis://host:port/db"),
    ("REDIS://127.0.0.1:6379/0", "write a Redis URL as redis://host:port/db"),
    ("http://example.org/store", "not http://"),
])
def test_a_location_that_looks_like_a_url_is_refused(tmp_path, monkeypatch, location, message):
    """It used to become a folder of that name (./redis:/127.0.0.1:6379/0): a typo
    of the Redis URL silently stored everything locally."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StoreError, match=message):
        FingerprintStore.open(location)
    assert os.listdir(tmp_path) == []


def test_folders_with_colons_are_still_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for location in ("./http:/x", "C:/Music"):   # the way to name such a folder; a Windows drive
        with FingerprintStore.open(location) as store:
            assert os.path.isdir(store.location)


def test_repair_of_records_overwritten_from_outside_leaves_the_counts_right(redis_url, tracks, tmp_path):
    """Records replaced by junk from outside fpcli (redis-cli SET) are removed by a
    repair; the census had counted them as records and could not tell what it
    removed: stats said 24 entries where 21 were left, as exact."""
    import redis

    from fpcli.store import repair

    with FingerprintStore.open(redis_url) as store:
        store.clear()
        for track in tracks:
            _save(store, track)
        client = redis.Redis.from_url(redis_url)
        for key in list(store.backend.keys("rec:"))[:2]:
            client.set(f"fpcli:data:{key}", '{"garbage":')
        assert repair(store, tmp_path / "q.jsonl")["quarantined"] == 2
        stats = store.stats()
        assert stats["entries"] == 2 == sum(1 for _ in store.records()) and stats["census_exact"]
        assert verify(store) == []


def test_a_repair_that_cannot_write_its_quarantine_file_removes_nothing(redis_url, tracks, tmp_path):
    """On Redis the quarantine file goes to the current folder: a read-only one gave a
    traceback (OSError: Read-only file system)."""
    import redis

    from fpcli.store import repair

    with FingerprintStore.open(redis_url) as store:
        for track in tracks:
            _save(store, track)
        key = next(iter(store.backend.keys("rec:")))
        redis.Redis.from_url(redis_url).set(f"fpcli:data:{key}", '{"garbage":')
        with pytest.raises(StoreError, match="cannot write the quarantine file .* nothing was removed"):
            repair(store, tmp_path / "no such folder" / "q.jsonl")
        assert store.backend.get(key) == '{"garbage":'


def test_a_key_of_another_redis_type_is_one_bad_entry(redis_url, tracks, tmp_path):
    """A list pushed under a record key and a set under a path key (redis-cli RPUSH,
    SADD) stopped every run with "WRONGTYPE Operation against a key holding the wrong
    kind of value": analyze after 4 files, cache show, stats --recount, the repair."""
    import redis

    from fpcli.store import repair

    with FingerprintStore.open(redis_url) as store:
        for track in tracks:
            _save(store, track)
        client = redis.Redis.from_url(redis_url)
        record_key, other_record = list(store.backend.keys("rec:"))[:2]
        path_key = next(iter(store.backend.keys("path:")))
        for key in (record_key, path_key):
            client.delete(f"fpcli:data:{key}")
        client.rpush(f"fpcli:data:{record_key}", "x")
        client.sadd(f"fpcli:data:{path_key}", "x")
        assert store.read_record(record_key) is None and store.bad_entries   # one bad entry, said
        assert "another type" in str(store.bad_entries[-1])
        store.stats(recount=True)
        named = {p.key for p in verify(store) if p.key}   # verify passed over them (MGET gives nothing)
        assert {record_key, path_key} <= named
        assert all(store.lookup(track, NEED) is not None for track in tracks)   # (may rewrite the path entry)
        repair(store, tmp_path / "q.jsonl")
        assert verify(store) == []
        assert {client.type(k) for k in client.scan_iter("fpcli:data:*")} == {b"string"}
        client.delete(f"fpcli:data:{other_record}")
        client.rpush(f"fpcli:data:{other_record}", "x")
    result = runner.invoke(app, ["--store", redis_url, "analyze", "--force", "--json", *map(str, tracks)])
    assert result.exit_code == 0, result.output
    assert result.stdout.count('"status": "ok"') == len(tracks)


def test_verify_finds_counts_an_outside_write_left_wrong_and_repair_counts_again(redis_url, tracks, tmp_path):
    """A record replaced by junk from outside (redis-cli SET), then written again by a
    run: the write counted one record more and took nothing off, so stats said one
    entry too many while verify called the store sound and repair changed nothing."""
    import redis

    from fpcli.store import repair

    with FingerprintStore.open(redis_url) as store:
        store.clear()
        for track in tracks:
            _save(store, track)
        client = redis.Redis.from_url(redis_url)
        [key] = [k for k in store.backend.keys("rec:") if store.read_record(k).path == tracks[0]]
        client.set(f"fpcli:data:{key}", "not json{")
        _save(store, tracks[0])   # the run that writes it again
        assert store.stats()["entries"] == len(tracks) + 1
        [problem] = verify(store)
        assert str(problem).startswith("census:") and f"entries {len(tracks) + 1} counted, {len(tracks)} found" \
            in str(problem)
        assert repair(store, tmp_path / "q.jsonl")["census"] == 1
        assert store.stats()["entries"] == len(tracks) and verify(store) == []
        # through the command: the quarantine file is named only when something went into it
        _save(store, tracks[0])
        client.hincrby("fpcli:meta:census", "rec:v5:---", 1)   # a count off, nothing bad to keep
    repaired = CliRunner().invoke(app, ["--store", redis_url, "cache", "verify", "--repair"])
    assert "census counted again" in repaired.output and "saved to" not in repaired.output, repaired.output
    assert not list(tmp_path.glob("quarantine*")) and not list(Path().glob("quarantine-*.jsonl"))


def test_a_preview_saved_while_another_process_saves_the_whole_track_keeps_it_whole(location, tracks):
    """save read the record, merged and wrote it with nothing in between guarded: a
    preview run whose read came just before another run's complete record overwrote
    that record with its preview ("a record is never replaced by one that heard less"
    broke in 3 of 8 concurrent runs). The write is now a compare-and-swap."""
    path = tracks[0]
    with FingerprintStore.open(location) as store, FingerprintStore.open(location) as other:
        identity, preview = compute(path, Want(seconds=0.5), store.lookup(path, NEED).identity)
        _, whole = compute(path, Want(), identity)
        assert not preview.streaming.complete and whole.streaming.complete
        key = f"rec:{identity.digest}:{KEY}"
        real_get, raced = store.backend.get, []

        def get_then_race(entry_key):
            text = real_get(entry_key)
            if entry_key == key and not raced:     # the other run saves right after this read
                raced.append(other.save(identity, whole))
            return text

        store.backend.get = get_then_race
        try:
            store.save(identity, preview)
        finally:
            store.backend.get = real_get
        assert raced
        [record] = list(store.records())
        assert record.complete and record.streaming.seconds == pytest.approx(2.0)
        assert store.stats()["previews"] == 0


def test_an_interrupt_between_a_redis_write_and_its_count_waits_for_the_count(redis_url, tracks, monkeypatch):
    """A write and its census count are two round trips: a Ctrl-C between them (2 of
    20 interrupted runs) left `cache stats` a record short while it said its counts
    were exact. The interrupt now waits for the count."""
    import signal

    import redis.client

    from fpcli.store.census import tag_of_entry

    with FingerprintStore.open(redis_url) as store:
        identity, result = compute(tracks[0], Want(), store.lookup(tracks[0], NEED).identity)
        real_execute, sent = redis.client.Pipeline.execute, []

        def execute_then_interrupt(self, *args, **kwargs):
            # The journal's entry before the write (an INCRBY of the generation) is no write.
            journal = any(str(command[0]).upper() == "INCRBY" for command, _ in self.command_stack)
            replies = real_execute(self, *args, **kwargs)
            if not sent and not journal:   # right after the first write's replies, before its count
                sent.append(os.kill(os.getpid(), signal.SIGINT))
            return replies

        monkeypatch.setattr(redis.client.Pipeline, "execute", execute_then_interrupt)
        handler = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            with pytest.raises(KeyboardInterrupt):
                store.save(identity, result)
        finally:
            signal.signal(signal.SIGINT, handler)
            monkeypatch.setattr(redis.client.Pipeline, "execute", real_execute)
        counted, _ = store.backend.census()
        assert sent and counted == store.backend.recount(tag_of_entry)


def test_a_verdict_stored_while_another_run_adds_a_path_keeps_the_path(location, tracks, tmp_path):
    """validate wrote back the record it had read before validating: a path (a copy)
    another run added meanwhile was dropped from the record."""
    import shutil

    from fpcli.store.records import Validation

    copy = str(shutil.copy(tracks[0], tmp_path / "copy.flac"))
    with FingerprintStore.open(location) as store, FingerprintStore.open(location) as other:
        _save(store, tracks[0], batch=True)
        [record] = list(store.records())
        assert other.lookup(copy, NEED).record is not None          # the other run finds the copy
        verdict = Validation(status="valid", similarity=0.99, threshold=0.9, confidence_quality="high",
                             failed_metrics=(), errors={}, validated_at=time.time())
        updated = store.set_validation(record, verdict)
        assert updated is not None and updated.validation == verdict
        [stored] = list(store.records())
        assert stored.validation == verdict
        assert {os.path.basename(seen.path) for seen in stored.paths} == {"t0.flac", "copy.flac"}
        stale = dataclasses.replace(record, streaming=dataclasses.replace(record.streaming, seconds=1.0))
        assert store.set_validation(stale, None) is None            # values analysed again: not stored
        assert next(iter(store.records())).validation == verdict


def test_validate_keeps_a_path_another_run_added_while_it_validated(location, tracks, tmp_path, monkeypatch):
    """validate wrote back the record it had read before validating: a copy another run
    found meanwhile lost its place in the record."""
    import shutil

    import fpcli.validate as validate

    folder = tmp_path / "one"
    folder.mkdir()
    track = str(shutil.copy(tracks[0], folder / "t0.flac"))
    copy = str(shutil.copy(tracks[0], tmp_path / "copy.flac"))
    with FingerprintStore.open(location) as store, FingerprintStore.open(location) as other:
        _save(store, track, batch=True)
        real_validate_record = validate.validate_record

        def validate_while_another_run_finds_a_copy(record, **kwargs):
            assert other.lookup(copy, NEED).record is not None
            return real_validate_record(record, **kwargs)

        monkeypatch.setattr(validate, "validate_record", validate_while_another_run_finds_a_copy)
        report = validate.validate_library([str(folder)], store, RunOptions(jobs=1))
        [record] = list(store.records())
        assert [t.status for t in report.tracks] == [record.validation.status]
        assert {os.path.basename(seen.path) for seen in record.paths} == {"t0.flac", "copy.flac"}


def test_a_redis_url_with_anything_after_the_database_is_refused_without_its_secret(redis_url):
    """"?password=secret" was ignored, and printed in clear in stats and errors; "?db=3"
    wrote to db 0."""
    for tail in ("?password=hunter2", "?db=3", "#hunter2"):
        with pytest.raises(StoreError, match="nothing after the database") as raised:
            FingerprintStore.open(redis_url + tail)
        assert "hunter2" not in str(raised.value)


def test_a_percent_encoded_redis_password_is_decoded(redis_url, redis_server):
    """A password holding @ / : can only be written percent-encoded in a URL; it was sent
    as written ("invalid username-password pair")."""
    import urllib.parse

    import redis

    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "fpcli-test", "on", ">pa@ss/x:y", "~*", "&*", "+@all")
    try:
        parsed = urllib.parse.urlparse(redis_url)
        url = f"redis://fpcli-test:{urllib.parse.quote('pa@ss/x:y', safe='')}@{parsed.netloc}{parsed.path}"
        with FingerprintStore.open(url) as store:
            assert store.stats()["entries"] == 0 and "***" in store.location
    finally:
        admin.execute_command("ACL", "DELUSER", "fpcli-test")


def test_a_redis_user_without_scripts_still_writes_and_counts(redis_url, tracks):
    """Writes and their counts became one script call each; a user whose ACL refuses
    scripts (as some managed services give) then failed every write ("no permissions
    to run the 'script|exists' command"). Such a user writes as before: SET ... GET,
    then the counts."""
    import urllib.parse

    import redis

    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "no-scripts", "on", ">pw", "~*", "&*", "+@all", "-@scripting")
    try:
        parsed = urllib.parse.urlparse(redis_url)
        with FingerprintStore.open(f"redis://no-scripts:pw@{parsed.netloc}{parsed.path}") as store:
            store.clear()
            for path in tracks[:3]:
                _save(store, path)
            _save(store, tracks[0], batch=True)                 # a record replaced (its tag moves)
            assert store.backend.delete(store.lookup(tracks[1], NEED).record.key)
            stats = store.stats()
            assert stats["census_exact"] and (stats["entries"], stats["with_batch"]) == (2, 1)
            assert store.stats(recount=True)["entries"] == 2 and verify(store) == []
            # the journal's tail, read by a script for the others, is read whole for this user
            assert store.changes_since(store.generation() - 2) == 2 * [store.lookup(tracks[0], NEED).record.key]
            assert store.changes_since(store.generation() + 1) is None
    finally:
        admin.execute_command("ACL", "DELUSER", "no-scripts")


def test_a_redis_user_who_may_only_read_reads_and_searches(redis_url, tracks, tmp_path):
    """A read-only ACL user (a team's listener: +@read, no writes, no MULTI, no
    scripts) was refused every command, stats and search too, for the writes of
    opening the store; a hit then failed for its last-used time. Such a user now
    reads, exports and searches; what would write says so."""
    import shutil
    import urllib.parse

    import redis

    from fpcli.errors import StoreReadOnlyError

    with FingerprintStore.open(redis_url) as store:
        for path in tracks[:3]:
            _save(store, path)
        generation = store.generation()
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+@connection")
    try:
        parsed = urllib.parse.urlparse(redis_url)
        with FingerprintStore.open(f"redis://reader:pw@{parsed.netloc}{parsed.path}") as store:
            assert store.stats()["entries"] == 3
            assert store.changes_since(generation - 1) is not None   # the journal, read without MULTI
            copy = shutil.copy(tracks[0], tmp_path / "copy.flac")    # a new path of a stored content
            assert store.lookup(copy, NEED).record is not None and not store.writable
            assert export_store(store, tmp_path / "out.jsonl")["records"] == 3
            assert [hit.path for hit in search(store, str(tracks[0]), k=2).hits]   # a stored query
            assert search(store, str(tracks[3]), k=2).hits                         # one analysed now
            with pytest.raises(StoreReadOnlyError, match="refused this.*only read"):
                _save(store, tracks[3])
        with FingerprintStore.open(redis_url) as store:
            assert store.stats()["entries"] == 3 and store.record_for_path(str(tracks[3])) is None
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")


def test_a_redis_user_who_may_only_read_analyses_a_folder_without_storing_it(redis_url, tracks):
    """analyze by a read-only user computed the first file not stored, then stopped at
    its save: exit 1, the analysis thrown away, the other files never reached. Every
    file is analysed and reported now, stored ones answered, and the summary says how
    many results were not stored and why."""
    import urllib.parse

    import redis

    with FingerprintStore.open(redis_url) as store:
        _save(store, str(tracks[0]))
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+@connection")
    try:
        parsed = urllib.parse.urlparse(redis_url)
        reader = f"redis://reader:pw@{parsed.netloc}{parsed.path}"
        run = CliRunner().invoke(app, ["--store", reader, "analyze", "--json", os.path.dirname(tracks[0])])
        assert run.exit_code == 3, run.output   # done, but not what a run is for: a script must see it
        lines = [json.loads(line) for line in run.stdout.splitlines()]
        assert len(lines) == 4 and all(line["status"] == "ok" for line in lines)
        assert sum(line["cached"] for line in lines) == 1
        assert "3 result(s) not stored: Redis at" in run.stderr
        # validate compares what it computed and could not store (it counted each track as
        # failed to decode, then as not stored, its analysis thrown away)
        checked = CliRunner().invoke(app, ["--store", reader, "validate", "-l", os.path.dirname(tracks[0]),
                                           "--json"])
        report = json.loads(checked.stdout)
        assert checked.exit_code == 3 and report["summary"]["compared"] == 4
        assert (report["summary"]["verdicts_not_stored"], report["summary"]["failed_to_decode"]) == (4, 0)
        assert all(t["verdict_not_stored"].startswith("its fingerprints could not be stored") for t in report["tracks"])
        said = CliRunner().invoke(app, ["--store", reader, "validate", "-l", os.path.dirname(tracks[0])])
        assert "4 verdicts not stored (its fingerprints could not be stored: Redis at" in said.stderr, said.output
        # stored by a user who may write, the reader's verdicts stand, said unstored (it
        # stopped at the first verdict: exit 1, no report)
        folder = os.path.dirname(tracks[0])
        assert CliRunner().invoke(app, ["--store", redis_url, "validate", "-l", folder]).exit_code == 0
        again = CliRunner().invoke(app, ["--store", reader, "validate", "-l", folder, "--json"])
        summary = json.loads(again.stdout)["summary"]
        assert again.exit_code == 3 and summary["compared"] == 4 and summary["verdicts_not_stored"] == 4
        assert "4 verdicts not stored (Redis at" in again.stderr
        assert CliRunner().invoke(app, ["--store", reader, "validate", "-l", folder, "--no-store"]).exit_code == 0
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")


def test_a_read_only_replica_reads_and_searches(redis_url, tracks, tmp_path):
    """A read-only replica (the usual read-only Redis) refused the writes of opening
    the store ("You can't write against a read only replica"): every command failed,
    stats and search too. It reads and searches as a read-only user does."""
    import redis

    from fpcli.errors import StoreReadOnlyError

    with FingerprintStore.open(redis_url) as store:
        for path in tracks[:3]:
            _save(store, path)
    primary_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    replica = RedisServer(tmp_path / "replica")
    try:
        client = redis.Redis(port=replica.port)
        client.replicaof("127.0.0.1", primary_port)
        deadline = time.monotonic() + 20
        while client.info("replication").get("master_link_status") != "up" or client.dbsize() == 0:
            assert time.monotonic() < deadline, "the replica did not sync"
            time.sleep(0.05)
        with FingerprintStore.open(replica.url) as store:
            assert store.stats()["entries"] == 3
            assert search(store, str(tracks[0]), k=2).hits
            with pytest.raises(StoreReadOnlyError, match="read only replica"):
                _save(store, tracks[3])
    finally:
        replica.process.kill()   # nothing of it is kept (a SIGTERM mid-sync took over 10 s once)
        replica.process.wait(10)


def test_a_ttl_beyond_what_redis_takes_is_capped(redis_url, tracks):
    """--store-ttl 1e30 passed the option's checks, then Redis refused the expiry: "value
    is not an integer or out of range" ended the run."""
    with FingerprintStore.open(redis_url, ttl_s=1e30) as store:
        _save(store, tracks[0])
        assert store.stats()["entries"] == 1


def test_a_full_redis_still_says_so_and_can_be_cleared(redis_url, tracks):
    """At its maxmemory under noeviction (Redis's default policy) Redis refuses writes,
    and the writes of opening the store stopped every command: stats, clear and verify
    --repair too, with Redis's own "command not allowed when used memory > 'maxmemory'"."""
    import redis

    from fpcli.store.records import Validation

    admin = redis.Redis.from_url(redis_url)
    with FingerprintStore.open(redis_url) as store:
        for track in tracks:
            _save(store, track)
        doubted = store.record_for_path(tracks[2])   # auto re-ranks a query whose verdict is invalid
        store.set_validation(doubted, Validation("invalid", 0.5, 0.95, "high", ("tempo_bpm",), {}, time.time()))
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 4096)
    try:
        with FingerprintStore.open(redis_url) as store:
            assert store.stats()["entries"] == len(tracks)
            with pytest.raises(StoreError, match=r"is full: .* \(maxmemory-policy volatile-lru\)"):
                store.save_failure(str(tracks[0]), None, "AudioReadError", "a write")
            # a search of it: it failed on the look-up counts and the hit's last-used time,
            # and for a query not stored yet (or whose batch values must be computed) on the
            # query's save; validate, on the save of what it computed
            assert len(search(store, tracks[1], k=2, strategy="fast").hits) == 2
            new = write(Path(tracks[0]).parent / "new.flac", synth.music_like(2.0, 22050, seed=9), 22050)
            assert len(search(store, str(new), k=2, strategy="fast").hits) == 2
            with pytest.raises(StoreError, match="cannot be stored .* strategy fast ranks"):   # no hit, exit 0
                search(store, str(new), k=2, strategy="accurate")
            chosen = search(store, tracks[2], k=2)   # auto chose accurate: it failed the default search
            assert chosen.strategy == "fast" and "auto chose accurate, but" in chosen.reason and len(chosen.hits) == 2
            checked = validate_library([str(new)], store, RunOptions())
            assert checked.summary()["compared"] == 1 and "is full" in checked.tracks[0].verdict_not_stored
            with pytest.raises(StoreError, match="is full"):   # analyze stores what it analyses: it stops
                run_library([str(new)], store, RunOptions())
            assert store.clear() == 3 * len(tracks)      # records, path entries, candidate lists
        # emptied, it is still a store (its epoch written all the same): `--store` takes it
        FingerprintStore.from_spec(StoreSpec(redis_url), existing=True).close()
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", policy)


def test_a_full_redis_can_be_pruned(redis_url, tracks, tmp_path, monkeypatch):
    """`cache prune`, which the "is full" error names as a way to make room, failed on a
    Redis full under noeviction: its journal entry before each removal was refused, and
    so was the smaller record of a file that lost one of its copies, and the record of
    a file only touched (its new time deflated 2 bytes longer). A write that grows is
    refused without a journal entry (each import tried added 3,000 that stayed)."""
    import shutil

    import redis

    admin = redis.Redis.from_url(redis_url)
    copies = [shutil.copy(track, Path(track).with_name(f"copy-{Path(track).name}")) for track in tracks]
    with FingerprintStore.open(redis_url) as store:
        for path in [*tracks, *copies]:
            _save(store, str(path))
    for path in [*tracks[:2], *copies[:3]]:   # two records go whole, one loses a copy
        os.remove(path)
    for path in (tracks[2], tracks[3], copies[3]):   # touched: one record with nothing else to change
        os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    new = write(tmp_path / "new.flac", synth.music_like(2.0, 22050, seed=9), 22050)
    policy = admin.config_get("maxmemory-policy")["maxmemory-policy"]
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 4096)
    try:
        with FingerprintStore.open(redis_url) as store:
            generation = store.backend.generation()
            with pytest.raises(StoreError, match="is full"):
                _save(store, str(new))
            assert store.backend.generation() == generation   # nothing journaled for a write refused
            # a touched record that would grow goes back as it was (its file read again next time)
            real_swap = store.backend.swap
            monkeypatch.setattr(store.backend, "swap", lambda key, expected, text, tag=None: (
                _raise(StoreFullError("full")) if text and len(text) >= len(expected or "") else
                real_swap(key, expected, text, tag)))
            assert len(prune(store)) == 5
            monkeypatch.undo()
            kept = sorted(p.path for record in store.records() for p in record.paths)
            assert kept == sorted([*tracks[2:], str(copies[3])])
            assert store.stats()["entries"] == 2
            assert store.backend.generation() > generation   # journaled: search indexes learn of it
            assert len(prune(store)) == 0   # the touched files, rewritten now (room was made)
    finally:
        admin.config_set("maxmemory", 0)
        admin.config_set("maxmemory-policy", policy)
    with FingerprintStore.open(redis_url) as store:   # the counts kept while full are the counts
        assert store.stats()["entries"] == store.stats(recount=True)["entries"] == 2


def _raise(exc):
    raise exc


def test_a_store_path_that_is_a_file_or_a_dangling_link_says_so(tmp_path):
    """It said "File exists" (os.makedirs), also where nothing existed (a dangling link)."""
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-link").symlink_to(tmp_path / "nowhere" / "x")
    for name, said in (("a-file", "it is not a folder"), ("a-link", "it is a link to nothing")):
        with pytest.raises(StoreError, match=said):
            FingerprintStore.open(tmp_path / name)


def test_a_redis_that_wants_a_password_says_where_to_give_it(redis_url, monkeypatch):
    """The server's HELLO message alone named neither the URL's password nor FPCLI_REDIS_PASSWORD."""
    import redis

    monkeypatch.delenv("FPCLI_REDIS_PASSWORD", raising=False)
    admin = redis.Redis.from_url(redis_url)
    admin.config_set("requirepass", "sesame")
    try:
        # A word alone before the @ is a user name to redis-py: the hint said redis://[user:]password@.
        hint = r"this server wants a password: in the URL \(redis://:password@host:port/db; .* or in FPCLI_REDIS"
        with pytest.raises(StoreError, match=hint):
            FingerprintStore.open(redis_url)
        monkeypatch.setenv("FPCLI_REDIS_PASSWORD", "sesame")
        with FingerprintStore.open(redis_url) as store:
            assert store.stats()["entries"] == 0
    finally:
        redis.Redis.from_url(redis_url, password="sesame").config_set("requirepass", "")



@pytest.mark.parametrize("form", ["export", "spaced"])   # lines the gate stores as they came, and parsed ones
def test_an_import_never_writes_over_what_another_process_stored_meanwhile(location, template, tmp_path, form):
    """An import read a batch's stored records, merged, and wrote them back plainly:
    batch values or a verdict another process stored in between were lost (71 of 480
    records in a sweep's loop of imports beside `analyze --batch`). A batch is now a
    compare-and-swap: a record changed meanwhile is read and merged again."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import make_records

    from fpcli.store.records import PathSeen
    from fpcli.store.schema import record_line, record_text

    plain = [dataclasses.replace(r, batch=None, validation=None, complete=True)
             for r in make_records.records(6, template=template)]
    source = tmp_path / "in.jsonl"
    lines = [record_line(record_text(r)) if form == "export" else json.dumps({"type": "record",
                                                                             "data": record_to_json(r)})
             for r in plain]
    source.write_text("\n".join(lines) + "\n")
    with FingerprintStore.open(location) as store, FingerprintStore.open(location) as other:
        store.clear()
        store.import_records([plain[2]])                    # stored before: merged, then changed meanwhile
        elsewhere = dataclasses.replace(plain[0], paths=(PathSeen("/elsewhere/a.flac", 3),))
        real, rounds = store.backend.put_many_unless_changed, []

        def another_process_writes_first(items, expected):
            rounds.append(len(items))
            if len(rounds) == 1:   # between the import's read and its write
                other.import_records([dataclasses.replace(template, digest=plain[1].digest)])  # batch values
                other.backend.put(elsewhere.key, record_text(elsewhere))                       # a fresh record
                other.import_records([dataclasses.replace(template, digest=plain[2].digest)])
            return real(items, expected)

        store.backend.put_many_unless_changed = another_process_writes_first
        report = import_store(store, source)
        assert report.records == 6
        first, second = store.read_record(plain[0].key), store.read_record(plain[1].key)
        assert [p.path for p in first.paths] == ["/elsewhere/a.flac", plain[0].path]   # merged, not replaced
        assert second.batch is not None and second.batch == template.batch              # kept
        assert store.read_record(plain[2].key).batch == template.batch
        assert store.stats()["entries"] == 6 and not verify(store)
        assert len(rounds) == 2   # the changed records, merged again in a second round


def test_a_redis_scan_whose_connection_was_made_anew_is_an_error_not_a_short_listing(redis_url):
    """A SCAN cursor means nothing to a restarted server: an export that fpcli rode
    through a restart missed 743 of 3,000 records and wrote 730 twice, exit 0. A scan
    whose connection was made anew (here: killed, then retried) now stops with a
    StoreError; an undisturbed scan of the same keys lists each once."""
    import redis

    with FingerprintStore.open(redis_url) as store:
        store.clear()
        backend = store.backend
        backend.put_many([(f"cand:{n:05d}", '["x"]', None) for n in range(5000)])
        assert sorted(backend.keys("cand:")) == [f"cand:{n:05d}" for n in range(5000)]
        scan = backend.keys("cand:")
        next(scan)
        redis.Redis.from_url(redis_url).client_kill_filter(_id=backend._client.client_id())
        with pytest.raises(StoreError, match="the connection was lost during a scan of the store"):
            list(scan)


def test_junk_of_bytes_that_are_not_utf8_is_one_bad_entry_on_redis(redis_url, tmp_path):
    """A key, a counter or a journal entry of bytes that are not UTF-8, written by
    another program, failed every command with a UnicodeDecodeError traceback (cache
    stats, verify --repair and clear too). The key is now one bad entry that a repair
    removes, and a counter so damaged is mended on opening."""
    import redis

    from fpcli.store import repair

    admin = redis.Redis.from_url(redis_url)
    with FingerprintStore.open(redis_url) as store:
        store.clear()
    admin.set(b"fpcli:data:rec:\xff\xfe", b"junk")
    admin.set(b"fpcli:meta:hits", b"\xff")
    admin.rpush(b"fpcli:meta:journal", b"\xff")
    with FingerprintStore.open(redis_url) as store:
        assert store.stats()["hits"] == 0
        (problem,) = verify(store)
        assert "not valid JSON" in problem.message
        repair(store, tmp_path / "quarantine.jsonl")
        assert verify(store) == [] and not admin.exists(b"fpcli:data:rec:\xff\xfe")


def test_a_generation_lost_alone_takes_the_epoch_with_it(redis_url):
    """The change count deleted or evicted alone, its journal left: counted up again
    from 0 it reached the number another client's saved index had, and that index
    (lacking every record since) was patched and served. A new epoch makes every
    client rebuild."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        store.backend.journal_extend(["rec:a", "rec:b"])
        epoch = admin.get("fpcli:meta:epoch")
    admin.delete("fpcli:meta:generation")
    with FingerprintStore.open(redis_url) as store:
        assert admin.get("fpcli:meta:epoch") != epoch and not admin.exists("fpcli:meta:journal")
        assert store.backend.journal_since(0) is not None   # a fresh journal, from generation 0


def test_a_store_ttl_on_redis_applies_to_path_and_candidate_entries(redis_url, template):
    """With --store-ttl 2, path and candidate entries kept the default year: 6,000 of
    them outlived their 3,000 records, unseen by prune and verify."""
    import redis

    admin = redis.Redis.from_url(redis_url)
    with FingerprintStore.open(redis_url, ttl_s=100) as store:
        store.clear()
        store.import_records([template])
        keys = [key.decode() for key in admin.scan_iter("fpcli:data:*")]
        assert {key.split(":")[2] for key in keys} == {"rec", "path", "cand"}
        assert all(0 < admin.ttl(key) <= 100 for key in keys)
        store.backend.put("fail:x", "{}", None)
        assert admin.ttl("fpcli:data:fail:x") > 100    # a failure is no record: the default expiry


def test_a_batch_compare_and_swap_on_redis_without_scripts(redis_url, template):
    """A Redis user whose ACL refuses scripts: each expected key goes through ``swap``."""
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        store.backend._scripts = False
        record = dataclasses.replace(template, batch=None)
        from fpcli.store.schema import record_text

        store.backend.put(record.key, record_text(record))
        changed = store.backend.put_many_unless_changed(
            [(record.key, record_text(template), None), ("cand:x", '["a"]', None)],
            {record.key: "an older text", "cand:x": None})
        assert changed == {record.key}
        assert store.backend.get(record.key) == record_text(record) and store.backend.get("cand:x") == '["a"]'
        assert store.backend.put_many_unless_changed([(record.key, record_text(template), None)],
                                                     {record.key: record_text(record)}) == set()
        assert store.read_record(record.key).batch == template.batch


def test_a_redis_batch_compares_each_key_again_in_its_script(redis_url, template, monkeypatch):
    """A batch is written by script calls of several keys each: a value another client
    wrote after the batch read it is kept and its key said changed, the other keys are
    written (the absent ones only while absent), and the census counts what is stored."""
    from fpcli.store import redis_backend
    from fpcli.store.census import census_tag
    from fpcli.store.schema import record_text

    monkeypatch.setattr(redis_backend, "SCRIPT_KEYS", 3)   # several calls in one pipeline
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        backend = store.backend
        first, second, third = (dataclasses.replace(template, digest=f"{n:032x}", content_key=f"{n:032x}")
                                for n in (1, 2, 3))
        older, newer = dataclasses.replace(first, batch=None), dataclasses.replace(first, validation=None)
        backend.put(first.key, record_text(older), census_tag(older))
        third_before = dataclasses.replace(third, batch=None)    # replaced: its count moves
        backend.put(third.key, record_text(third_before), census_tag(third_before))
        real = backend._queue_writes_unless_changed

        def another_client_writes_after_the_read(pipe, items, seen):
            if any(key == first.key for key, _, _ in items):
                backend.put(first.key, record_text(newer), census_tag(newer))
            real(pipe, items, seen)

        monkeypatch.setattr(backend, "_queue_writes_unless_changed", another_client_writes_after_the_read)
        puts = [(r.key, record_text(r), census_tag(r)) for r in (first, second, third)]
        puts += [(f"cand:{n}", '["x"]', None) for n in range(4)]
        changed = backend.put_many_unless_changed(puts, {first.key: record_text(older), second.key: None,
                                                         third.key: record_text(third_before)})
        assert changed == {first.key}
        assert backend.get(first.key) == record_text(newer)
        assert [backend.get(r.key) for r in (second, third)] == [record_text(second), record_text(third)]
        assert all(backend.get(f"cand:{n}") == '["x"]' for n in range(4))
        stats, recounted = store.stats(), store.stats(recount=True)
        counts = ("entries", "with_batch", "validated", "previews", "by_version")
        assert (stats["entries"], stats["with_batch"]) == (3, 3)
        assert [stats[c] for c in counts] == [recounted[c] for c in counts]


def test_verify_of_an_idle_store_whose_records_expired_is_clean(location, tracks):
    """With a TTL, verify counted only unexpired records against a census that still
    counted the expired ones until something removed them: an idle, healthy store
    failed every verify (exit 3), and its repair too. Expired records are removed
    first, as ``stats`` removes them. (Redis expires them itself, unseen by the counts:
    verify says so, with that reason, and a repair counts again.)"""
    from fpcli.store import repair

    with FingerprintStore.open(location, ttl_s=1) as store:
        store.clear()
        _save(store, tracks[0])
        _save(store, tracks[1])
    time.sleep(2.1)   # Redis expires in whole seconds
    with FingerprintStore.open(location, ttl_s=1) as store:
        if location.startswith("redis://"):
            (problem,) = verify(store)
            assert "entries 2 counted, 0 found; Redis evicted or expired" in problem.message
            repair(store, "/dev/null")
        assert verify(store) == [] and store.stats()["entries"] == 0


def test_verify_beside_a_writer_notes_that_it_could_not_compare_the_counts(location, tracks, monkeypatch):
    """A write by another process during the scan made the census differ from the
    entries read: a cron verify beside an analyze failed (exit 3) on a sound store."""
    from fpcli.store.maintenance import verify_counted

    with FingerprintStore.open(location) as store, FingerprintStore.open(location) as other:
        store.clear()
        _save(store, tracks[0])
        real = store.backend.items

        def written_meanwhile(prefix=""):
            for number, item in enumerate(real(prefix)):
                if number == 0:
                    _save(other, tracks[1])   # after the first entry was read
                yield item

        monkeypatch.setattr(store.backend, "items", written_meanwhile)
        notes: list[str] = []
        problems, _ = verify_counted(store, notes=notes)
        assert problems == [] and len(notes) == 1 and "written during the check" in notes[0]
        monkeypatch.undo()
        assert verify(store) == []   # idle again: compared, and sound


def test_a_search_index_drops_records_that_expired_while_nothing_wrote(tmp_path, tracks):
    """A saved index kept serving records past their TTL until some process wrote to
    the store: a query found no hits and no warning among 11 'tracks'."""
    found = [compute(t, Want(), FingerprintStore.open(tmp_path / "scratch").lookup(t, NEED).identity)
             for t in tracks[:3]]
    with FingerprintStore.open(tmp_path / "s", ttl_s=2) as store:
        started = time.monotonic()
        store.save(*found[0])
        store.save(*found[1])
        assert len(current_index(store, "streaming", AnalysisParams().key())[0]) == 2
        time.sleep(max(0.0, started + 1.0 - time.monotonic()))
        store.save(*found[2])                                   # expires a second after the others
        assert len(current_index(store, "streaming", AnalysisParams().key())[0]) == 3
    time.sleep(max(0.0, started + 2.4 - time.monotonic()))      # the first two expired, nothing wrote
    with FingerprintStore.open(tmp_path / "s") as store:        # a run without --store-ttl: rows keep theirs
        index, info = current_index(store, "streaming", AnalysisParams().key())
        assert len(index) == 1 and info["index"] != "loaded"


def test_verify_never_evicts_to_the_running_command_s_size_limit(tmp_path, template):
    """verify removed expired records by running the whole maintenance, which also
    evicted down to the running command's size limit: `--store-size-mb 4 cache
    verify` of 3,000 records left 525, said nothing and exited 0."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import make_records

    with FingerprintStore.open(tmp_path / "s", size_limit_mb=64) as store:
        store.import_records(list(make_records.records(1500, template=template)))
        assert store.stats()["entries"] == 1500
    with FingerprintStore.open(tmp_path / "s", size_limit_mb=1, ttl_s=1e6) as store:   # a TTL: expiry runs
        assert verify(store) == []
        current_index(store, "streaming", AnalysisParams().key())   # nor does a search
        store.stats()                                                # nor stats (cache clear reads them first)
    with FingerprintStore.open(tmp_path / "s", size_limit_mb=64) as store:
        stats = store.stats()
        assert stats["entries"] == 1500 and stats["evictions"] == 0


def test_cache_clear_on_redis_says_how_many_records_were_there_after_evictions(redis_url, redis_server, tracks):
    """After Redis evicted records, `cache clear` said "removed 337 records" of 25 there
    (the census, which Redis's evictions leave stale)."""
    import redis

    with FingerprintStore.open(redis_url) as store:
        store.clear()
        for track in tracks:
            _save(store, track)
        admin = redis.Redis(port=redis_server.port)
        evicted = next(iter(store.backend.keys("rec:")))
        admin.delete(store.backend._data + evicted)           # as an eviction would
        admin.set("expires-now", "x", px=1)                    # Redis's evicted + expired totals move
        time.sleep(0.05)
        admin.get("expires-now")
        assert store.stats()["entries"] == len(tracks) and not store.stats()["census_exact"]
    cleared = runner.invoke(app, ["--store", redis_url, "cache", "clear", "--yes"])
    assert f"removed {len(tracks) - 1} records and 0 failures" in cleared.stderr, cleared.stderr


def test_a_result_the_store_cannot_read_back_is_that_files_failure_in_a_run(tmp_path, tracks):
    """A record that would not read back (made from a damaged file) stopped a whole
    run over files as a usage error, exit 2, and was retried on every run. It is that
    file's failure now, recorded as one; a caller of the library gets the ParameterError."""
    from fpcli.analyze import keep
    from fpcli.errors import UnstorableError

    path = str(tracks[0])
    with FingerprintStore.open(tmp_path / "s") as store:
        identity, good = compute(path, Want(), store.identify(path))
        bad = dataclasses.replace(good, duration_s=1e300)
        with pytest.raises(UnstorableError, match="duration_s"):
            store.save(identity, bad)
        kept = keep(store, path, identity, bad)
        assert kept.status == "error" and kept.error_type == "UnstorableError" and "duration_s" in kept.error
        assert store.failure_for(path) is not None and store.record_for_path(path) is None


def test_every_public_write_refuses_a_record_the_store_cannot_read_back(tmp_path, tracks):
    """update_record, set_validation and import_records wrote what a caller changed (a
    tempo of -5, a similarity of 1.5) over the good record; every read then rejected it
    as a bad entry and a repair deleted it. Each refuses it now, the good record kept."""
    from fpcli.errors import UnstorableError
    from fpcli.store.records import Validation

    with FingerprintStore.open(tmp_path / "s") as store:
        record = _save(store, str(tracks[0]))
        values = {**record.streaming.values, "tempo_bpm": -5.0}
        bad = dataclasses.replace(record, streaming=dataclasses.replace(record.streaming, values=values))
        with pytest.raises(UnstorableError, match="tempo_bpm is -5.0"):
            store.update_record(bad)
        with pytest.raises(UnstorableError, match="tempo_bpm is -5.0"):
            store.import_records([bad])
        verdict = Validation("valid", 1.5, 0.95, "high", ("lufs",), {}, time.time())
        with pytest.raises(UnstorableError, match="similarity"):
            store.set_validation(record, verdict)
        assert store.read_record(record.key) == record and store.bad_entries == []


def test_another_tracks_record_is_never_served_for_a_file(location, tracks):
    """Edited by hand, a record under t0's key held t1's values, and a path entry of t0
    named t1's record: each was served as t0's (its tempo, its search hits; the query
    among its own hits), and only verify noticed the first. Neither is served now:
    the record is a bad entry, said and replaced by the next save, and the path entry
    is checked against the file."""
    from fpcli.store.records import path_key

    with FingerprintStore.open(location) as store:
        first, second = (_save(store, path) for path in tracks[:2])
        backend = store.backend
        backend.put(first.key, backend.get(second.key))
        # A search's index leaves it out and says so too (it was indexed in silence).
        rows = list(store.index_rows("streaming", first.params_key))
        assert first.key not in {row.key for row in rows} and second.key in {row.key for row in rows}
        assert [str(e) for e in store.bad_entries][-1].endswith("digest/params_key do not match the key")
        assert store.lookup(tracks[0], NEED).record is None
        assert [str(e) for e in store.bad_entries][-1].endswith("digest/params_key do not match the key")
        assert _save(store, tracks[0]).digest == first.digest
        assert store.lookup(tracks[0], NEED).record.streaming == first.streaming

        third = _save(store, tracks[2])
        entry_key = f"path:{path_key(third.path)}"
        entry = json.loads(backend.get(entry_key))
        backend.put(entry_key, json.dumps({**entry, "digest": second.digest, "content_key": second.content_key}))
        assert store.lookup(tracks[2], NEED).record.digest == third.digest
        assert json.loads(backend.get(entry_key)) == entry   # the entry is right again

        wrong = {**entry, "digest": second.digest, "content_key": second.content_key}
        # `cache show`; `analyze --force` and `analyze FILE --every` saved their result over the other record
        for read in ("show", ["--force"], ["--every", "1"]):
            backend.put(entry_key, json.dumps(wrong))
            if read == "show":
                assert store.record_for_path(tracks[2], KEY).digest == third.digest
            else:
                assert runner.invoke(app, ["--store", location, "analyze", *read, str(tracks[2])]).exit_code == 0
        assert store.read_record(second.key).streaming == second.streaming


def test_a_file_unreadable_when_its_entry_is_checked_is_one_failed_look_up(tmp_path, tracks, monkeypatch):
    """A path entry naming a record that does not list the file makes the look-up read
    the file; a read error there escaped the look-up and ended the whole run."""
    import fpcli.store.core as core
    from fpcli.store.records import path_key

    with FingerprintStore.open(tmp_path / "s") as store:
        first, second = (_save(store, path) for path in tracks[:2])
        entry_key = f"path:{path_key(second.path)}"
        entry = json.loads(store.backend.get(entry_key))
        store.backend.put(entry_key, json.dumps({**entry, "digest": first.digest, "content_key": first.content_key}))
        keys = core.entry_identity_keys

        def unreadable(path, size, *, digest):
            if digest and path == second.path:
                raise PermissionError(13, "Permission denied")
            return keys(path, size, digest=digest)

        monkeypatch.setattr(core, "entry_identity_keys", unreadable)
        found = store.lookup(tracks[1], NEED)
    assert found.record is None and found.error == "permission denied"


def test_a_followed_file_and_a_named_stream_are_reported_where_the_store_takes_no_writes(redis_url, tracks):
    """A named stream, or --every on a file, stopped at its first snapshot's save on a
    Redis that refused writes (full under noeviction, or a user who may only read):
    nothing on stdout, exit 1. The snapshots are reported, said not stored, exit 3."""
    import urllib.parse

    import redis

    with FingerprintStore.open(redis_url):
        pass   # the store made, as a user who may write makes it
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+@connection")
    try:
        parsed = urllib.parse.urlparse(redis_url)
        reader = f"redis://reader:pw@{parsed.netloc}{parsed.path}"
        followed = CliRunner().invoke(app, ["--store", reader, "analyze", str(tracks[0]), "--every", "1", "--json"])
        streamed = CliRunner().invoke(app, ["--store", reader, "analyze", "-", "--name", "radio", "--every", "1",
                                            "--json"], input=open(tracks[1], "rb").read())
    finally:
        admin.execute_command("ACL", "DELUSER", "reader")
    for run in (followed, streamed):
        assert run.exit_code == 3, run.output
        assert len(run.stdout.splitlines()) >= 2 and all(json.loads(line) for line in run.stdout.splitlines())
        assert run.stderr.count("not stored: Redis at") == 1


def test_a_store_lost_during_verify_is_an_error_not_a_problem_of_the_store(location, template, tmp_path,
                                                                           monkeypatch):
    """A Redis that went away mid-check was listed among the store's problems (exit 3,
    as if its entries were bad), where export and verify --repair exit 1. Damage found
    while reading is still one of its problems."""
    from benchmarks import make_records

    with FingerprintStore.open(location) as store:
        store.clear()
        store.import_records(list(make_records.records(30, template=template)))
        real = store.backend.items

        def lost(*args, **kwargs):
            yield from itertools.islice(real(*args, **kwargs), 10)
            raise StoreError("Redis at 127.0.0.1:1 cannot connect")

        monkeypatch.setattr(store.backend, "items", lost)
        with pytest.raises(StoreError, match="cannot connect"):
            verify(store)

        def damaged(*args, **kwargs):
            yield from itertools.islice(real(*args, **kwargs), 10)
            raise StoreError("the store is damaged (database disk image is malformed)", repairable=True)

        monkeypatch.setattr(store.backend, "items", damaged)
        assert [p.message for p in verify(store)] == ["the store is damaged (database disk image is malformed)"]


def test_a_transaction_redis_refuses_whole_says_why_as_a_single_command_does(redis_url):
    """Under noeviction, a MULTI refused whole (EXECABORT ... OOM command not allowed)
    stopped a run with Redis's raw reply, where every other full write says what to do."""
    import redis as redis_module

    from fpcli.errors import StoreFullError

    def refused():
        raise redis_module.exceptions.ExecAbortError("Transaction discarded because of: OOM command not allowed "
                                                     "when used memory > 'maxmemory'.")

    with FingerprintStore.open(redis_url) as store, pytest.raises(StoreFullError, match="is full"):
        store.backend._call(refused)

    from fpcli.errors import StoreReadOnlyError

    def replica():   # a failover between MULTI and EXEC
        raise redis_module.exceptions.ExecAbortError("Transaction discarded because of: READONLY You can't write "
                                                     "against a read only replica.")

    with FingerprintStore.open(redis_url) as store, pytest.raises(StoreReadOnlyError, match="commands that only read"):
        store.backend._call(replica)
