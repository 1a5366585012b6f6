"""``cache import`` keeps the search indexes current: the index it saves holds the rows
a build from the stored records holds, and it saves nothing when it cannot know that."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from fpcli.cli import app
from fpcli.params import AnalysisParams
from fpcli.search import build_index, current_index, load_index
from fpcli.search.index import KINDS
from fpcli.search.keeper import ImportedRows
from fpcli.store import FingerprintStore, import_store
from fpcli.store.schema import record_to_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import make_records  # noqa: E402  (benchmarks/make_records.py: one real record, cloned)

KEY = AnalysisParams().key()




def _export(tmp_path, template, count, seed, name):
    """An export of ``count`` cloned records; the same n gives the same key whatever
    the seed (other values)."""
    path = tmp_path / name
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n")
        for record in make_records.records(count, seed=seed, template=template):
            fh.write(json.dumps({"type": "record", "data": record_to_json(record)}) + "\n")
    return path


def _import(store, path, on_records=None):
    kept = ImportedRows(store, KEY)
    report = import_store(store, path, on_records=on_records or kept.add)
    assert not report.rejected
    return kept.finish()


def _rows(index):
    """{key: (path, digest, values, timbre)} with NaN as None: an index's content, in any order."""
    timbres = index.timbre_rows()
    return {key: (path, content, tuple(None if np.isnan(v) else float(v) for v in values),
                  tuple(None if np.isnan(v) else float(v) for v in timbre))
            for key, path, content, values, timbre in zip(index.keys.tolist(), index.paths.tolist(),
                                                          index.contents.tolist(), index.values, timbres,
                                                          strict=True)}


def _assert_current_and_as_built(store):
    for kind in KINDS:
        saved = load_index(store.backend.index_dir, kind, KEY)
        assert saved is not None
        assert (saved.generation, tuple(saved.epoch)) == (store.generation(), store.index_epoch())
        built = build_index(store, kind, KEY)
        assert len(saved) == len(built) and _rows(saved) == _rows(built)
    _, info = current_index(store, "streaming", KEY)
    assert (info["index"], info["records_read"]) == ("loaded", 0)


def test_an_import_into_a_new_store_saves_the_index_a_build_would_make(location, template, tmp_path):
    with FingerprintStore.open(location) as store:
        done = _import(store, _export(tmp_path, template, 120, 1, "a.jsonl"))
        # previews (n % 20 == 7) are not indexed; records without batch values (n % 10 == 9) not in batch
        assert done["saved"] == {"streaming": 114, "batch": 102}
        _assert_current_and_as_built(store)


def test_an_import_into_an_indexed_store_extends_its_index(location, template, tmp_path):
    with FingerprintStore.open(location) as store:
        _import(store, _export(tmp_path, template, 60, 1, "a.jsonl"))
        done = _import(store, _export(tmp_path, template, 90, 2, "b.jsonl"))  # 60 rewritten (new values), 30 new
        assert done["saved"]["streaming"] == 85  # 90 less 5 previews
        _assert_current_and_as_built(store)
        rewritten = make_records.clone(template, 5, random.Random(0)).key
        saved = load_index(store.backend.index_dir, "streaming", KEY)
        assert list(saved.keys).count(rewritten) == 1


def test_nothing_is_saved_without_a_current_index_to_extend(template, tmp_path):
    location = tmp_path / "store"
    with FingerprintStore.open(location) as store:
        _import(store, _export(tmp_path, template, 40, 1, "a.jsonl"))
        shutil.rmtree(store.backend.index_dir)
        done = _import(store, _export(tmp_path, template, 50, 2, "b.jsonl"))
        assert done == {"skipped": "the store held records but no current search index"}
        assert load_index(store.backend.index_dir, "streaming", KEY) is None


def test_another_writer_during_the_import_leaves_the_old_index_to_refresh(template, tmp_path):
    with FingerprintStore.open(tmp_path / "store") as store:
        _import(store, _export(tmp_path, template, 40, 1, "a.jsonl"))
        before = load_index(store.backend.index_dir, "streaming", KEY)
        other = next(store.records())
        kept = ImportedRows(store, KEY)

        def meanwhile(records):
            kept.add(records)
            store.update_record(dataclasses.replace(other, analysed_at=1.0))  # another writer's change

        assert not import_store(store, _export(tmp_path, template, 50, 2, "b.jsonl"), on_records=meanwhile).rejected
        assert "changed during the import" in kept.finish()["skipped"]
        assert load_index(store.backend.index_dir, "streaming", KEY).generation == before.generation
        index, info = current_index(store, "streaming", KEY)
        assert info["index"] in ("refreshed", "rebuilt")
        assert _rows(index) == _rows(build_index(store, "streaming", KEY))


def test_cache_import_says_it_saved_the_index(template, tmp_path):
    path = _export(tmp_path, template, 30, 1, "a.jsonl")
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "store"), "cache", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "search index saved (streaming 28, batch 25 rows" in result.output
    again = CliRunner().invoke(app, ["--store", str(tmp_path / "other"), "cache", "import", str(path), "--no-index"])
    assert again.exit_code == 0 and "search index" not in again.output
    assert not (tmp_path / "other" / "index").exists()


def test_cache_import_says_which_index_it_could_not_save(template, tmp_path, monkeypatch):
    """On a full disk the streaming index was not saved and the line named only the
    batch one: every search then built it again, and nothing said why."""
    import fpcli.search.keeper

    real_save = fpcli.search.keeper.save_index
    monkeypatch.setattr(fpcli.search.keeper, "save_index",
                        lambda index, folder: index.kind != "streaming" and real_save(index, folder))
    path = _export(tmp_path, template, 30, 1, "a.jsonl")
    result = CliRunner().invoke(app, ["--store", str(tmp_path / "store"), "cache", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "search index saved (batch 25 rows" in result.output
    assert "the streaming search index could not be saved" in result.output


def test_odd_paths_and_a_path_longer_than_any_other_survive_the_kept_index(location, template, tmp_path):
    """The rows' paths are kept as UTF-8 bytes (surrogateescape) during the import: a
    name that is not UTF-8, one with a newline, one outside the BMP and a long one
    come back as a build reads them."""
    odd = ["/m/caf\u00e9 \u2603 \U0001f600.flac", "/m/\udcff\udcfe.flac", "/m/line\nbreak.flac",
           "/m/" + "long name " * 60 + ".flac"]
    path = tmp_path / "odd.jsonl"
    with open(path, "w") as fh:
        fh.write(json.dumps({"type": "fpcli-store-export", "version": 2}) + "\n")
        for n, record in enumerate(make_records.records(12, seed=3, template=template)):
            if n < len(odd):
                record = dataclasses.replace(record, paths=(dataclasses.replace(record.paths[0], path=odd[n]),))
            fh.write(json.dumps({"type": "record", "data": record_to_json(record)}) + "\n")
    with FingerprintStore.open(location) as store:
        done = _import(store, path)
        assert done["saved"]["streaming"] == 11  # record 7 is a preview (not indexed)
        _assert_current_and_as_built(store)
        saved = load_index(store.backend.index_dir, "streaming", KEY)
        assert set(odd) <= set(saved.paths.tolist())
