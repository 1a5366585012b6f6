"""Catalogue scale: the census behind ``cache stats`` stays right through imports,
deletes, prunes, expiries and evictions on both backends without reading records;
bulk import/export round-trips; Redis values are compact."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path

import pytest

from fpcli.store import FingerprintStore, StoreError, export_store, import_store, prune, verify
from fpcli.store.census import census_tag, tag_of_entry
from fpcli.store.schema import record_to_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)

CENSUS = ("entries", "with_batch", "validated", "previews", "failures", "by_version")




def _census(stats):
    return {name: stats[name] for name in CENSUS}


def _import(store, template, count, tmp_path, name="in.jsonl"):
    return import_store(store, _export_file(template, count, tmp_path / name))


def _export_file(template, count, path):
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n")
        for record in make_records.records(count, template=template):
            fh.write(json.dumps({"type": "record", "data": record_to_json(record)}) + "\n")
    return path


def test_an_import_batch_is_written_in_one_transaction(location, template, monkeypatch):
    """A batch's records, path entries and candidates went in slices of 1,000 writes,
    each its own transaction or pipeline: a kill -9 between them left records without
    their path entries (a sweep found 1,000 records with 2,000 entries). One batch of
    400 records (1,200 writes) is now one put_many_unless_changed: one transaction on
    diskcache, one pipeline on Redis."""
    with FingerprintStore.open(location) as store:
        store.clear()
        calls = []
        real = store.backend.put_many_unless_changed
        monkeypatch.setattr(store.backend, "put_many_unless_changed",
                            lambda items, expected: (calls.append(len(items)), real(items, expected))[1])
        store.import_records(list(make_records.records(400, template=template)))
        assert calls == [1200]
        assert store.stats()["entries"] == 400 and verify(store) == []


def test_census_matches_a_recount_through_imports_and_deletes(location, template, tmp_path):
    with FingerprintStore.open(location) as store:
        store.clear()
        report = _import(store, template, 200, tmp_path)
        assert report.records == 200 and not report.rejected
        kept = store.stats()
        assert kept["entries"] == 200 and kept["previews"] == 10 and kept["with_batch"] == 170
        assert kept["validated"] == 20 and kept["census_exact"]
        _import(store, template, 200, tmp_path)               # the same again: merged, not counted twice
        assert _census(store.stats()) == _census(kept)
        for record in list(store.records())[:30]:
            store.delete_record(record)
        after = store.stats()
        assert after["entries"] == 170
        assert _census(after) == _census(store.stats(recount=True))
        store.clear()
        assert store.stats()["entries"] == 0


def test_a_count_that_is_no_number_is_counted_again(location, template, tmp_path):
    """A census count edited by hand to text ("abc" in the SQLite table, "y" in the
    Redis hash) stopped stats and verify with a traceback (int("y")), and verify
    --repair could not mend it. It is taken as never counted: stats counts again."""
    with FingerprintStore.open(location) as store:
        store.clear()
        _import(store, template, 40, tmp_path)
        assert store.stats()["entries"] == 40
        backend = store.backend
        if location.startswith("redis://"):
            backend._client.hset(backend._meta + "census", "rec:v1:---", "y")
        else:
            with backend._data.transact():
                backend._data._sql("UPDATE FpcliCensus SET n = 'abc' WHERE tag LIKE 'rec%'")
        assert backend.census() == (None, None)
        assert store.stats()["entries"] == 40 and backend.census()[0] is not None
        assert verify(store) == []


def test_stats_reads_no_record(location, template, tmp_path, monkeypatch):
    with FingerprintStore.open(location) as store:
        store.clear()
        _import(store, template, 50, tmp_path)
        store.stats()
        reads = []
        for name in ("get", "get_many", "items", "keys"):
            original = getattr(store.backend, name)
            monkeypatch.setattr(store.backend, name,
                                lambda *a, _o=original, _n=name, **k: reads.append(_n) or _o(*a, **k))
        assert store.stats()["entries"] == 50
        assert reads == []


def test_prune_keeps_the_census(location, template, tmp_path):
    with FingerprintStore.open(location) as store:
        store.clear()
        _import(store, template, 100, tmp_path)               # their paths do not exist: all pruned
        assert len(prune(store)) == 100
        assert store.stats()["entries"] == 0 == store.stats(recount=True)["entries"]


def test_an_interrupted_prune_says_what_it_dropped(location, template, tmp_path, monkeypatch, capsys):
    """A Ctrl-C during a prune said only "interrupted": 1,770 of 20,000 entries were
    dropped and nothing said which. The prune lists what it dropped, then stops; a
    store error mid-prune says how many went before it, and keeps its repair hint."""
    from fpcli.store import maintenance
    from fpcli.store.maintenance import PruneInterrupted
    from tests.test_cli_output import _main

    with FingerprintStore.open(location) as store:
        store.clear()
        _import(store, template, 30, tmp_path)                # their paths do not exist: all to prune
    real, calls = maintenance._pruned_paths, []

    def stopped_at_the_eleventh(store, record, dry_run):
        calls.append(record.key)
        if len(calls) == 11:
            raise KeyboardInterrupt
        return real(store, record, dry_run)

    monkeypatch.setattr(maintenance, "_pruned_paths", stopped_at_the_eleventh)
    assert _main(monkeypatch, "--store", location, "cache", "prune", "--json") == 130
    out, err = capsys.readouterr()
    dropped = [json.loads(line) for line in out.splitlines()]
    assert len(dropped) == 10 and all(not d["dry_run"] for d in dropped)
    assert "interrupted: 10 path(s) were dropped before it" in err
    def lost_after_four(store, record, dry_run):
        calls.append(record.key)
        if len(calls) > 4:
            raise StoreError("the store is damaged", repairable=True)
        return real(store, record, dry_run)

    calls.clear()
    monkeypatch.setattr(maintenance, "_pruned_paths", lost_after_four)
    with FingerprintStore.open(location) as store:
        assert store.stats()["entries"] == 20
        with pytest.raises(StoreError, match="damaged; 4 path.s. were dropped before it") as lost:
            maintenance.prune(store)
        assert lost.value.repairable   # the way out (verify --repair) is still said
        calls.clear()
        monkeypatch.setattr(maintenance, "_pruned_paths", stopped_at_the_eleventh)
        with pytest.raises(PruneInterrupted, match="nothing was dropped .a dry run."):
            maintenance.prune(store, dry_run=True)


def test_records_dropped_as_superseded_are_counted_one_by_one(template, tmp_path, monkeypatch):
    """An interrupt inside a batch of former-version records to drop lost the batch's
    count: those deleted before it were not said (up to 999)."""
    from fpcli.store.maintenance import Pruned, _drop_superseded

    with FingerprintStore.open(tmp_path / "s") as store:
        _import(store, template, 10, tmp_path)
        # Records whose key holds a record of the current parameters stand in for
        # former ones already analysed again (their own keys: each is "present").
        records = list(store.records())[:6]
        real, calls = store.delete_record_alone, []

        def interrupted_at_the_fourth(key):
            calls.append(key)
            if len(calls) == 4:
                raise KeyboardInterrupt
            return real(key)

        monkeypatch.setattr(store, "delete_record_alone", interrupted_at_the_fourth)
        removed: list[Pruned] = []
        with pytest.raises(KeyboardInterrupt):
            _drop_superseded(store, records, False, removed)
        assert len(removed) == 3 and store.stats()["entries"] == 7


def test_import_export_round_trip(location, template, tmp_path):
    with FingerprintStore.open(location) as store:
        store.clear()
        _import(store, template, 3000, tmp_path)
        counts = export_store(store, tmp_path / "out.jsonl")
        assert counts["records"] == 3000
    with FingerprintStore.open(tmp_path / "other") as other:
        import_store(other, tmp_path / "out.jsonl")
        export_store(other, tmp_path / "back.jsonl")
        assert other.stats()["entries"] == 3000
    lines = [sorted(open(tmp_path / name).read().splitlines()[1:]) for name in ("out.jsonl", "back.jsonl")]
    assert lines[0] == lines[1]


def test_diskcache_expiries_and_evictions_leave_the_census_right(template, tmp_path):
    with FingerprintStore.open(tmp_path / "ttl", ttl_s=0.5) as store:
        _import(store, template, 100, tmp_path)
        time.sleep(0.7)
        expired, _ = store.backend.maintain()
        assert expired == 100
        assert store.stats()["entries"] == 0 == store.stats(recount=True)["entries"]
    with FingerprintStore.open(tmp_path / "ttl2", ttl_s=0.5) as store:
        _import(store, template, 20, tmp_path)
        time.sleep(0.7)
        stats = store.stats()   # no write since: stats itself lets them go (it counted them as held)
        assert (stats["entries"], stats["expiries"]) == (0, 20)
    with FingerprintStore.open(tmp_path / "small", size_limit_mb=4) as store:  # about half the records fit
        _import(store, template, 1500, tmp_path)
        stats = store.stats()
        assert stats["evictions"] > 0 and 0 < stats["entries"] < 1500
        assert _census(stats) == _census(store.stats(recount=True))


def test_redis_expiries_make_stats_say_stale_until_recounted(template, tmp_path, redis_url):
    with FingerprintStore.open(redis_url, ttl_s=1) as store:
        store.clear()
        _import(store, template, 50, tmp_path)
        assert store.stats()["entries"] == 50
        time.sleep(1.5)
        deadline = time.monotonic() + 30
        while store.backend.count("rec:") and time.monotonic() < deadline:  # the server's active expiry
            time.sleep(0.2)
        stale = store.stats()
        assert not stale["census_exact"] and any("counted again" in w for w in stale["warnings"])
        fresh = store.stats(recount=True)
        assert fresh["entries"] == 0 and fresh["census_exact"]


def test_redis_evictions_are_recounted(template, tmp_path, redis_url, redis_server):
    import redis

    admin = redis.Redis(port=redis_server.port)
    with FingerprintStore.open(redis_url) as store:
        # A small import first, so that what an import holds beyond its data (the
        # scripts, the client's buffers) is in the baseline: on a fresh server a margin
        # of 400 KB was spent before the first record, and nothing was left to evict.
        _import(store, template, 50, tmp_path, name="warm.jsonl")
        store.clear()
        admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 1_500_000))
        try:
            _import(store, template, 2000, tmp_path)
        finally:
            admin.config_set("maxmemory", "0")
        stats = store.stats()
        assert not stats["census_exact"]
        fresh = store.stats(recount=True)
        assert fresh["entries"] < 2000 and fresh["entries"] == sum(1 for _ in store.records())


def test_records_expired_on_redis_are_a_census_problem_a_repair_mends(template, tmp_path, redis_url):
    """After every record expired, stats counted them still (with a warning), verify
    called the store sound and its repair, finding no problem, never counted again."""
    from fpcli.store import repair

    with FingerprintStore.open(redis_url, ttl_s=1) as store:
        _import(store, template, 20, tmp_path)
    time.sleep(2.2)
    with FingerprintStore.open(redis_url) as store:
        (problem,) = verify(store)
        assert problem.message.startswith("census:") and "expired" in problem.message
        assert repair(store, tmp_path / "q.jsonl")["census"] == 1
        assert verify(store) == [] and store.stats()["entries"] == 0


def test_an_import_says_what_redis_evicted_as_redis_counts_it(template, tmp_path, redis_url, redis_server):
    """On Redis the import said "1459 records were evicted by the store's size limit
    meanwhile (--store-size-mb)": Redis counts keys of any kind and database (505
    records were lost), and --store-size-mb is refused with a Redis store."""
    import redis
    from typer.testing import CliRunner

    from fpcli.cli import app

    export = _export_file(template, 1500, tmp_path / "in.jsonl")
    admin = redis.Redis(port=redis_server.port)
    admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 1_500_000))
    try:
        result = CliRunner().invoke(app, ["--store", redis_url, "cache", "import", str(export), "--no-index"])
    finally:
        admin.config_set("maxmemory", "0")
    assert "Redis evicted" in result.stderr and "keys meanwhile" in result.stderr, result.stderr
    assert "--store-size-mb" not in result.stderr


def test_a_redis_import_refused_at_maxmemory_says_part_of_a_batch_may_be_in(template, tmp_path, redis_url,
                                                                              redis_server):
    """A Redis at its maxmemory with noeviction stored part of the first batch (268
    records) and the import said only that Redis was full: a pipeline is not all or
    nothing, and no whole batch had been written, so no count was given."""
    import redis
    from typer.testing import CliRunner

    from fpcli.cli import app

    export = _export_file(template, 1500, tmp_path / "in.jsonl")
    admin = redis.Redis(port=redis_server.port)
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 300_000))
    try:
        result = CliRunner().invoke(app, ["--store", redis_url, "cache", "import", str(export), "--no-index"])
    finally:
        admin.config_set("maxmemory", "0")
        admin.config_set("maxmemory-policy", "volatile-lru")
    assert isinstance(result.exception, StoreError), result.output
    message = str(result.exception)
    assert "full" in message and "part of the batch being written may be stored" in message, message
    assert "run the import again" in message and "its policy refuses writes" in message


def test_a_redis_full_under_the_recommended_policy_says_nothing_is_left_to_evict(redis_url, redis_server):
    """Full of keys without an expiry under volatile-lru, Redis was told to set
    volatile-lru."""
    import redis

    admin = redis.Redis(port=redis_server.port)
    admin.set("someone-elses", b"x" * 400_000)   # no expiry: volatile-lru may not evict it
    admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 10_000))
    try:
        with FingerprintStore.open(redis_url) as store, pytest.raises(StoreError) as raised:
            # 2 MB that deflate cannot shrink: far past the 10 KB of room, which connections
            # closing meanwhile can widen (80 KB of '"a",' deflated to a few hundred bytes)
            store.backend.put("cand:x", json.dumps(base64.b64encode(os.urandom(1_500_000)).decode()))
    finally:
        admin.config_set("maxmemory", "0")
        admin.delete("someone-elses")
    message = str(raised.value)
    assert "nothing it may evict is left" in message and "set volatile-lru" not in message, message


def test_a_redis_import_refused_before_writing_says_nothing_of_a_partial_batch(template, tmp_path, redis_url):
    """An export of another version on Redis was said to have stored part of a batch."""
    export = _export_file(template, 3, tmp_path / "in.jsonl")
    lines = export.read_text().splitlines()
    export.write_text("\n".join(['{"type": "fpcli-store-export", "version": 99}', *lines[1:]]) + "\n")
    with FingerprintStore.open(redis_url) as store, pytest.raises(StoreError) as raised:
        import_store(store, export)
    assert "99" in str(raised.value) and "part of the batch" not in str(raised.value)


def test_redis_counts_are_not_called_exact_after_a_race_or_a_killed_clear(template, tmp_path, redis_url,
                                                                           monkeypatch):
    """A recount while another client wrote replaced that client's counts with its own
    scan's (14,500 counted, 15,000 there, "exact"); a clear killed after deleting the
    records left the old counts against an empty store (15,000 counted, 0 there)."""
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        _import(store, template, 30, tmp_path)
        backend = store.backend
        generations = iter([7, 8])          # a write by another client during the scan
        monkeypatch.setattr(backend, "generation", lambda: next(generations))
        backend.recount(tag_of_entry)
        monkeypatch.undo()
        stats = store.stats()
        assert not stats["census_exact"] and any("other clients wrote" in w for w in stats["warnings"])
        assert store.stats(recount=True)["census_exact"]

        real_delete = backend._client.delete

        def killed_at_the_meta_keys(*keys):
            if any(str(k).startswith("fpcli:meta:") for k in keys):
                raise KeyboardInterrupt
            return real_delete(*keys)

        monkeypatch.setattr(backend._client, "delete", killed_at_the_meta_keys)
        with pytest.raises(KeyboardInterrupt):
            store.clear()
        monkeypatch.undo()
        assert store.stats()["entries"] == 0 == sum(1 for _ in store.records())


def test_a_redis_client_killed_after_its_writes_leaves_the_counts_exact(template, redis_url, monkeypatch):
    """The values went in one pipeline (SET ... GET) and the counts in a second one: a
    client killed between the two (one kill -9 in about 30 of an import) left records
    that stats did not count, called exact. Each write and delete now moves its count
    in the same atomic step; here the client dies as soon as its writes return."""
    import redis.client

    class Killed(BaseException):
        pass

    real_execute = redis.client.Pipeline.execute

    def execute_then_die(self, *args, **kwargs):
        journal = any(str(command[0]).upper() == "INCRBY" for command, _ in self.command_stack)
        replies = real_execute(self, *args, **kwargs)
        if not journal:   # the journal's entry before the writes is not where it dies
            raise Killed
        return replies

    with FingerprintStore.open(redis_url) as store:
        store.clear()
        records = list(make_records.records(20, template=template))
        monkeypatch.setattr(redis.client.Pipeline, "execute", execute_then_die)
        with pytest.raises(Killed):
            store.import_records(records)
        with pytest.raises(Killed):
            store.backend.put_many([(records[0].key, '"junk"', None)])  # a record replaced by an untagged value
        monkeypatch.undo()
        assert store.backend.delete(records[1].key) and not store.backend.delete(records[1].key)
        stats = store.stats()
        assert stats["census_exact"] and stats["entries"] == 18 == store.stats(recount=True)["entries"]


def test_redis_values_are_compact_and_tagged(template, redis_url):
    from fpcli.store.redis_backend import decode, encode, tag_of_value

    text = json.dumps(record_to_json(template), separators=(",", ":"))
    tag = census_tag(template)
    value = encode(text, tag)
    assert decode(value) == text and tag_of_value(value) == tag
    assert len(value) < len(text) / 2
    assert tag_of_entry(template.key, text) == tag
    assert decode(b'{"plain": 1}') == '{"plain": 1}'          # values of older versions still read


def _variants(template):
    """Records with and without each optional block."""
    import dataclasses

    records = list(make_records.records(40, template=template))
    return records + [dataclasses.replace(records[0], timbre=None, dupe_key=None, batch=None, validation=None)]


def test_record_text_is_the_json_of_record_to_json(template):
    from fpcli.store.schema import dumps, record_text

    for record in _variants(template):
        text = record_text(record)
        assert text.isascii() and json.loads(text) == json.loads(dumps(record_to_json(record)))


def test_record_text_of_odd_paths_and_numbers(template):
    """The fast writer leaves to ``json`` what it would write otherwise: non-ASCII and
    undecodable path bytes come out as ASCII escapes, and a NaN is refused, not
    written as null."""
    import dataclasses
    import math

    from fpcli.store.records import PathSeen
    from fpcli.store.schema import record_text

    record = next(make_records.records(1, template=template))
    for path in ("/music/Canción é.flac", os.fsdecode(b"/music/\xff\xfe.flac"), "/music/🎵.flac"):
        odd = dataclasses.replace(record, paths=(PathSeen(path, 1),))
        text = record_text(odd)
        assert text.isascii() and json.loads(text)["paths"][0]["path"] == path
    values = {**record.streaming.values, "tempo_bpm": math.nan}
    broken = dataclasses.replace(record, streaming=dataclasses.replace(record.streaming, values=values))
    with pytest.raises(ValueError):
        record_text(broken)


def test_every_float_of_a_record_is_checked_before_the_fast_writer(template):
    """``record_text`` hands a record to orjson (which writes NaN as null without a word)
    only when ``_finite_numbers`` finds every float finite: a NaN put into each float
    of the record in turn, found by walking its dataclasses and dicts, is refused. A
    float field added to the record later and left out of ``_finite_numbers`` fails
    here."""
    from fpcli.store.schema import record_text

    record = next(r for r in make_records.records(40, template=template)
                  if r.batch is not None and r.validation is not None)
    places = list(_float_places(record))
    assert len(places) > 50  # values, confidences, times, the verdict's numbers
    for path in places:
        with pytest.raises(ValueError):
            record_text(_with_nan(record, path))


def _float_places(obj, path=()):
    """Paths (attribute names and dict keys) to every float inside ``obj``."""
    import dataclasses

    if isinstance(obj, float):
        yield path
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _float_places(value, (*path, key))
    elif dataclasses.is_dataclass(obj) and type(obj).__name__ != "Timbre":  # the timbre is packed bytes
        for field in dataclasses.fields(obj):
            yield from _float_places(getattr(obj, field.name), (*path, field.name))


def _with_nan(obj, path):
    import dataclasses

    if not path:
        return float("nan")
    head, rest = path[0], path[1:]
    if isinstance(obj, dict):
        return {**obj, head: _with_nan(obj[head], rest)}
    return dataclasses.replace(obj, **{head: _with_nan(getattr(obj, head), rest)})


def test_a_batch_parse_gives_what_each_parse_gives(template, monkeypatch):
    from fpcli.errors import BadEntryError
    from fpcli.store import schema
    from fpcli.store.schema import parse_record, parse_records

    monkeypatch.setattr(schema, "GATE_MIN_BATCH", 2)   # the batch through the typed gate, singles not

    variants = _variants(template)[:3]
    good = [record_to_json(r) for r in variants]  # the timbre packed, as stored
    listed = [{**g, "timbre": r.timbre.to_dict()} for g, r in zip(good, variants, strict=True)]  # as imports may
    asymmetric = json.loads(json.dumps(listed[0]))
    asymmetric["timbre"]["cov"][0][1] += 1.0
    indefinite = json.loads(json.dumps(listed[0]))
    indefinite["timbre"]["cov"][0][0] = -50.0
    bad_digest_and_timbre = json.loads(json.dumps(indefinite))
    bad_digest_and_timbre["digest"] = "xyz"
    ragged = json.loads(json.dumps(listed[1]))
    ragged["timbre"]["cov"][3] = [1.0]
    items = [("a", good[0]), ("b", asymmetric), ("c", listed[1]), ("d", indefinite), ("e", "not an object"),
             ("f", bad_digest_and_timbre), ("g", ragged), ("h", good[2])]
    batch = parse_records(items)
    for (key, data), result in zip(items, batch, strict=True):
        try:
            single = parse_record(key, data)
        except BadEntryError as exc:
            assert isinstance(result, BadEntryError) and result.problems == exc.problems and result.key == key
        else:
            assert result == single
    assert [isinstance(r, BadEntryError) for r in batch] == [False, True, False, True, True, True, True, False]
    assert batch[1].problems == ["timbre.cov is not symmetric"]
    assert batch[3].problems == ["timbre.cov is not positive semi-definite"]
    assert len(batch[5].problems) == 2


def test_import_rejects_bad_lines_in_line_order_and_keeps_the_rest(template, tmp_path):
    records = list(make_records.records(5, template=template))
    bad = {**record_to_json(records[1]), "timbre": records[1].timbre.to_dict()}
    bad["timbre"]["cov"][2][5] += 3.0
    lines = [json.dumps({"type": "fpcli-store-export", "version": 2}),
             json.dumps({"type": "record", "data": record_to_json(records[0])}),
             json.dumps({"type": "record", "data": bad}),
             "{not json",
             json.dumps({"type": "record", "data": record_to_json(records[2])})]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    with FingerprintStore.open(tmp_path / "store") as store:
        report = import_store(store, tmp_path / "in.jsonl")
        assert report.records == 2
        assert [r.split(":")[0] for r in report.rejected] == ["line 3", "line 4"]
        assert "timbre.cov is not symmetric" in report.rejected[0]
        assert {r.key for r in store.records()} == {records[0].key, records[2].key}


def test_an_import_that_fails_keeps_whole_batches_and_says_why(template, tmp_path, monkeypatch):
    """A write that fails (a full disk) is raised as it was, and the batches written
    before it are whole; a source that breaks off is a clear error (no traceback from
    the command), not taken for the export's end."""
    from fpcli.store import StoreError, maintenance

    BATCH = 10
    monkeypatch.setattr(maintenance, "BATCH", BATCH)
    path = _export_file(template, 10 * BATCH + 5, tmp_path / "in.jsonl")
    with FingerprintStore.open(tmp_path / "store") as store:
        real, calls = store.import_batch, []

        def fail_on_the_third(items):
            calls.append(len(items))
            if len(calls) == 3:
                raise StoreError("the store is full")
            return real(items)

        monkeypatch.setattr(store, "import_batch", fail_on_the_third)
        with pytest.raises(StoreError, match="full; 20 records and 0 failures were imported before it, in whole "
                                             "batches: run the import again to complete it"):
            import_store(store, path)
        assert store.stats()["entries"] == 2 * BATCH

    class BreaksOff:
        def __init__(self, lines):
            self.lines = iter(lines)

        def readline(self, limit=-1):
            line = next(self.lines, None)
            if line is None:
                raise OSError(5, "Input/output error")
            return line

    lines = path.read_bytes().splitlines(keepends=True)[: BATCH + 5]
    with FingerprintStore.open(tmp_path / "store2") as store:
        with pytest.raises(StoreError, match="reading the export failed .Input/output error.; 10 records and 0 "
                                             "failures were imported before it, in whole batches"):
            import_store(store, BreaksOff(lines))  # type: ignore[arg-type]
        assert store.stats()["entries"] == BATCH  # the whole batch before the failure


def test_diskcache_bulk_writes_replace_rows_and_keep_the_census(tmp_path):
    with FingerprintStore.open(tmp_path / "store") as store:
        backend = store.backend
        store.stats()                                             # a new store is counted once, then kept
        backend.put_many([("rec:a", '"1"', "rec:v2:b--"), ("rec:b", '"2"', "rec:v2:b--"), ("rec:a", '"3"', "fail")])
        assert backend.get_many(["rec:a", "rec:b", "rec:c"]) == ['"3"', '"2"', None]
        assert backend.census()[0] == {"rec:v2:b--": 1, "fail": 1}
        backend.put_many([("rec:b", '"4"', "rec:v2:-v-"), ("path:x", '"5"', None)])
        assert backend.census()[0] == {"rec:v2:-v-": 1, "fail": 1}
        assert backend.count("") == 3 == len(backend._data)    # diskcache's own count (its triggers) agrees
        assert backend.recount(lambda key, text: None) == {"rec:v2:-v-": 1, "fail": 1}
        long = '"' + "x" * 40_000 + '"'                           # kept in a file by diskcache
        backend.put_many([("rec:a", long, "fail")])
        assert backend.get("rec:a") == long
        backend.put_many([("rec:a", '"6"', "fail")])
        assert backend.get_many(["rec:a"]) == ['"6"'] and backend.census()[0]["fail"] == 1


def test_diskcache_bulk_writes_keep_diskcache_count_and_size_without_its_row_triggers(tmp_path):
    """Batches large enough write with diskcache's row triggers paused (half the SQL
    time of an import) and adjust its count and size once; they stand as they were
    after, and a batch that fails takes its changes back with it."""
    from fpcli.store import StoreError
    from fpcli.store.diskcache_backend import PAUSE_MIN_ROWS, ROW_TRIGGERS

    def facts(backend):
        con = backend._data._con
        settings = dict(con.execute("SELECT key, value FROM Settings WHERE key IN ('count', 'size')").fetchall())
        rows = con.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM Cache").fetchone()
        triggers = dict(con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").fetchall())
        return (settings["count"], settings["size"]), tuple(rows), triggers

    with FingerprintStore.open(tmp_path / "store") as store:
        backend = store.backend
        before = facts(backend)[2]
        assert set(ROW_TRIGGERS) <= set(before)
        long = '"' + "x" * 40_000 + '"'                              # kept in a file: counted by its size
        backend.put_many([("path:big", long, None)])
        n = 3 * PAUSE_MIN_ROWS
        backend.put_many([(f"rec:{i}", f'"{i}"', "fail") for i in range(n)])          # inserts
        backend.put_many([(f"rec:{i}", f'"{i}!"', "fail") for i in range(0, n, 2)] +  # updates and inserts
                         [(f"path:{i}", '"p"', None) for i in range(n)])
        settings, rows, triggers = facts(backend)
        assert settings == rows and rows[0] == 2 * n + 1 and rows[1] > 40_000 and triggers == before
        assert backend.count("") == len(backend._data) == 2 * n + 1

        class Refused(Exception):
            pass

        con = backend._data._con
        con.create_function("refuse", 1, lambda v: (_ for _ in ()).throw(Refused()) if v == '"stop"' else 0)
        con.execute("CREATE TRIGGER refuse_stop BEFORE INSERT ON Cache BEGIN SELECT refuse(NEW.value); END")
        with pytest.raises(StoreError):                               # the guard's word for the SQLite error
            backend.put_many([(f"new:{i}", '"stop"' if i == n - 1 else '"x"', None) for i in range(n)])
        con.execute("DROP TRIGGER refuse_stop")
        assert facts(backend) == (settings, rows, triggers)           # nothing of the failed batch
        backend.put_many([(f"new:{i}", '"x"', None) for i in range(n)])
        settings, rows, _ = facts(backend)
        assert settings == rows and rows[0] == 3 * n + 1


def test_diskcache_bulk_reads_skip_expired_rows(tmp_path):
    with FingerprintStore.open(tmp_path / "store", ttl_s=0.2) as store:
        store.backend.put_many([("rec:a", '"1"', None), ("path:a", '"2"', None)])
        time.sleep(0.3)
        assert store.backend.get_many(["rec:a", "path:a"]) == [None, '"2"']   # only records expire


def test_a_long_journal_extension_keeps_the_last_changes(location):
    from fpcli.store.protocol import JOURNAL_LIMIT

    with FingerprintStore.open(location) as store:
        store.clear()
        backend = store.backend
        start = backend.generation()
        backend.journal_extend(["rec:first"])
        keys = [f"rec:{n}" for n in range(JOURNAL_LIMIT + 500)]
        assert backend.journal_extend(keys) == start + 1 + len(keys)
        assert backend.journal_since(start) is None                    # too far behind: rebuild
        assert backend.journal_since(start + 1 + 600) == keys[600:]
        backend.journal_extend(["rec:last"])
        assert backend.journal_since(backend.generation() - 2) == [keys[-1], "rec:last"]


def test_cache_list_with_a_limit_stops_reading(template, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import fpcli.store.reading as reading
    from fpcli.cli import app
    from fpcli.store.protocol import BATCH

    with FingerprintStore.open(tmp_path / "store") as store:
        _import(store, template, 3 * BATCH, tmp_path)
    parsed = []
    original = reading.parse_records
    monkeypatch.setattr(reading, "parse_records", lambda items: parsed.append(len(items)) or original(items))
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "store"), "cache", "list", "--limit", "7", "--json"])
    assert result.exit_code == 0, result.output
    paths = [json.loads(line)["path"] for line in result.output.splitlines()]
    assert len(paths) == 7 and paths == sorted(paths)
    assert sum(parsed) <= BATCH                       # one batch read of the 3,000 records


def test_a_new_store_is_counted_from_the_start(location, template, tmp_path, monkeypatch):
    with FingerprintStore.open(location) as store:  # a new folder, or a flushed Redis: census exact, all zero
        _import(store, template, 30, tmp_path)
        monkeypatch.setattr(store.backend, "recount", lambda tag_of: pytest.fail("stats scanned the store"))
        stats = store.stats()
        assert stats["entries"] == 30 and stats["census_exact"]


def test_maintenance_selects_through_the_time_indexes_not_every_record(tmp_path):
    """Each save and each import batch runs maintain(): its selections must use the
    expire_time / access_time indexes, not walk the key index over every record
    (0.1 s a call at 50,000 records before, growing with the store)."""
    from fpcli.store.diskcache_backend import EXPIRED_RECORDS, LEAST_RECENT_RECORDS

    with FingerprintStore.open(tmp_path / "s") as store:
        sql = store.backend._data._sql   # type: ignore[attr-defined]
        expired = " ".join(row[-1] for row in sql("EXPLAIN QUERY PLAN " + EXPIRED_RECORDS, (time.time(),)))
        oldest = " ".join(row[-1] for row in sql("EXPLAIN QUERY PLAN " + LEAST_RECENT_RECORDS, (10,)))
    assert "Cache_expire_time" in expired and "Cache_key_raw" not in expired
    assert "Cache_access_time" in oldest and "TEMP B-TREE" not in oldest and "Cache_key_raw" not in oldest


def test_verify_checks_records_a_batch_at_a_time_and_names_each_bad_one(template, tmp_path):
    """Records are checked in batches (verify ran at a third of an export's pace, one
    parse and one covariance check at a time); each bad one is still named by its key,
    a record stored under another record's key too."""
    with FingerprintStore.open(tmp_path / "s") as store:
        records = list(make_records.records(2500, template=template))
        store.import_records(records)
        first, moved, broken = records[0], records[1200], records[2400]
        store.backend.put(moved.key, store.backend.get(first.key), census_tag(moved))
        store.backend.put(broken.key, '{"schema": 3}', census_tag(broken))
        by_key = {p.key: p.message for p in verify(store) if p.key}
    assert by_key[moved.key] == "digest/params_key do not match the key"
    assert broken.key in by_key and set(by_key) == {moved.key, broken.key}


def _import_emptied_after_the_first_batch(location, template, tmp_path, empty):
    """import_store of 1,500 records (two batches), ``empty`` run once after the first."""
    source = _export_file(template, 1500, tmp_path / "in.jsonl")
    done: list[bool] = []

    def empty_once(batch):
        if not done:
            done.append(True)
            empty()

    with FingerprintStore.open(location) as store:
        store.clear()
        with pytest.raises(StoreError, match="the store was emptied or replaced while importing"):
            import_store(store, source, on_records=empty_once)
        assert store.stats(recount=True)["entries"] < 1500


def test_an_import_into_a_store_another_process_cleared_says_so(location, template, tmp_path):
    """A cache clear by another process during an import lost the records written
    before it, and the import said they were all imported, exit 0."""
    def clear():
        with FingerprintStore.open(location) as other:
            other.clear()

    _import_emptied_after_the_first_batch(location, template, tmp_path, clear)


def test_an_import_into_a_redis_flushed_meanwhile_says_so(redis_url, template, tmp_path):
    """A Redis restarted without persistence or a FLUSHDB during an import: "imported
    3000 records", exit 0, with 1,000 stored."""
    import redis

    _import_emptied_after_the_first_batch(redis_url, template, tmp_path, redis.Redis.from_url(redis_url).flushdb)
