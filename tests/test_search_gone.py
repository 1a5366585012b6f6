"""Files gone since they were analysed: search hits, --library, playlists and `cache
dupes` show only files that exist; weights that zero every streaming group and a
batch search with no other batch fingerprint are answered as the README says."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import app
from fpcli.errors import ParameterError, SearchError
from fpcli.library import RunOptions, run_library
from fpcli.search import search
from fpcli.store import FingerprintStore
from tests.conftest import write

SR = 22050
GONE = "no such file or folder"  # as accurate reports a candidate deleted since it was stored
runner = CliRunner()


@pytest.fixture
def lib(tmp_path):
    """Six different tracks of 3 s."""
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(6):
        write(root / f"song{i}.wav", synth.music_like(3.0, SR, seed=i, bpm=80 + 12 * i), SR)
    return root


def _analyse(store_dir, *folders) -> None:
    with FingerprintStore.open(store_dir) as store:
        for folder in folders:
            run_library([str(folder)], store, RunOptions(jobs=1))


def _search(store_dir, query, **kwargs):
    with FingerprintStore.open(store_dir) as store:
        return search(store, str(query), strategy="fast", **kwargs)


def _copied_then_deleted(tmp_path, lib):
    """song0's content seen last at lib2/x.wav (the path its index row keeps), which is
    then deleted: lib/song0.wav still holds it."""
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    (tmp_path / "lib2").mkdir()
    shutil.copy(lib / "song0.wav", tmp_path / "lib2" / "x.wav")
    _analyse(store_dir, tmp_path / "lib2")
    os.unlink(tmp_path / "lib2" / "x.wav")
    return store_dir


def test_a_hit_shows_a_copy_that_exists_when_the_path_indexed_is_gone(tmp_path, lib):
    store_dir = _copied_then_deleted(tmp_path, lib)
    result = _search(store_dir, lib / "song1.wav", k=5)
    assert sorted(os.path.basename(h.path) for h in result.hits) == ["song0.wav", "song2.wav", "song3.wav",
                                                                      "song4.wav", "song5.wav"]
    assert all(os.path.exists(h.path) for h in result.hits) and result.skipped == []


def test_a_record_with_no_file_left_is_skipped_and_the_next_one_ranked(tmp_path, lib):
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    nearest = _search(store_dir, lib / "song1.wav", k=1).hits[0].path
    os.unlink(nearest)
    result = _search(store_dir, lib / "song1.wav", k=4)
    assert len(result.hits) == 4 and nearest not in {h.path for h in result.hits}
    assert all(os.path.exists(h.path) for h in result.hits)
    assert result.skipped == [(nearest, GONE)]


def test_only_the_hits_shown_are_looked_for_on_disk(tmp_path, lib, monkeypatch):
    """Existence is checked per hit shown (about k stat calls), never per record."""
    import fpcli.search.query

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    looked: list[str] = []
    checked = fpcli.search.query.file_left
    monkeypatch.setattr(fpcli.search.query, "file_left",
                        lambda path, *facts: looked.append(path) or checked(path, *facts))
    assert len(_search(store_dir, lib / "song1.wav", k=2).hits) == 2
    assert len(looked) == 2


def test_only_the_hits_shown_are_explained_once(tmp_path, lib, monkeypatch):
    """Every row fetched was explained, again each time the request widened past gone
    hits (68 s over 20,000 gone records); now each hit shown once, with the lines it
    has when nothing before it is gone."""
    import fpcli.search.query
    import fpcli.search.rank

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    before = _search(store_dir, lib / "song1.wav", k=3, explain=True).hits
    assert all(hit.explain for hit in before)
    for hit in before[:2]:
        os.unlink(hit.path)
    explained: list[int] = []
    explain = fpcli.search.rank.explain_row
    for module in (fpcli.search.query, fpcli.search.rank):
        monkeypatch.setattr(module, "explain_row", lambda *a, **kw: explained.append(a[2]) or explain(*a, **kw),
                            raising=False)
    result = _search(store_dir, lib / "song1.wav", k=1, explain=True)
    assert [h.path for h in result.hits] == [before[2].path] and len(result.skipped) == 2
    assert result.hits[0].explain == before[2].explain
    assert len(explained) == 1


def test_library_keeps_only_hits_with_a_file_there(tmp_path, lib):
    store_dir = _copied_then_deleted(tmp_path, lib)
    result = _search(store_dir, lib / "song1.wav", k=4, under=str(tmp_path / "lib2"))
    assert result.hits == [] and result.skipped == [(str(tmp_path / "lib2" / "x.wav"), GONE)]
    # and the note says why, not "the store has no other track there" after naming it
    told = runner.invoke(app, ["--store", store_dir, "search", str(lib / "song1.wav"), "-l", str(tmp_path / "lib2")])
    assert told.exit_code == 0 and "its other tracks in the store were skipped" in told.stderr, told.stderr


def test_the_cli_reports_gone_hits_as_skipped_and_plays_only_files_that_exist(tmp_path, lib):
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    nearest = _search(store_dir, lib / "song1.wav", k=1).hits[0].path
    os.unlink(nearest)
    playlist = tmp_path / "similar.m3u"
    base = ["--store", store_dir, "search", str(lib / "song1.wav"), "-k", "3", "--strategy", "fast"]
    done = runner.invoke(app, [*base, "--json", "--m3u", str(playlist)])
    assert done.exit_code == 0
    data = json.loads(done.stdout)
    assert data["skipped"] == [{"path": nearest, "error": GONE}] and len(data["hits"]) == 3
    entries = [line for line in playlist.read_text().splitlines() if not line.startswith("#")]
    assert len(entries) == 4 and all((tmp_path / entry).exists() for entry in entries)
    human = runner.invoke(app, base)
    assert human.exit_code == 0 and f"{nearest}: skipped as a candidate ({GONE})" in human.stderr


def _four_copies(tmp_path):
    """One recording at four paths (one record), analysed, and a store with it."""
    root = tmp_path / "copies"
    root.mkdir()
    write(root / "a.wav", synth.music_like(3.0, SR, seed=7, bpm=110), SR)
    for name in ("b.wav", "c.wav", "d.wav"):
        shutil.copy(root / "a.wav", root / name)
    write(root / "other.wav", synth.music_like(3.0, SR, seed=8, bpm=90), SR)
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, root)
    return root, store_dir


def _dupes(store_dir) -> list[list[str]]:
    done = runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"])
    assert done.exit_code == 0
    return [json.loads(line)["paths"] for line in done.stdout.splitlines()]


def test_dupes_lists_only_files_that_exist(tmp_path):
    root, store_dir = _four_copies(tmp_path)
    assert [[os.path.basename(p) for p in paths] for paths in _dupes(store_dir)] == [["a.wav", "b.wav", "c.wav",
                                                                                       "d.wav"]]
    moved = tmp_path / "moved"
    moved.mkdir()
    os.rename(root / "d.wav", moved / "d.wav")
    assert _dupes(store_dir) == [[str(root / "a.wav"), str(root / "b.wav"), str(root / "c.wav")]]
    for name in ("b.wav", "c.wav"):
        os.rename(root / name, moved / name)
    assert _dupes(store_dir) == []  # one file left: no group


def _two_encodings(folder) -> tuple[str, str]:
    """One recording as FLAC and as 24-bit WAV (two records, one duplicate group: 9 s
    give the duplicate key the bits it needs)."""
    x = synth.music_like(9.0, SR, seed=9, bpm=100)
    return write(folder / "enc.flac", x, SR), write(folder / "enc.wav", x, SR, subtype="PCM_24")


def test_dupes_of_other_encodings_drop_a_group_left_with_one_file(tmp_path):
    root = tmp_path / "enc"
    root.mkdir()
    flac, wav = _two_encodings(root)
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, root)
    assert _dupes(store_dir) == [[flac, wav]]
    os.unlink(wav)
    assert _dupes(store_dir) == []


def test_included_duplicates_moved_away_are_no_hits(tmp_path):
    root, store_dir = _four_copies(tmp_path)
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("b.wav", "c.wav", "d.wav"):
        os.rename(root / name, moved / name)
    result = _search(store_dir, root / "a.wav", k=5, include_duplicates=True)
    assert [os.path.basename(h.path) for h in result.hits] == ["other.wav"]


def test_a_gone_hit_leaves_its_other_encoding_a_hit(tmp_path, lib):
    """A hit's other encoding is dropped as its duplicate; when every file of the hit
    is gone, the other encoding is the hit (it was dropped for a record with no file)."""
    encodings = {os.path.basename(path) for path in _two_encodings(lib)}
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    before = {os.path.basename(h.path) for h in _search(store_dir, lib / "song1.wav", k=6).hits}
    assert len(before) == 6 and len(before & encodings) == 1  # one recording, one hit
    shown = next(iter(before & encodings))
    os.unlink(lib / shown)
    result = _search(store_dir, lib / "song1.wav", k=6)
    assert {os.path.basename(h.path) for h in result.hits} == (before - {shown}) | (encodings - {shown})
    assert result.skipped == [(str(lib / shown), GONE)]


ZERO_STREAMING = "temporal=0,spectral=0,harmonic=0,variation=0,timbre=0"


def test_weights_zeroing_every_streaming_group_are_a_usage_error(tmp_path, lib):
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    done = runner.invoke(app, ["--store", store_dir, "search", str(lib / "song1.wav"), "--weights", ZERO_STREAMING])
    assert done.exit_code == 2 and "--weights" in done.output and "weighs 0" in done.output
    from fpcli.search import parse_weights

    with pytest.raises(SearchError) as raised:  # the library's callers still catch it as before
        _search(store_dir, lib / "song1.wav", group_weights=parse_weights(ZERO_STREAMING))
    assert isinstance(raised.value, ParameterError) and raised.value.parameter == "weights"


def test_batch_with_no_other_batch_fingerprint_reports_how_many_lack_one(tmp_path, lib):
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    base = ["--store", store_dir, "search", str(lib / "song1.wav"), "--strategy", "batch"]
    done = runner.invoke(app, [*base, "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert data["hits"] == [] and data["stats"]["missing_batch"] == 5
    human = runner.invoke(app, base)
    assert human.exit_code == 0 and "5 track(s) have no batch fingerprint" in human.stderr
    assert "--compute-missing" in human.stderr


def test_a_file_rewritten_or_replaced_by_a_folder_is_no_file_of_its_record(tmp_path, lib):
    """A path whose file changed since it was analysed (other audio written over it, or
    a folder in its place) was still shown as a hit, put in playlists and grouped as a
    duplicate: only its existence was checked. As `cache prune` does, a changed file
    is no file of the record."""
    import numpy as np

    store_dir = str(tmp_path / "store")
    shutil.copy(lib / "song2.wav", lib / "copy2.flac.wav")
    _analyse(store_dir, lib)
    before = {os.path.basename(h.path) for h in _search(store_dir, lib / "song0.wav", k=6).hits}
    assert {"song3.wav", "song4.wav"} <= before
    noise = 0.3 * np.random.default_rng(9).standard_normal((3 * SR, 1))
    write(lib / "song3.wav", noise, SR)                   # other audio, written over it
    os.unlink(lib / "song4.wav")
    os.mkdir(lib / "song4.wav")                            # a folder in its place
    result = _search(store_dir, lib / "song0.wav", k=6)
    names = {os.path.basename(h.path) for h in result.hits}
    assert not names & {"song3.wav", "song4.wav"}
    assert dict(result.skipped) == {str(lib / "song3.wav"): "changed since it was analysed",
                                    str(lib / "song4.wav"): "changed since it was analysed"}
    grouped = runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"])
    assert [json.loads(line)["paths"] for line in grouped.stdout.splitlines()] == \
        [[str(lib / "copy2.flac.wav"), str(lib / "song2.wav")]]
    write(lib / "song2.wav", noise, SR)                    # one of the two copies rewritten: no group left
    assert runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"]).stdout == ""


def test_compute_missing_without_the_batch_strategy_is_a_usage_error(tmp_path, lib):
    """It was accepted and ignored (auto ran fast, nothing computed, no word); the
    exit-code table makes an option the run would ignore a usage error."""
    store_dir = str(tmp_path / "store")
    for strategy in ([], ["--strategy", "fast"], ["--strategy", "accurate"]):
        result = runner.invoke(app, ["--store", store_dir, "search", str(lib / "song1.wav"), "--compute-missing",
                                     *strategy])
        assert result.exit_code == 2 and "--compute-missing" in result.output, (strategy, result.output)


def test_many_gone_copies_of_a_recording_cost_one_comparison_each(tmp_path, lib, monkeypatch):
    """300 records of one recording whose files are all gone (a library on a drive not
    mounted) ranked nearest: each gone hit was taken out alone and the duplicates of
    the whole list dropped again, about n^2 comparisons (65 s for 2,000 records)."""
    import fpcli.search.dupes
    from fpcli.store.schema import record_to_json

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    nearest = _search(store_dir, lib / "song1.wav", k=1).hits[0].path
    with FingerprintStore.open(store_dir) as store:
        near = store.record_for_path(nearest)
        assert near is not None
        clone = record_to_json(near)
        lines = [json.dumps({"type": "fpcli-store-export", "version": 2})]
        for i in range(300):
            lines.append(json.dumps({"type": "record", "data": {
                **clone, "digest": f"{i:032x}", "paths": [{"path": f"/unmounted/{i}.wav", "mtime_ns": 1}]}}))
        (tmp_path / "gone.jsonl").write_text("\n".join(lines) + "\n")
        from fpcli.store import import_store

        assert import_store(store, tmp_path / "gone.jsonl").records == 300
    os.remove(nearest)   # the nearest recording's every file gone
    compared = []
    exact = fpcli.search.dupes._decoded_alike   # what every comparison of two records asks
    monkeypatch.setattr(fpcli.search.dupes, "_decoded_alike", lambda a, b: compared.append(1) or exact(a, b))
    result = _search(store_dir, lib / "song1.wav", k=4)
    assert len(result.hits) == 4 and all(h.path.startswith(str(lib)) for h in result.hits)
    assert nearest not in {h.path for h in result.hits}
    assert len(compared) < 10 * 300, len(compared)


def _touched(path, seconds: int = 100) -> None:
    """The file's modification time moved on, its bytes the same (touch, cp without -p)."""
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def _rewritten_same_size(path, seed: int) -> None:
    """Other audio of the same length and format: the same size, other bytes."""
    size = os.path.getsize(path)
    write(path, synth.music_like(3.0, SR, seed=seed, bpm=150), SR)
    assert os.path.getsize(path) == size


def test_a_touched_file_is_still_the_one_analysed_to_prune_and_search(tmp_path, lib):
    """prune dropped the record of a file whose mtime moved (batch values and verdict
    with it) and search skipped it as changed, while analyze served it from the store
    as unchanged: a file of the stored size whose time moved is compared by digest,
    as a look-up does. One of the same size but other bytes is changed to all three."""
    from fpcli.store import prune

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    _touched(lib / "song0.wav")
    _rewritten_same_size(lib / "song1.wav", seed=99)
    result = _search(store_dir, lib / "song2.wav", k=5)
    shown = sorted(os.path.basename(h.path) for h in result.hits)
    assert "song0.wav" in shown and "song1.wav" not in shown
    assert [os.path.basename(path) for path, _ in result.skipped] == ["song1.wav"]
    with FingerprintStore.open(store_dir) as store:
        pruned = prune(store)
        assert [(os.path.basename(p.path), p.reason) for p in pruned] == [("song1.wav", "changed")]
        assert store.record_for_path(str(lib / "song0.wav")) is not None


def test_an_older_export_imported_keeps_the_newer_path_entries(tmp_path, lib):
    """An export imported into a store that has seen its files since put back each
    path's old time and content: a file rewritten since pointed at its old audio again
    (and a touched one was read whole at every look-up). Where the store saw a file
    later, its own entry stays."""
    from fpcli.store import export_store, import_store

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    with FingerprintStore.open(store_dir) as store:
        export_store(store, tmp_path / "old.jsonl")
    _touched(lib / "song0.wav")
    _rewritten_same_size(lib / "song1.wav", seed=99)
    _analyse(store_dir, lib)
    with FingerprintStore.open(store_dir) as store:
        now = {name: store._read_path_entry(str(lib / name)) for name in ("song0.wav", "song1.wav", "song2.wav")}
        import_store(store, tmp_path / "old.jsonl")
        after = {name: store._read_path_entry(str(lib / name)) for name in now}
    assert after == now


def test_two_records_of_one_import_batch_naming_one_path_leave_the_later_sight(tmp_path, lib):
    """The last record of a batch naming a path won whatever its time."""
    import dataclasses

    from fpcli.store.records import PathSeen

    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    path = str(lib / "song0.wav")
    with FingerprintStore.open(store_dir) as store:
        newer = store.record_for_path(path)
        older = store.record_for_path(str(lib / "song1.wav"))
        seen = newer.seen_at(path)
        older = dataclasses.replace(older, paths=(PathSeen(path, seen.mtime_ns - 10**9),))
        newer = dataclasses.replace(newer, paths=(PathSeen(path, seen.mtime_ns + 10**9),))
    with FingerprintStore.open(tmp_path / "fresh") as fresh:
        fresh.import_records([newer, older])
        assert fresh._read_path_entry(path)["digest"] == newer.digest


def _analysed_then_touched(tmp_path, lib) -> str:
    """A store of the library analysed, then song0.wav touched; its folder."""
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    _touched(lib / "song0.wav")
    return store_dir


def _digest_reads(monkeypatch) -> list[str]:
    """The paths whose whole bytes are read for their digest from now on."""
    from fpcli.store import records

    reads: list[str] = []
    real = records.file_digest
    monkeypatch.setattr(records, "file_digest", lambda path: reads.append(path) or real(path))
    return reads


def test_a_prune_gives_a_touched_file_its_time_so_it_is_read_whole_once(tmp_path, lib, monkeypatch):
    """A touched file confirmed by its digest kept its stored time: every prune, search
    and dupes read it whole again, until an analyze. The prune now stores its time."""
    from fpcli.store import prune

    store_dir = _analysed_then_touched(tmp_path, lib)
    reads = _digest_reads(monkeypatch)
    with FingerprintStore.open(store_dir) as store:
        assert prune(store, dry_run=True) == [] and len(reads) == 1    # a dry run writes nothing
        assert prune(store) == [] and len(reads) == 2
        assert prune(store) == [] and len(reads) == 2                  # its time is the file's now
        record = store.record_for_path(str(lib / "song0.wav"))
        mtime = os.stat(lib / "song0.wav").st_mtime_ns
        assert record.seen_at(str(lib / "song0.wav")).mtime_ns == mtime
        assert store._read_path_entry(str(lib / "song0.wav"))["mtime_ns"] == mtime
    assert _search(store_dir, lib / "song2.wav", k=5) and len(reads) == 2


def test_a_search_gives_a_touched_hit_its_time_so_it_is_read_whole_once(tmp_path, lib, monkeypatch):
    """A search confirmed a touched hit by its digest and stored nothing: after a
    restore without times every search read its hits' files whole, until a prune or
    an analyze. It now stores the file's time, as a prune does."""
    store_dir = _analysed_then_touched(tmp_path, lib)
    reads = _digest_reads(monkeypatch)
    first = _search(store_dir, lib / "song2.wav", k=5)
    assert "song0.wav" in [os.path.basename(h.path) for h in first.hits] and reads == [str(lib / "song0.wav")]
    second = _search(store_dir, lib / "song2.wav", k=5)
    assert [h.path for h in second.hits] == [h.path for h in first.hits] and len(reads) == 1
    with FingerprintStore.open(store_dir) as store:
        mtime = os.stat(lib / "song0.wav").st_mtime_ns
        assert store.record_for_path(str(lib / "song0.wav")).seen_at(str(lib / "song0.wav")).mtime_ns == mtime
        assert store._read_path_entry(str(lib / "song0.wav"))["mtime_ns"] == mtime


def test_cache_dupes_gives_a_touched_copy_its_time_so_it_is_read_whole_once(tmp_path, lib, monkeypatch):
    """cache dupes confirmed a touched file by its digest and stored nothing: every
    run read it whole again."""
    shutil.copy2(lib / "song0.wav", lib / "copy.wav")
    store_dir = _analysed_then_touched(tmp_path, lib)
    reads = _digest_reads(monkeypatch)
    for _ in range(2):
        dupes = runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"])
        (group,) = [json.loads(line) for line in dupes.stdout.splitlines()]
        assert sorted(os.path.basename(p) for p in group["paths"]) == ["copy.wav", "song0.wav"]
    assert reads == [str(lib / "song0.wav")]


def test_a_library_gone_is_said_in_a_few_lines_and_json_lists_every_track(tmp_path):
    """Its files moved or unmounted, a library's search printed one warning per stored
    track (17,500 lines at 20,000 records) and nothing about why no hit came."""
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(9):
        write(root / f"song{i}.wav", synth.music_like(1.0, SR, seed=i), SR)
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, root)
    query = shutil.copy(root / "song0.wav", tmp_path / "query.wav")
    shutil.rmtree(root)
    base = ["--store", store_dir, "search", str(query), "-k", "3", "--strategy", "fast"]
    human = runner.invoke(app, base)
    assert human.exit_code == 0, human.output
    assert human.stderr.count("skipped as a candidate") == 5
    assert f"warning: 3 more candidates skipped: 3 {GONE} (--json lists them)" in human.stderr
    assert "warning: the files of 8 stored tracks are gone, and no hit is left: a library that moved or is not " \
        "mounted?" in human.stderr
    listed = json.loads(runner.invoke(app, [*base, "--json"]).stdout)["skipped"]
    assert len(listed) == 8 and {entry["error"] for entry in listed} == {GONE}


@pytest.mark.parametrize("name,raw", [("ctrl\x1b[31mred\x07.flac", False), ("del\x7f.flac", False),
                                      ("c1\x9b2J.flac", False), ("tab\there.flac", True), ("café.flac", True)])
def test_a_playlist_line_holds_no_control_character(name, raw):
    """`--m3u -` on a terminal wrote a name's escape sequences (ESC [31m, BEL) to it as
    they were; such a path is a file:// URI, as one with a newline already was."""
    from urllib.parse import unquote

    from fpcli.search.query import _m3u_location

    line = _m3u_location(f"/music/{name}", None)
    assert (line == f"/music/{name}") == raw
    assert all(ord(c) >= 0x20 or c == "\t" for c in line) and not any(0x7F <= ord(c) < 0xA0 for c in line)
    if not raw:
        assert line.startswith("file://") and unquote(line[len("file://"):]) == f"/music/{name}"


def test_a_playlist_entry_is_titled_as_the_file_it_opens(tmp_path, lib):
    """A query named through a symlink was written as "#EXTINF:-1,link" above the
    path of the link's target, song0."""
    store_dir = str(tmp_path / "store")
    _analyse(store_dir, lib)
    link = tmp_path / "link.wav"
    link.symlink_to(lib / "song0.wav")
    done = runner.invoke(app, ["--store", store_dir, "search", str(link), "-k", "1", "--strategy", "fast",
                               "--m3u", "-"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert lines[1:3] == ["#EXTINF:-1,song0", os.path.realpath(lib / "song0.wav")]


def test_exact_distances_a_few_rows_at_a_time_are_the_distances_of_all_at_once(tmp_path, lib, monkeypatch):
    """Computed for every row at once, the exact distances of a search widened to
    95,000 rows (their files gone) took 0.8 GB; a few thousand rows at a time they are
    the same numbers, and the same hits."""
    from fpcli.search import rank

    _analyse(tmp_path / "s", lib)
    with FingerprintStore.open(tmp_path / "s") as store:
        whole = search(store, str(lib / "song0.wav"), k=5, strategy="fast")
        monkeypatch.setattr(rank, "EXACT_ROWS", 2)
        in_pairs = search(store, str(lib / "song0.wav"), k=5, strategy="fast")
    assert [(h.path, h.distance) for h in in_pairs.hits] == [(h.path, h.distance) for h in whole.hits]
    assert len(whole.hits) == 5


def test_dupes_says_when_the_files_of_duplicates_are_gone(tmp_path, lib):
    """A library not mounted: cache dupes printed nothing at all, read as "no
    duplicates". It says the files of the tracks that would be duplicates are gone."""
    store_dir = str(tmp_path / "store")
    shutil.copy(lib / "song2.wav", lib / "copy2.wav")
    _analyse(store_dir, lib)
    assert runner.invoke(app, ["--store", store_dir, "cache", "dupes", "--json"]).stdout.count("\n") == 1
    os.unlink(lib / "song2.wav")
    os.unlink(lib / "copy2.wav")
    gone = runner.invoke(app, ["--store", store_dir, "cache", "dupes"])
    assert gone.exit_code == 0 and gone.stdout == ""   # no group (a pipe: no table title)
    assert "the files of 1 stored track that would be duplicates are gone" in gone.stderr
