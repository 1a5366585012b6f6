"""The fingerprint store: identity, records, LRU/TTL, statistics, safety."""

import dataclasses
import json
import math
import multiprocessing
import os
import pickle
import time

import diskcache
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fpcli import synth
from fpcli.analyze import Want, analyse, compute, fingerprint_of
from fpcli.errors import ParameterError
from fpcli.fingerprint import BATCH_DIMS, STREAMING_DIMS, Fingerprint
from fpcli.params import AnalysisParams
from fpcli.results import TrackResult
from fpcli.store import FingerprintStore, Need, StoreError, export_store, import_store, prune, verify
from fpcli.store.census import census_tag
from fpcli.store.limits import value_bounds
from fpcli.store.records import Validation, path_key, record_from_result
from fpcli.store.schema import parse_record, record_text, record_to_json
from fpcli.store.spec import MAX_SIZE_LIMIT_MB
from tests.conftest import write

KEY = AnalysisParams().key()
NEED = Need(KEY)


@pytest.fixture
def store(tmp_path):
    with FingerprintStore.open(tmp_path / "store") as s:
        yield s


@pytest.fixture
def track(tmp_path):
    return write(tmp_path / "music" / "a.flac", synth.music_like(3.0, 22050, seed=1), 22050) \
        if (tmp_path / "music").mkdir() is None else None


def _analysed(store, path, batch=False):
    found = store.lookup(path, NEED)
    identity, result = compute(str(path), Want(batch=batch), found.identity)
    store.save(identity, result)
    return result


def test_miss_then_hit(store, track):
    assert store.lookup(track, NEED).record is None
    _analysed(store, track)
    found = store.lookup(track, NEED)
    assert found.record is not None
    stats = store.stats()
    assert (stats["hits"], stats["misses"]) == (1, 2)
    assert stats["hit_rate"] == pytest.approx(1 / 3)


def test_moved_file_is_a_hit(store, track, tmp_path):
    _analysed(store, track)
    moved = tmp_path / "elsewhere.flac"
    os.rename(track, moved)
    found = store.lookup(moved, NEED)
    assert found.record is not None and found.record.path == str(moved.resolve())


def test_touched_file_is_confirmed_by_its_digest(store, track):
    _analysed(store, track)
    st = os.stat(track)
    os.utime(track, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    found = store.lookup(track, NEED)  # same bytes: the full digest vouches for it
    assert found.record is not None and found.identity.mtime_ns == st.st_mtime_ns + 10**9


def test_changed_file_is_a_miss(store, track):
    _analysed(store, track)
    write(track, synth.music_like(3.0, 22050, seed=2), 22050)
    assert store.lookup(track, NEED).record is None


def test_parameter_or_version_change_is_a_miss(store, track):
    _analysed(store, track)
    assert store.lookup(track, Need(AnalysisParams(n_mel_bands=32).key())).record is None
    record = store.lookup(track, NEED).record
    # Written as an older fpcli left it (update_record refuses a record whose version is
    # not its params key's, as a read does).
    old = dataclasses.replace(record, fingerprint_version=0)
    store.backend.put(old.key, record_text(old), census_tag(old))
    assert store.lookup(track, NEED).record is None


def test_need_batch_misses_a_streaming_only_record(store, track):
    _analysed(store, track)
    assert store.lookup(track, Need(KEY, batch=True)).record is None
    _analysed(store, track, batch=True)
    assert store.lookup(track, Need(KEY, batch=True)).record.batch.values.keys() == set(BATCH_DIMS)


def test_internal_reads_are_not_counted(store, track):
    _analysed(store, track)
    before = store.stats()
    list(store.records())
    store.record_for_path(track)
    verify(store)
    after = store.stats()
    assert (after["hits"], after["misses"]) == (before["hits"], before["misses"])


def test_statistics_persist_across_opens(tmp_path, track):
    with FingerprintStore.open(tmp_path / "s") as s:
        s.lookup(track, NEED)
    with FingerprintStore.open(tmp_path / "s") as s:
        assert s.stats()["misses"] == 1


def test_sqlite_memory_is_bounded_whatever_the_store_was_created_with(tmp_path):
    """SQLite's page cache and memory map grew a command's RSS with the store it
    wrote (60 -> 111 MiB over 2,000 -> 10,000 files); both connections are capped,
    also for a store created with diskcache's defaults (they are saved in it)."""
    import diskcache

    from fpcli.store.diskcache_backend import SQLITE_MEMORY

    diskcache.Cache(str(tmp_path / "s" / "data")).close()  # a store created with the defaults
    with FingerprintStore.open(tmp_path / "s") as s:
        for connection in (s.backend._data, s.backend._meta):
            pages = connection._sql("PRAGMA cache_size").fetchone()[0]
            mapped = connection._sql("PRAGMA mmap_size").fetchone()[0]
            assert (pages, mapped) == (SQLITE_MEMORY["sqlite_cache_size"], SQLITE_MEMORY["sqlite_mmap_size"])
        data = s.backend._data
        with s.backend.bulk_writes():  # an import writes faster with a larger page cache, then lets it go
            assert data._sql("PRAGMA cache_size").fetchone()[0] > SQLITE_MEMORY["sqlite_cache_size"]
            assert data._sql("PRAGMA mmap_size").fetchone()[0] > 0
        assert data._sql("PRAGMA cache_size").fetchone()[0] == SQLITE_MEMORY["sqlite_cache_size"]
    assert SQLITE_MEMORY["sqlite_cache_size"] * 4096 <= 8 * 2**20


def _fake_result(path: str, seed: int) -> TrackResult:
    rng = np.random.default_rng(seed)
    values = {name: float(rng.random()) for name in STREAMING_DIMS}
    fp = Fingerprint(kind="streaming", values=values, reasons={}, params_key=KEY, seconds=1.0, complete=True,
                     confidence=dict.fromkeys(STREAMING_DIMS, 1.0), chunks=1)
    return TrackResult(path=path, status="ok", duration_s=1.0, samplerate=8000, channels=1, format="WAV",
                       subtype="PCM_16", streaming=fp)


def _fill(store, folder, count, start=0):
    paths = []
    for i in range(start, start + count):
        path = folder / f"{i}.wav"
        path.write_bytes(os.urandom(64) + str(i).encode())
        identity = store.identify(path)
        store.save(identity, _fake_result(identity.path, i))
        paths.append(path)
    return paths


def test_lru_eviction_happens_and_is_counted(tmp_path, monkeypatch):
    """Recency is kept to the day (a read does not write; a hit rewrites a record whose
    last use is over a day old), so the clock moves two days between rounds."""
    folder = tmp_path / "files"
    folder.mkdir()
    real_time, days = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400.0 * days[0])
    with FingerprintStore.open(tmp_path / "s", size_limit_mb=1) as s:
        first = _fill(s, folder, 50)
        for _ in range(3):  # keep the first file recently used
            days[0] += 2
            assert s.lookup(first[0], NEED).record is not None
            _fill(s, folder, 150, start=1000 + _ * 150)
        stats = s.stats()
        assert stats["evictions"] > 0
        # the records' part is what the limit covers; counters and journal lie outside it
        assert stats["meta_bytes"] <= stats["size_limit_bytes"] * 0.25
        assert stats["data_bytes"] <= stats["size_limit_bytes"] and stats["meta_bytes"] > 0
        assert stats["size_bytes"] == stats["data_bytes"] + stats["meta_bytes"]
        assert stats["entries"] < 500
        assert s.lookup(first[0], NEED).record is not None     # recently used: kept
        assert s.lookup(first[10], NEED).record is None        # least recently used: evicted


def _identity_entries(store):
    return [key for key in store.backend.keys() if key.startswith(("path:", "cand:"))]


def test_records_evicted_or_expired_take_their_identity_entries(tmp_path, monkeypatch):
    """Evicted and expired records left their path and candidate entries behind: they
    filled the size limit (1 MiB after 3,000 imported records: 0 records and 2.1 MiB of
    those), and from then on every new record was evicted at once."""
    folder = tmp_path / "files"
    folder.mkdir()
    real_time, days = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real_time() + 86400.0 * days[0])
    with FingerprintStore.open(tmp_path / "s", size_limit_mb=1) as s:
        for round_ in range(4):
            days[0] += 2
            _fill(s, folder, 150, start=round_ * 150)
        assert s.stats()["evictions"] > 0
        records = {key.split(":")[1] for key in s.backend.keys("rec:")}
        kept = [json.loads(s.backend.get(key)) for key in _identity_entries(s) if key.startswith("path:")]
        assert kept and {entry["digest"] for entry in kept} <= records
        assert len(_identity_entries(s)) <= 2 * len(records)
    with FingerprintStore.open(tmp_path / "t", ttl_s=0.5) as t:
        _fill(t, folder, 5, start=2000)
        assert _identity_entries(t)
        time.sleep(0.7)
        t.stats()                      # maintains the store: the records expire
        assert t.stats()["entries"] == 0 and _identity_entries(t) == []


def test_forget_orphans_removes_identity_entries_of_no_record(tmp_path):
    """A store written before its records took their identity entries along keeps
    those; `cache prune` forgets them, and keeps the live ones."""
    from fpcli.store import forget_orphans

    folder = tmp_path / "files"
    folder.mkdir()
    with FingerprintStore.open(tmp_path / "s") as s:
        _fill(s, folder, 3)
        live = sorted(_identity_entries(s))
        s.backend.put("path:" + path_key("/gone.wav"), json.dumps({"path": "/gone.wav", "size": 1, "mtime_ns": 1,
                                                       "digest": "f" * 32, "content_key": "e" * 32}))
        s.backend.put("cand:" + "e" * 32, json.dumps(["f" * 32]))
        cand = next(k for k in live if k.startswith("cand:"))
        mixed = json.loads(s.backend.get(cand)) + ["f" * 32]
        s.backend.put(cand, json.dumps(mixed))
        assert forget_orphans(s, dry_run=True) == 3 and len(_identity_entries(s)) == len(live) + 2
        assert forget_orphans(s) == 3
        assert sorted(_identity_entries(s)) == live and "f" * 32 not in s.backend.get(cand)
        assert forget_orphans(s) == 0


def test_a_bad_record_removed_by_a_repair_takes_its_identity_entries(tmp_path):
    """verify --repair removed a bad record and left its path and candidate entries
    (only a later `cache prune` forgot them)."""
    from fpcli.store import repair

    folder = tmp_path / "files"
    folder.mkdir()
    with FingerprintStore.open(tmp_path / "s") as s:
        _fill(s, folder, 3)
        key = next(iter(s.backend.keys("rec:")))
        digest = key.split(":")[1]
        s.backend.put(key, '{"cut":')
        done = repair(s, tmp_path / "q.jsonl")
        assert done["quarantined"] == 1 and done["orphans"] == 2   # its path entry and its candidate list
        left = [json.loads(s.backend.get(k)) for k in _identity_entries(s)]
        assert len(left) == 4 and not any(digest in json.dumps(entry) for entry in left)


def test_read_records_reads_each_key_as_read_record_does(tmp_path):
    """In batches, in the order asked (repeats too); an absent key is None, a bad
    record None and remembered in bad_entries, as one read alone would have it."""
    folder = tmp_path / "files"
    folder.mkdir()
    with FingerprintStore.open(tmp_path / "s") as s:
        _fill(s, folder, 20)
        keys = sorted(s.backend.keys("rec:"))
        s.backend.put(keys[3], '{"cut":')
        asked = [keys[5], "rec:" + "0" * 32 + ":v5-x", *keys, keys[5]]
        got = s.read_records(asked)
        assert len(s.bad_entries) == 1 and s.bad_entries[0].key == keys[3]
        alone = [s.read_record(key) for key in asked]
        assert got == alone and got[1] is None and got[2 + 3] is None
        assert sum(r is not None for r in got) == 21


def test_prune_writes_a_record_once_however_many_of_its_paths_are_gone(tmp_path, track, monkeypatch):
    """Each gone path was a read and a write of its record: 183 s for 2,000 records of
    63 gone paths each."""
    import shutil

    copies = [shutil.copy(track, tmp_path / f"copy{i}.flac") for i in range(8)]
    with FingerprintStore.open(tmp_path / "s") as s:
        _analysed(s, track)
        for copy in copies:
            assert s.lookup(copy, NEED).record is not None   # each copy becomes a path of the record
        (record,) = list(s.records())
        assert len(record.paths) == 9
        for copy in copies:
            os.remove(copy)
        writes = []
        put, swap = s.backend.put, s.backend.swap
        monkeypatch.setattr(s.backend, "put", lambda key, *a: writes.append(key) or put(key, *a))
        monkeypatch.setattr(s.backend, "swap", lambda key, *a: writes.append(key) or swap(key, *a))
        assert len(prune(s)) == 8
        assert [k for k in writes if k.startswith("rec:")] == [record.key]
        (left,) = list(s.records())
        assert [p.path for p in left.paths] == [str(track)]


def _analysed_then_moved(store, track):
    """(the record of ``track``, analysed, and the path it was then moved to)."""
    _analysed(store, track)
    (record,) = list(store.records())
    moved = os.path.join(os.path.dirname(track), "moved.flac")
    os.rename(track, moved)
    return record, moved


def _after_reading(store, key, meanwhile):
    """Make the first read of ``key`` through ``store``'s backend run ``meanwhile`` (what
    another process writes between this one's read and its write) before it returns.
    Returns ([still armed], the backend's own get)."""
    get = store.backend.get
    armed = [True]

    def read(k):
        text = get(k)
        if k == key and armed[0]:
            armed[0] = False
            meanwhile()
        return text

    store.backend.get = read
    return armed, get


def test_a_prune_keeps_a_path_another_process_gives_the_record_meanwhile(tmp_path, track):
    """The file moved: a prune read its record (the old path gone), another run found
    the file by content at its new path and added that path, then the prune wrote back
    the record it had read without any path, and dropped it: the record was lost, and
    the next run analysed the file again. Now the prune's write is a compare-and-swap
    judged again on the record as it is."""
    with FingerprintStore.open(tmp_path / "s") as s:
        record, moved = _analysed_then_moved(s, track)

        def another_process_finds_the_moved_file():
            with FingerprintStore.open(tmp_path / "s") as other:
                assert other.lookup(moved, NEED).record is not None   # found by content: its path added

        armed, _ = _after_reading(s, record.key, another_process_finds_the_moved_file)
        assert [p.path for p in prune(s)] == [str(track)] and not armed[0]
        (left,) = list(s.records())
        assert [p.path for p in left.paths] == [str(moved)]
        assert s.lookup(moved, NEED).record is not None
        assert s.backend.get(f"cand:{record.content_key}") is not None


def test_a_file_found_moved_while_a_prune_drops_its_record_is_stored_with_its_new_path_alone(tmp_path, track):
    """A run read the record of a moved file (found by content), a prune dropped the
    record (its one path gone), then the run wrote back what it had read with the new
    path added: the pruned path came back, listed and never there."""
    with FingerprintStore.open(tmp_path / "s") as s:
        record, moved = _analysed_then_moved(s, track)

        def another_process_prunes():
            with FingerprintStore.open(tmp_path / "s") as other:
                assert [p.path for p in prune(other)] == [str(track)]

        armed, get = _after_reading(s, record.key, another_process_prunes)
        assert s.lookup(moved, NEED).record is not None and not armed[0]
        s.backend.get = get
        (left,) = list(s.records())
        assert [p.path for p in left.paths] == [moved]
        assert json.loads(s.backend.get(f"cand:{record.content_key}")) == [record.digest]


@pytest.mark.parametrize("backend", ["diskcache", "redis"])
def test_a_candidate_list_keeps_what_another_process_adds_meanwhile(tmp_path, backend, request):
    """Two runs storing two files of one content key (equal heads and tails) each wrote
    back the list they had read: one digest was lost, and its file was no longer found
    by content. The list is changed by compare-and-swap now, as records are."""
    location = str(tmp_path / "s") if backend == "diskcache" else request.getfixturevalue("redis_url")
    content, mine, theirs = "c" * 32, "a" * 32, "b" * 32
    with FingerprintStore.open(location) as s:
        def another_process_adds():
            with FingerprintStore.open(location) as other:
                other._add_candidate(content, theirs)

        armed, get = _after_reading(s, f"cand:{content}", another_process_adds)
        s._add_candidate(content, mine)
        assert not armed[0] and json.loads(get(f"cand:{content}")) == [theirs, mine]
        s.backend.get = get
        s.forget_identity(mine, content, ())      # no record of it: it leaves the list, theirs stays
        assert json.loads(get(f"cand:{content}")) == [theirs]


@pytest.mark.parametrize("backend", ["diskcache", "redis"])
def test_a_damaged_candidate_list_is_replaced_not_taken_for_another_writer(tmp_path, backend, request):
    """A candidate list that is not JSON was read as absent, so the compare-and-swap
    never matched: "the candidate list kept changing under other writers (20
    attempts)", exit 1, and a library run stopped at that file."""
    location = str(tmp_path / "s") if backend == "diskcache" else request.getfixturevalue("redis_url")
    content, mine = "c" * 32, "a" * 32
    with FingerprintStore.open(location) as s:
        s.backend.put(f"cand:{content}", "garbage{")
        s._add_candidate(content, mine)
        assert json.loads(s.backend.get(f"cand:{content}")) == [mine]


def test_a_record_pruned_with_its_last_path_takes_its_candidate_entry(tmp_path):
    """`cache prune` dropped records whose files were gone but kept their candidate
    entries (3,000 of them after pruning 3,000 records)."""
    folder = tmp_path / "files"
    folder.mkdir()
    with FingerprintStore.open(tmp_path / "s") as s:
        for path in _fill(s, folder, 3):
            os.remove(path)
        assert len(prune(s)) == 3
        assert list(s.backend.keys("rec:")) == [] and _identity_entries(s) == []


def test_ttl_expiry_happens_and_is_counted(tmp_path, track):
    with FingerprintStore.open(tmp_path / "s", ttl_s=0.5) as s:
        _analysed(s, track)
        assert s.lookup(track, NEED).record is not None
        time.sleep(0.7)
        assert s.lookup(track, NEED).record is None
        s.backend.maintain()
        assert s.stats()["expiries"] >= 1


def test_an_expired_record_analysed_again_counts_one_expiry(tmp_path, track):
    """A record read after its expiry (a miss) and analysed again replaced the expired
    row before maintenance saw it: `cache stats` said "expiries: 0"."""
    with FingerprintStore.open(tmp_path / "s", ttl_s=0.5) as s:
        _analysed(s, track)
        time.sleep(0.7)
        assert s.lookup(track, NEED).record is None
        _analysed(s, track)          # saving maintains the store too: nothing else has expired
        s.backend.maintain()
        assert s.stats()["expiries"] == 1
        assert s.lookup(track, NEED).record is not None


def record_values(name):
    """Any value an analysis can give for dim ``name`` (a stored value outside its domain,
    or beyond +-VALUE_LIMIT, is refused on reading)."""
    low, high = value_bounds(name)
    return st.one_of(st.none(), st.floats(min_value=low, max_value=high, width=64))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({name: record_values(name) for name in STREAMING_DIMS}),
       st.fixed_dictionaries({name: record_values(name) for name in BATCH_DIMS}),
       st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t and "/" not in t))
def test_record_round_trip(tmp_path, values, batch_values, name):
    path = tmp_path / f"x{abs(hash(name))}.wav"
    path.write_bytes(name.encode("utf-8", "surrogatepass"))
    confidence = dict.fromkeys(STREAMING_DIMS, 0.5)
    streaming = Fingerprint(kind="streaming", values=values, reasons={}, params_key=KEY, seconds=2.0,
                            complete=True, confidence=confidence, chunks=3)
    batch = Fingerprint(kind="batch", values=batch_values, reasons={}, params_key=KEY, seconds=2.0, complete=True)
    result = TrackResult(path=str(path), status="partial", duration_s=2.0, samplerate=44100, channels=2,
                         format="FLAC", subtype="PCM_16", partial_reason="cut", streaming=streaming, batch=batch)
    with FingerprintStore.open(tmp_path / "rt") as s:
        identity = s.identify(path)
        s.save(identity, result)
        stored = s.lookup(path, NEED).record
        assert parse_record(stored.key, json.loads(json.dumps(record_to_json(stored)))) == stored
        back = stored.to_result()
        assert back.streaming.values == values and back.batch.values == batch_values
        assert back.status == "partial" and back.cached


def _write_records(location, folder, start, count):
    with FingerprintStore.open(location) as s:
        for i in range(start, start + count):
            path = os.path.join(folder, f"{i}.wav")
            with open(path, "wb") as fh:
                fh.write(str(i).encode() * 10)
            s.save(s.identify(path), _fake_result(path, i))
            s.lookup(path, NEED)


def test_two_processes_writing_one_store(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    location = str(tmp_path / "shared")
    FingerprintStore.open(location).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_records, args=(location, str(folder), k * 100, 100)) for k in (0, 1)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    with FingerprintStore.open(location) as s:
        assert s.stats()["entries"] == 200
        assert s.stats()["hits"] == 200
        assert verify(s) == []


def test_pickled_values_are_refused_not_run(tmp_path):
    location = tmp_path / "hostile"
    FingerprintStore.open(location).close()
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    raw = diskcache.Cache(str(location / "data"))  # default Disk pickles
    raw.set("rec:x", Exploit())
    raw.set(("tuple", "key"), "value")
    raw.close()
    with FingerprintStore.open(location) as s:
        with pytest.raises(StoreError, match="refusing to unpickle"):
            s.backend.get("rec:x")
        problems = [str(p) for p in verify(s)]
        assert list(s.records()) == [] and s.stats()["entries"] == 0  # one bad entry, not a broken store
    assert not marker.exists()
    assert any("refusing to unpickle" in p for p in problems)


def test_store_refuses_to_write_non_json_types(store):
    with pytest.raises(StoreError):
        store.backend._data.set("k", object())


def test_export_import_round_trip(tmp_path, track):
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track, batch=True)
        a.save_failure(track, None, "AudioReadError", "just testing")
        counts = export_store(a, tmp_path / "dump.jsonl")
        originals = sorted(a.records(), key=lambda r: r.key)
    assert counts == {"records": 1, "failures": 1}
    with FingerprintStore.open(tmp_path / "b") as b:
        report = import_store(b, tmp_path / "dump.jsonl")
        assert report.rejected == [] and (report.records, report.failures) == (1, 1)
        assert sorted(b.records(), key=lambda r: r.key) == originals
        assert b.record_for_path(track) is not None  # path entries came along
        assert verify(b) == []


def _failed_then_mended(tmp_path, track):
    """A store that recorded ``track`` as failed while it was an older file (an hour
    back), and the export of another store that analysed it as it is now."""
    when = os.stat(track).st_mtime_ns
    os.utime(track, ns=(when - 3600 * 10**9,) * 2)
    failed = FingerprintStore.open(tmp_path / "failed")
    failed.save_failure(track, None, "AudioReadError", "not audio then")
    os.utime(track, ns=(when, when))
    with FingerprintStore.open(tmp_path / "mended") as mended:
        _analysed(mended, track)
        export_store(mended, tmp_path / "mended.jsonl")
    return failed


def test_import_of_a_mended_files_record_drops_its_older_failure(tmp_path, track):
    """An import left a failure beside the record of the file as it was mended since:
    ``cache failures`` and stats listed it as failed. A save drops its path's failure;
    an import of a later file's record does so too."""
    with _failed_then_mended(tmp_path, track) as store:
        export_store(store, tmp_path / "failed.jsonl")
        report = import_store(store, tmp_path / "mended.jsonl")
        assert report.records == 1 and list(store.failures()) == [] and store.stats()["failures"] == 0
        # The other way round: the older failure is left out of a store holding the record.
        report = import_store(store, tmp_path / "failed.jsonl")
        assert (report.failures, report.failures_recorded_since) == (0, 1)
        assert list(store.failures()) == [] and store.stats()["failures"] == 0
        assert store.lookup(track, NEED).record is not None
        # A failure of a file that could not be stat'ed (time -1: a permission denied, mended
        # by a chmod that keeps the file's time) goes with a record imported after it that
        # was analysed after it failed; imported beside a stored record, it stays, as in
        # the store it came from (an export and import keep it).
        for failed_at, kept in ((time.time() + 3600, 1), (1.0, 0)):
            unstated = tmp_path / "unstated.jsonl"
            line = {"type": "failure", "data": {"path": str(track), "error_type": "OSError", "message": "gone",
                                                "size": -1, "mtime_ns": -1, "failed_at": failed_at}}
            unstated.write_text(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n" + json.dumps(line)
                                + "\n")
            assert import_store(store, unstated).failures == 1, failed_at   # the record stored first
            store.delete_failure(str(track))
            with FingerprintStore.open(tmp_path / f"other{int(failed_at)}") as other:   # the failure stored first
                assert import_store(other, unstated).failures == 1
                assert import_store(other, tmp_path / "mended.jsonl").records == 1
                assert len(list(other.failures())) == kept, failed_at


def test_import_merges_as_a_save_does(tmp_path, track):
    """An import wrote over the stored record whatever it held: a 1 s preview's export
    imported into a store holding the whole track with batch values and a verdict left
    a preview without batch values. It merges as a save does now, also two records of
    one key in one export."""
    with FingerprintStore.open(tmp_path / "preview") as p:
        found = p.lookup(track, NEED)
        identity, result = compute(str(track), Want(seconds=1.0), found.identity)
        p.save(identity, result)
        export_store(p, tmp_path / "preview.jsonl")
    with FingerprintStore.open(tmp_path / "whole") as w:
        _analysed(w, track, batch=True)
        whole = w.record_for_path(track)
        verdict = Validation("valid", 0.999, 0.9, "high", (), {}, 1.0)
        assert w.set_validation(whole, verdict)
        export_store(w, tmp_path / "whole.jsonl")
        assert import_store(w, tmp_path / "preview.jsonl").records == 1
        kept = w.record_for_path(track)
        assert kept.complete and kept.batch is not None and kept.validation == verdict
        assert w.stats()["previews"] == 0
    lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    both = [*lines, (tmp_path / "preview.jsonl").read_text().splitlines()[1]]  # the preview after the whole
    (tmp_path / "both.jsonl").write_text("\n".join(both) + "\n")
    with FingerprintStore.open(tmp_path / "fresh") as f:
        import_store(f, tmp_path / "both.jsonl")
        assert f.record_for_path(track).complete and f.record_for_path(track).batch is not None


def test_a_stream_name_keeps_the_later_stream_whichever_comes_second(tmp_path, track):
    """A name holds its latest stream: an old export imported must not replace it."""
    from fpcli.store.records import merged_record, stream_identity

    result = analyse(track, Want())
    old = record_from_result(stream_identity("radio"), result, 1000.0)
    new = dataclasses.replace(record_from_result(stream_identity("radio"), result, 2000.0), complete=False)
    assert merged_record(old, new).analysed_at == 2000.0          # a new stream's snapshot replaces
    assert merged_record(new, old).analysed_at == 2000.0           # an older one, imported, does not


def test_an_export_of_another_version_is_refused_whole(tmp_path, track):
    """Its header was rejected with "re-analyse instead", and every record imported."""
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        export_store(a, tmp_path / "dump.jsonl")
    lines = (tmp_path / "dump.jsonl").read_text().splitlines()
    lines[0] = json.dumps({"type": "fpcli-store-export", "version": 99})
    (tmp_path / "v99.jsonl").write_text("\n".join(lines) + "\n")
    with FingerprintStore.open(tmp_path / "b") as b:
        with pytest.raises(StoreError, match="an export of version 99; this fpcli reads version 2: nothing"):
            import_store(b, tmp_path / "v99.jsonl")
        assert list(b.records()) == []


def test_an_export_header_after_blank_lines_or_with_a_text_version_is_said_as_it_is(tmp_path, track):
    """A blank line before the header rejected it as "in the middle of the file" (exit
    3); a version "2" (text) was refused as "an export of version 2; this fpcli reads
    version 2"."""
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        export_store(a, tmp_path / "dump.jsonl")
    text = (tmp_path / "dump.jsonl").read_text()
    (tmp_path / "blank.jsonl").write_text("\n\n" + text)
    header, rest = text.split("\n", 1)
    (tmp_path / "text.jsonl").write_text(json.dumps({**json.loads(header), "version": "2"}) + "\n" + rest)
    with FingerprintStore.open(tmp_path / "b") as b:
        report = import_store(b, tmp_path / "blank.jsonl")
        assert report.rejected == [] and report.records == 1
        with pytest.raises(StoreError, match='an export of version "2"; this fpcli reads version 2'):
            import_store(b, tmp_path / "text.jsonl")


def test_import_rejects_malformed_and_hostile_lines(tmp_path, track):
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        good = record_to_json(next(a.records()))
    marker = tmp_path / "pwned"
    bad_types = {**good, "size": "big"}
    nan_value = json.dumps({"type": "record", "data": good}).replace('"silence_ratio":', '"silence_ratio": NaN, "x":')
    lines = [
        json.dumps({"type": "record", "data": good}),
        "this is not json",
        pickle.dumps(os.system).hex(),
        json.dumps({"type": "record", "data": bad_types}),
        json.dumps({"type": "record", "data": {**good, "digest": "../../etc"}}),
        nan_value,
        json.dumps({"type": "shell", "data": f"touch {marker}"}),
        json.dumps([1, 2, 3]),
        "[" * 100000 + "]" * 100000,
        json.dumps({"type": "record", "data": {**good, "streaming": {**good["streaming"], "values": {"x": 1}}}}),
    ]
    raw_pickle = pickle.dumps({"a": 1})
    pickle_lines = len([part for part in raw_pickle.split(b"\n") if part.strip()])
    (tmp_path / "evil.jsonl").write_bytes("\n".join(lines).encode() + b"\n" + raw_pickle + b"\n")
    with FingerprintStore.open(tmp_path / "b") as b:
        report = import_store(b, tmp_path / "evil.jsonl")
        assert report.records == 1
        assert len(report.rejected) == len(lines) - 1 + pickle_lines  # every bad line, the raw pickle too
        assert all(r.startswith("line ") for r in report.rejected)
        assert verify(b) == []
    assert not marker.exists()


def test_import_refuses_absurd_values_and_records_without_paths(tmp_path, track):
    """Values no analysis gives (a 1e300 tempo or duration, a timbre number that
    overflows float32) and a record with no path are bad lines, said why; they used
    to be imported and to show as a 300-digit tempo, an overflow warning from the
    search index, and a hit with an empty path."""
    import base64

    import numpy as np

    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        good = record_to_json(next(a.records()))
    streaming = good["streaming"]
    huge_timbre = np.frombuffer(base64.b64decode(good["timbre"]["packed"]), "<f8").copy()
    huge_timbre[0] = 1e300
    bad = {
        "tempo": {**good, "streaming": {**streaming, "values": {**streaming["values"], "tempo_bpm": 1e300}}},
        "duration": {**good, "audio": {**good["audio"], "duration_s": 1e300}},
        "timbre": {**good, "timbre": {**good["timbre"], "packed": base64.b64encode(huge_timbre.tobytes()).decode()}},
        "paths": {**good, "paths": []},
    }
    lines = [json.dumps({"type": "record", "data": data}) for data in (good, *bad.values())]
    (tmp_path / "absurd.jsonl").write_text("\n".join(lines) + "\n")
    with FingerprintStore.open(tmp_path / "b") as b:
        report = import_store(b, tmp_path / "absurd.jsonl")
        assert report.records == 1 and len(report.rejected) == len(bad)
        reasons = "\n".join(report.rejected)
        assert "streaming.values.tempo_bpm is 1e+300, not a number within +-1e+09" in reasons
        assert "audio.duration_s is 1e+300, not seconds in [0, 1e+09]" in reasons
        assert "timbre holds a value that is not a finite number within +-1e+09" in reasons
        assert "paths must be a non-empty list" in reasons


def test_an_import_refuses_paths_and_times_no_file_can_have(tmp_path, track):
    """A path with a lone surrogate crashed the import with a traceback (its good lines
    lost with it); one with NUL was stored and every later prune failed; a failure time
    of 1e300 was stored and every `cache failures` failed."""
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        good = record_to_json(next(a.records()))
    failure = {"path": "/x/ok", "error_type": "E", "message": "m", "size": 3, "mtime_ns": 1, "failed_at": 1.0,
               "limit_s": None}
    lines = [{"type": "record", "data": good},
             {"type": "record", "data": {**good, "paths": [{"path": "/x/a\ud800b", "mtime_ns": 1}]}},
             {"type": "failure", "data": failure},
             {"type": "failure", "data": {**failure, "path": "/x/a\ud800b"}},
             {"type": "failure", "data": {**failure, "path": "/x/a\x00b"}},
             {"type": "failure", "data": {**failure, "path": "/x/late", "failed_at": 1e300}}]
    (tmp_path / "odd.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    with FingerprintStore.open(tmp_path / "b") as b:
        report = import_store(b, tmp_path / "odd.jsonl")
        assert (report.records, report.failures, len(report.rejected)) == (1, 1, 4), report.rejected
        assert [f.path for f in b.failures()] == ["/x/ok"]
        assert prune(b, dry_run=True) is not None


@pytest.mark.parametrize("seen,reason", [
    ({"path": "music/a.flac", "mtime_ns": 1}, 'paths[0].path "music/a.flac" must be absolute (or stream:NAME'),
    ({"path": "/x/a\x00b", "mtime_ns": 1}, "paths[0].path holds a NUL character"),
    ({"path": "/x/a\ud800b", "mtime_ns": 1}, "paths[0].path holds a character no file name can"),
    ({"path": "/x/a", "mtime_ns": 2**64}, "paths[0].mtime_ns must be a whole number of ns"),
    ({"path": 5, "mtime_ns": 1}, "paths[0].path must be text"),
    ("/x/a", "paths[0] must be an object {path, mtime_ns}"),
])
def test_an_import_rejects_a_path_saying_what_is_wrong_with_it(tmp_path, track, seen, reason):
    """A relative path, a NUL, a lone surrogate or a time past 2**64 ns were each
    rejected as "paths must be a non-empty list of {path, mtime_ns}", which they were."""
    with FingerprintStore.open(tmp_path / "a") as a:
        _analysed(a, track)
        good = record_to_json(next(a.records()))
    (tmp_path / "one.jsonl").write_text(json.dumps({"type": "record", "data": {**good, "paths": [seen]}}) + "\n")
    with FingerprintStore.open(tmp_path / "b") as b:
        (rejected,) = import_store(b, tmp_path / "one.jsonl").rejected
    assert reason in rejected and "non-empty list" not in rejected


def test_prune_drops_gone_and_changed_files(store, tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    a, b, c = _fill(store, folder, 3)
    os.remove(a)
    b.write_bytes(b"changed content")
    removed = {p.path: p.reason for p in prune(store)}
    assert removed == {str(a.resolve()): "gone", str(b.resolve()): "changed"}
    assert [r.path for r in store.records()] == [str(c.resolve())]


def _linked_content(store, tmp_path, count):
    """``count`` hard links of one file, each looked up (the record lists the latest
    MAX_PATHS; the others are known by their path entries)."""
    folder = tmp_path / "links"
    folder.mkdir()
    links = [write(folder / "00.wav", synth.sine(440, 0.3, 8000), 8000)]
    for i in range(1, count):
        os.link(links[0], folder / f"{i:02d}.wav")
        links.append(str(folder / f"{i:02d}.wav"))
    _analysed(store, links[0])
    assert all(store.lookup(link, NEED).record is not None for link in links[1:])
    return [os.path.realpath(link) for link in links]


def test_prune_keeps_a_record_whose_unlisted_copies_remain(store, tmp_path):
    """A content with more than MAX_PATHS paths lists the latest 64: when all of those
    went, prune dropped the record though 6 copies remained (they were analysed again,
    their batch values and verdict lost)."""
    from fpcli.store.records import MAX_PATHS

    links = _linked_content(store, tmp_path, MAX_PATHS + 6)
    for link in links[6:]:
        os.remove(link)
    removed = prune(store)
    assert sorted(p.path for p in removed) == sorted(links[6:]) and {p.reason for p in removed} == {"gone"}
    [record] = list(store.records())
    assert sorted(seen.path for seen in record.paths) == sorted(links[:6])
    assert all(store.lookup(link, NEED).record is not None for link in links[:6])
    assert prune(store) == []


def test_prune_forgets_gone_copies_the_record_no_longer_lists(store, tmp_path):
    """The path entries of gone copies beyond a record's MAX_PATHS were never pruned."""
    from fpcli.store.records import MAX_PATHS, path_key

    links = _linked_content(store, tmp_path, MAX_PATHS + 6)
    for link in links[:3]:
        os.remove(link)
    assert sorted(p.path for p in prune(store, dry_run=True)) == sorted(links[:3])
    assert store.backend.get(f"path:{path_key(links[0])}") is not None   # a dry run removes nothing
    assert sorted(p.path for p in prune(store)) == sorted(links[:3])
    assert all(store.backend.get(f"path:{path_key(link)}") is None for link in links[:3])
    [record] = list(store.records())
    assert len(record.paths) == MAX_PATHS and record.path == links[-1]
    assert prune(store) == []


def test_verify_reports_a_corrupt_record(store, track):
    _analysed(store, track)
    key = next(store.backend.keys("rec:"))
    record = json.loads(store.backend.get(key))
    record["streaming"]["confidence"]["tempo_bpm"] = 7
    store.backend.put(key, json.dumps(record))
    problems = verify(store)
    assert len(problems) == 1 and "confidence" in problems[0].message


def test_unopenable_store_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open the store"):
        FingerprintStore.open(blocker / "store")


def test_record_from_result_is_json(track, tmp_path):
    with FingerprintStore.open(tmp_path / "s") as s:
        record = record_from_result(s.identify(track), analyse(track), time.time())
    data = record_to_json(record)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert parse_record(record.key, data) == record


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**80, max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    | st.text(alphabet=st.sampled_from("a\u00e9\U0001F3B5\udc80\udcff\ud800")),  # lone surrogates too
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.sampled_from(["", " ", "x", "NaN", "1e400", "]"]))
def test_stored_json_parses_as_the_standard_parser_says(value, tail):
    """``loads`` (orjson, falling back on ``json``) gives what ``json.loads`` gives,
    accepts what it accepts and refuses what it refuses, for text from either writer;
    the one licensed difference: an integer beyond 64 bits may come back as the float
    of the same value."""
    from fpcli.errors import BadEntryError
    from fpcli.store.schema import dumps, dumps_finite, loads

    for text in {dumps(value), dumps_finite(value), dumps(value) + tail, tail}:
        assert text.isascii()
        try:
            expected = json.loads(text, parse_constant=_refuse)
        except ValueError:  # not JSON, or NaN / Infinity
            with pytest.raises(BadEntryError):
                loads("k", text)
            continue
        assert _same_json(loads("k", text), expected)


def _refuse(name: str) -> None:
    raise ValueError(name)


def _same_json(got, expected) -> bool:
    if isinstance(expected, bool) or expected is None or isinstance(expected, str):
        return type(got) is type(expected) and got == expected
    if isinstance(expected, int) and not -2**63 <= expected < 2**64:
        # orjson's float of it, or the exact int when ``json`` parsed the whole text
        return (type(got) is float and got == float(expected)) or (type(got) is int and got == expected)
    if isinstance(expected, int | float):
        return type(got) is type(expected) and (got == expected or got != got and expected != expected)
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(_same_json, got, expected))
    return isinstance(got, dict) and got.keys() == expected.keys() and all(
        _same_json(got[k], expected[k]) for k in expected)


def test_a_store_on_a_read_only_file_system_is_not_called_damaged(tmp_path, monkeypatch):
    """SQLite says "unable to open database file" for a store on a read-only mount:
    that was reported as damage, and the repair it advised failed to move the database
    aside. (A real read-only mount needs privileges; the file system's flag is faked.)"""
    import os
    import sqlite3

    from fpcli.errors import DamagedStoreError
    from fpcli.store import diskcache_backend

    def unable(self):
        raise sqlite3.OperationalError("unable to open database file")

    class ReadOnly:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(diskcache_backend.DiskcacheBackend, "_open", unable)
    monkeypatch.setattr(diskcache_backend.os, "statvfs", lambda path: ReadOnly())
    with pytest.raises(StoreError, match="it is read-only .* copy it to a writable place") as error:
        FingerprintStore.open(tmp_path / "ro")
    assert not isinstance(error.value, DamagedStoreError)
    monkeypatch.undo()
    monkeypatch.setattr(diskcache_backend.DiskcacheBackend, "_open", unable)
    with pytest.raises(DamagedStoreError):              # on a writable file system it is damage
        FingerprintStore.open(tmp_path / "rw")


def test_a_store_on_a_full_disk_says_what_to_do(tmp_path, monkeypatch):
    """Opening a diskcache store writes to it: on a full disk every command, `cache
    clear` included, failed with SQLite's words alone."""
    import sqlite3

    from fpcli.store import diskcache_backend

    def full(self):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(diskcache_backend.DiskcacheBackend, "_open", full)
    with pytest.raises(StoreError, match="disk is full; opening a store writes to it .* free some space") as raised:
        FingerprintStore.open(tmp_path / "full")
    assert "remove" not in str(raised.value) and "copy the store's folder" in str(raised.value)


def test_a_content_with_many_paths_costs_a_look_up_no_more(store, tmp_path, monkeypatch):
    """Links of one file: the record lists the latest MAX_PATHS of them; a warm pass
    parses the shared record once per batch read ahead (not once per link) and writes
    nothing (a link the record no longer lists is known by its own path entry)."""
    import fpcli.store.core as core
    import fpcli.store.reading as reading
    from fpcli.store.records import MAX_PATHS

    folder = tmp_path / "links"
    folder.mkdir()
    links = [write(folder / "0.wav", synth.sine(440, 0.3, 8000), 8000)]
    for i in range(1, MAX_PATHS + 40):
        os.link(links[0], folder / f"{i}.wav")
        links.append(str(folder / f"{i}.wav"))
    _analysed(store, links[0])
    assert all(store.lookup(link, NEED).record is not None for link in links[1:])
    [record] = list(store.records())
    assert len(record.paths) == MAX_PATHS and record.path == os.path.realpath(links[-1])

    parsed, writes = [], []
    parse_records, parse_record = reading.parse_records, reading.parse_record
    monkeypatch.setattr(reading, "parse_records", lambda items: parsed.extend(items) or parse_records(items))
    monkeypatch.setattr(reading, "parse_record", lambda key, data: parsed.append(key) or parse_record(key, data))
    monkeypatch.setattr(store.backend, "put", lambda *args: writes.append(args))
    monkeypatch.setattr(core, "LOOKUP_BATCH", 16)
    found = list(store.lookup_many(links, NEED))
    assert all(f.record is not None for f in found)
    assert len(parsed) == -(-len(links) // 16) and writes == []


def test_a_store_removed_while_in_use_is_an_error_not_a_silent_loss(tmp_path):
    """`rm -rf` of the store folder during `analyze`: SQLite went on writing to the
    deleted files, every result was lost, and the run ended "analysed 126", exit 0."""
    import shutil

    song = write(tmp_path / "a.wav", synth.sine(440, 1.0, 22050), 22050)
    location = tmp_path / "store"
    store = FingerprintStore.open(location)
    fingerprint_of(store, song)
    shutil.rmtree(location)
    fingerprint_of(store, write(tmp_path / "b.wav", synth.sine(660, 1.0, 22050), 22050))
    with pytest.raises(StoreError, match="was removed while fpcli used it"):
        store.close()
    with FingerprintStore.open(tmp_path / "kept") as kept:   # a store left alone closes quietly
        fingerprint_of(kept, song)


def test_a_failed_file_answered_by_a_copy_s_record_is_no_longer_listed_as_failed(tmp_path):
    """A file whose worker was killed (a recorded failure), then answered by content from
    its copy's record on the next run, stayed in `cache failures` and in stats."""
    from fpcli.library import RunOptions, run_library

    original = write(tmp_path / "a.wav", synth.sine(440, 1.0, 22050), 22050)
    copy = tmp_path / "copy.wav"
    copy.write_bytes(open(original, "rb").read())
    with FingerprintStore.open(tmp_path / "store") as store:
        store.save_failure(str(copy), store.identify(copy), "WorkerCrashed", "the worker was killed")
        run_library([original], store, RunOptions())
        assert store.stats()["failures"] == 1
        summary = run_library([str(copy)], store, RunOptions())
        assert (summary.cached, summary.failed) == (1, 0)
        assert list(store.failures()) == [] and store.stats()["failures"] == 0


@pytest.mark.parametrize("options", [{"size_limit_mb": 0}, {"size_limit_mb": -1}, {"size_limit_mb": math.nan},
                                     {"size_limit_mb": 1e-7},
                                     {"size_limit_mb": "big"}, {"size_limit_mb": True}, {"ttl_s": 0},
                                     {"ttl_s": -5}, {"ttl_s": math.inf}, {"ttl_s": "1h"}])
def test_the_api_refuses_a_size_limit_or_ttl_no_store_can_use(tmp_path, options):
    """FingerprintStore.open(size_limit_mb=0 or -1, or ttl_s=0) stored nothing while
    every save returned its record; NaN failed inside diskcache with a ValueError. The
    command line refused them (min=1, finite); the API now does too."""
    with pytest.raises(ParameterError, match=next(iter(options))):
        FingerprintStore.open(tmp_path / "s", **options)
    assert not (tmp_path / "s").exists()


def test_the_api_takes_a_store_location_as_bytes_or_a_path(tmp_path):
    for location in (os.fsencode(tmp_path / "b"), tmp_path / "p"):
        with FingerprintStore.open(location, size_limit_mb=np.float32(64), ttl_s=np.int64(100)) as store:
            assert store.location == os.fsdecode(location)
            assert type(store.spec.size_limit_mb) is float and type(store.spec.ttl_s) is float
    with pytest.raises(ParameterError, match="location"):
        FingerprintStore.open(3)   # type: ignore[arg-type]
    with FingerprintStore.open(tmp_path / "huge", size_limit_mb=10**400) as store:   # no limit, not an OverflowError
        assert store.spec.size_limit_mb == MAX_SIZE_LIMIT_MB


def test_storing_optional_holds_for_its_own_thread_only(tmp_path):
    """A search (storing optional) in one thread beside a run over files in another, on
    one store, let the run go on past a full store, storing nothing: the flag was the
    store's, not the thread's."""
    import threading

    from fpcli.store.core import storing_optional

    seen = {}
    with FingerprintStore.open(tmp_path / "s") as store, storing_optional(store):
        other = threading.Thread(target=lambda: seen.update(other=store.storing_optional))
        other.start()
        other.join()
        seen["own"] = store.storing_optional
    assert seen == {"own": True, "other": False} and not store.storing_optional


def test_a_stores_size_limit_is_kept_for_runs_that_give_none(tmp_path):
    """A run without --store-size-mb set the default 256 MiB on the store it opened, and
    its next write evicted most of a catalogue kept under a larger limit, without a word."""
    from typer.testing import CliRunner

    from fpcli.cli import app
    from fpcli.store.spec import DEFAULT_SIZE_LIMIT_MB

    with FingerprintStore.open(tmp_path / "s", size_limit_mb=8000) as store:
        assert store.backend.size_limit == 8000 * 2**20
    for _ in range(2):   # opened again without a limit, by the API and by a command
        with FingerprintStore.open(tmp_path / "s") as store:
            assert store.backend.size_limit == 8000 * 2**20
        stats = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "cache", "stats"])
        assert "of 7.8 GiB limit" in stats.stdout or "of 8000.0 MiB limit" in stats.stdout, stats.stdout
    with FingerprintStore.open(tmp_path / "new") as store:   # a new store: the default
        assert store.backend.size_limit == DEFAULT_SIZE_LIMIT_MB * 2**20
    with FingerprintStore.open(tmp_path / "s", size_limit_mb=100) as store:   # given: kept from now on
        pass
    with FingerprintStore.open(tmp_path / "s") as store:
        assert store.backend.size_limit == 100 * 2**20


def test_analyze_says_what_it_evicted_to_stay_within_the_size_limit(tmp_path, template):
    """A run that evicted 448 of 601 records to stay within the store's limit said
    nothing of it (only import did)."""
    import sys

    from typer.testing import CliRunner

    from fpcli import synth
    from fpcli.cli import app
    from tests.conftest import write

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import make_records

    with FingerprintStore.open(tmp_path / "s", size_limit_mb=64) as store:
        store.import_records(list(make_records.records(400, template=template)))
        stored = store.stats()["entries"]
    song = write(tmp_path / "song.flac", synth.music_like(3.0, 22050, seed=5), 22050)
    run = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), "--store-size-mb", "1", "analyze", str(song)])
    with FingerprintStore.open(tmp_path / "s") as store:
        left = store.stats()["entries"]
    assert run.exit_code == 0 and left < stored + 1, (stored, left)
    assert "evicted during this run to keep the store within its size limit of 1 MiB (made room for this run's " \
           "writes or for other processes'; --store-size-mb raises it)" in run.stderr, \
        run.output


def test_a_store_kept_open_evicts_by_the_limit_the_store_holds_now(tmp_path, template):
    """A Dask worker keeps its store open across runs: raised to 64 MiB since it opened
    it at 1 MiB, the store was evicted down to 1 MiB by its next write (every record,
    in a review)."""
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import make_records

    with FingerprintStore.open(tmp_path / "s", size_limit_mb=1):
        pass
    with FingerprintStore.open(tmp_path / "s") as held:   # the limit read now: 1 MiB
        with FingerprintStore.open(tmp_path / "s", size_limit_mb=64) as other:
            other.import_records(list(make_records.records(400, template=template)))
            stored = other.stats()["entries"]
        assert held.backend.maintain() == (0, 0)
        assert held.stats()["entries"] == stored == 400


def test_a_salvaged_store_keeps_its_size_limit(tmp_path):
    """`cache verify --repair` of a store that cannot open rebuilt its data part with
    diskcache's default limit of 1 GiB, which became the store's (5000 MiB before)."""
    from fpcli.store.diskcache_sqlite import salvage

    location = str(tmp_path / "s")
    with FingerprintStore.open(location, size_limit_mb=5000) as store:
        store.save_failure(str(tmp_path / "x.flac"), None, "AudioReadError", "a row")
    database = tmp_path / "s" / "data" / "cache.db"
    damaged = bytearray(database.read_bytes())
    damaged[100:4096] = b"\xff" * 3996   # the schema page: it cannot open
    database.write_bytes(bytes(damaged))
    salvage(location)
    with FingerprintStore.open(location) as store:
        assert store.backend.size_limit == 5000 * 2**20


def test_stats_says_the_ttl_is_this_runs_not_the_records(tmp_path):
    """`cache stats` said "ttl: none" beside records expiring (written with a TTL), and
    "ttl: 1 s" beside records that never would: the option is this run's."""
    from typer.testing import CliRunner

    from fpcli.cli import app

    with FingerprintStore.open(tmp_path / "s"):
        pass
    for args, said in (([], "ttl: none given for what this run writes"),
                       (["--store-ttl", "60"], "ttl: 60 s for what this run writes")):
        stats = CliRunner().invoke(app, ["--store", str(tmp_path / "s"), *args, "cache", "stats"])
        assert said in stats.stdout and "each record keeps the expiry it was written with" in stats.stdout, \
            stats.stdout


def test_a_data_part_made_again_keeps_the_stores_size_limit(tmp_path):
    """A data part deleted by hand is made again empty: it got 256 MiB, where the meta
    part kept a copy of the store's 5000."""
    import shutil

    with FingerprintStore.open(tmp_path / "s", size_limit_mb=5000):
        pass
    shutil.rmtree(tmp_path / "s" / "data")
    with FingerprintStore.open(tmp_path / "s") as store:
        assert store.backend.size_limit == 5000 * 2**20


def test_an_import_says_how_many_records_were_new(tmp_path, template):
    """300 copies of an export of 11 records said "imported 3300 records": the store then
    held 11. The records merged into stored ones are said so."""
    import sys

    from typer.testing import CliRunner

    from fpcli.cli import app
    from fpcli.store.maintenance import EXPORT_FORMAT, EXPORT_VERSION
    from fpcli.store.schema import record_line, record_text

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
    import make_records

    lines = [record_line(record_text(r)) for r in make_records.records(5, template=template)]
    source = tmp_path / "in.jsonl"
    source.write_text("\n".join([json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION}), *lines * 3]) + "\n")
    store = ["--store", str(tmp_path / "s")]
    first = CliRunner().invoke(app, [*store, "cache", "import", str(source), "--no-index"])
    assert "imported 15 records (5 new, the others merged into records stored)" in first.stderr, first.output
    again = CliRunner().invoke(app, [*store, "cache", "import", str(source), "--no-index"])
    assert "imported 15 records (0 new, the others merged into records stored)" in again.stderr, again.output
    source.write_text("\n".join([json.dumps({"type": EXPORT_FORMAT, "version": EXPORT_VERSION}), *lines]) + "\n")
    fresh = CliRunner().invoke(app, ["--store", str(tmp_path / "t"), "cache", "import", str(source), "--no-index"])
    assert "imported 5 records and 0 failures" in fresh.stderr, fresh.output   # all new: nothing more to say


def test_a_full_disk_at_open_is_said_so_not_disk_io(tmp_path, monkeypatch):
    """SQLite says "disk I/O error" when the disk is full as it opens the store (its
    shared-memory file): a full disk read as failing hardware, with no way out."""
    import sqlite3

    from fpcli.store import diskcache_backend

    with FingerprintStore.open(tmp_path / "s"):
        pass

    def full(self):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(diskcache_backend.DiskcacheBackend, "_open", full)
    monkeypatch.setattr(diskcache_backend, "_free_bytes", lambda directory: 12 * 1024)
    with pytest.raises(StoreError, match=r"disk I/O error \(its disk is full: 12 KiB free\); .*free some space"):
        FingerprintStore.open(tmp_path / "s")
    monkeypatch.setattr(diskcache_backend, "_free_bytes", lambda directory: 10 << 30)
    with pytest.raises(StoreError) as other:
        FingerprintStore.open(tmp_path / "s")
    assert "disk is full" not in str(other.value)


@pytest.mark.parametrize("lost_by", ["deleting its folder", "emptying its database file"])
def test_a_lost_records_part_is_a_problem_until_a_repair_notes_it(tmp_path, template, lost_by):
    """The records' part removed by hand, or its database emptied: the store was made
    again empty and verify said "0 problem(s)" with every record gone."""
    import shutil

    from benchmarks import make_records
    from fpcli.store.maintenance import repair

    location = tmp_path / "store"
    with FingerprintStore.open(location) as store:
        store.import_records(list(make_records.records(5, template=template)))
    if lost_by == "deleting its folder":
        shutil.rmtree(location / "data")
    else:
        (location / "data" / "cache.db").write_bytes(b"")
    with FingerprintStore.open(location) as store:
        assert any("the records' part (data/) was found gone" in w for w in store.stats()["warnings"])
        (problem,) = verify(store)
        assert problem.message.startswith("meta: data lost: the records' part (data/) was made again empty")
        assert ("missing" if lost_by == "deleting its folder" else "emptied (0 bytes)") in problem.message
        assert repair(store, tmp_path / "q.jsonl")["data_lost"] == 1
        assert verify(store) == []
    with FingerprintStore.open(location) as store:
        assert verify(store) == []   # noted once: opening the store again finds its data part
    never = tmp_path / "never"           # a store that held no record: nothing was lost
    FingerprintStore.open(never).close()
    shutil.rmtree(never / "data")
    with FingerprintStore.open(never) as store:
        assert verify(store) == [] and not store.stats()["warnings"]


def test_an_import_judges_failures_by_the_paths_it_brought_not_the_merged_records(tmp_path, track):
    """A failure of unknown file time of P stayed beside P's record; an export of a copy
    Q of the same file, analysed later elsewhere, merged into P's record, whose one
    analysis time then dropped the failure of P, which nothing imported had seen."""
    import shutil

    copy = os.path.join(os.path.dirname(track), "copy.flac")
    with FingerprintStore.open(tmp_path / "s") as store:
        _analysed(store, track)
        line = {"type": "failure", "data": {"path": str(track), "error_type": "OSError", "message": "unreadable",
                                            "size": -1, "mtime_ns": -1, "failed_at": time.time()}}
        (tmp_path / "f.jsonl").write_text(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n"
                                          + json.dumps(line) + "\n")
        assert import_store(store, tmp_path / "f.jsonl").failures == 1
        shutil.copy(track, copy)
        with FingerprintStore.open(tmp_path / "elsewhere") as other:
            _analysed(other, copy)
            export_store(other, tmp_path / "copy.jsonl")
        assert import_store(store, tmp_path / "copy.jsonl").records == 1
        assert [f.path for f in store.failures()] == [str(track)]
