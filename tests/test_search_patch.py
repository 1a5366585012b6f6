"""A few records added or changed are written into the saved index in place
(``search.patch``): the patched index holds what a build holds, its derived arrays
are what a fresh computation gives, and anything a patch cannot describe takes the
full refresh."""

from __future__ import annotations

import dataclasses
import json
import random

import numpy as np
import pytest

from fpcli.search import build_index, current_index, load_index, save_index
from fpcli.search.index import Index, pending_changes
from fpcli.search.patch import NpyFile, array_path, header_signature, patch_saved
from fpcli.store import FingerprintStore
from fpcli.store.records import PathSeen
from tests.test_search_keeper import KEY, _export, _import, _rows, make_records


def _indexed_store(location, template, tmp_path, count=60):
    store = FingerprintStore.open(location)
    _import(store, _export(tmp_path, template, count, 1, "a.jsonl"))  # saves both indexes
    return store


def _clones(template, numbers, seed=7):
    rng = random.Random(seed)
    return [make_records.clone(template, n, rng) for n in numbers]


def _recomputed(index: Index) -> Index:
    """The same rows with every derived array computed afresh."""
    return Index(index.kind, index.params_key, np.array(index.values), np.array(index.keys),
                 np.array(index.paths), np.array(index.contents), index.low, index.high,
                 timbre=np.array(index.timbre_rows()), timbre_fit=index.timbre_fit)


def test_added_and_changed_records_are_patched_in_place_as_a_build_has_them(location, template, tmp_path):
    with _indexed_store(location, template, tmp_path) as store:
        before, _ = current_index(store, "streaming", KEY)
        store.import_records(_clones(template, [3, 100, 101]))  # one changed, two new
        index, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["records_read"], len(index)) == ("patched", 3, len(before) + 2)
        assert _rows(index) == _rows(build_index(store, "streaming", KEY))
        fresh = _recomputed(index)
        np.testing.assert_allclose(index.terms(), fresh.terms(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(index.embedded(), fresh.embedded(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(index.timbre_logdets(), fresh.timbre_logdets(), rtol=1e-9)
        np.testing.assert_array_equal(index.content_words(), fresh.content_words())
        _, info = current_index(store, "streaming", KEY)
        assert (info["index"], info["records_read"]) == ("loaded", 0)


def test_a_removed_record_or_a_longer_path_takes_the_full_refresh(location, template, tmp_path):
    with _indexed_store(location, template, tmp_path) as store:
        current_index(store, "streaming", KEY)
        store.delete_record(next(r for r in store.records() if r.complete))
        _, info = current_index(store, "streaming", KEY)
        assert info["index"] == "refreshed"
        longer = dataclasses.replace(_clones(template, [102])[0], paths=(PathSeen("/" + "x" * 500 + ".flac", 0),))
        store.import_records([longer])
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "refreshed" and "/" + "x" * 500 + ".flac" in index.paths
        assert _rows(index) == _rows(build_index(store, "streaming", KEY))


def _saved_file(folder, name):
    """The file of array ``name`` of the saved streaming index in ``folder``."""
    stem = f"streaming-{KEY}"
    return array_path(folder, stem, json.loads((folder / f"{stem}.json").read_text()), name)


def test_rows_of_an_interrupted_patch_are_ignored_then_cut_off(template, tmp_path):
    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        index, _ = current_index(store, "streaming", KEY)
        folder, n = store.backend.index_dir, len(index)
        for name in ("values", "terms"):     # a patch that appended rows, then stopped
            saved = NpyFile.read(_saved_file(folder, name))
            saved.write(n, {}, np.full((2, *saved.shape[1:]), 7, dtype=saved.dtype))
        loaded = load_index(folder, "streaming", KEY)
        assert len(loaded) == n and len(loaded.terms()) == n
        np.testing.assert_array_equal(loaded.values, index.values)
        store.import_records(_clones(template, [103]))
        patched, info = current_index(store, "streaming", KEY)
        assert (info["index"], len(patched)) == ("patched", n + 1)
        assert NpyFile.read(_saved_file(folder, "values")).shape[0] == n + 1
        assert _rows(patched) == _rows(build_index(store, "streaming", KEY))


def test_a_save_by_another_process_since_the_load_stops_the_patch(template, tmp_path):
    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        stale = header_signature(folder, "streaming", KEY)
        index = load_index(folder, "streaming", KEY)
        store.import_records(_clones(template, [104]))
        current_index(store, "streaming", KEY)               # another writer patched it meanwhile
        files = {p.name: p.read_bytes() for p in folder.iterdir()}
        assert patch_saved(index, store, folder, stale, pending_changes(index, store)) is None
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


def test_a_damaged_saved_file_takes_the_full_refresh_which_saves_it_anew(template, tmp_path):
    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        damaged = _saved_file(folder, "terms")
        damaged.write_bytes(b"\x93NUMPY\x01\x00" + b"garbage")
        store.import_records(_clones(template, [105]))
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "refreshed" and info["index_saved"]
        assert _rows(index) == _rows(build_index(store, "streaming", KEY))
        reloaded = load_index(folder, "streaming", KEY)
        np.testing.assert_allclose(reloaded.terms(), _recomputed(reloaded).terms(), rtol=1e-6, atol=1e-6)


def test_a_lock_file_that_is_no_regular_file_leaves_the_index_unsaved_not_the_search_stuck(template, tmp_path):
    import os

    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        (folder / ".lock").unlink(missing_ok=True)
        os.mkfifo(folder / ".lock")               # opening it for writing would block
        store.import_records(_clones(template, [106]))
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "refreshed" and not info["index_saved"]
        assert _rows(index) == _rows(build_index(store, "streaming", KEY))


def test_a_corrupt_record_named_by_the_journal_is_left_out_not_a_crash(location, template, tmp_path):
    with _indexed_store(location, template, tmp_path) as store:
        before, _ = current_index(store, "streaming", KEY)
        preview, fresh, odd = _clones(template, [107, 108, 109])  # 107: a preview, never indexed
        assert not preview.complete
        store.import_records([preview])  # a change that leaves the index as it is: nothing to write
        index, info = current_index(store, "streaming", KEY)
        assert (info["index"], len(index)) == ("patched", len(before))
        store.import_records([fresh, odd])
        store.backend.put(odd.key, '{"digest": 7, "schema": "odd"}')  # schema-odd text under a record key
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "patched" and len(index) == len(before) + 1
        assert odd.key not in index.keys.tolist() and fresh.key in index.keys.tolist()


def test_a_save_that_fails_half_way_leaves_the_previous_index_whole(template, tmp_path, monkeypatch):
    """Each save writes its arrays under a new token and commits with the header: a full
    disk in the middle of a save leaves the previous save's header and arrays together
    (before tokens, the old header was read with some of the new arrays) and no files."""
    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        before = load_index(folder, "streaming", KEY)
        files = sorted(p.name for p in folder.iterdir())
        store.import_records(_clones(template, [1]) + _clones(template, range(200, 1400)))  # a rebuild
        real_save, calls = np.save, []

        def fails_third(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                raise OSError(28, "No space left on device")
            return real_save(*args, **kwargs)

        monkeypatch.setattr(np, "save", fails_third)
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "rebuilt" and not info["index_saved"] and len(calls) == 3
        monkeypatch.setattr(np, "save", real_save)
        assert sorted(p.name for p in folder.iterdir()) == files
        kept = load_index(folder, "streaming", KEY)
        assert _rows(kept) == _rows(before)
        again, info = current_index(store, "streaming", KEY)        # the next query saves it whole
        assert info["index_saved"] and _rows(again) == _rows(build_index(store, "streaming", KEY))
        saved = [p.name for p in folder.glob(f"streaming-{KEY}.*.npy")]
        assert len(saved) == len([n for n in files if n.startswith(f"streaming-{KEY}.") and n.endswith(".npy")])
        assert len({name.split(".")[1] for name in saved}) == 1          # one token: no older arrays left


def test_an_index_saved_before_tokens_is_read_then_replaced(template, tmp_path):
    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder, stem = store.backend.index_dir, f"streaming-{KEY}"
        header = json.loads((folder / f"{stem}.json").read_text())
        token = header.pop("token")
        for path in folder.glob(f"{stem}.{token}.*.npy"):                 # as an older fpcli named them
            path.rename(folder / path.name.replace(f".{token}.", ".", 1))
        (folder / f"{stem}.json").write_text(json.dumps(header))
        old = load_index(folder, "streaming", KEY)
        assert old is not None and _rows(old) == _rows(build_index(store, "streaming", KEY))
        store.import_records(_clones(template, [1]) + _clones(template, range(200, 1400)))
        current_index(store, "streaming", KEY)                            # rebuilt and saved with a token
        assert not [p for p in folder.glob(f"{stem}.*.npy") if p.name.count(".") == 2]


def test_an_index_saved_again_while_a_query_reads_it_is_read_again(template, tmp_path, monkeypatch):
    """Another process's save removes the arrays of the save before it: a query that
    read the older header meanwhile reads the new one instead of building its own."""
    from fpcli.search import saved as saved_module

    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        saved_module._RECENT.clear()
        other = build_index(store, "streaming", KEY)
        real_load, saves = np.load, []

        def load_during_a_save(*args, **kwargs):
            if not saves:
                saves.append(save_index(other, folder))
            return real_load(*args, **kwargs)

        monkeypatch.setattr(np, "load", load_during_a_save)
        index, info = current_index(store, "streaming", KEY)
        assert saves == [True] and (info["index"], info["records_read"]) == ("loaded", 0)
        assert _rows(index) == _rows(other)


@pytest.mark.parametrize("target", ["values", "header"])
def test_a_fifo_in_the_index_folder_never_blocks_a_search(template, tmp_path, target):
    """A FIFO where a saved array or header should be (a hostile or broken store folder)
    blocked every search forever in its open(); it is now not a saved index."""
    import os
    import threading

    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        path = _saved_file(folder, "values") if target == "values" else folder / f"streaming-{KEY}.json"
        path.unlink()
        os.mkfifo(path)
        found: list = []
        reader = threading.Thread(target=lambda: found.append(load_index(folder, "streaming", KEY)), daemon=True)
        reader.start()
        reader.join(timeout=30)
        assert found == [None]
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] == "built" and _rows(index) == _rows(build_index(store, "streaming", KEY))


def test_a_save_removes_what_writers_killed_mid_write_left(template, tmp_path):
    """kill -9 during a save leaves its temporary array (4 MB at 10,000 rows) in the
    index folder; later saves left it there for good. A save holds the folder's lock,
    as every writer of it does, so such files are stale and go."""
    from fpcli.search.saved import save_index

    with _indexed_store(tmp_path / "store", template, tmp_path) as store:
        folder = store.backend.index_dir
        index, _ = current_index(store, "streaming", KEY)
        (folder / ".fpcli-killed.npy").write_bytes(b"\0" * 4096)
        (folder / ".fpcli-header.tmp").write_text("{")
        assert save_index(index, folder)
        assert not list(folder.glob(".fpcli-*"))
        assert _rows(load_index(folder, "streaming", KEY)) == _rows(index)


def test_a_record_journaled_many_times_counts_once_toward_a_rebuild():
    """Each write is journaled twice, and one record may change often: the journal's
    entries, repeats included, decided whether an index was rebuilt, so half as many
    writes as before forced a full re-read of the store."""
    from fpcli.search.index import Pending

    repeated = Pending(0, (1, 1), ["rec:a", "rec:b"] * 900)
    assert not repeated.needs_rebuild(rows=10)
    assert Pending(0, (1, 1), [f"rec:{n}" for n in range(1001)]).needs_rebuild(rows=10)
    assert Pending(0, (1, 1), None).needs_rebuild(rows=10**6)
    # More records changed than a quarter of the rows: a build (batched) beats a replay (one by one).
    changed = [f"rec:{n}" for n in range(2_600)] * 2
    assert Pending(0, (1, 1), changed).needs_rebuild(rows=10_000)
    assert not Pending(0, (1, 1), changed).needs_rebuild(rows=20_000)
