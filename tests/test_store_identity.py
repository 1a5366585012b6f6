"""Regression tests of the store-trust issue: identity by full digest, records with
several paths, bytes-safe paths, one bad entry, merged saves, partial records, the
bounded journal and evictions counted once. Run on diskcache and on a real Redis."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from fpcli import synth
from fpcli.analyze import Want, compute, fingerprint_of
from fpcli.cli import EXIT_SOME_FAILED, app
from fpcli.params import AnalysisParams
from fpcli.search import search
from fpcli.store import FingerprintStore, Need, export_store, import_store, prune, verify
from fpcli.store.protocol import JOURNAL_LIMIT
from fpcli.store.records import path_key
from fpcli.store.schema import record_to_json
from tests.conftest import write

KEY = AnalysisParams().key()
SR = 22050
runner = CliRunner()



def _padded_twins(folder):
    """Two WAVs of equal length whose first and last 64 KiB are digital silence: equal
    content keys, different music in the middle."""
    silence = np.zeros((SR * 2, 1), dtype=np.float32)
    paths = []
    for seed in (1, 2):
        middle = synth.music_like(3.0, SR, seed=seed)[:, :1]
        paths.append(write(folder / f"twin{seed}.wav", np.concatenate([silence, middle, silence]), SR))
    return paths


def test_equal_heads_and_tails_are_not_the_same_file(location, tmp_path):
    one, two = _padded_twins(tmp_path)
    with FingerprintStore.open(location) as store:
        assert store.identify(one).content_key == store.identify(two).content_key
        first = fingerprint_of(store, one)
        second = fingerprint_of(store, two)
        assert not second.cached  # the candidate's digest did not match: analysed, not served
        assert first.streaming.values != second.streaming.values
        by_path = {r.path: r for r in store.records()}
        assert set(by_path) == {os.path.realpath(one), os.path.realpath(two)}
        assert by_path[os.path.realpath(two)].streaming.values == second.streaming.values


def test_a_file_damaged_in_the_middle_is_not_served_the_original(location, tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(8.0, SR, seed=3), SR)
    data = bytearray(open(track, "rb").read())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    with FingerprintStore.open(location) as store:
        fingerprint_of(store, track)
        assert store.identify(damaged).content_key == store.identify(track).content_key
        assert store.lookup(str(damaged), Need(KEY)).record is None


def test_a_copy_adds_a_path_and_prune_keeps_both(location, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original = write(tmp_path / "a" / "x.flac", synth.music_like(2.0, SR, seed=4), SR)
    with FingerprintStore.open(location) as store:
        fingerprint_of(store, original)
        shutil.copy2(original, tmp_path / "b" / "x.flac")
        copy = str(tmp_path / "b" / "x.flac")
        assert fingerprint_of(store, copy).cached
        [record] = list(store.records())
        assert {p.path for p in record.paths} == {os.path.realpath(original), os.path.realpath(copy)}
        assert prune(store) == []
        assert fingerprint_of(store, original).cached and fingerprint_of(store, copy).cached
        os.remove(original)
        assert [p.path for p in prune(store)] == [os.path.realpath(original)]
        [record] = list(store.records())  # the record stays with its last path
        assert [p.path for p in record.paths] == [os.path.realpath(copy)]
        os.remove(copy)
        prune(store)
        assert list(store.records()) == []



def test_lookup_many_answers_as_lookup_and_keeps_every_copy(location, tmp_path):
    """Entries read ahead for a batch of files are never served after this process
    wrote them: two new copies of one record in the same batch both keep their path,
    and a record changed between two answers is read as changed."""
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    x, y, z = (write(tmp_path / "a" / f"{name}.flac", synth.music_like(2.0, SR, seed=seed), SR)
               for name, seed in (("x", 4), ("y", 5), ("z", 6)))
    copies = [str(tmp_path / "b" / name) for name in ("x1.flac", "x2.flac")]
    with FingerprintStore.open(location) as store:
        keys = {path: fingerprint_of(store, path) and store.lookup(path, Need(KEY)).record.key for path in (x, y, z)}
        for copy in copies:
            shutil.copy2(x, copy)
        store.backend.put(keys[z], '{"schema": 3, "digest": 7}')
        changed = dataclasses.replace(store.read_record(keys[y]), analysed_at=123.0)
        before = store.stats()["hits"]
        answers = store.lookup_many([x, *copies, y, z, str(tmp_path / "gone.flac"), x], Need(KEY))
        found = [next(answers)]
        store.update_record(changed)
        found += list(answers)
        assert [f.record is not None for f in found] == [True, True, True, True, False, False, True]
        assert found[3].record.analysed_at == 123.0
        assert found[5].error == "no such file or folder"
        assert [e.key for e in store.bad_entries] == [keys[z]]
        [record] = [r for r in store.records() if r.key == keys[x]]
        assert {p.path for p in record.paths} == {os.path.realpath(p) for p in (x, *copies)}
        assert store.stats()["hits"] - before == 5


def test_cli_lists_every_path_of_a_copied_record(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    original = write(tmp_path / "a" / "x.flac", synth.music_like(2.0, SR, seed=4), SR)
    shutil.copy2(original, tmp_path / "b" / "x.flac")
    assert runner.invoke(app, ["analyze", str(tmp_path / "a"), "--quiet"]).exit_code == 0
    assert runner.invoke(app, ["analyze", str(tmp_path / "b"), "--quiet"]).exit_code == 0
    listed = [json.loads(line) for line in runner.invoke(app, ["cache", "list", "--json"]).stdout.splitlines()]
    assert sorted(os.path.relpath(item["path"], tmp_path) for item in listed) == ["a/x.flac", "b/x.flac"]
    rerun = runner.invoke(app, ["analyze", str(tmp_path / "a"), str(tmp_path / "b"), "--json"])
    assert [json.loads(line)["cached"] for line in rerun.stdout.splitlines()] == [True, True]


# Names a hostile or unlucky library holds; "x[/bold]y.wav" is a folder "x[" with a file
# "bold]y.wav": the path as a whole is Rich markup.
ODD_NAMES = [b"caf\xe9 latin-1.wav", b"new\nline.wav", b"markup[x]y [bold].wav", b"x[/bold]y.wav",
             b"l" * 200 + b".wav"]


def _odd_library(folder):
    folder.mkdir()
    (folder / "x[").mkdir()
    for i, name in enumerate(ODD_NAMES):
        sf.write(os.path.join(os.fsencode(folder), name), synth.music_like(1.5, SR, seed=10 + i), SR)
    return folder


def _relative(folder, path):
    return os.path.relpath(os.fsencode(path), os.fsencode(os.path.realpath(folder)))


def test_any_file_name_works_end_to_end_on_both_backends(location, tmp_path):
    folder = _odd_library(tmp_path / "odd")
    with FingerprintStore.open(location) as store:
        results = [fingerprint_of(store, os.fsdecode(os.path.join(os.fsencode(folder), n))) for n in ODD_NAMES]
        assert all(r.status == "ok" for r in results)
        paths = {os.fsencode(r.path) for r in store.records()}
        assert {_relative(folder, p) for p in paths} == set(ODD_NAMES)
        hits = search(store, results[0].path, k=3, strategy="fast").hits
        assert len(hits) == 3
        export_store(store, tmp_path / "dump.jsonl")
        assert verify(store) == []
    with FingerprintStore.open(tmp_path / "other") as other:
        report = import_store(other, tmp_path / "dump.jsonl")
        assert report.rejected == [] and report.records == len(ODD_NAMES)
        assert {os.fsencode(r.path) for r in other.records()} == paths


def test_cli_with_odd_names_json_is_utf8_and_exact(tmp_path):
    folder = _odd_library(tmp_path / "odd")
    store = str(tmp_path / "s")
    out = subprocess.run([sys.executable, "-m", "fpcli", "--store", store, "analyze", str(folder), "--json"],
                         capture_output=True)
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode("utf-8")  # always valid UTF-8
    names = {_relative(folder, json.loads(line)["path"]) for line in text.splitlines()}
    assert names == set(ODD_NAMES)  # surrogate escapes give the exact bytes back
    listed = subprocess.run([sys.executable, "-m", "fpcli", "--store", store, "cache", "list"], capture_output=True)
    assert listed.returncode == 0 and b"Traceback" not in listed.stderr
    assert b"caf\\xe9 latin-1.wav" in listed.stdout and b"markup[x]y [bold].wav" in listed.stdout
    assert b"x[/bold]y.wav" in listed.stdout
    assert b"new\\nline.wav" in listed.stdout  # one line per path, even for a newline in a name
    playlist = tmp_path / "list.m3u"
    query = os.fsdecode(os.path.join(os.fsencode(folder), ODD_NAMES[0]))
    searched = subprocess.run([sys.executable, "-m", "fpcli", "--store", store, "search", query, "-k", "3",
                               "--m3u", str(playlist)], capture_output=True)
    assert searched.returncode == 0, searched.stderr
    entries = [line for line in playlist.read_bytes().splitlines() if not line.startswith(b"#")]
    assert len(entries) == 4 and entries[0].startswith(b"file://") and b"%E9" in entries[0]


def _corrupt_one_record(store):
    key = next(store.backend.keys("rec:"))
    store.backend.put(key, '{"schema": 2, "digest": "broken"')  # cut JSON
    return key


def test_a_search_says_it_skipped_a_bad_entry(tmp_path):
    """A search whose index build met a damaged record skipped it without a word (and
    without a field in its JSON), where every cache command warns."""
    folder = tmp_path / "lib"
    folder.mkdir()
    for i in range(4):
        write(folder / f"t{i}.flac", synth.music_like(2.0, SR, seed=40 + i), SR)
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "analyze", str(folder), "--quiet"]).exit_code == 0
    with FingerprintStore.open(tmp_path / "s") as store:
        _corrupt_one_record(store)
    query = write(tmp_path / "query.flac", synth.music_like(2.0, SR, seed=49), SR)
    result = runner.invoke(app, [*base, "search", query, "-k", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["hits"]) == 2
    assert "skipped a bad store entry" in result.stderr


@pytest.mark.parametrize("command", [["analyze"], ["validate", "-l"], ["analyze", "--every", "1"]])
def test_analyze_and_validate_say_they_met_a_bad_entry(tmp_path, command):
    """They analysed the file again and replaced its record without a word, where every
    cache command warns ("every command skips it with a warning and goes on")."""
    track = write(tmp_path / "t.flac", synth.music_like(2.0, SR, seed=30), SR)
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "analyze", "--batch", track, "--quiet"]).exit_code == 0
    with FingerprintStore.open(tmp_path / "s") as store:
        key = next(store.backend.keys("rec:"))
        store.backend.put(key, store.backend.get(key)[:40])   # cut in half, as a torn write leaves it
    result = runner.invoke(app, [*base, *command, track])
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning: skipped a bad store entry") == 1, result.stderr


def test_bad_entries_beyond_ten_are_counted_not_listed(tmp_path, capsys):
    from fpcli.cli.render import report_bad_entries
    from fpcli.errors import BadEntryError

    class Store:
        bad_entries = [BadEntryError(f"rec:{i % 12}", ["cut"]) for i in range(30)]

    report_bad_entries(Store())   # type: ignore[arg-type]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 11 and lines[-1].startswith("warning: skipped 2 more bad store entries")
    assert Store.bad_entries == []   # reported once: a command may report again at its end


def test_one_corrupt_record_is_one_bad_entry(tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    for i in range(3):
        write(folder / f"t{i}.flac", synth.music_like(2.0, SR, seed=20 + i), SR)
    store_dir = str(tmp_path / "s")
    base = ["--store", store_dir]
    assert runner.invoke(app, [*base, "analyze", str(folder), "--quiet"]).exit_code == 0
    with FingerprintStore.open(store_dir) as store:
        bad_key = _corrupt_one_record(store)
    assert runner.invoke(app, [*base, "cache", "verify"]).exit_code == EXIT_SOME_FAILED
    # stats reads kept counts, no record: it cannot meet the bad entry, and does not count it
    stats = runner.invoke(app, [*base, "cache", "stats", "--json"])
    assert stats.exit_code == 0 and json.loads(stats.stdout)["entries"] == 2, stats.output
    for command in (["cache", "list"], ["cache", "export", str(tmp_path / "e.jsonl")], ["cache", "prune"]):
        result = runner.invoke(app, [*base, *command])
        assert result.exception is None or isinstance(result.exception, SystemExit), (command, result.exception)
        assert result.exit_code == 0, (command, result.output)
        assert "skipped a bad store entry" in result.stderr, command
    assert len(open(tmp_path / "e.jsonl").read().splitlines()) == 1 + 2  # header + the two good records
    repaired = runner.invoke(app, [*base, "cache", "verify", "--repair"])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired: 1 bad entries removed, 2 identity entries of removed records forgotten (bad entries saved to " \
        in repaired.stderr  # words, not a dict
    [quarantine] = [p for p in os.listdir(store_dir) if p.startswith("quarantine-")]
    saved = [json.loads(line) for line in open(os.path.join(store_dir, quarantine))]
    assert [item["key"] for item in saved] == [bad_key] and saved[0]["text"].startswith('{"schema"')
    assert runner.invoke(app, [*base, "cache", "verify"]).exit_code == 0
    rerun = runner.invoke(app, [*base, "analyze", str(folder), "--json"])  # the lost track is analysed again
    assert [json.loads(line)["cached"] for line in rerun.stdout.splitlines()].count(False) == 1
    with FingerprintStore.open(store_dir) as store:
        _corrupt_one_record(store)
    for command in (["analyze", str(folder), "--json"], ["search", str(folder / "t0.flac"), "-k", "1"]):
        result = runner.invoke(app, [*base, *command])
        assert result.exit_code == 0, (command, result.output)


def test_a_reanalysis_keeps_batch_values_and_the_verdict(location, tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(6.0, SR, seed=5), SR)
    with FingerprintStore.open(location) as store:
        fingerprint_of(store, track, Want(batch=True))
        record = next(store.records())
        from fpcli.library import RunOptions
        from fpcli.validate import validate_library

        validate_library([track], store, RunOptions(jobs=1))
        assert next(store.records()).validation is not None
        fingerprint_of(store, track, force=True)  # streaming only, forced
        again = next(store.records())
        assert again.batch == record.batch and again.validation is not None


def test_previews_are_never_served_as_complete_and_never_downgrade(location, tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(8.0, SR, seed=6), SR)
    with FingerprintStore.open(location) as store:
        preview = fingerprint_of(store, track, Want(seconds=2.0))
        assert not preview.streaming.complete and preview.streaming.seconds == pytest.approx(2.0)
        assert store.lookup(track, Need(KEY)).record is None                 # a full request: a miss
        assert store.lookup(track, Need(KEY, seconds=2.0)).record is not None  # a preview request: a hit
        assert store.lookup(track, Need(KEY, seconds=4.0)).record is None
        longer = fingerprint_of(store, track, Want(seconds=4.0))             # extends
        assert longer.streaming.seconds == pytest.approx(4.0) and not longer.cached
        full = fingerprint_of(store, track)                                    # upgrades
        assert full.streaming.complete and not full.cached
        shorter = fingerprint_of(store, track, Want(seconds=2.0))             # served by the complete one
        assert shorter.cached and shorter.streaming.complete
        [record] = list(store.records())
        assert record.complete


def test_a_preview_save_never_replaces_a_complete_record(location, tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(8.0, SR, seed=7), SR)
    with FingerprintStore.open(location) as store:
        fingerprint_of(store, track)
        fingerprint_of(store, track, Want(seconds=2.0), force=True)  # a forced preview
        [record] = list(store.records())
        assert record.complete and record.streaming.seconds == pytest.approx(8.0)


def test_a_journal_from_before_its_table_cannot_say_what_changed(tmp_path):
    """A store journaled in ``change:N`` entries of the meta cache (before the journal
    had its own table): they are removed when it opens, and a search index of a
    generation the table has no rows for is rebuilt, not taken as current."""
    import diskcache

    track = write(tmp_path / "t.flac", synth.music_like(1.0, SR, seed=8), SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        fingerprint_of(store, track)
        generation = store.generation()
    with diskcache.Cache(str(tmp_path / "s" / "meta")) as meta:
        meta._sql("DELETE FROM Journal")
        for g in range(1, generation + 3):
            meta.set(f"change:{g}", "rec:x")
        meta.incr("generation", 2)
    with FingerprintStore.open(tmp_path / "s") as store:
        old = store.backend._meta._sql("SELECT COUNT(*) FROM Cache WHERE key LIKE 'change:%'").fetchone()[0]
        assert old == 0
        assert store.changes_since(generation) is None and store.changes_since(generation + 2) == []
        store.backend.journal_extend(["rec:y"])
        assert store.changes_since(generation + 2) == ["rec:y"]


def test_the_journal_is_bounded_and_evictions_count_tracks(tmp_path):
    track = write(tmp_path / "t.flac", synth.music_like(1.0, SR, seed=8), SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        fingerprint_of(store, track)
        record = next(store.records())
        for _ in range((JOURNAL_LIMIT + 50) // 50):   # 50 changes a call, the limit passed by 50
            store.backend.journal_extend([record.key] * 50)
        journal = store.backend._meta._sql("SELECT COUNT(*) FROM Journal").fetchone()[0]
        assert journal == JOURNAL_LIMIT
        assert store.changes_since(0) is None and len(store.changes_since(store.generation() - 5)) == 5
    folder = tmp_path / "many"
    folder.mkdir()
    result = fingerprint_of(FingerprintStore.open(tmp_path / "scratch"), track)
    with FingerprintStore.open(tmp_path / "small", size_limit_mb=1) as small:
        for i in range(600):  # far more than 1 MiB of records
            path = folder / f"{i}.wav"
            path.write_bytes(os.urandom(64) + str(i).encode())
            small.save(small.identify(path), dataclasses.replace(result, path=str(path)))
        stats = small.stats()
        evicted_tracks = 600 - stats["entries"]
        assert evicted_tracks > 0 and stats["evictions"] == evicted_tracks  # once per track, not per key


def test_redis_journal_is_bounded(redis_url, tmp_path):
    import redis as redis_client

    track = write(tmp_path / "t.flac", synth.music_like(1.0, SR, seed=9), SR)
    with FingerprintStore.open(redis_url) as store:
        fingerprint_of(store, track)
        for _ in range((JOURNAL_LIMIT + 50) // 50):
            store.backend.journal_extend(["rec:x"] * 50)
        url_port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
        client = redis_client.Redis(port=url_port)
        assert client.llen("fpcli:meta:journal") == JOURNAL_LIMIT
        assert len([k for k in client.scan_iter("fpcli:meta:*")]) < 10  # no key per change
        assert store.changes_since(0) is None


def test_path_keys_are_bytes_safe():
    assert path_key("/a/caf\udce9.wav") != path_key("/a/café.wav")
    assert len(path_key("/" + "x" * 5000)) == 32


def test_record_json_round_trips_an_undecodable_path(tmp_path):
    name = os.fsdecode(b"/music/caf\xe9.wav")
    with FingerprintStore.open(tmp_path / "s") as store:
        track = write(tmp_path / "t.flac", synth.music_like(1.0, SR, seed=11), SR)
        fingerprint_of(store, track)
        record = next(store.records()).with_path(name, 1)
        text = json.dumps(record_to_json(record))
        assert text.isascii() and os.fsencode(json.loads(text)["paths"][-1]["path"]) == b"/music/caf\xe9.wav"


def test_a_file_replaced_while_its_decode_failed_is_not_recorded_as_failed(tmp_path, monkeypatch):
    """A downloader filling a preallocated file: the decode of the zeros failed, the
    good file replaced it meanwhile, and the failure was recorded with the new file's
    size and time, so every later run skipped the good file as a known failure."""
    import fpcli.analyze

    track = tmp_path / "song.wav"
    track.write_bytes(b"\x00" * 50_000)
    real_analyse = fpcli.analyze.analyse

    def fail_then_replace(path, want=None, **kw):
        result = real_analyse(path, want, **kw)
        assert result.failed
        write(tmp_path / "part.wav", synth.music_like(2.0, SR, seed=52), SR)
        os.replace(tmp_path / "part.wav", track)
        return result

    monkeypatch.setattr(fpcli.analyze, "analyse", fail_then_replace)
    with FingerprintStore.open(tmp_path / "s") as store:
        first = fingerprint_of(store, str(track), Want())
        assert first.failed and first.error_type == "ChangedWhileRead" and "changed while" in first.error
        assert list(store.failures()) == []
        monkeypatch.setattr(fpcli.analyze, "analyse", real_analyse)
        again = fingerprint_of(store, str(track), Want())
        assert not again.failed and not again.cached


def test_a_failure_is_recorded_with_the_file_as_it_was_identified(tmp_path):
    """save_failure took a fresh stat: a file replaced after its identity was taken was
    recorded as the one that failed."""
    track = write(tmp_path / "a.wav", synth.sine(440, 0.5, SR), SR)
    with FingerprintStore.open(tmp_path / "s") as store:
        identity = store.identify(track)
        os.utime(track, ns=(identity.mtime_ns, identity.mtime_ns + 10**9))
        failure = store.save_failure(track, identity, "Error", "failed")
        assert (failure.size, failure.mtime_ns) == (identity.size, identity.mtime_ns)


def test_a_file_deleted_while_analysed_is_said_to_be_deleted(tmp_path, monkeypatch):
    """It was reported as "the file changed while it was analysed"."""
    import fpcli.analyze

    track = write(tmp_path / "a.wav", synth.music_like(2.0, SR, seed=53), SR)
    real_analyse = fpcli.analyze.analyse

    def analyse_then_delete(path, want=None, **kw):
        result = real_analyse(path, want, **kw)
        os.remove(track)
        return result

    monkeypatch.setattr(fpcli.analyze, "analyse", analyse_then_delete)
    with FingerprintStore.open(tmp_path / "s") as store:
        result = fingerprint_of(store, track, Want())
        assert result.failed and result.error == "the file was deleted while it was analysed"
        assert list(store.failures()) == [] and list(store.records()) == []


def test_a_file_overwritten_while_analysed_stores_nothing_under_its_old_digest(tmp_path, monkeypatch):
    """The digest is read before the decode: a file rewritten in between (same size)
    had the new audio's fingerprint stored under the old content's digest, and a true
    copy of the old file was served it as cached. Now the run reports the change and
    stores no record; the next run analyses the file as it is."""
    import fpcli.analyze

    old = synth.music_like(3.0, SR, bpm=120, seed=50)
    new = synth.music_like(3.0, SR, bpm=80, seed=51)
    track, copy = write(tmp_path / "x.wav", old, SR), write(tmp_path / "copy.wav", old, SR)
    real_analyse = fpcli.analyze.analyse

    def analyse_then_overwrite(path, want=None, **kw):
        result = real_analyse(path, want, **kw)
        if os.path.realpath(path) == os.path.realpath(track):
            sf.write(track, new, SR, subtype="PCM_16")          # same size, other audio
            os.utime(track, ns=(os.stat(track).st_atime_ns, os.stat(track).st_mtime_ns + 10**9))
        return result

    monkeypatch.setattr(fpcli.analyze, "analyse", analyse_then_overwrite)
    with FingerprintStore.open(tmp_path / "s") as store:
        first = fingerprint_of(store, track, Want())
        assert first.failed and first.error_type == "ChangedWhileRead" and "changed while" in first.error
        monkeypatch.setattr(fpcli.analyze, "analyse", real_analyse)
        assert not fingerprint_of(store, copy, Want()).cached           # the old audio: nothing stored for it
        again = fingerprint_of(store, track, Want())                    # the file as it is now
        assert not again.failed and not again.cached
        assert again.streaming.values["tempo_bpm"] != pytest.approx(
            fingerprint_of(store, copy, Want()).streaming.values["tempo_bpm"], rel=0.05)


@pytest.mark.parametrize("seconds", [-5_000_000_000, -1, 300_000_000_000])
def test_a_file_dated_before_1970_or_after_2262_is_stored_and_served(tmp_path, seconds):
    """os.stat gives a negative mtime before 1970 and one past a signed 64-bit count of
    ns after 2262 (ext4 keeps dates until 2446): the record was refused on every read,
    and the file analysed again on every run."""
    track = write(tmp_path / "dated.wav", synth.sine(440.0, 1.0, 22050), 22050)
    os.utime(track, ns=(0, seconds * 10**9))
    mtime_ns = os.stat(track).st_mtime_ns
    with FingerprintStore.open(tmp_path / "s") as store:
        need = Need(AnalysisParams().key())
        found = store.lookup(track, need)
        store.save(*compute(track, Want(), found.identity))
        again = store.lookup(track, need)
        assert again.record is not None and again.record.paths[0].mtime_ns == mtime_ns
        assert verify(store) == []


def test_resolving_many_paths_gives_what_resolving_each_gives(tmp_path, monkeypatch):
    """Each folder's real path is made once for a whole library's lookups; links, .. and
    missing files come out as realpath has them."""
    from fpcli.store.records import resolve, resolve_all

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lib" / "album").mkdir(parents=True)
    (tmp_path / "lib" / "album" / "a.flac").write_bytes(b"x")
    os.symlink("album", tmp_path / "lib" / "linked")
    os.symlink("album/a.flac", tmp_path / "lib" / "b.flac")
    os.symlink(str(tmp_path / "lib" / "album"), tmp_path / "far")
    paths = ["lib/album/a.flac", "lib/linked/a.flac", "lib/b.flac", "lib/linked/../b.flac", "far/a.flac",
             "lib/album/missing.flac", "lib/album/a.flac#02", "lib/album/", "lib/album/.", "lib/..",
             str(tmp_path / "lib" / "album" / "a.flac"), "a.flac", os.fsdecode(b"lib/album/\xff.flac")]
    folders: dict[str, str] = {}
    assert resolve_all(paths, folders) == [resolve(p) for p in paths]
    assert resolve_all(paths, folders) == [resolve(p) for p in paths]   # with the folders known


def test_two_files_of_one_size_and_time_swapped_by_renames_keep_their_own_records(tmp_path):
    """Equal-length WAVs whose times a sync tool or unzip set to one value, swapped by
    renames: each was answered with the other's record (its path entry's size and time
    matched), also in search and `cache show`, and verify found nothing."""
    lib = tmp_path / "lib"
    lib.mkdir()
    silence = np.zeros((2 * SR, 2))   # 2 s at each end, as CD rips have: one content key for both files
    a = write(lib / "a.wav", np.concatenate([silence, synth.music_like(3.0, SR, seed=61), silence]), SR)
    b = write(lib / "b.wav", np.concatenate([silence, synth.music_like(3.0, SR, seed=62, bpm=150), silence]), SR)
    assert os.path.getsize(a) == os.path.getsize(b)
    for path in (a, b):
        os.utime(path, ns=(1_577_836_800_000_000_000,) * 2)
    base = ["--store", str(tmp_path / "s")]

    def analysed() -> dict[str, tuple[bool, float]]:
        result = runner.invoke(app, [*base, "analyze", "--json", "--quiet", str(lib)])
        assert result.exit_code == 0, result.output
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        return {os.path.basename(r["path"]): (r["cached"], r["streaming"]["spectral_centroid_hz"]) for r in lines}

    first = analysed()
    os.rename(a, lib / "x.wav")
    os.rename(b, a)
    os.rename(lib / "x.wav", b)
    second = analysed()
    assert second["a.wav"][1] == first["b.wav"][1] and second["b.wav"][1] == first["a.wav"][1], (first, second)
    # a.wav is answered by its content's record; that record's old path b.wav is then
    # its last one taken (the entry said b.wav held it), so b.wav is analysed again.
    assert second["a.wav"][0]
    shown = json.loads(runner.invoke(app, [*base, "cache", "show", "--json", str(a)]).stdout)
    assert shown["streaming"]["values"]["spectral_centroid_hz"] == first["b.wav"][1]["value"]


def test_a_path_entry_inode_is_optional_and_checked():
    from fpcli.errors import BadEntryError
    from fpcli.store.schema import parse_path_entry, path_entry_text

    old = json.loads(path_entry_text("/m/a.wav", 10, 1, "a" * 32, "b" * 32))   # as written before inodes
    assert "inode" not in old and parse_path_entry("path:x", old) == old
    assert parse_path_entry("path:x", {**old, "inode": 2**40})["inode"] == 2**40
    for bad in (-1, "12", 1.5, None):
        with pytest.raises(BadEntryError, match="inode"):
            parse_path_entry("path:x", {**old, "inode": bad})


def test_a_file_renamed_over_another_while_it_is_analysed_is_not_stored(tmp_path):
    """Another file of the same size and time renamed over the one identified: its
    audio was analysed and stored under the first one's digest (served to every true
    copy of it, and no check could tell). The inode tells."""
    a = write(tmp_path / "a.wav", synth.music_like(2.0, SR, seed=71), SR)
    b = write(tmp_path / "b.wav", synth.music_like(2.0, SR, seed=72), SR)
    for path in (a, b):
        os.utime(path, ns=(1_577_836_800_000_000_000,) * 2)
    with FingerprintStore.open(tmp_path / "s") as store:
        identity = store.identify(a)
    os.replace(b, a)   # between the identification and the read
    _, result = compute(str(a), Want(), identity)
    assert result.failed and result.error_type == "ChangedWhileRead", result


def test_a_file_restored_with_a_new_inode_is_checked_once(tmp_path, monkeypatch):
    """A file put back from a backup (same bytes and time, another inode) is read as a
    new path is (content key, then digest), and its entry takes the new inode: read
    once, not on every run."""
    import fpcli.store.core as core

    track = write(tmp_path / "t.wav", synth.music_like(2.0, SR, seed=81), SR)
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "analyze", "--quiet", track]).exit_code == 0
    shutil.copy2(track, tmp_path / "restored.wav")
    os.replace(tmp_path / "restored.wav", track)   # another inode, the same size and time
    reads = []
    real = core.entry_identity_keys
    monkeypatch.setattr(core, "entry_identity_keys", lambda *a, **k: reads.append(k) or real(*a, **k))
    for expected_reads in (2, 0):   # the content key, then the digest; then none
        reads.clear()
        with FingerprintStore.open(tmp_path / "s") as store:
            found = store.lookup(track, Need(AnalysisParams().key()))
        assert found.record is not None and len(reads) == expected_reads, reads


def test_a_prune_that_retimes_a_touched_file_keeps_its_inode(tmp_path):
    """A prune rewrote a touched file's path entry without the inode, and the swap of
    two files of one size and time was served wrong again."""
    track = write(tmp_path / "t.wav", synth.music_like(2.0, SR, seed=91), SR)
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "analyze", "--quiet", track]).exit_code == 0
    os.utime(track, ns=(1_600_000_000_000_000_000,) * 2)   # touched: same bytes, a new time
    assert runner.invoke(app, [*base, "cache", "prune"]).exit_code == 0
    with FingerprintStore.open(tmp_path / "s") as store:
        entry = store._read_path_entry(os.path.realpath(track))
    assert entry is not None and entry["mtime_ns"] == 1_600_000_000_000_000_000
    assert entry["inode"] == os.stat(track).st_ino


def test_a_run_an_error_stops_still_says_the_bad_entries_it_met(tmp_path, monkeypatch):
    import fpcli.library as library_module
    from fpcli.errors import FpcliError

    track = write(tmp_path / "t.flac", synth.music_like(2.0, SR, seed=95), SR)
    base = ["--store", str(tmp_path / "s")]
    assert runner.invoke(app, [*base, "analyze", "--quiet", track]).exit_code == 0
    with FingerprintStore.open(tmp_path / "s") as store:
        _corrupt_one_record(store)

    def unreachable(*args, **kwargs):
        raise FpcliError("cannot reach the Dask scheduler")

    monkeypatch.setattr(library_module, "_analyse", unreachable)
    result = runner.invoke(app, [*base, "analyze", track])
    assert result.exit_code == 1 and "warning: skipped a bad store entry" in result.stderr, result.output
