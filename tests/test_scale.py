"""Catalogue scale: the census behind ``cache stats`` stays right through imports,
deletes, prunes, expiries and evictions on both backends without reading records;
bulk import/export round-trips; Redis values are compact."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from fpcli.store import FingerprintStore, export_store, import_store, prune
from fpcli.store.core import census_tag, tag_of_entry
from fpcli.store.schema import record_to_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)

CENSUS = ("entries", "with_batch", "validated", "previews", "failures", "by_version")


@pytest.fixture(scope="module")
def template():
    return make_records.template_record()


@pytest.fixture(params=["diskcache", "redis"])
def location(request, tmp_path):
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return str(tmp_path / "store")


def _census(stats):
    return {name: stats[name] for name in CENSUS}


def _import(store, template, count, tmp_path, name="in.jsonl"):
    path = tmp_path / name
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n")
        for record in make_records.records(count, template=template):
            fh.write(json.dumps({"type": "record", "data": record_to_json(record)}) + "\n")
    return import_store(store, path)


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
        assert not stale["census_exact"] and any("--recount" in w for w in stale["warnings"])
        fresh = store.stats(recount=True)
        assert fresh["entries"] == 0 and fresh["census_exact"]


def test_redis_evictions_are_recounted(template, tmp_path, redis_url, redis_server):
    import redis

    admin = redis.Redis(port=redis_server.port)
    with FingerprintStore.open(redis_url) as store:
        store.clear()
        admin.config_set("maxmemory", str(int(admin.info("memory")["used_memory"]) + 400_000))
        try:
            _import(store, template, 2000, tmp_path)
        finally:
            admin.config_set("maxmemory", "0")
        stats = store.stats()
        assert not stats["census_exact"]
        fresh = store.stats(recount=True)
        assert fresh["entries"] < 2000 and fresh["entries"] == sum(1 for _ in store.records())


def test_redis_values_are_compact_and_tagged(template, redis_url):
    from fpcli.store.redis_backend import decode, encode, tag_of_value

    text = json.dumps(record_to_json(template), separators=(",", ":"))
    tag = census_tag(template)
    value = encode(text, tag)
    assert decode(value) == text and tag_of_value(value) == tag
    assert len(value) < len(text) / 2
    assert tag_of_entry(template.key, text) == tag
    assert decode(b'{"plain": 1}') == '{"plain": 1}'          # values of older versions still read
