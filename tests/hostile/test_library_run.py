"""A hostile library (seeded mutants, special files, odd names) analysed as a user
would: no traceback, every file reported once with a correct status, the run
completes (exit 3: some files failed), the store verifies clean, and a second run
answers every file from the store (failures are not re-read)."""

from __future__ import annotations

import os

import pytest

from tests.hostile.harness import assert_clear, cli, cli_subprocess
from tests.hostile.mutants import ODD_NAMES, build

SEED = 20261125
MUTANTS = 48


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    cases = build(root / "lib", SEED, MUTANTS)
    store = root / "store"
    first = cli_subprocess("analyze", root / "lib", "--json", "--jobs", "2", "--timeout", "60", store=store,
                           timeout=240)
    return root, cases, store, first


def _by_path(run):
    rows: dict[bytes, list[dict]] = {}
    for row in run.json_lines():
        rows.setdefault(os.fsencode(row["path"]), []).append(row)
    return rows


def test_every_file_is_reported_once_with_a_correct_status(hostile):
    _, cases, _, run = hostile
    assert_clear(run, 3)
    rows = _by_path(run)
    wrong = []
    for case in cases:
        got = rows.get(case.path, [])
        if len(got) != 1:
            wrong.append(f"{case.kind}: reported {len(got)} times")
            continue
        row = got[0]
        if row["status"] not in case.expect:
            wrong.append(f"{case.kind}: {row['status']} ({row['error'] or row['partial_reason']}), "
                         f"expected {sorted(case.expect)}")
        elif row["status"] == "error" and (not row["error"] or "\n" in row["error"]
                                          or case.reason.lower() not in row["error"].lower()):
            wrong.append(f"{case.kind}: unclear reason {row['error']!r}")
        elif row["status"] != "error" and any(
                v["value"] is None and v["confidence"] > 0 for v in row["streaming"].values()):
            wrong.append(f"{case.kind}: a null value with confidence > 0")
    assert not wrong, "\n".join(wrong)
    assert len(run.json_lines()) == len(cases)


def test_the_store_verifies_clean_and_a_second_run_reads_nothing_again(hostile):
    root, cases, store, first = hostile
    assert_clear(cli("cache", "verify", store=store), 0)
    second = assert_clear(cli("analyze", root / "lib", "--json", "--jobs", "1", store=store), 3)
    before, after = _by_path(first), _by_path(second)
    assert set(after) == set(before)
    for path, (row,) in after.items():
        assert row["status"] == before[path][0]["status"], path
        special = any(c.path == path and c.scan_problem for c in cases)
        assert row["cached"] or special, f"{path!r} was analysed again"


def test_human_output_shows_odd_names_as_they_are(hostile):
    root, _, store, _ = hostile
    run = assert_clear(cli("analyze", root / "lib", store=store), 3)
    listing = assert_clear(cli("cache", "list", store=store), 0)
    failures = assert_clear(cli("cache", "failures", store=store), 0)
    for raw in ODD_NAMES:
        if b"\n" in raw or b"\t" in raw or b"\x1b" in raw or not raw.isascii():
            continue  # shown escaped (tested below)
        name = raw.decode()
        assert name in run.stdout, name
        assert name in listing.stdout, name
    assert "\\n" in listing.stdout and "\\xff\\xfe" in listing.stdout and "\x1b" not in listing.stdout
    assert "[red]" not in failures.stderr
    shown = assert_clear(cli("cache", "show", root / "lib" / "x[" / "bold]y.wav", store=store), 0)
    assert "x[/bold]y.wav" in shown.stdout
