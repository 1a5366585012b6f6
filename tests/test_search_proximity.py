"""Mutual proximity (``fpcli.search.proximity``): the score and the re-ranked hits against
the formula written out with one exact distance at a time, references independent of
row order and shared with a subset, and the CLI's column and --no-mp."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from fpcli import synth
from fpcli.cli import app
from fpcli.search import Index, dim_weights, top_k
from fpcli.search.proximity import MIN_REFERENCE, MP_ROWS, REFERENCE_ROWS, reference_of, scores, use_reference
from fpcli.search.rank import default_weights, exact_distances, pair_distances
from tests.conftest import write
from tests.test_search_rerank import _index

runner = CliRunner()


def _farther(d: float, distances: np.ndarray) -> float:
    """P(D > d) for D normal with the mean and (population) deviation of ``distances``."""
    mean, spread = float(np.mean(distances)), float(np.std(distances))
    return 0.5 * math.erfc((d - mean) / spread / math.sqrt(2.0))


def test_score_is_one_minus_the_product_of_both_sides_chances_of_a_farther_track():
    rng = np.random.default_rng(0)
    mine = rng.random(20) + 0.5
    theirs = rng.random((3, 20)) + 0.2
    theirs[1, 4] = np.nan                       # not a reference of that row: left out of its model
    distance = np.array([0.3, 0.9, 1.4])
    got = scores(distance, mine, theirs)
    assert got is not None
    for r in range(3):
        own = theirs[r][~np.isnan(theirs[r])]
        expected = 1.0 - _farther(distance[r], mine) * _farther(distance[r], own)
        assert got[r] == pytest.approx(expected, abs=1e-12)
    assert np.all(np.diff(got) > 0)             # farther rows: less mutual


def test_too_few_references_give_no_score():
    mine = np.full(REFERENCE_ROWS, np.nan)
    mine[:MIN_REFERENCE - 1] = 1.0
    assert scores(np.array([0.5]), mine, np.ones((1, REFERENCE_ROWS))) is None


def test_pair_distances_equal_the_distances_of_one_query():
    index = _index(200, 1)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    reference = reference_of(index)
    rows = np.array([3, 17, 150])
    got = pair_distances(index, index.normalised_rows(rows).astype(np.float64), index.timbre_rows()[rows],
                         None, reference, weights, 2.0)
    positions = [int(np.flatnonzero(index.contents == c)[0]) for c in reference.contents]
    for i, row in enumerate(rows):
        expected = exact_distances(index, index.values[row], weights, np.array(positions),
                                   index.timbre_rows()[row], 2.0)
        np.testing.assert_allclose(got[i], expected, rtol=1e-5, atol=1e-6)


def _permuted(index: Index, order: np.ndarray) -> Index:
    """The rows of ``index`` in another order, with its fit (a fit samples rows at random)."""
    return Index(index.kind, index.params_key, index.values[order], index.keys[order], index.paths[order],
                 index.contents[order], index.low, index.high, timbre=index.timbre_rows()[order],
                 timbre_fit=index.timbre_fit)


@pytest.mark.parametrize(("seed", "query"), [(6, 0), (7, 40)])
def test_mutual_ranking_equals_the_formula_written_out(seed, query):
    """The MP_ROWS nearest by exhaustive distance, each scored from its own and the query's
    distances to the references (one exact distance at a time), sorted by (MP,
    distance, path): what top_k(mutual=True) returns."""
    index = _index(240, seed)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    timbre = index.timbre_rows()
    every = exact_distances(index, index.values[query], weights, np.arange(len(index)), timbre[query], 2.0)
    every[index.contents == index.contents[query]] = np.inf
    nearest = sorted(range(len(index)), key=lambda j: (every[j], index.paths[j]))[:MP_ROWS]
    positions = [int(np.flatnonzero(index.contents == c)[0]) for c in reference_of(index).contents]

    def to_references(row: int) -> np.ndarray:
        own = [p for p in positions if index.contents[p] != index.contents[row]]
        return exact_distances(index, index.values[row], weights, np.array(own), timbre[row], 2.0)

    mine = to_references(query)
    expected = sorted((1.0 - _farther(every[j], mine) * _farther(every[j], to_references(j)), every[j],
                        index.paths[j]) for j in nearest)[:10]
    hits = top_k(index, index.values[query], 10, weights, exclude_content=index.contents[query],
                 query_timbre=timbre[query], timbre_weight=2.0, mutual=True)
    assert [h.path for h in hits] == [p for _, _, p in expected]
    np.testing.assert_allclose([h.mutual_proximity for h in hits], [m for m, _, _ in expected], atol=1e-6)
    plain = top_k(index, index.values[query], 10, weights, exclude_content=index.contents[query],
                  query_timbre=timbre[query], timbre_weight=2.0)
    assert [h.path for h in plain] != [h.path for h in hits]   # the re-rank changes something here


def test_mutual_ranking_does_not_depend_on_the_order_of_the_rows():
    first = _index(200, 8)
    shuffled = _permuted(first, np.random.default_rng(3).permutation(len(first)))
    weights = dim_weights(first.dims, default_weights(), first.low, first.high)
    for q in (0, 7, 33):
        at = int(np.flatnonzero(shuffled.contents == first.contents[q])[0])
        a, b = (top_k(index, index.values[row], 5, weights, exclude_content=index.contents[row],
                      query_timbre=index.timbre_rows()[row], timbre_weight=2.0, mutual=True)
                for index, row in ((first, q), (shuffled, at)))
        assert [h.path for h in a] == [h.path for h in b]
        np.testing.assert_allclose([h.mutual_proximity for h in a], [h.mutual_proximity for h in b], atol=1e-9)


def test_a_subset_ranks_against_its_librarys_references():
    index = _index(200, 5)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    rows = np.arange(0, 200, 3)
    sub = Index(index.kind, index.params_key, index.values[rows], index.keys[rows], index.paths[rows],
                index.contents[rows], index.low, index.high, timbre=index.timbre_rows()[rows],
                timbre_fit=index.timbre_fit)
    use_reference(sub, reference_of(index))
    query = 9
    whole = top_k(index, index.values[query], 200, weights, exclude_content=index.contents[query],
                  query_timbre=index.timbre_rows()[query], timbre_weight=2.0, mutual=True)
    part = top_k(sub, index.values[query], 60, weights, exclude_content=index.contents[query],
                 query_timbre=index.timbre_rows()[query], timbre_weight=2.0, mutual=True)
    score = {h.path: h.mutual_proximity for h in whole}
    for hit in part:
        assert hit.mutual_proximity == pytest.approx(score[hit.path], abs=1e-9)


def test_cli_shows_mutual_proximity_and_no_mp_ranks_by_distance(tmp_path):
    library = tmp_path / "lib"
    library.mkdir()
    for i in range(14):  # enough rows for MIN_REFERENCE references besides the query
        write(library / f"t{i}.flac", synth.music_like(1.5, 22050, seed=i, bpm=70 + 9 * i), 22050)
    store = str(tmp_path / "store")
    assert runner.invoke(app, ["--store", store, "analyze", str(library), "--jobs", "1"]).exit_code == 0
    query = str(library / "t0.flac")
    ranked = runner.invoke(app, ["--store", store, "search", query, "-k", "5", "--json"])
    plain = runner.invoke(app, ["--store", store, "search", query, "-k", "5", "--json", "--no-mp"])
    assert ranked.exit_code == 0 and plain.exit_code == 0, ranked.output + plain.output
    ranked_hits, plain_hits = json.loads(ranked.stdout)["hits"], json.loads(plain.stdout)["hits"]
    proximity = [h["mutual_proximity"] for h in ranked_hits]
    assert all(p is not None and 0 <= p <= 1 for p in proximity) and proximity == sorted(proximity)
    assert all(h["mutual_proximity"] is None for h in plain_hits)
    assert [h["distance"] for h in plain_hits] == sorted(h["distance"] for h in plain_hits)
    table = runner.invoke(app, ["--store", store, "search", query, "-k", "5"])
    rows = [line.split("\t") for line in table.stdout.splitlines()]
    assert [row[2] for row in rows] == [h["path"] for h in ranked_hits]          # the path stays field 3
    assert [float(row[-1]) for row in rows] == pytest.approx(proximity, abs=1e-3)  # MP last
    assert "ranked by mutual proximity" in table.stderr
    assert json.loads(plain.stdout)["stats"]["ranking"] == "distance (mutual proximity off)"


def test_a_huge_k_scores_at_most_mp_limit_rows_and_ranks_the_rest_by_distance(monkeypatch):
    import fpcli.search.rank as rank

    monkeypatch.setattr(rank, "MP_LIMIT", 40)
    index = _index(240, 10)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    hits = top_k(index, index.values[0], 100, weights, exclude_content=index.contents[0],
                 query_timbre=index.timbre_rows()[0], timbre_weight=2.0, mutual=True)
    plain = top_k(index, index.values[0], 100, weights, exclude_content=index.contents[0],
                  query_timbre=index.timbre_rows()[0], timbre_weight=2.0)
    assert len(hits) == 100 and all(h.mutual_proximity is not None for h in hits[:40])
    assert all(h.mutual_proximity is None for h in hits[40:])
    assert {h.path for h in hits[:40]} == {h.path for h in plain[:40]}   # the 40 nearest, re-ranked
    assert [h.path for h in hits[40:]] == [h.path for h in plain[40:]]   # then by distance


def test_the_largest_weights_still_rank_every_row_without_overflow():
    """Every group and the timbre at MAX_WEIGHT: the prefilter's float32 terms stay
    finite, so the hits are the ones a weight of 1 everywhere gives (only ratios rank)."""
    import warnings

    from fpcli.search.rank import MAX_WEIGHT, parse_weights

    index = _index(240, 12)
    groups = parse_weights(",".join(f"{g}={MAX_WEIGHT:g}" for g in default_weights()))
    weights = dim_weights(index.dims, groups, index.low, index.high)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hits = top_k(index, index.values[3], 10, weights, exclude_content=index.contents[3],
                     query_timbre=index.timbre_rows()[3], timbre_weight=MAX_WEIGHT, mutual=True)
    ones = dim_weights(index.dims, dict.fromkeys(default_weights(), 1.0), index.low, index.high)
    plain = top_k(index, index.values[3], 10, ones, exclude_content=index.contents[3],
                  query_timbre=index.timbre_rows()[3], timbre_weight=1.0, mutual=True)
    assert len(hits) == 10 and all(math.isfinite(h.distance) for h in hits)
    assert [h.path for h in hits] == [h.path for h in plain]


def test_a_query_kept_among_its_hits_is_still_not_its_own_reference():
    """--include-duplicates keeps the query's own row (no exclusion): it is hit 1 at
    distance 0, and every other hit's mutual proximity is the one it has when the
    query is excluded (the query is never among its own references)."""
    index = _index(240, 13)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    q = int(np.flatnonzero(index.contents == reference_of(index).contents[0])[0])   # a reference itself
    common = dict(query_timbre=index.timbre_rows()[q], timbre_weight=2.0, mutual=True)
    kept = top_k(index, index.values[q], 6, weights, query_content=index.contents[q], **common)
    excluded = top_k(index, index.values[q], 5, weights, exclude_content=index.contents[q], **common)
    assert kept[0].path == index.paths[q] and kept[0].distance == 0.0
    score = {h.path: h.mutual_proximity for h in excluded}
    assert [h.path for h in kept[1:]] == [h.path for h in excluded]
    for hit in kept[1:]:
        assert hit.mutual_proximity == pytest.approx(score[hit.path], abs=1e-12)
