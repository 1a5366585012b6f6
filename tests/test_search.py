"""Similarity search: exact top-k, normalisation, index refresh, strategies, CLI."""

import dataclasses
import json
import os
import re
import sys

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import app
from fpcli.errors import ParameterError, QueryError
from fpcli.fingerprint import GROUPS, STREAMING_DIMS
from fpcli.library import RunOptions, run_library
from fpcli.params import AnalysisParams
from fpcli.search import (
    Compute,
    Index,
    SearchError,
    build_index,
    current_index,
    dim_weights,
    parse_weights,
    save_index,
    search,
    top_k,
)
from fpcli.search.index import fit_scaling, scale
from fpcli.search.rank import NULL_PENALTY, TIMBRE_WEIGHT
from fpcli.store import FingerprintStore
from fpcli.store.records import Validation
from tests.conftest import write

KEY = AnalysisParams().key()


def _index(values, contents=None):
    n = len(values)
    index = Index("streaming", KEY, np.asarray(values, dtype=np.float32), np.array([f"k{i}" for i in range(n)]),
                  np.array([f"/music/t{i:03d}.flac" for i in range(n)]),
                  np.array(contents if contents is not None else [f"c{i}" for i in range(n)]),
                  np.zeros(0), np.zeros(0))
    index.fit()
    return index


def _tempo_square(a, b):
    """Squared distance of two tempo points by the law of cosines: each tempo is at
    radius c/2 (c = rhythm_stability clipped to [0, 1], 0 without a positive tempo),
    at angle 2 pi log2(bpm); an independent form of index.tempo_point."""
    def polar(row):
        bpm, c = row[0], row[1]
        if not (np.isfinite(bpm) and bpm > 0):
            return 0.0, 0.0
        return (0.0 if np.isnan(c) else min(max(float(c), 0.0), 1.0)) / 2, float(np.log2(bpm))
    (r1, t1), (r2, t2) = polar(a), polar(b)
    return max(r1 * r1 + r2 * r2 - 2 * r1 * r2 * np.cos(2 * np.pi * (t1 - t2)), 0.0)


def _brute_force(index, query, weights, k, exclude=None):
    low, high = index.low, index.high
    q = scale(query[None, :], low, high)[0]
    assert index.dims[:2] == ("tempo_bpm", "rhythm_stability")
    scored = []
    for i, row in enumerate(index.values):
        if index.contents[i] == exclude:
            continue
        x = scale(row[None, :], low, high)[0]
        total = weights[0] * _tempo_square(row, query)
        for j in range(1, len(q)):
            if np.isnan(x[j]) and np.isnan(q[j]):
                diff = 0.0
            elif np.isnan(x[j]) or np.isnan(q[j]):
                diff = NULL_PENALTY
            else:
                diff = float(x[j]) - float(q[j])
            total += weights[j] * diff * diff
        scored.append((np.sqrt(total), index.paths[i]))
    return sorted(scored)[:k]


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 60), st.integers(1, 12), st.floats(0.0, 0.3))
def test_top_k_matches_brute_force(seed, n, k, null_share):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, len(STREAMING_DIMS))) * rng.uniform(0.1, 100, len(STREAMING_DIMS))
    values[rng.random(values.shape) < null_share] = np.nan
    index = _index(values)
    query = values[0].copy()
    weights = dim_weights(index.dims, {g: rng.uniform(0, 2) for g in GROUPS}, index.low, index.high)
    got = top_k(index, query, k, weights, exclude_content="c0")
    expected = _brute_force(index, query, weights, k, exclude="c0")
    assert [h.path for h in got] == [path for _, path in expected]
    np.testing.assert_allclose([h.distance for h in got], [d for d, _ in expected], rtol=1e-4, atol=1e-5)


def test_self_and_duplicate_content_are_excluded():
    values = np.random.default_rng(1).random((5, len(STREAMING_DIMS)))
    index = _index(values, contents=["a", "b", "a", "c", "d"])
    weights = dim_weights(index.dims, dict.fromkeys(GROUPS, 1.0), index.low, index.high)
    hits = top_k(index, values[0], 10, weights, exclude_content="a")
    assert {h.digest for h in hits} == {"b", "c", "d"}
    assert len(top_k(index, values[0], 10, weights)) == 5


def test_zero_spread_dims_weigh_nothing():
    values = np.random.default_rng(2).random((20, len(STREAMING_DIMS)))
    values[:, 3] = 7.0
    low, high = fit_scaling(values)
    weights = dim_weights(STREAMING_DIMS, dict.fromkeys(GROUPS, 1.0), low, high)
    assert weights[3] == 0 and (weights[np.arange(13) != 3] > 0).all()


def test_null_dims_cost_a_fixed_penalty():
    values = np.full((3, len(STREAMING_DIMS)), 0.5, dtype=np.float32)
    values[1] = np.linspace(0, 1, 13)
    values[2] = np.linspace(1, 0, 13)
    index = _index(values)
    weights = np.zeros(13)
    weights[4] = 1.0
    query = values[0].copy()
    query[4] = np.nan
    hits = top_k(index, query, 3, weights)
    assert all(h.distance == pytest.approx(NULL_PENALTY) for h in hits)


def test_parse_weights():
    assert parse_weights("temporal=2, stereo=0")["temporal"] == 2.0
    assert parse_weights(None)["timbre"] == TIMBRE_WEIGHT
    assert parse_weights("timbre=4")["timbre"] == 4.0
    with pytest.raises(ParameterError, match="not a group"):
        parse_weights("tempo=2")
    assert parse_weights("temporal=1000")["temporal"] == 1000.0
    for hostile in ("timbre=1e308", "stereo=inf", "stereo=nan", "stereo=-1"):
        with pytest.raises(ParameterError, match="from 0 to 1000"):
            parse_weights(hostile)
    with pytest.raises(ParameterError, match="write GROUP=WEIGHT, e.g. temporal=2"):
        parse_weights("temporal")       # said "'' is not a number"
    assert parse_weights("temporal =3")["temporal"] == 3.0
    for empty in (",", " , ,"):   # were the defaults, as if --weights were not given
        with pytest.raises(ParameterError, match="names no group"):
            parse_weights(empty)
    assert parse_weights("timbre=4,")["timbre"] == 4.0


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    for i in range(8):
        write(root / f"t{i}.flac", synth.music_like(3.0, 22050, seed=i, bpm=80 + 12 * i), 22050)
    write(root / "copy_of_t0.flac", synth.music_like(3.0, 22050, seed=0, bpm=80), 22050)
    return root


@pytest.fixture
def store(tmp_path, library):
    with FingerprintStore.open(tmp_path / "s") as s:
        run_library([str(library)], s, RunOptions(jobs=2))
        yield s


def test_index_is_persisted_and_refreshed_incrementally(store, library, tmp_path):
    index, info = current_index(store, "streaming", KEY)
    assert info["index"] == "built" and len(index) == 8  # the copy shares t0's content key
    _, info = current_index(store, "streaming", KEY)
    assert info["index"] == "loaded" and info["records_read"] == 0
    write(library / "new.flac", synth.sine(330, 3.0, 22050), 22050)
    run_library([str(library)], store, RunOptions(jobs=1))
    index, info = current_index(store, "streaming", KEY)
    assert (info["index"], info["records_read"], len(index)) == ("refreshed", 1, 9)
    record = store.record_for_path(library / "t3.flac")
    store.delete_record(record)
    index, info = current_index(store, "streaming", KEY)
    assert (info["index"], len(index)) == ("refreshed", 8)
    assert str((library / "t3.flac").resolve()) not in index.paths
    store.clear()
    _, info = current_index(store, "streaming", KEY)
    assert info["index"] == "rebuilt" and info["rows"] == 0


def test_a_process_reuses_its_index_until_another_save_replaces_it(store):
    """Repeated queries in one process use the index in memory (no re-mapping of the
    saved files); a save by another process (a new header file) is loaded instead."""
    first, _ = current_index(store, "streaming", KEY)
    again, info = current_index(store, "streaming", KEY)
    assert again is first and info["index"] == "loaded"
    assert save_index(first, store.backend.index_dir)          # as another process would
    reloaded, info = current_index(store, "streaming", KEY)
    assert reloaded is not first and info["index"] == "loaded"
    np.testing.assert_array_equal(reloaded.values, first.values)


def test_fast_search_finds_neighbours_and_excludes_the_query(store, library):
    result = search(store, str(library / "t4.flac"), k=3, strategy="fast", explain=True)
    paths = [os.path.basename(h.path) for h in result.hits]
    assert len(paths) == 3 and "t4.flac" not in paths
    assert [h.distance for h in result.hits] == sorted(h.distance for h in result.hits)
    assert result.hits[0].explain and result.stats["query_cached"]


def test_duplicate_copy_is_excluded_by_content(store, library):
    result = search(store, str(library / "copy_of_t0.flac"), k=10, strategy="fast")
    assert all(not h.path.endswith("t0.flac") for h in result.hits)
    included = search(store, str(library / "copy_of_t0.flac"), k=10, strategy="fast", include_duplicates=True)
    assert any(h.distance == 0 for h in included.hits)


def test_batch_strategy_reports_and_computes_missing(store, library):
    # no other track has one yet: how many lack one is the answer (no hits), as when some have one
    none_yet = search(store, str(library / "t1.flac"), strategy="batch")
    assert none_yet.hits == [] and none_yet.stats["missing_batch"] == 7
    result = search(store, str(library / "t1.flac"), k=3, strategy="batch", compute_missing=True)
    assert result.stats["missing_batch"] == 0 and len(result.hits) == 3
    assert sum((r.batch is not None) for r in store.records()) == 8


def test_accurate_computes_batch_for_candidates_only(store, library):
    result = search(store, str(library / "t2.flac"), k=1, strategy="accurate")
    with_batch = sum((r.batch is not None) for r in store.records())
    assert result.stats["batch_computed"] == 5          # k x 5 candidates
    assert with_batch == 6                               # the candidates and the query
    assert len(result.hits) == 1


@pytest.mark.parametrize("strategy", ["accurate", "batch"])
def test_a_candidate_deleted_since_it_was_stored_is_reported(store, library, strategy):
    """accurate and batch --compute-missing dropped a deleted candidate without a word
    (they kept only files that existed; that also dropped every CUE track)."""
    nearest = search(store, str(library / "t2.flac"), k=1, strategy="fast").hits[0].path
    os.unlink(nearest)
    result = search(store, str(library / "t2.flac"), k=3, strategy=strategy, compute_missing=True)
    assert [path for path, _ in result.skipped] == [nearest]
    assert "no such file" in result.skipped[0][1]
    assert nearest not in {hit.path for hit in result.hits}


def test_the_records_of_gone_hits_are_not_kept_as_the_request_widens(store, library, monkeypatch):
    """A library on a drive not mounted: every hit is gone, and the request widens to
    every row. Each record read was kept (1.9 GB at 100,000); those of gone hits are
    dropped now and not read again, and the answer is the same: no hit, each named."""
    from fpcli.search import query as query_module

    for path in library.iterdir():
        if path.name != "t2.flac":
            path.unlink()
    reads: list[int] = []
    kept_at_end: list[int] = []
    read_records = store.read_records
    monkeypatch.setattr(store, "read_records", lambda keys: reads.append(len(keys)) or read_records(keys))
    original = query_module._HitRecords.of

    def of(self, hits):
        yield from original(self, hits)
        kept_at_end.append(len(self.read))

    monkeypatch.setattr(query_module._HitRecords, "of", of)
    # One read of the mutual-proximity references' records, once per index: not the hits'.
    monkeypatch.setattr(query_module, "_references_of_the_query", lambda *args: [])
    result = search(store, str(library / "t2.flac"), k=2, strategy="fast")
    assert result.hits == [] and len(result.skipped) == 7   # t0-t7 but t2 (the copy of t0 is its record)
    assert sum(reads) == 7 and kept_at_end and max(kept_at_end) == 0, (reads, kept_at_end)


def test_weights_that_leave_the_fingerprint_nothing_are_refused(store, library):
    """Every streaming group and the timbre at 0 passed (the batch-only groups still
    weighed 1): every distance was 0 and the hits in arbitrary order, exit 0."""
    zero = parse_weights("temporal=0,spectral=0,harmonic=0,variation=0,timbre=0")
    with pytest.raises(SearchError, match="every group of the streaming fingerprint weighs 0"):
        search(store, str(library / "t2.flac"), k=3, strategy="fast", group_weights=zero)
    batch = search(store, str(library / "t2.flac"), k=3, strategy="batch", group_weights=zero, compute_missing=True)
    assert len(batch.hits) == 3 and len({hit.distance for hit in batch.hits}) > 1  # frequency, dynamics, stereo


def test_weights_of_groups_a_fast_search_has_not_are_named(store, library):
    """``--weights stereo=0`` (the README's example) changed nothing in a fast search,
    which has no stereo dims, and said nothing; a batch search weighs them."""
    weights = parse_weights("temporal=2,stereo=0,dynamics=1,timbre=4")
    fast = search(store, str(library / "t2.flac"), k=3, strategy="fast", group_weights=weights)
    assert fast.stats["weights_unused"] == ["stereo"]     # dynamics=1 is its default: nothing to say
    batch = search(store, str(library / "t2.flac"), k=3, strategy="batch", group_weights=weights,
                   compute_missing=True)
    assert "weights_unused" not in batch.stats


def _stored_cue_album(store, tmp_path, track_s):
    """An album image of two tracks of ``track_s`` seconds with its CUE sheet, analysed into ``store``."""
    album = tmp_path / "album"
    album.mkdir()
    write(album / "album.flac", np.concatenate([synth.music_like(float(track_s), 22050, seed=60 + i,
                                                                 bpm=95 + 10 * i) for i in range(2)]), 22050)
    (album / "album.cue").write_text('FILE "album.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                                     f'  TRACK 02 AUDIO\n    INDEX 01 00:0{track_s}:00\n')
    run_library([str(album)], store, RunOptions())
    return album


def test_a_run_that_splits_an_image_forgets_its_whole_record(store, tmp_path):
    """An image analysed whole (its sheet unusable then) kept that record once the sheet
    was fixed: a search of its own track ranked the whole image first, and no prune
    dropped it. The run that splits it forgets it; one that leaves the sheet out
    (--exclude) keeps the image whole, as it means to."""
    album = _stored_cue_album(store, tmp_path, track_s=3)
    sheet = (album / "album.cue").read_text()
    (album / "album.cue").write_text(sheet.replace("INDEX 01 00:00:00", "INDX 01 00:00:00"))
    run_library([str(album)], store, RunOptions())        # unusable: the image analysed whole
    whole = str(album / "album.flac")

    def stored_paths():
        return {seen.path for record in store.records() for seen in record.paths}

    assert whole in stored_paths()
    assert run_library([str(album)], store, RunOptions(exclude=("*.cue",))).cached == 1   # left out: kept whole
    assert whole in stored_paths()
    (album / "album.cue").write_text(sheet)
    run_library([str(album)], store, RunOptions())
    assert whole not in stored_paths() and f"{whole}#01" in stored_paths()
    assert whole not in [hit.path for hit in search(store, f"{whole}#01", k=20).hits]


def test_accurate_ranks_cue_sheet_tracks_too(store, library, tmp_path):
    """A CUE track (``album.flac#01``) is no file of that name: a filter on existing
    files left every one out of the accurate ranking."""
    album = _stored_cue_album(store, tmp_path, track_s=3)
    result = search(store, str(library / "t2.flac"), k=10, strategy="accurate")
    assert {str(album / "album.flac#01"), str(album / "album.flac#02")} <= {hit.path for hit in result.hits}
    assert result.skipped == []


def test_accurate_computes_missing_batch_on_workers_with_progress(store, library, monkeypatch):
    import fpcli.library as analysis  # search imports it where something is missing

    handed = []

    def analyse_all(todo, options, store_):
        handed.append((len(todo), options.jobs, options.batch))
        yield from real(todo, options, store_)

    real = analysis.analyse_all
    monkeypatch.setattr(analysis, "analyse_all", analyse_all)
    events = []
    candidates = {h.path for h in search(store, str(library / "t2.flac"), k=5, strategy="fast").hits}
    result = search(store, str(library / "t2.flac"), k=1, strategy="accurate",
                    compute=Compute(jobs=2, on_event=lambda kind, payload: events.append((kind, payload))))
    assert handed == [(5, 2, True)]                      # one pool of 2 workers for the 5 candidates
    assert events[0] == ("start", (5, "batch fingerprints"))
    computed = {r.path for kind, r in events[1:] if kind == "track" and not r.failed}
    assert len(events) == 6 and computed == candidates and result.stats["batch_computed"] == 5
    assert all(store.record_for_path(path).batch is not None for path in candidates)
    again = search(store, str(library / "t2.flac"), k=1, strategy="accurate",
                   compute=Compute(jobs=2, on_event=lambda kind, payload: events.append((kind, payload))))
    assert again.stats["batch_computed"] == 0 and len(events) == 6   # stored: nothing computed, no events


def test_cli_accurate_search_reports_progress_on_stderr(store, library):
    args = ["--store", store.location, "search", str(library / "t3.flac"), "-k", "1", "--strategy", "accurate",
            "--jobs", "2", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)                     # stdout holds the JSON alone
    assert data["stats"]["batch_computed"] == 5 and len(data["hits"]) == 1
    assert "computing 5 missing batch fingerprints on 2 worker processes" in result.stderr
    assert "computing" not in result.stdout
    # The summary names the batch index accurate ranked by, beside the streaming one.
    said = runner.invoke(app, args[:-1]).stderr
    assert re.search(r"; index \w+, 8 tracks; batch index \w+, 6 tracks; ranked by", said), said
    # A batch search that builds its index says "built", not the "loaded" of its second look.
    import shutil

    shutil.rmtree(store.backend.index_dir)
    built = search(store, str(library / "t3.flac"), k=1, strategy="batch").stats
    assert built["index"] == "built" and built["records_read"] == 6   # its build's count, not the second look's 0


def test_auto_explains_its_choice(store, library):
    result = search(store, str(library / "t2.flac"), k=2, strategy="auto")
    assert result.strategy == "fast" and result.reason.startswith("auto:")


def test_auto_averages_the_confidence_of_measured_dims_only(template):
    # Was "low confidence (0.69)" for a fully heard silent or short file: its null dims
    # (confidence 0) pulled the mean down, and auto re-ranked with batch for nothing.
    from fpcli.search.query import _choose

    nulls = ("tempo_bpm", "rhythm_stability", "key_clarity", "pitch_stability")
    values = {d: None if d in nulls else 0.5 for d in STREAMING_DIMS}
    confidence = {d: 0.0 if d in nulls else 1.0 for d in STREAMING_DIMS}  # mean over all 13: 0.69
    streaming = dataclasses.replace(template.streaming, values=values, confidence=confidence)
    record = dataclasses.replace(template, streaming=streaming, validation=None)
    assert _choose(record) == ("fast", "auto: the query's streaming confidence is high (1.00); validate to be sure")
    nothing = dataclasses.replace(streaming, values=dict.fromkeys(STREAMING_DIMS), confidence=confidence)
    strategy, reason = _choose(dataclasses.replace(record, streaming=nothing))  # no value: every dim, as before
    assert strategy == "accurate" and "low (0.69)" in reason


def test_a_silent_query_is_said_silent_not_confidently_matched(store, library, tmp_path):
    """A file of digital silence was searched as any query: auto said "the query's
    streaming confidence is high (1.00)" and the table read as tracks that sound
    alike, ranked by the few dims silence has."""
    silent = write(tmp_path / "silent.wav", np.zeros((22050 * 4, 2), dtype=np.float32), 22050)
    result = search(store, silent, k=3, strategy="auto")
    assert result.stats["query_silent"] is True
    assert result.reason == "auto: the query is silent, so only its silence and rhythm dims have values"
    assert "query_silent" not in search(store, str(library / "t2.flac"), k=3).stats
    shown = CliRunner().invoke(app, ["--store", store.location, "search", silent, "-k", "3"])
    assert "warning: the query is silent (every frame below the silence threshold)" in shown.stderr


def test_query_outside_the_store_is_analysed_and_cached(store, tmp_path):
    outside = write(tmp_path / "outside.flac", synth.music_like(3.0, 22050, seed=42), 22050)
    result = search(store, outside, k=2, strategy="fast")
    assert not result.stats["query_cached"] and len(result.hits) == 2
    assert search(store, outside, k=2, strategy="fast").stats["query_cached"]


def test_a_loaded_index_decodes_only_the_paths_a_query_needs(tmp_path):
    """Saved paths are UTF-8 bytes (surrogateescape); a loaded index keeps them so and
    decodes the hits' paths, and filters by folder on the bytes, with any file name."""
    from fpcli.search import load_index

    odd = os.fsdecode(b"/m/caf\xe9/x.flac")          # a name that is not UTF-8
    index = _index(np.random.default_rng(1).random((3, len(STREAMING_DIMS))))
    index.stored_paths = np.array([odd, "/m/jazz/a.flac", "/m/jazz2/b.flac"])
    assert save_index(index, tmp_path)
    loaded = load_index(tmp_path, "streaming", KEY)
    assert loaded.stored_paths.dtype.kind == "S"
    assert loaded.path_strings(np.array([2, 0])) == ["/m/jazz2/b.flac", odd]
    assert loaded.rows_under("/m/jazz/").tolist() == [False, True, False]
    assert loaded.rows_under(os.fsdecode(b"/m/caf\xe9/")).tolist() == [True, False, False]
    assert loaded.paths.tolist() == index.paths.tolist()
    weights = dim_weights(loaded.dims, dict.fromkeys(GROUPS, 1.0), loaded.low, loaded.high)
    hits = top_k(loaded, loaded.values[1], 3, weights)
    assert [h.path for h in hits] == [h.path for h in top_k(index, index.values[1], 3, weights)]
    assert {h.path for h in hits} == set(index.paths.tolist())
    assert [h.path for h in top_k(loaded, loaded.values[1], 3, weights, under=os.fsdecode(b"/m/caf\xe9"))] == [odd]


def test_library_restriction(store, library, tmp_path):
    result = search(store, str(library / "t1.flac"), k=10, strategy="fast", under=str(tmp_path / "elsewhere"))
    assert result.hits == []


runner = CliRunner()


def test_cli_search_json_and_m3u(store, library, tmp_path):
    playlist = tmp_path / "lists" / "similar.m3u"
    playlist.parent.mkdir()
    args = ["--store", store.location, "search", str(library / "t5.flac"), "-k", "3", "--json", "--m3u",
            str(playlist)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["hits"]) == 3 and data["strategy"] == "fast"
    lines = playlist.read_text().splitlines()
    assert lines[0] == "#EXTM3U" and lines[2] == "../lib/t5.flac"
    assert all(not line.startswith("/") for line in lines[2::2])


def test_cli_search_table(store, library):
    result = runner.invoke(app, ["--store", store.location, "search", str(library / "t5.flac"), "--explain"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0
    rows = [line.split("\t") for line in result.stdout.splitlines()]  # a pipe: plain tab-separated lines
    assert [row[0] for row in rows] == [str(i) for i in range(1, 11)][:len(rows)] and len(rows) == 7
    assert all(" -> " in row[3] for row in rows)  # the explanation column
    assert "strategy fast" in result.stderr


def test_cli_search_errors(tmp_path, library):
    # Nothing to search is an answer with no hits, as the batch strategy's (it was exit 1,
    # and nothing on stdout for --json); its reason on stderr and in the stats.
    for strategy in ("fast", "accurate", "auto"):
        empty = runner.invoke(app, ["--store", str(tmp_path / "empty"), "search", str(library / "t0.flac"),
                                    "--json", "--strategy", strategy])
        assert empty.exit_code == 0 and "no other streaming fingerprints" in empty.stderr, empty.output
        answer = json.loads(empty.stdout)
        assert answer["hits"] == [] and "analyse the library first" in answer["stats"]["nothing_to_search"]
    garbage = runner.invoke(app, ["--store", str(tmp_path / "empty"), "search", "-"], input=b"garbage" * 100)
    assert isinstance(garbage.exception, QueryError)   # exit 3 from main(), as a file query that fails
    broken = tmp_path / "broken.flac"
    broken.write_text("nope")
    bad = runner.invoke(app, ["--store", str(tmp_path / "empty"), "search", str(broken)])
    assert isinstance(bad.exception, QueryError) and "cannot analyse the query" in str(bad.exception)
    strategy = runner.invoke(app, ["search", str(library / "t0.flac"), "--strategy", "psychic"])
    assert strategy.exit_code == 2 and "one of fast, accurate, batch, auto" in strategy.output
    # A query too short to measure is a query that failed (exit 3), not a fatal error (1).
    short = write(tmp_path / "short.wav", 0.2 * np.sin(2 * np.pi * 220 * np.arange(882) / 44100), 44100)
    runner.invoke(app, ["--store", str(tmp_path / "one"), "analyze", str(library / "t0.flac")])
    tiny = runner.invoke(app, ["--store", str(tmp_path / "one"), "search", str(short), "--json"])
    assert isinstance(tiny.exception, QueryError) and "too short to measure" in str(tiny.exception)
    # --json says why on stdout too (it printed nothing: a script got no document to read).
    for query, stdin in ((str(short), None), (str(broken), None), ("-", b"garbage" * 100)):
        failed = runner.invoke(app, ["--store", str(tmp_path / "one"), "search", query, "--json"], input=stdin)
        assert isinstance(failed.exception, QueryError)
        assert json.loads(failed.stdout) == {"query": query, "strategy": "auto", "error": str(failed.exception),
                                             "hits": []}


def test_a_preview_query_hears_only_its_first_seconds_even_when_the_file_is_stored(store, library):
    """--seconds N is the query's first N s whether or not the store holds the whole
    file: the full record must not silently replace the preview (and stays stored)."""
    track = str(library / "t4.flac")
    result = search(store, track, k=2, seconds=1.0)
    assert result.strategy == "fast" and "partial query" in result.reason
    assert not result.stats["query_complete"] and result.stats["query_seconds"] == pytest.approx(1.0)
    assert all(os.path.basename(h.path) != "t4.flac" for h in result.hits)
    assert store.record_for_path(track).complete                    # the fuller record is kept
    whole = search(store, track, k=2, seconds=10.0)                   # longer than the track: all of it
    assert whole.stats["query_complete"] and whole.stats["query_cached"]


def test_include_duplicates_never_lists_the_query_itself(store, library):
    """The copies share one record (one index row under one of their paths): with
    --include-duplicates the other copy is a hit, the query's own file never is."""
    for query, other in (("t0.flac", "copy_of_t0.flac"), ("copy_of_t0.flac", "t0.flac")):
        hits = search(store, str(library / query), k=3, strategy="fast", include_duplicates=True).hits
        names = [os.path.basename(h.path) for h in hits]
        assert query not in names and names[0] == other and hits[0].distance == 0 and len(hits) == 3
    under = search(store, str(library / "t0.flac"), k=3, include_duplicates=True, under=str(library / "none"))
    assert under.hits == []                                           # a copy is still held to --library


def test_cli_m3u_on_stdout_is_the_playlist_alone_without_streams(store, library, tmp_path):
    from fpcli.live import LiveFingerprint
    from fpcli.search import Hit, SearchResult, write_m3u
    from fpcli.search.query import LeftOut

    live = LiveFingerprint(22050, 2, expected_seconds=3.0)
    live.push(synth.music_like(3.0, 22050, seed=50, bpm=100))
    live.finish()
    live.save(store, "radio")                                         # a stream record: no file behind it
    args = ["--store", store.location, "search", str(library / "t5.flac"), "-k", "10", "--m3u", "-"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 1 + 2 * 8          # the query and 7 files, no table row
    assert all(line.startswith("#EXTINF:-1,") for line in lines[1::2]) and "stream:" not in result.stdout
    assert "left 1 stream out of the playlist" in result.stderr and "\t" not in result.stdout
    # absolute: where stdout is saved is not known (paths relative to the current folder broke elsewhere)
    assert all(os.path.isabs(line) and os.path.isfile(line) for line in lines[2::2])
    both = runner.invoke(app, [*args, "--json"])
    assert both.exit_code == 2 and "choose one" in both.output
    stdin_query = SearchResult("-", "fast", "", [Hit("stream:radio", 0.1, "a"), Hit("/m/a.flac", 0.2, "b")], {})
    assert write_m3u(stdin_query, tmp_path / "p.m3u") == LeftOut(streams=2)  # the query on stdin is a stream too
    assert (tmp_path / "p.m3u").read_text().splitlines()[1:] == ["#EXTINF:-1,a", os.path.relpath("/m/a.flac",
                                                                                                  tmp_path)]


def test_an_m3u_in_a_folder_reached_through_a_link_plays(store, library, tmp_path):
    """~/Music a link to another disk: the playlist's paths were made relative to the
    folder as named, and every one of them was broken (`..` goes up from the real
    folder)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "Music").symlink_to(library)
    playlist = home / "Music" / "Playlists" / "similar.m3u"
    playlist.parent.mkdir()
    result = runner.invoke(app, ["--store", store.location, "search", str(home / "Music" / "t5.flac"), "-k", "3",
                                 "--m3u", str(playlist)])
    assert result.exit_code == 0, result.output
    entries = playlist.read_text().splitlines()[2::2]
    assert len(entries) == 4 and all(os.path.isfile(playlist.parent / entry) for entry in entries), entries


def test_cli_m3u_leaves_cue_sheet_tracks_out(store, library, tmp_path):
    # Was "album.flac#01" in the playlist: a CUE track is a part of an album image, which no player opens.
    from fpcli.search import Hit, SearchResult, write_m3u
    from fpcli.search.query import LeftOut

    album = _stored_cue_album(store, tmp_path, track_s=2)
    playlist = tmp_path / "p.m3u"
    args = ["--store", store.location, "search", str(library / "t5.flac"), "-k", "20", "-s", "fast"]
    result = runner.invoke(app, [*args, "--m3u", str(playlist)])
    assert result.exit_code == 0, result.output
    assert "album.flac#01" in result.stdout and "#0" not in playlist.read_text()  # a hit, not a playlist line
    assert "left 2 CUE-sheet tracks out of the playlist (no file of their own)" in result.stderr
    hits = [Hit(str(album / "album.flac#02"), 0.1, "a"), Hit("stream:radio", 0.2, "b")]
    cue_query = SearchResult(str(album / "album.flac#01"), "fast", "", hits, {})
    assert write_m3u(cue_query, playlist) == LeftOut(streams=1, cue_tracks=2)
    assert playlist.read_text() == "#EXTM3U\n"


def test_cli_library_with_no_hits_says_why(store, library, tmp_path):
    # Was an empty stdout and exit 0 without a word: every track there was the query's
    # recording (a byte copy, another encoding), or the store had nothing there.
    dupes, empty = tmp_path / "dupes", tmp_path / "empty"
    dupes.mkdir()
    empty.mkdir()
    song = write(tmp_path / "song.flac", synth.music_like(8.0, 22050, seed=70, bpm=97), 22050)  # long enough
    (dupes / "song_copy.flac").write_bytes((tmp_path / "song.flac").read_bytes())      # for a duplicate key
    write(dupes / "song.wav", *sf.read(song, dtype="int16"))  # the same samples, another format
    run_library([song, str(dupes)], store, RunOptions(jobs=2))
    args = ["--store", store.location, "search", song, "-s", "fast", "-l"]
    result = runner.invoke(app, [*args, str(dupes)])
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert f"no hits under {dupes} (2 copies of the query left out)" in result.stderr
    assert json.loads(runner.invoke(app, [*args, str(dupes), "--json"]).stdout)["stats"]["query_copies_under"] == 2
    nothing = runner.invoke(app, [*args, str(empty)])
    assert nothing.exit_code == 0 and f"no hits under {empty} (the store has no other track there)" in nothing.stderr
    # without --library too: a store whose other tracks are all copies of the query
    with FingerprintStore.open(tmp_path / "copies") as copies:
        run_library([song, str(dupes)], copies, RunOptions(jobs=1))
    alone = runner.invoke(app, ["--store", str(tmp_path / "copies"), "search", song])
    assert alone.exit_code == 0 and "no hits: the store's other tracks are copies of the query (1 left out; " \
        "--include-duplicates shows them)" in alone.stderr, alone.output
    other = write(tmp_path / "other.flac", synth.music_like(8.0, 22050, seed=71, bpm=120), 22050)
    with FingerprintStore.open(tmp_path / "copies") as copies:
        run_library([other], copies, RunOptions(jobs=1))
    os.remove(other)   # skipped (its file gone): then not every other track was a copy
    skipped = runner.invoke(app, ["--store", str(tmp_path / "copies"), "search", song])
    assert "skipped as a candidate" in skipped.stderr and "no hits: the store's other" not in skipped.stderr
    kept = runner.invoke(app, [*args, str(dupes), "--include-duplicates"])
    assert "no hits" not in kept.stderr and "song_copy.flac" in kept.stdout


def test_cli_library_must_be_a_folder(store, library, tmp_path):
    for folder, reason in ((tmp_path / "nonexistent", "no such folder"), (library / "t1.flac", "not a folder")):
        result = runner.invoke(app, ["--store", store.location, "search", str(library / "t0.flac"), "-l",
                                     str(folder)])
        assert result.exit_code == 2 and reason in result.output


def _index_by_full_parse(store, kind):
    """The index rows as every record parsed whole gives them (row_of, pack): the reference."""
    from fpcli.search.index import row_of
    from fpcli.search.timbre import pack

    rows = [(r.key, r.path, r.digest, row_of(r, kind, KEY), pack(r.timbre)) for r in store.records()]
    return [row for row in rows if row[3] is not None]


def test_index_build_fast_path_gives_the_full_parse_rows_and_reports_odd_records(store):
    """build_index reads records by a fast path (index_rows.index_row); it must give the
    rows that parsing every record whole gives, send any record it does not expect
    (a list-form timbre, an indefinite covariance, damaged JSON) to the full parser,
    which reports the bad ones, and leave out other parameters, previews and records
    without values."""
    from fpcli.dsp.timbre import N_MFCC
    from fpcli.store.schema import dumps, loads, record_to_json
    from fpcli.store.timbre_block import TIMBRE_VALUES

    assert TIMBRE_VALUES == N_MFCC + N_MFCC * (N_MFCC + 1) // 2
    records = list(store.records())
    base = record_to_json(records[0])

    def variant(digest: str, **changes):
        data = {**loads("k", dumps(base)), "digest": digest, **changes}
        store.backend.put(f"rec:{digest}:{data['params_key']}", dumps(data))

    variant("a" * 32, timbre={"mean": list(records[0].timbre.mean),                 # schema 2 form: slow path
                               "cov": [list(r) for r in records[0].timbre.cov], "frames": 9})
    indefinite = records[0].timbre.cov[0][0]
    cov = [list(r) for r in records[0].timbre.cov]
    cov[0][0] = -10 * abs(indefinite) - 10
    from fpcli.dsp.timbre import Timbre
    from fpcli.store.timbre_block import pack_timbre
    variant("b" * 32, timbre=pack_timbre(Timbre(records[0].timbre.mean, tuple(map(tuple, cov)), 9)))  # bad
    variant("c" * 32, complete=False)                                              # a preview: not indexed
    variant("d" * 32, params_key="v9-0000000000000000", fingerprint_version=9)    # other parameters
    variant("e" * 32, timbre=None)                                                 # no timbre: a NaN row
    variant("f" * 32, streaming={**base["streaming"], "values": dict.fromkeys(base["streaming"]["values"])})
    variant("0" * 32, streaming={**base["streaming"], "values": {**base["streaming"]["values"],
                                                                 "tempo_bpm": "fast"}})   # bad value
    variant("2" * 32, streaming={**base["streaming"], "values": {**base["streaming"]["values"],
                                                                 "spectral_centroid_hz": 1e300}})   # out of range
    store.backend.put(f"rec:{'1' * 32}:{KEY}", "{not json")                         # damaged
    store.bad_entries.clear()
    index = build_index(store, "streaming", KEY)
    fast_bad = sorted(str(e) for e in store.bad_entries)
    store.bad_entries.clear()
    reference = _index_by_full_parse(store, "streaming")
    assert fast_bad == sorted(str(e) for e in store.bad_entries) and len(fast_bad) == 4   # the 1e300 was indexed
    assert index.keys.tolist() == [r[0] for r in reference]
    assert index.paths.tolist() == [r[1] for r in reference] and index.contents.tolist() == [r[2] for r in reference]
    np.testing.assert_array_equal(index.values, np.array([r[3] for r in reference]))
    np.testing.assert_array_equal(index.timbre_rows(), np.array([r[4] for r in reference]))
    assert f"rec:{'a' * 32}:{KEY}" in index.keys and f"rec:{'e' * 32}:{KEY}" in index.keys
    assert np.isnan(index.timbre_rows()[index.keys.tolist().index(f"rec:{'e' * 32}:{KEY}")]).all()


def test_library_folder_finds_a_track_whose_copy_elsewhere_was_analysed_last(tmp_path):
    """An index keeps one path per record (the last seen): a track under -l whose
    byte-identical copy elsewhere was analysed after it was left out, and -l of the
    copy's folder found the copy only if it was analysed last."""
    import shutil

    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
    for i in range(4):
        write(tmp_path / "x" / f"t{i}.flac", synth.music_like(4.0, 22050, seed=40 + i), 22050)
    shutil.copyfile(tmp_path / "x" / "t3.flac", tmp_path / "y" / "copy_of_t3.flac")
    store = ["--store", str(tmp_path / "s")]
    for folder in ("x", "y"):
        assert runner.invoke(app, [*store, "analyze", str(tmp_path / folder), "--quiet"]).exit_code == 0

    def hits(folder):
        result = runner.invoke(app, [*store, "search", str(tmp_path / "x" / "t0.flac"), "-l", str(tmp_path / folder),
                                     "--json"])
        assert result.exit_code == 0, result.output
        return sorted(os.path.basename(h["path"]) for h in json.loads(result.stdout)["hits"])

    assert hits("x") == ["t1.flac", "t2.flac", "t3.flac"]
    assert hits("y") == ["copy_of_t3.flac"]
    # A folder too big to walk (-l / must not walk the disk): by path alone, and said.
    import fpcli.search.query

    monkey = pytest.MonkeyPatch()
    monkey.setattr(fpcli.search.query, "COPY_WALK_ENTRIES", 2)
    try:
        assert hits("x") == ["t1.flac", "t2.flac"]
        result = runner.invoke(app, [*store, "search", str(tmp_path / "x" / "t0.flac"), "-l", str(tmp_path / "x")])
        assert "copies elsewhere not looked for: more than 2 entries under the folder" in result.stderr
    finally:
        monkey.undo()


def test_auto_choosing_accurate_computes_the_querys_own_batch_fingerprint(store, library):
    """auto chooses after reading the query's streaming record; when it re-ranks with
    batch (here: the query failed validation), the query's batch fingerprint is
    computed too (it was "the query has no batch fingerprint values")."""
    record = store.record_for_path(library / "t2.flac")
    assert record.batch is None
    failed = Validation("invalid", 0.5, 0.95, "high", ("tempo_bpm",), {"tempo_bpm": 0.5}, 0.0)
    store.update_record(dataclasses.replace(record, validation=failed))
    result = search(store, str(library / "t2.flac"), k=1, strategy="auto")
    assert result.strategy == "accurate" and "failed validation" in result.reason
    assert len(result.hits) == 1 and not result.hits[0].path.endswith("t2.flac")
    assert store.record_for_path(library / "t2.flac").batch is not None


def test_a_stream_query_is_never_re_ranked_with_batch(store, library):
    """A stream query has no batch fingerprint: auto keeps fast and says why, and the
    CLI refuses accurate and batch before reading stdin (exit 2)."""
    record = store.record_for_path(library / "t2.flac")
    failed = Validation("invalid", 0.5, 0.95, "high", ("tempo_bpm",), {"tempo_bpm": 0.5}, 0.0)
    streamed = dataclasses.replace(record, validation=failed)
    result = search(store, "-", k=1, strategy="auto", query=streamed)
    assert result.strategy == "fast" and "a stream has no batch fingerprint" in result.reason
    for strategy in ("accurate", "batch"):
        refused = runner.invoke(app, ["--store", store.location, "search", "-", "--strategy", strategy],
                                input=b"not read")
        assert refused.exit_code == 2 and "a stream query does not have" in refused.output


def test_jobs_and_timeout_are_refused_where_a_search_computes_nothing(tmp_path, library):
    """`search - --jobs 4` and `--strategy fast --timeout 3` were accepted without a word,
    where analyze refuses --jobs on a stream (the exit-code table: an option the run
    would ignore is a usage error)."""
    store = ["--store", str(tmp_path / "s"), "search"]
    for args, said in ((["-", "--jobs", "2"], "which a stream never does"),
                       ([str(library / "t1.flac"), "--seconds", "1", "--timeout", "5"], "which a preview never does"),
                       ([str(library / "t1.flac"), "-s", "fast", "-j", "2"], "which --strategy fast never does"),
                       ([str(library / "t1.flac"), "-s", "batch", "-j", "2"], "batch without --compute-missing")):
        result = runner.invoke(app, [*store, *args], input=b"never read")
        assert result.exit_code == 2 and said in result.output, (args, result.output)
    assert not (tmp_path / "s").exists()   # refused before anything was analysed


def test_a_query_not_indexed_searches_a_store_of_one_other_track(tmp_path, library):
    """A stream or a preview query is not an indexed row: a store holding one other
    track answered "the store holds no other ... fingerprints" with no hit."""
    with FingerprintStore.open(tmp_path / "one") as store:
        run_library([str(library / "t2.flac")], store, RunOptions(jobs=1))
    for args, stdin in ((["-"], (library / "t1.flac").read_bytes()), ([str(library / "t1.flac"), "--seconds", "1"],
                                                                      None)):
        result = runner.invoke(app, ["--store", str(tmp_path / "one"), "search", *args, "--json"], input=stdin)
        assert result.exit_code == 0, result.output
        answer = json.loads(result.stdout)
        assert [os.path.basename(hit["path"]) for hit in answer["hits"]] == ["t2.flac"], answer["stats"]
    said = runner.invoke(app, ["--store", str(tmp_path / "one"), "search", "-"],
                         input=(library / "t3.flac").read_bytes())
    assert re.search(r"index \w+, 1 track;", said.stderr), said.output   # it said "1 tracks"


def test_previews_are_left_out_of_search_and_it_says_so(tmp_path, library):
    """A preview pass (--seconds) leaves records that are no search candidates: the
    search says how many it left out and how to finish them, also when they are all
    there is (it said "analyse the library first" of an analysed library)."""
    with FingerprintStore.open(tmp_path / "p") as previews:
        run_library([str(library)], previews, RunOptions(jobs=1, seconds=1.0))
        only = search(previews, str(library / "t1.flac"), k=2, strategy="fast")  # t1 is now whole
        assert only.hits == [] and re.search("7 of its records are previews .*upgrade",
                                             only.stats["nothing_to_search"])
        run_library([str(library / "t2.flac"), str(library / "t3.flac")], previews, RunOptions(jobs=1))
        result = search(previews, str(library / "t1.flac"), k=2, strategy="fast")
        assert {os.path.basename(h.path) for h in result.hits} == {"t2.flac", "t3.flac"}
        assert result.stats["previews_left_out"] == 5
        cli = runner.invoke(app, ["--store", previews.location, "search", str(library / "t1.flac"), "-k", "2"])
        assert cli.exit_code == 0 and "left out 5 preview records" in cli.stderr


def _older_version_copy(store: FingerprintStore, target, versions_back: int = 1) -> FingerprintStore:
    """A new store holding ``store``'s records as a former fingerprint version wrote them
    (``versions_back`` -1: as a later one will)."""
    from fpcli.params import FINGERPRINT_VERSION
    from fpcli.store.maintenance import export_store, import_store

    export_store(store, target.with_suffix(".jsonl"))
    older = []
    for line in target.with_suffix(".jsonl").read_text().splitlines():
        entry = json.loads(line)
        if entry.get("type") == "record":
            data = entry["data"]
            data["fingerprint_version"] = FINGERPRINT_VERSION - versions_back
            data["params_key"] = f"v{FINGERPRINT_VERSION - versions_back}-" + data["params_key"].split("-", 1)[1]
        older.append(json.dumps(entry))
    target.with_suffix(".jsonl").write_text("\n".join(older) + "\n")
    copy = FingerprintStore.open(target)
    import_store(copy, target.with_suffix(".jsonl"))
    return copy


def test_records_of_another_fingerprint_version_are_left_out_and_it_says_so(store, library, tmp_path):
    """After an upgrade every record is of the former version: search said "the store
    holds no other streaming fingerprints to search: analyse the library first" of an
    analysed library, and nothing of the records it left out once some were new."""
    with _older_version_copy(store, tmp_path / "older") as older:
        stored = older.record_count()
        alone = search(older, str(library / "t1.flac"), k=2, strategy="fast")
        assert alone.hits == [] and f"of its records, {stored} of a former fingerprint version" in \
            alone.stats["nothing_to_search"]
        run_library([str(library / "t2.flac"), str(library / "t3.flac")], older, RunOptions(jobs=1))
        result = search(older, str(library / "t1.flac"), k=2, strategy="fast")
        assert {os.path.basename(h.path) for h in result.hits} == {"t2.flac", "t3.flac"}
        assert result.stats["other_versions_left_out"] == stored
        cli = runner.invoke(app, ["--store", older.location, "search", str(library / "t1.flac"), "-k", "2"])
        assert cli.exit_code == 0
        assert f"left out {stored} records of other fingerprint versions: {stored} of a former" in cli.stderr
        listed = runner.invoke(app, ["--store", older.location, "cache", "list"], terminal_width=200).stdout
        t1_rows = [line for line in listed.splitlines() if "t1.flac" in line]   # its v5 record and its new one
        assert re.search(r"t4\.flac.*full, fingerprint v\d", listed), listed
        assert sorted("fingerprint v" in row for row in t1_rows) == [False, True], t1_rows
        shown = runner.invoke(app, ["--store", older.location, "cache", "show", str(library / "t4.flac")])
        assert "not this fpcli's: search leaves it out" in shown.stdout, shown.output
        pruned = runner.invoke(app, ["--store", older.location, "cache", "prune", "--json"])
        reasons = [json.loads(line)["reason"] for line in pruned.stdout.splitlines()]
        from fpcli.params import FINGERPRINT_VERSION

        superseded = f"fingerprint v{FINGERPRINT_VERSION - 1}: analysed again as v{FINGERPRINT_VERSION}"
        assert reasons == [superseded] * 3, pruned.output  # t1, t2 and t3
        again = search(older, str(library / "t1.flac"), k=2, strategy="fast")
        assert again.stats["other_versions_left_out"] == stored - 3 and again.hits == result.hits
        assert older.record_count() == stored   # 3 of the v5 records dropped, the 3 new ones kept


def test_prune_keeps_the_records_of_a_later_version_sharing_the_store(store, library, tmp_path):
    """A later fpcli sharing the store (one Redis, mixed clients) keeps its records: a
    prune dropped every record of another version whose content had one of this
    version, the later one's too ("fingerprint v7: analysed again as v6")."""
    with _older_version_copy(store, tmp_path / "newer", versions_back=-1) as newer:
        stored = newer.record_count()
        run_library([str(library / "t2.flac")], newer, RunOptions(jobs=1))
        pruned = runner.invoke(app, ["--store", newer.location, "cache", "prune", "--json"])
        assert pruned.exit_code == 0 and "analysed again" not in pruned.stdout, pruned.output
        assert newer.record_count() == stored + 1
        shown = runner.invoke(app, ["--store", newer.location, "cache", "show", str(library / "t4.flac")])
        assert "(newer), not this fpcli's: search leaves it out" in shown.stdout and "makes it anew" not in \
            shown.stdout, shown.output
        said = runner.invoke(app, ["--store", newer.location, "search", str(library / "t1.flac"), "-k", "2"]).stderr
        assert f"{stored} of a later fingerprint version, written by a newer fpcli" in said and "prune" not in said


def test_prune_forgets_the_gone_paths_only_a_dropped_former_record_listed(store, library, tmp_path):
    """A former record listing copies the new record does not list: dropped, it left a
    gone copy's path entry behind, which no record lists and no prune looks at again;
    a copy still there keeps its entry (search --library finds copies by it)."""
    import shutil

    from fpcli.store.records import path_key

    kept_copy = library / "copy_of_t0_kept.flac"
    shutil.copy2(library / "t0.flac", kept_copy)
    run_library([str(kept_copy)], store, RunOptions(jobs=1))
    with _older_version_copy(store, tmp_path / "older") as older:
        gone_copy = library / "copy_of_t0.flac"
        assert older.backend.get(f"path:{path_key(str(gone_copy))}") is not None
        run_library([str(library / "t0.flac")], older, RunOptions(jobs=1))   # the new record lists t0 only
        gone_copy.unlink()
        assert runner.invoke(app, ["--store", older.location, "cache", "prune"]).exit_code == 0
        assert older.backend.get(f"path:{path_key(str(gone_copy))}") is None
        assert older.backend.get(f"path:{path_key(str(kept_copy))}") is not None
        assert older.backend.get(f"path:{path_key(str(library / 't0.flac'))}") is not None


def test_previews_of_another_version_are_no_previews_to_finish(library, tmp_path):
    """After an upgrade, a former version's previews were counted as previews, and search
    said an analyze run with upgrade finishes them; that run finds none to finish."""
    with FingerprintStore.open(tmp_path / "p") as previews:
        run_library([str(library)], previews, RunOptions(jobs=1, seconds=1.0))
        with _older_version_copy(previews, tmp_path / "older") as older:
            result = search(older, str(library / "t1.flac"), k=2, strategy="fast")
            assert result.hits == [] and result.stats["previews_left_out"] == 0
            assert "of a former fingerprint version" in result.stats["nothing_to_search"]


# -- partial queries: how reliable, and the query's own recording ------------------------------

def test_expected_recall_is_unknown_under_the_shortest_length_measured():
    """The measured table starts at 5 s: under it the figure is unknown (the 5 s figure
    was printed for a 0.5 s query), from it on interpolated."""
    from fpcli.search.query import PREVIEW_RECALL, expected_recall, seconds_text

    shortest, figure = PREVIEW_RECALL[0]
    assert [expected_recall(s) for s in (0.5, 1.0, 2.0, shortest - 0.01)] == [None] * 4
    assert expected_recall(shortest) == pytest.approx(figure)
    assert figure < expected_recall(7.5) < PREVIEW_RECALL[1][1]
    assert [seconds_text(s) for s in (0.5, 2.0, 12.34, 20.0)] == ["0.5", "2", "12.3", "20"]


def test_cli_partial_query_says_half_a_second_and_no_recall_figure(openings):
    result = runner.invoke(app, ["--store", str(openings / "store"), "search", str(openings / "o1.wav"),
                                 "--seconds", "0.5", "-k", "1"])
    assert result.exit_code == 0, result.output
    assert "0.5 s heard" in result.stderr and "0 s heard" not in result.stderr
    assert "expected recall@10 unknown under 5 s" in result.stderr and "recall@10 0.61" not in result.stderr


def test_cli_weights_refuse_a_group_given_twice(tmp_path):
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), "search", str(tmp_path / "never-read.flac"),
                                 "--weights", "temporal=1, stereo=0,temporal=3"])
    assert result.exit_code == 2 and "'temporal' is given twice (temporal=1, temporal=3)" in result.output


def test_cli_m3u_that_cannot_be_written_is_refused_before_the_query_is_read(tmp_path, library):
    """A folder for --m3u was found after the search (and a stream query, read)."""
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), "search", "-", "--seconds", "5",
                                 "--m3u", str(tmp_path)], input=b"not audio, never read")
    assert result.exit_code == 2 and "it is a folder" in result.output


@pytest.mark.parametrize("target", ["query", "hit", "query under another name"])
def test_cli_m3u_never_replaces_a_track(store, library, tmp_path, target):
    """``search x.flac --m3u x.flac`` replaced the query's audio with a playlist, exit 0;
    a hit's file went the same way."""
    query = library / "t5.flac"
    other = {"query": query, "hit": library / "t4.flac", "query under another name": tmp_path / "t5.playlist"}
    if target == "query under another name":
        os.link(query, other[target])  # the same file, a name without an audio extension
        query = other[target]
    before = {path: path.read_bytes() for path in library.iterdir()}
    result = runner.invoke(app, ["--store", store.location, "search", str(query), "--m3u", str(other[target])])
    assert result.exit_code == 2, result.output
    assert "audio file" in result.output or "is the query" in result.output
    assert {path: path.read_bytes() for path in library.iterdir()} == before


def test_cache_export_never_replaces_a_track(store, library):
    before = (library / "t1.flac").read_bytes()
    result = runner.invoke(app, ["--store", store.location, "cache", "export", str(library / "t1.flac")])
    assert result.exit_code == 2 and "audio file" in result.output
    assert (library / "t1.flac").read_bytes() == before


def test_m3u_names_starting_with_a_hash_are_not_comments(tmp_path):
    """A relative line "#1 hit.flac" is a comment to every M3U reader: the track was lost."""
    folder = tmp_path / "music"
    folder.mkdir()
    for name, seed in (("#1 hit.flac", 1), ("q.flac", 2), ("other.flac", 3)):
        write(folder / name, synth.music_like(3.0, 22050, seed=seed, bpm=90 + 10 * seed), 22050)
    with FingerprintStore.open(tmp_path / "s") as s:
        run_library([str(folder)], s, RunOptions(jobs=1))
    playlist = folder / "similar.m3u"
    result = runner.invoke(app, ["--store", str(tmp_path / "s"), "search", str(folder / "q.flac"), "--m3u",
                                 str(playlist)])
    assert result.exit_code == 0, result.output
    entries = [line for line in playlist.read_text().splitlines() if not line.startswith("#")]
    assert sorted(entries) == ["./#1 hit.flac", "other.flac", "q.flac"]


SR_OPENING = 22050


@pytest.fixture(scope="module")
def openings(tmp_path_factory):
    """``a``; ``b``, which opens with a's first 6 s and then goes its own way (two tracks
    of one score can: it is another recording, and longer); three other tracks. Stored."""
    root = tmp_path_factory.mktemp("openings")
    a = synth.music_like(9.0, SR_OPENING, seed=21, bpm=100)
    b = np.concatenate([a[: 6 * SR_OPENING], synth.music_like(6.0, SR_OPENING, seed=22, bpm=140)])
    tracks = {"a": a, "b": b, **{f"o{i}": synth.music_like(9.0, SR_OPENING, seed=30 + i, bpm=80 + 15 * i)
                                 for i in range(3)}}
    from fpcli.analyze import fingerprint_of

    with FingerprintStore.open(root / "store") as s:
        for name, x in tracks.items():
            fingerprint_of(s, write(root / f"{name}.wav", x, SR_OPENING))   # in this process: no worker to start
    return root


def _stream_of(path, seconds, *, declared_s=None):
    """The record of a stream query of ``path``'s first ``seconds``, as the command line
    makes it, with the length a header may state."""
    import time

    from fpcli.audio import AudioReader
    from fpcli.live import follow, stream_identity
    from fpcli.store.records import record_from_result

    result = follow(AudioReader(str(path)), "stream:query", max_seconds=seconds)
    # A file's length is known; a stream of unknown length's duration is what was heard.
    result = dataclasses.replace(result, duration_s=result.streaming.seconds if declared_s is None else declared_s)
    return record_from_result(stream_identity("query"), result, time.time())


def _names(hits):
    return [os.path.basename(h.path) for h in hits]


def test_a_stream_preview_of_unknown_length_marks_the_tracks_it_opens_like(openings):
    """A 6 s stream of a: its key matches a's and b's over those 6 s (b opens alike), so
    neither can be told from the query: both are kept, named as probably the query,
    and k other tracks are still found. Whole tracks never match so."""
    with FingerprintStore.open(openings / "store") as s:
        result = search(s, "-", k=2, strategy="fast", query=_stream_of(openings / "a.wav", 6.0))
    names = _names(result.hits)
    marked = {os.path.basename(p) for p in result.stats["probably_the_query"]}
    assert marked == {"a.wav", "b.wav"} and {"a.wav", "b.wav"} <= set(names)
    assert len([n for n in names if n not in marked]) == 2
    # Each such hit says so itself (the README's promise; only the stats named them).
    assert {os.path.basename(h.path) for h in result.hits if h.probably_the_query} == marked
    assert all("probably_the_query" in hit for hit in result.to_json()["hits"])


def test_a_stream_preview_of_stated_length_leaves_its_recording_out_as_a_file_preview_does(openings):
    """With the length the stream's header states (9 s), a is the query's recording
    (dropped, as a file query's own file is) and b, 12 s, another track: the same
    hits as the file's own preview query."""
    with FingerprintStore.open(openings / "store") as s:
        streamed = search(s, "-", k=3, strategy="fast", query=_stream_of(openings / "a.wav", 6.0, declared_s=9.0))
        filed = search(s, str(openings / "a.wav"), k=3, strategy="fast", seconds=6.0)
    assert "a.wav" not in _names(streamed.hits) and "b.wav" in _names(streamed.hits)
    assert _names(streamed.hits) == _names(filed.hits) and "probably_the_query" not in streamed.stats


def test_a_whole_stream_is_told_from_a_track_that_opens_like_it(openings):
    with FingerprintStore.open(openings / "store") as s:
        result = search(s, "-", k=4, strategy="fast", query=_stream_of(openings / "a.wav", None))
    assert _names(result.hits)[:4] == [n for n in _names(result.hits) if n != "a.wav"][:4]
    assert "a.wav" not in _names(result.hits) and "b.wav" in _names(result.hits)
    assert "probably_the_query" not in result.stats


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    """``q.flac`` and ``q_copy.wav``: one recording in two encodings; three other
    tracks; all stored. ``unstored.wav``, the same recording again (24-bit), is not."""
    root = tmp_path_factory.mktemp("copies")
    q = synth.music_like(9.0, SR_OPENING, seed=41, bpm=105)
    tracks = {"q.flac": q, "q_copy.wav": q, **{f"o{i}.flac": synth.music_like(9.0, SR_OPENING, seed=50 + i,
                                                                                bpm=85 + 15 * i)
                                               for i in range(3)}}
    from fpcli.analyze import fingerprint_of

    with FingerprintStore.open(root / "store") as s:
        for name, x in tracks.items():
            fingerprint_of(s, write(root / name, x, SR_OPENING))
    sf.write(root / "unstored.wav", q, SR_OPENING, subtype="PCM_24")  # other bytes: no stored record
    return root


@pytest.mark.parametrize("seconds", [2.0, 3.0])
def test_a_short_preview_leaves_its_own_recording_out(copies, seconds):
    """A 2-4 s preview's key shares fewer bits than the duplicate test needs: the query's
    own WAV copy came back as the first hit. The stored whole record of the query's
    file answers for it."""
    with FingerprintStore.open(copies / "store") as s:
        result = search(s, str(copies / "q.flac"), k=3, strategy="fast", seconds=seconds)
    assert "q_copy.wav" not in _names(result.hits) and len(result.hits) == 3
    assert result.stats["duplicates_dropped"] == 1
    with FingerprintStore.open(copies / "store") as s:   # kept: 0 dropped, said (the key was missing)
        kept = search(s, str(copies / "q.flac"), k=3, strategy="fast", seconds=seconds, include_duplicates=True)
    assert kept.stats["duplicates_dropped"] == 0


def test_a_short_preview_of_a_file_not_stored_marks_its_recording(copies):
    """No whole record to answer for the query: the copies its 3 s agree with are
    shown, named as probably the query, and k other tracks are still found."""
    with FingerprintStore.open(copies / "store") as s:
        result = search(s, str(copies / "unstored.wav"), k=3, strategy="fast", seconds=3.0)
    marked = {os.path.basename(p) for p in result.stats["probably_the_query"]}
    assert marked and marked <= {"q.flac", "q_copy.wav"}  # one, when the other is dropped as its copy
    assert len([n for n in _names(result.hits) if n not in marked]) == 3


def _streamed_wav(path):
    """``path``'s WAV bytes as a writer to a pipe makes them: no length stated (the RIFF
    and data sizes are 0xFFFFFFFF, as FFmpeg leaves them when it cannot seek back)."""
    wav = bytearray(path.read_bytes())
    data = wav.index(b"data")
    wav[4:8] = wav[data + 4 : data + 8] = b"\xff\xff\xff\xff"
    return bytes(wav)


def test_cli_stream_query_names_the_hit_that_is_probably_itself(openings):
    pcm = _streamed_wav(openings / "a.wav")                 # a WAV streamed to a pipe states no length
    result = runner.invoke(app, ["--store", str(openings / "store"), "search", "-", "--seconds", "6", "-k", "2"],
                           input=pcm)
    assert result.exit_code == 0, result.output
    assert f"{openings / 'a.wav'} is probably the query itself: it opens as the 6 s heard do, which are too few" \
        in result.stderr


def test_cli_stream_query_takes_the_length_its_header_states(openings):
    """Only a stated count (not a bit-rate estimate) is taken, and only for a preview."""
    import types

    from fpcli.cli.search_cmd import _with_declared_length
    from fpcli.results import TrackResult

    heard = TrackResult("stream:query", "ok", duration_s=6.0,
                        streaming=_stream_of(openings / "a.wav", 6.0).to_result().streaming)
    info = types.SimpleNamespace(samplerate=SR_OPENING)
    stated = types.SimpleNamespace(info=info, expected_frames=9 * SR_OPENING, length_exact=True, stated_seconds=9.0)
    estimated = types.SimpleNamespace(info=info, expected_frames=9 * SR_OPENING, length_exact=False,
                                      stated_seconds=9.0)
    assert _with_declared_length(heard, stated).duration_s == pytest.approx(9.0)
    assert _with_declared_length(heard, estimated).duration_s == 6.0


def test_an_album_image_is_no_query_and_is_never_stored_as_a_track(store, library, tmp_path):
    """`search album.flac` of a CUE image analysed the image and stored it as a track:
    a search candidate for good (prune keeps it: the file exists)."""
    album = tmp_path / "album"
    album.mkdir()
    write(album / "album.flac", np.concatenate([synth.music_like(2.0, 22050, seed=70 + i) for i in range(2)]), 22050)
    (album / "album.cue").write_text('FILE "album.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                                     '  TRACK 02 AUDIO\n    INDEX 01 00:02:00\n')
    before = store.record_count()
    # A query that cannot be searched, as a missing one (exit 3): it exited 1, a fatal error.
    with pytest.raises(QueryError, match="album image of a CUE sheet.*album.flac#01"):
        search(store, str(album / "album.flac"), k=2, strategy="fast")
    os.symlink(album / "album.flac", tmp_path / "link.flac")   # through a link too (it was stored as a track)
    with pytest.raises(QueryError, match="album image of a CUE sheet"):
        search(store, str(tmp_path / "link.flac"), k=2, strategy="fast")
    assert store.record_count() == before
    assert search(store, str(album / "album.flac#01"), k=2, strategy="fast").hits   # its tracks are queries
    # cache show of the image named its analysis, which stored its tracks and left it "not in the store"
    from typer.testing import CliRunner

    from fpcli.cli import app

    shown = CliRunner().invoke(app, ["--store", store.location, "cache", "show", str(album / "album.flac")])
    assert "not a track" in str(shown.exception) and "album.flac#01" in str(shown.exception)


@pytest.mark.parametrize("query", ["missing.flac", "broken.flac", "."])
def test_a_query_that_cannot_be_analysed_exits_3_as_a_failed_file(tmp_path, monkeypatch, capsys, query):
    """A missing or broken query exited 1 (a fatal error) where ``analyze`` of the same
    path exits 3 (a file failed)."""
    from fpcli.cli import EXIT_SOME_FAILED, main

    (tmp_path / "broken.flac").write_text("nope")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fpcli", "--store", str(tmp_path / "s"), "search", query])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == EXIT_SOME_FAILED
    assert capsys.readouterr().err.startswith("error: cannot analyse the query")


def test_a_byte_identical_copy_is_searched_and_said_when_it_is_all_there_is(tmp_path, library):
    """A copy of the query's file is one record with it: with nothing else stored,
    --include-duplicates answered "the store holds no other streaming fingerprints"
    (the copy is a hit as soon as any other record exists), and without it the
    answer read as if the copy were lost."""
    import shutil

    folder = tmp_path / "copies"
    folder.mkdir()
    shutil.copy(library / "t1.flac", folder / "a.flac")
    shutil.copy(library / "t1.flac", folder / "a_copy.flac")
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(folder)], store, RunOptions(jobs=1))
        kept = search(store, str(folder / "a.flac"), k=2, strategy="fast", include_duplicates=True)
        assert [os.path.basename(h.path) for h in kept.hits] == ["a_copy.flac"], kept.stats
        dropped = search(store, str(folder / "a.flac"), k=2, strategy="fast")
        assert dropped.hits == [] and "only 1 other file of the query's own (left out as duplicates)" in \
            dropped.stats["nothing_to_search"]
        # A copy gone (renamed: its record keeps the former path until a prune) is none.
        (folder / "a_copy.flac").rename(folder / "b.flac")
        run_library([str(folder)], store, RunOptions(jobs=1))
        (folder / "b.flac").unlink()
        for include in (True, False):
            alone = search(store, str(folder / "a.flac"), k=2, strategy="fast", include_duplicates=include)
            assert alone.hits == [] and alone.stats["nothing_to_search"].startswith(
                "the store holds no other streaming fingerprints to search"), alone.stats


def test_a_preview_query_does_not_count_its_own_preview_among_those_left_out(tmp_path, library):
    """A preview query stores its preview: search said it left out 1 preview record
    and told the user to finish it, in that search and every later one of it."""
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(library / "t2.flac"), str(library / "t3.flac")], store, RunOptions(jobs=1))
        for _ in range(2):
            result = search(store, str(library / "t1.flac"), k=2, strategy="fast", seconds=1.0)
            assert result.hits and result.stats["previews_left_out"] == 0
        assert store.record_count("previews") == 1   # stored all the same
        other = search(store, str(library / "t2.flac"), k=2, strategy="fast")
        assert other.stats["previews_left_out"] == 1   # to another query it is a preview left out


def test_a_copy_of_the_query_is_none_of_its_mutual_proximity_references(tmp_path, library):
    """A file query left its own row out of its references but not a copy of it (its
    WAV copy, another record), and a stream of the file left out neither: the same
    audio met its own recording at distance 0 among its references and ranked
    differently as a file and as a stream (hit 1 at MP 0.163 and 0.403)."""
    import soundfile as sf

    for i in range(8, 12):
        write(library / f"t{i}.flac", synth.music_like(3.0, 22050, seed=i, bpm=70 + 9 * i), 22050)
    audio, rate = sf.read(library / "t1.flac", dtype="int16")
    sf.write(library / "t1.wav", audio, rate, subtype="PCM_16")   # the same decoded audio, another digest
    with FingerprintStore.open(tmp_path / "s") as store:
        run_library([str(library)], store, RunOptions(jobs=1))
        as_file = search(store, str(library / "t1.flac"), k=6, strategy="fast")
        as_stream = search(store, "-", k=6, strategy="fast", query=_stream_of(library / "t1.flac", None))
    assert as_file.stats["ranking"] == "mutual proximity", as_file.stats
    pairs = [(hit.path, hit.mutual_proximity) for hit in as_file.hits]
    assert pairs == [(hit.path, hit.mutual_proximity) for hit in as_stream.hits]
    assert str(library / "t1.wav") not in [path for path, _ in pairs]   # a duplicate, as before


def test_search_quiet_drops_the_summary_not_the_warnings(store, library, tmp_path):
    """search had no --quiet: a script's 2>/dev/null hid its errors with the summary."""
    args = ["--store", store.location, "search", str(library / "t1.flac"), "-k", "2"]
    quiet = runner.invoke(app, [*args, "-q"])
    assert quiet.exit_code == 0 and len(quiet.stdout.splitlines()) == 2 and quiet.stderr == "", quiet.stderr
    assert "strategy" in runner.invoke(app, args).stderr
    with FingerprintStore.open(tmp_path / "one") as alone:
        run_library([str(library / "t2.flac")], alone, RunOptions(jobs=1))
    warned = runner.invoke(app, ["--store", str(tmp_path / "one"), "search", str(library / "t2.flac"), "-q"])
    assert warned.stderr.startswith("warning: the store holds no other"), warned.stderr
