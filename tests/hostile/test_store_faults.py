"""Store faults: SQLite corruption of data/ and meta/, pickled entries, hostile imports,
a read-only store. Each must give one clear line (or a clear report) and a way out;
never a traceback, and every command keeps working afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys

import diskcache
import pytest

from tests.hostile.faults import (
    MUST_BE_SEEN,
    a_record_line,
    clean_library,
    copy_store,
    corrupt_store,
    hostile_import_lines,
)
from tests.hostile.harness import assert_clear, cli, cli_subprocess

TRACKS = 4


@pytest.fixture(scope="module")
def populated(tmp_path_factory):
    """A small library analysed into a diskcache store (4 tracks, 1 failure)."""
    root = tmp_path_factory.mktemp("faults")
    library = clean_library(root / "lib", TRACKS)
    store = root / "store"
    assert_clear(cli("analyze", library, "--jobs", "2", store=store), 3)
    assert_clear(cli("cache", "export", root / "export.jsonl", store=store), 0)
    return root, library, store


def _every_command_works(store, library, tmp_path, *, allow_fatal: bool = False) -> None:
    codes = (0, 1, 3) if allow_fatal else (0, 3)
    for args in (("cache", "stats"), ("cache", "list"), ("cache", "failures"), ("cache", "prune", "--dry-run"),
                 ("cache", "export", tmp_path / "again.jsonl"), ("analyze", library, "--jobs", "1"),
                 ("search", library / "track001.wav", "-s", "fast")):
        assert_clear(cli(*args, store=store), *codes)
    # a record skipped as bad is "not in the store": one line, exit 3 (exit 1 only where the store is unusable)
    assert_clear(cli("cache", "show", library / "track000.wav", store=store), *((0, 1, 3) if allow_fatal else (0, 3)))


# A subset runs in CI; benchmarks/soak.py runs all 30.
CI_CORRUPTIONS = ["data: zero 8 KiB at 4 KiB", "data: truncate to half", "data: replace it with a folder",
                  "data: delete the database", "meta: random 4 KiB at 4 KiB", "meta: replace it with text",
                  "data: bad page size", "meta: truncate to 0"]


@pytest.mark.parametrize("variant", CI_CORRUPTIONS)
def test_sqlite_corruption_is_one_line_and_repairable(populated, tmp_path, variant):
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    corrupt_store(store, variant)
    for args in (("analyze", library, "--jobs", "1"), ("cache", "stats"), ("cache", "list"),
                 ("cache", "export", tmp_path / "rescue.jsonl")):
        assert_clear(cli(*args, store=store), 0, 1, 3)
    check = assert_clear(cli("cache", "verify", store=store), 0, 1, 3)
    if variant in MUST_BE_SEEN:
        assert check.code == 3, check.describe()
    repaired = assert_clear(cli("cache", "verify", "--repair", store=store), 0, 1)
    if repaired.code == 1:  # nothing to rebuild from: the message must say what to do
        assert "move" in repaired.stderr or "import" in repaired.stderr, repaired.describe()
        return
    assert_clear(cli("cache", "verify", store=store), 0)
    _every_command_works(store, library, tmp_path)


@pytest.mark.parametrize("variant", ["data: bad page size", "meta: replace it with text"])
def test_verify_json_of_a_store_that_cannot_be_opened_has_every_key(populated, tmp_path, variant):
    """``cache verify --json`` of a database that cannot be opened lacked ``notes``, which
    every other verify report has (a script reading it met a KeyError)."""
    _, _, source = populated
    sound = assert_clear(cli("cache", "verify", "--json", store=copy_store(source, tmp_path / "sound")), 0)
    store = copy_store(source, tmp_path / "store")
    corrupt_store(store, variant)
    check = assert_clear(cli("cache", "verify", "--json", store=store), 3)
    report = json.loads(check.stdout)
    assert set(report) == set(json.loads(sound.stdout)) and report["problems"], check.describe()


def test_zeroed_data_is_seen_and_analyze_says_one_line(populated, tmp_path):
    """Defect 2: 8 KiB of zeros in data/cache.db: verify exit 3, analyze one error line
    (exit 1) or a clean run, --repair leaves a sound store keeping what is readable."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    corrupt_store(store, "data: zero 8 KiB at 4 KiB")
    assert_clear(cli("cache", "verify", store=store), 3)
    assert_clear(cli("analyze", library, store=store), 1, 3)
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)
    rerun = assert_clear(cli("analyze", library, "--json", store=store), 3)
    assert len([r for r in rerun.json_lines() if r["status"] == "ok"]) == TRACKS


@pytest.mark.parametrize("part", ["data", "meta"])
def test_one_pickled_entry_is_one_bad_entry(populated, tmp_path, part):
    """Defect 13: a pickled value written with plain diskcache."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    with diskcache.Cache(str(store / part)) as raw:
        if part == "data":
            key = next(k for k in raw.iterkeys() if isinstance(k, str) and k.startswith("rec:"))
            raw.set(key, {"pickled": object.__name__})
            raw.set(("a", "tuple"), "pickled key")
        else:
            raw.set("hits", {"pickled": 1})
            raw.set("generation", [1, 2])
    check = assert_clear(cli("cache", "verify", store=store), 3)
    assert "pickled" in check.stdout + check.stderr
    _every_command_works(store, library, tmp_path)
    assert_clear(cli("validate", "-l", library / "track000.wav", store=store), 0, 3, 4)
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)


def test_a_row_naming_a_file_outside_the_store_never_reads_or_removes_it(populated, tmp_path):
    """A row's value file is named by the database: rows planted with ../../notes.txt,
    an absolute path, a FIFO and /dev/zero made list read the outside files (their text
    copied into the repair's quarantine file), hang and read without end, and
    verify --repair and cache clear deleted them. Each is one bad entry now; the
    files are neither read nor removed."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    (tmp_path / "notes.txt").write_text("precious")
    os.mkfifo(tmp_path / "fifo")
    planted = [("rec:" + "0" * 32 + ":v6-80d194806598623d", 2, "../../notes.txt"),
               ("path:" + "0" * 32, 3, str(tmp_path / "notes.txt")),
               ("path:" + "1" * 32, 2, str(tmp_path / "fifo")),
               ("path:" + "2" * 32, 2, "/dev/zero"),
               ("path:" + "3" * 32, 2, "ab/cd/../../../../notes.txt")]
    with contextlib.closing(sqlite3.connect(store / "data" / "cache.db")) as db, db:
        db.executemany("INSERT INTO Cache (key, raw, store_time, access_time, mode, filename, value, size) "
                       "VALUES (?, 1, 0, 0, ?, ?, NULL, 9)", planted)
    listed = assert_clear(cli("cache", "list", store=store), 0)
    assert "precious" not in listed.stdout + listed.stderr
    check = assert_clear(cli("cache", "verify", store=store), 3)
    assert check.stdout.count("not one the store writes") == len(planted)
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert not any("precious" in q.read_text() for q in store.glob("quarantine-*"))
    with contextlib.closing(sqlite3.connect(store / "data" / "cache.db")) as db, db:
        db.executemany("INSERT INTO Cache (key, raw, store_time, access_time, mode, filename, value, size) "
                       "VALUES (?, 1, 0, 0, ?, ?, NULL, 9)", planted[:2])
    assert_clear(cli("cache", "clear", "--yes", store=store), 0)
    assert (tmp_path / "notes.txt").read_text() == "precious" and (tmp_path / "fifo").exists()


@pytest.mark.parametrize("kind", ["rec:", "path:"])
def test_a_byte_that_is_not_utf8_in_one_entry_is_one_bad_entry(populated, tmp_path, kind):
    """One flipped top bit inside one record's JSON (SQLite's integrity check still
    ok): every command that reads the store in batches (a folder's analyze, list,
    export, prune, validate) stopped with "the store is damaged", and a repair said
    "nothing to mend" for ever. Now it is one bad entry: warned about and skipped,
    reported by verify and removed by a repair."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    with diskcache.Cache(str(store / "data")) as raw:
        key = next(k for k in raw.iterkeys() if isinstance(k, str) and k.startswith(kind))
    database = store / "data" / "cache.db"
    content = database.read_bytes()
    stored = _value_text(store, key).encode()
    at = content.find(stored)
    assert at > 0 and content.count(stored) == 1, "the entry's JSON is stored once, as text, in the database"
    database.write_bytes(content[:at + 20] + b"\xff" + content[at + 21:])
    check = assert_clear(cli("cache", "verify", store=store), 3)
    assert key in check.stdout + check.stderr
    _every_command_works(store, library, tmp_path)
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)


def _set_raw_bytes(database, sql: str, *args) -> None:
    """Run ``sql`` on a store part's SQLite file directly (bytes bound as TEXT keep
    bytes that are not UTF-8, as a damaged disk would leave them)."""
    with sqlite3.connect(database) as connection:
        assert connection.execute(sql, args).rowcount == 1


@pytest.mark.parametrize("damage", ["a byte inside a record's path", "a byte of a record's key",
                                    "a byte of a journal entry", "a byte of a meta key", "a byte of a record's tag",
                                    "a byte in a large record's file"])
def test_a_damaged_byte_the_json_or_the_key_would_hide_is_found_and_repaired(populated, tmp_path, damage):
    """Read with surrogateescape, a bad byte inside a JSON string became a lone
    surrogate that the fallback JSON parser took, and a path may hold one (a file
    name that is not UTF-8): verify called the store sound and prune dropped the
    record as gone. A bad byte in a key made the repair itself fail with a
    traceback, and one in a journal entry made every search fail."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    assert_clear(cli("search", library / "track001.wav", "-s", "fast", store=store), 0)   # an index to refresh
    with diskcache.Cache(str(store / "data")) as raw:
        key = next(k for k in raw.iterkeys() if isinstance(k, str) and k.startswith("rec:"))
        text = raw[key]
    if damage == "a byte inside a record's path":
        at = text.index("track00")
        damaged = text[:at].encode() + b"\xff" + text[at + 1:].encode()
        _set_raw_bytes(store / "data" / "cache.db", "UPDATE Cache SET value = CAST(? AS TEXT) WHERE key = ?",
                       damaged, key)
    elif damage == "a byte of a record's key":
        _set_raw_bytes(store / "data" / "cache.db", "UPDATE Cache SET key = CAST(? AS TEXT) WHERE key = ?",
                       key.encode()[:-1] + b"\xff", key)
    elif damage == "a byte of a journal entry":
        assert_clear(cli("analyze", library / "track000.wav", "--force", store=store), 0)   # a journal entry
        with diskcache.Cache(str(store / "meta")) as meta:
            last = meta["generation"]
            (entry,) = meta._sql("SELECT key FROM Journal WHERE generation = ?", (last,)).fetchone()
        _set_raw_bytes(store / "meta" / "cache.db", "UPDATE Journal SET key = CAST(? AS TEXT) WHERE generation = ?",
                       entry.encode() + b"\xff", last)
    elif damage == "a byte of a meta key":   # the generation counter: search kept a stale index
        _set_raw_bytes(store / "meta" / "cache.db", "UPDATE Cache SET key = CAST(? AS TEXT) WHERE key = ?",
                       b"generatio\xff", "generation")
    elif damage == "a byte of a record's tag":   # a rewrite of the record bound it into the census: a traceback
        _set_raw_bytes(store / "data" / "cache.db", "UPDATE Cache SET tag = CAST(? AS TEXT) WHERE key = ?",
                       b"full\xff", key)
        assert_clear(cli("analyze", library, "--force", store=store), 0, 3)
    else:   # over 32 KB, diskcache keeps a value in a file of its own: a damaged byte there was a traceback
        with diskcache.Cache(str(store / "data")) as raw:
            raw.set(key, text[:-1] + " " * 40_000 + "}")
        (value_file,) = list((store / "data").rglob("*.val"))
        content = value_file.read_bytes()
        value_file.write_bytes(content[:30] + b"\xff" + content[31:])
    assert_clear(cli("cache", "verify", store=store), 3)
    _every_command_works(store, library, tmp_path)
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)
    assert_clear(cli("search", library / "track001.wav", "-s", "fast", store=store), 0)


def test_a_rebuilt_part_keeps_its_rows_expiry_tags_and_recency(populated, tmp_path):
    """A rebuild kept each row's value alone: records with a TTL never expired after a
    repair, their census tags were gone, and every row looked used at the same time."""
    import time

    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    database = store / "data" / "cache.db"
    with sqlite3.connect(database) as connection:
        keys = [key for (key,) in connection.execute("SELECT key FROM Cache WHERE key LIKE 'rec:%' ORDER BY key")]
        expire = time.time() + 100_000
        for age, key in enumerate(keys):   # the first key the least recently used
            connection.execute("UPDATE Cache SET expire_time = ?, access_time = ? WHERE key = ?",
                               (expire, 1_000_000.0 + age, key))
        tags = dict(connection.execute("SELECT key, tag FROM Cache WHERE key LIKE 'rec:%'"))
    corrupt_store(store, "data: bad freelist pointer")
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT key, expire_time, tag FROM Cache WHERE key LIKE 'rec:%' "
                                  "ORDER BY access_time").fetchall()
    assert [key for key, _, _ in rows] == keys                       # every record, in the order of their last use
    assert all(abs(expiry - expire) < 60 for _, expiry, _ in rows)   # still expiring when they did
    assert {key: tag for key, _, tag in rows} == tags


def test_a_repair_stopped_midway_leaves_the_damaged_store_as_it_was(populated, tmp_path, monkeypatch):
    """The rebuild wrote the readable rows one commit each into the data part's place,
    after moving the damaged part aside: a repair stopped by Ctrl-C, a kill or a full
    disk left a store of some of the records, which verify called sound. Now the rows
    go into a database beside it, swapped in only when complete."""
    from fpcli.store import diskcache_sqlite

    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    corrupt_store(store, "data: zero 8 KiB at 4 KiB")
    written = []

    def set_then_fail(self, key, value, *args, **kwargs):
        written.append(key)
        if len(written) == 1:
            raise sqlite3.OperationalError("database or disk is full")
        return diskcache.Cache.set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(diskcache_sqlite.LenientCache, "set", set_then_fail)
    failed = assert_clear(cli("cache", "verify", "--repair", store=store), 1)
    assert "nothing was changed" in failed.stderr and len(written) == 1
    monkeypatch.undo()
    assert sorted(p.name for p in store.iterdir()) == ["data", "meta"]   # no half-built part left beside it
    assert_clear(cli("cache", "verify", store=store), 3)                # still damaged, and said so
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)


def test_a_rebuilt_part_not_yet_swapped_in_is_put_in_place(populated, tmp_path):
    """A repair stopped between its two renames: the data part moved aside, its
    complete rebuild beside it. The store opens with it (it was made again empty), and
    a search index saved before is no longer current (the epoch moved)."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    listed = assert_clear(cli("cache", "list", "--json", store=store), 0).json_lines()
    with diskcache.Cache(str(store / "meta")) as meta:
        epoch = meta["epoch"]
    shutil.copytree(store / "data", store / "data.damaged-20261127-000000-1")
    os.rename(store / "data", store / "data.rebuilt-20261127-000000-1")
    assert assert_clear(cli("cache", "list", "--json", store=store), 0).json_lines() == listed
    assert sorted(p.name for p in store.iterdir()) == ["data", "data.damaged-20261127-000000-1", "meta"]
    with diskcache.Cache(str(store / "meta")) as meta:
        assert meta["epoch"] != epoch


def test_a_rebuild_left_by_a_repair_stopped_before_its_swap_is_never_put_in_place(populated, tmp_path):
    """A .rebuilt- part left beside the part it was made from (the repair stopped
    before moving that one aside) was put in place later, when the data part went:
    old entries came back. It is stale: the next repair removes it."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    shutil.copytree(store / "data", store / "data.rebuilt-20261127-000000-1")
    shutil.rmtree(store / "data")
    assert assert_clear(cli("cache", "list", "--json", store=store), 0).json_lines() == []
    corrupt_store(store, "data: zero 8 KiB at 4 KiB")
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert not list(store.glob("data.rebuilt-*"))


def _value_text(store, key: str) -> str:
    with diskcache.Cache(str(store / "data")) as raw:
        return raw[key]


def test_hostile_imports_are_rejected_line_by_line(populated, tmp_path):
    """Defect 3: every bad line rejected with a reason (exit 3); every command works after."""
    root, library, source = populated
    store = copy_store(source, tmp_path / "store")
    record = a_record_line(root / "export.jsonl")
    bad = hostile_import_lines(record)
    good = json.dumps({"type": "record", "data": record})
    text = "\n".join([json.dumps({"type": "fpcli-store-export", "version": 2}), good, *bad.values(), good]) + "\n"
    (tmp_path / "hostile.jsonl").write_text(text)
    run = assert_clear(cli("cache", "import", tmp_path / "hostile.jsonl", store=store), 3)
    rejected = [line for line in run.stderr.splitlines() if line.startswith("rejected")]
    assert len(rejected) == len(bad), run.describe()
    assert "imported 2 records (0 new, the others merged into records stored) and 0 failures" in run.stderr
    _every_command_works(store, library, tmp_path)
    assert_clear(cli("cache", "verify", store=store), 0)
    assert_clear(cli("validate", "-l", library, store=store), 0, 3, 4)


def test_imported_markup_and_weights_are_not_markup(populated, tmp_path):
    """Defect 1 via an imported record, and ``--weights '[/red]=1'``."""
    root, library, source = populated
    store = copy_store(source, tmp_path / "store")
    record = a_record_line(root / "export.jsonl")
    record["paths"] = [{"path": "/music/d/x[/bold]y.wav", "mtime_ns": 1}, {"path": "/m/[red]r.wav", "mtime_ns": 1}]
    record["digest"] = "0" * 32
    (tmp_path / "m.jsonl").write_text(json.dumps({"type": "record", "data": record}) + "\n")
    assert_clear(cli("cache", "import", tmp_path / "m.jsonl", store=store), 0)
    listing = assert_clear(cli("cache", "list", store=store), 0)
    assert "/music/d/x[/bold]y.wav" in listing.stdout and "/m/[red]r.wav" in listing.stdout
    assert_clear(cli("cache", "prune", store=store), 0)
    weights = assert_clear(cli("search", library / "track000.wav", "--weights", "[/red]=1", store=store), 2)
    assert "[/red]" in weights.stderr


@pytest.mark.skipif(os.geteuid() != 0 and sys.platform != "linux", reason="needs Linux")
def test_read_only_store_gives_one_line(populated, tmp_path):
    """A store the user may not write: reads work, writes end with one line (exit 1)."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    (library / "new.wav").write_bytes((library / "track000.wav").read_bytes() + b"\x00\x00")
    for folder, _, files in os.walk(store):
        os.chmod(folder, 0o555)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search") if os.geteuid() == 0 else ()
    try:
        for args, codes in ((("cache", "stats"), (0, 1)), (("cache", "list"), (0, 1)),
                            (("analyze", library), (1, 3)), (("cache", "verify"), (0, 1, 3))):
            run = assert_clear(cli_subprocess(*args, store=store, prefix=prefix, timeout=120), *codes)
            if run.code == 1:
                assert "read-only" in run.stderr or "permission" in run.stderr.lower(), run.describe()
    finally:
        (library / "new.wav").unlink()
        subprocess.run(["chmod", "-R", "u+w", str(store)], check=True)
    shutil.rmtree(store)


def _cache_table_root(store) -> int:
    import sqlite3

    with sqlite3.connect(store / "data" / "cache.db") as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'Cache'").fetchone()[0])


@pytest.mark.parametrize("damage", ["the records table's root page", "the tenth page"])
def test_a_repair_reads_back_every_row_on_an_intact_page(populated, tmp_path, damage):
    """Damage above the rows (the table's root page) hid every row from SQL: the
    repair rebuilt the store empty and said "nothing to mend". Damage that only a
    later query met was "rebuilt" with nothing done, and the store failed to open
    again after every repair. Rows are now read from the table's leaf pages too."""
    _, library, source = populated
    store = copy_store(source, tmp_path / "store")
    page = _cache_table_root(store) if damage.startswith("the records") else 10
    assert page > 1
    with open(store / "data" / "cache.db", "r+b") as db:
        db.seek((page - 1) * 4096)
        db.write(b"\xde\xad" * 2048)
    repaired = assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert "nothing to mend" not in repaired.stderr and ".damaged-" in repaired.stderr, repaired.describe()
    assert_clear(cli("cache", "verify", store=store), 0)
    rerun = assert_clear(cli("analyze", library, "--json", store=store), 3)
    cached = [r for r in rerun.json_lines() if r["status"] == "ok" and r["cached"]]
    assert len(cached) >= (TRACKS if damage.startswith("the records") else TRACKS - 1)


def test_a_record_whose_value_is_null_is_one_bad_entry_and_repaired(populated, tmp_path):
    """A row whose value is NULL was read as no entry: verify reported the census only
    ("4 counted, 3 found"), and every repair counted again and found it again."""
    _, _, source = populated
    store = copy_store(source, tmp_path / "store")
    with diskcache.Cache(str(store / "data")) as raw:
        key = next(k for k in raw.iterkeys() if isinstance(k, str) and k.startswith("rec:"))
    _set_raw_bytes(store / "data" / "cache.db", "UPDATE Cache SET value = NULL WHERE key = ?", key)
    found = assert_clear(cli("cache", "verify", store=store), 3)
    assert f"{key}: no value (an empty field of the database)" in found.stdout + found.stderr
    assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    assert_clear(cli("cache", "verify", store=store), 0)


def test_a_meta_part_read_back_empty_loses_no_record(populated, tmp_path):
    """The meta database (counters, journal) overwritten with random bytes: the repair
    warned "its records are lost" of a store that had kept every one."""
    _, _, source = populated
    store = copy_store(source, tmp_path / "store")
    records_before = assert_clear(cli("cache", "list", "--json", store=source), 0).stdout
    database = store / "meta" / "cache.db"
    database.write_bytes(os.urandom(database.stat().st_size))
    repaired = assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    said = repaired.stdout + repaired.stderr
    assert "1 damaged database parts moved aside" in said and "records are lost" not in said, said
    assert assert_clear(cli("cache", "list", "--json", store=store), 0).stdout == records_before


def test_a_repair_that_reads_nothing_back_says_the_records_are_lost(populated, tmp_path):
    """The data database cut after its first page: the repair moved it aside, said only
    "1 damaged database parts moved aside", and verify called the empty store sound."""
    _, _, source = populated
    store = copy_store(source, tmp_path / "store")
    database = store / "data" / "cache.db"
    database.write_bytes(database.read_bytes()[:4096])
    repaired = assert_clear(cli("cache", "verify", "--repair", store=store), 0)
    said = repaired.stdout + repaired.stderr
    assert "1 damaged database parts moved aside, 0 rows read back" in said
    assert "no entry of the damaged database could be read back: its records are lost" in said
