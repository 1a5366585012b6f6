"""Rows read from an SQLite file's leaf pages (``fpcli.store.sqlite_pages``) are the rows
SQL reads, on a sound database, and reading a damaged one never raises."""

from __future__ import annotations

import random
import sqlite3

from fpcli.store.sqlite_pages import table_rows


def _database(path, rows: int) -> dict[int, list]:
    """A table like diskcache's (a rowid alias, text, numbers, NULL, large values that
    spill onto overflow pages), and the rows SQL reads from it."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE Other (a TEXT, b)")
        db.execute("CREATE TABLE T (rowid INTEGER PRIMARY KEY, key TEXT, n INTEGER, x REAL, blob BLOB, none)")
        rng = random.Random(1)
        for i in range(rows):
            db.execute("INSERT INTO T (key, n, x, blob, none) VALUES (?, ?, ?, ?, NULL)",
                       (f"rec:{i}:" + "é" * rng.randrange(0, 3000), rng.randrange(-2**63, 2**63), rng.random(),
                        rng.randbytes(rng.randrange(0, 20000))))
            db.execute("INSERT INTO Other VALUES (?, ?)", (str(i), i))
        db.execute("DELETE FROM T WHERE rowid % 7 = 0")   # freed pages hold deleted rows
        return {row[0]: [None, *row[1:]] for row in db.execute("SELECT rowid, key, n, x, blob, none FROM T")}


def test_the_leaf_pages_hold_the_rows_sql_reads(tmp_path):
    expected = _database(tmp_path / "t.db", 300)
    read = dict(table_rows(tmp_path / "t.db", 6))
    assert read == expected


def test_damaged_pages_lose_their_rows_only_and_never_raise(tmp_path):
    expected = _database(tmp_path / "t.db", 300)
    data = bytearray((tmp_path / "t.db").read_bytes())
    rng = random.Random(2)
    for _ in range(40):
        at = rng.randrange(0, len(data) - 64)
        data[at : at + 64] = rng.randbytes(64)
    (tmp_path / "bad.db").write_bytes(bytes(data))
    read = dict(table_rows(tmp_path / "bad.db", 6))
    survived = [rowid for rowid, values in read.items() if expected.get(rowid) == values]
    assert len(survived) > 0.5 * len(expected)
    (tmp_path / "garbage.db").write_bytes(rng.randbytes(50000))
    assert all(len(values) == 6 for _, values in table_rows(tmp_path / "garbage.db", 6))  # read without raising
    assert list(table_rows(tmp_path / "missing.db", 6)) == []


def test_a_damaged_header_past_its_magic_is_not_trusted(tmp_path):
    """0xff over the header after its magic made 255 reserved bytes a page: every row
    with an overflow chain failed to parse (9 of 20 records lost in a repair)."""
    expected = _database(tmp_path / "t.db", 120)
    data = bytearray((tmp_path / "t.db").read_bytes())
    assert int.from_bytes(data[16:18], "big") == 4096   # the default page size the reader falls back on
    data[16:100] = b"\xff" * 84
    (tmp_path / "bad.db").write_bytes(bytes(data))
    assert dict(table_rows(tmp_path / "bad.db", 6)) == expected
