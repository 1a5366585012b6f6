"""The exact timbre re-rank: the batched Jensen-Shannon divergence against the per-pair
formula, the log-determinants an index keeps (computed, saved, carried), and top-k
(prefilter then re-rank) against an exhaustive ranking written out row by row."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fpcli.dsp.timbre import N_MFCC, Timbre
from fpcli.fingerprint import STREAMING_DIMS
from fpcli.search import Index, dim_weights, load_index, save_index, top_k
from fpcli.search.patch import array_path
from fpcli.search.rank import NULL_PENALTY, _nearest_first, default_weights, exact_distances
from fpcli.search.timbre import (
    RIDGE,
    TIMBRE_COLUMNS,
    js_divergence,
    js_divergence_paired,
    js_divergence_pairs,
    logdets,
    pack,
    spd_logdet,
)

UPPER = np.triu_indices(N_MFCC)


def _gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, TIMBRE_COLUMNS) packed Gaussians with MFCC-like scales: variances from ~0.1
    (high coefficients) to ~1e3 (c0), correlated, means spread over tens of units."""
    scales = np.geomspace(30.0, 0.3, N_MFCC)
    rows = []
    for _ in range(n):
        a = rng.normal(size=(N_MFCC, N_MFCC)) * scales[:, None]
        cov = a @ a.T / N_MFCC
        rows.append(pack(Timbre(tuple(rng.normal(0, 1, N_MFCC) * scales), tuple(map(tuple, cov)), 100)))
    return np.array(rows, dtype=np.float32)


def _js_pair(a: np.ndarray, b: np.ndarray) -> float:
    """JS of two packed Gaussians, one pair at a time, from the definition in
    docs/fingerprint.md (LAPACK's slogdet, float64): the reference."""
    def unpacked(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cov = np.zeros((N_MFCC, N_MFCC))
        cov[UPPER] = row[N_MFCC:]
        cov = cov + np.triu(cov, 1).T + RIDGE * np.eye(N_MFCC)
        return row[:N_MFCC].astype(np.float64), cov
    (m1, s1), (m2, s2) = unpacked(a), unpacked(b)
    mixture = (s1 + s2) / 2 + np.outer(m1 - m2, m1 - m2) / 4
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    return max(0.5 * (logdet(mixture) - 0.5 * (logdet(s1) + logdet(s2))), 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_divergence_equals_the_per_pair_formula(seed):
    rng = np.random.default_rng(seed)
    rows = _gaussians(300, rng)
    query = rows[7]
    expected = np.array([_js_pair(query, row) for row in rows])
    assert expected.max() > 1.0            # far pairs as well as near ones
    np.testing.assert_allclose(js_divergence(query, rows), expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(js_divergence(query, rows, logdets(rows)), expected, rtol=0, atol=1e-9)
    assert js_divergence(query, rows)[7] == 0.0   # a track and its copy: exactly 0, not rounding noise


def test_divergences_of_all_pairs_equal_one_query_at_a_time():
    rng = np.random.default_rng(9)
    a, b = _gaussians(7, rng), _gaussians(11, rng)
    b[3] = a[2]                                            # a copy: exactly 0
    got = js_divergence_pairs(a, b)
    assert got.shape == (7, 11) and got[2, 3] == 0.0
    for i in range(7):
        np.testing.assert_allclose(got[i], js_divergence(a[i], b), rtol=0, atol=1e-9)
    np.testing.assert_allclose(js_divergence_pairs(a, b, logdets(a), logdets(b)), got, rtol=0, atol=1e-12)
    np.testing.assert_allclose(js_divergence_pairs(a, b, dtype=np.float32), got, rtol=0, atol=1e-4)
    assert js_divergence_pairs(a[:0], b).shape == (0, 11)
    paired = js_divergence_paired(a, b[:7])          # row i with row i (the fit's random pairs)
    assert paired.shape == (7,)
    np.testing.assert_array_equal(paired, [js_divergence(a[i], b[i:i + 1])[0] for i in range(7)])


def test_log_determinants_match_lapack_and_mark_rows_without_timbre():
    rng = np.random.default_rng(3)
    rows = _gaussians(50, rng)
    rows[4] = np.nan
    got = logdets(rows)
    assert np.isnan(got[4]) and np.isfinite(np.delete(got, 4)).all()
    for i in (0, 9, 49):
        cov = np.zeros((N_MFCC, N_MFCC))
        cov[UPPER] = rows[i, N_MFCC:]
        cov = cov + np.triu(cov, 1).T + RIDGE * np.eye(N_MFCC)
        assert got[i] == pytest.approx(np.linalg.slogdet(cov)[1], abs=1e-9)


def test_spd_log_determinant_falls_back_for_a_matrix_that_is_not_positive_definite():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, N_MFCC, N_MFCC))
    matrices = a @ np.swapaxes(a, 1, 2) + np.eye(N_MFCC)
    matrices[2] = np.diag(np.r_[-1.0, np.ones(N_MFCC - 1)])      # a negative pivot: elimination would log(-1)
    got = spd_logdet(np.moveaxis(matrices, 0, -1))
    np.testing.assert_allclose(got, np.linalg.slogdet(matrices)[1], rtol=0, atol=1e-9)


def _index(n: int, seed: int) -> Index:
    """Named values with 5 % nulls, a few rows without timbre and two exact copies of
    row 0 (equal distances: the order must come from the paths)."""
    rng = np.random.default_rng(seed)
    values = (rng.random((n, len(STREAMING_DIMS))) * 100).astype(np.float32)
    values[rng.random(values.shape) < 0.05] = np.nan
    timbre = _gaussians(n, rng)
    timbre[rng.choice(n, size=5, replace=False)] = np.nan
    values[[n - 1, n - 2]] = values[0]
    timbre[[n - 1, n - 2]] = timbre[0]
    paths = np.array([f"/m/{(i * 7919) % n:05d}.flac" for i in range(n)])   # path order is not row order
    index = Index("streaming", "k", values, np.array([f"k{i}" for i in range(n)]), paths,
                  np.array([f"c{i}" for i in range(n)]), np.zeros(0), np.zeros(0), timbre=timbre)
    index.fit()
    return index


def _exhaustive(index: Index, i: int, weights: np.ndarray, timbre_weight: float, k: int) -> list[tuple[str, float]]:
    """The k nearest to row i by every row's distance, the timbre term from the
    per-pair formula, sorted by (distance, path), row i's content excluded."""
    assert index.timbre_fit is not None
    named = exact_distances(index, index.values[i], weights, np.arange(len(index))) ** 2
    mine = index.timbre_rows()[i]
    scored = []
    for j, theirs in enumerate(index.timbre_rows()):
        if j == i:
            continue
        if np.isnan(mine).any() or np.isnan(theirs).any():
            t = 0.0 if np.isnan(mine).any() and np.isnan(theirs).any() else NULL_PENALTY ** 2
        else:
            t = min(_js_pair(mine, theirs) / index.timbre_fit.js_scale, 1.0)
        scored.append((float(np.sqrt(named[j] + timbre_weight * t)), str(index.paths[j])))
    return [(p, d) for d, p in sorted(scored)[:k]]


@pytest.mark.parametrize(("seed", "query", "timbre_weight"), [(5, 0, 2.0), (6, 11, 2.0), (7, 3, 6.0), (8, 0, 0.5)])
def test_top_k_equals_the_exhaustive_ranking_when_every_row_is_re_ranked(seed, query, timbre_weight):
    index = _index(240, seed)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    hits = top_k(index, index.values[query], 12, weights, exclude_content=index.contents[query],
                 query_timbre=index.timbre_rows()[query], timbre_weight=timbre_weight, candidates=len(index))
    expected = _exhaustive(index, query, weights, timbre_weight, 12)
    assert [h.path for h in hits] == [p for p, _ in expected]
    np.testing.assert_allclose([h.distance for h in hits], [d for _, d in expected], rtol=0, atol=1e-9)


def test_a_prefiltered_top_k_reports_exact_distances():
    """With fewer candidates than rows the hits may differ from the exhaustive set, but
    each hit's distance is its exact one and the hits are sorted."""
    index = _index(400, seed=9)
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    hits = top_k(index, index.values[1], 10, weights, exclude_content="c1", query_timbre=index.timbre_rows()[1],
                 timbre_weight=2.0, candidates=40)
    rows = {p: j for j, p in enumerate(index.paths)}
    exact = exact_distances(index, index.values[1], weights, np.array([rows[h.path] for h in hits]),
                            index.timbre_rows()[1], 2.0)
    np.testing.assert_allclose([h.distance for h in hits], exact, rtol=0, atol=1e-12)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_nearest_first_equals_a_full_sort_with_ties():
    rng = np.random.default_rng(10)
    distance = rng.integers(0, 6, size=200).astype(float)      # many equal distances
    paths = np.array([f"p{j:03d}" for j in rng.permutation(200)])
    for k in (1, 5, 37, 200, 500):
        full = sorted(range(200), key=lambda j: (distance[j], paths[j]))[:k]
        assert _nearest_first(distance, paths, k) == full


def test_saved_index_keeps_its_derived_arrays_and_ignores_stale_files(tmp_path):
    index = _index(30, seed=11)
    assert save_index(index, tmp_path)
    loaded = load_index(tmp_path, "streaming", "k")
    assert loaded is not None and loaded._logdets is not None and loaded._terms is not None
    np.testing.assert_array_equal(loaded._logdets, index.timbre_logdets())
    np.testing.assert_array_equal(loaded.terms(), index.terms())
    np.testing.assert_array_equal(loaded.content_words(), index.content_words())
    # A header written by a save that wrote only the embedding (an older fpcli): the
    # other files beside it belong to another save and must not be used.
    header_path = tmp_path / "streaming-k.json"
    header = json.loads(header_path.read_text())
    del header["derived"]
    header_path.write_text(json.dumps(header))
    np.save(array_path(tmp_path, "streaming-k", header, "timbre_logdets"), np.zeros(30))
    np.save(array_path(tmp_path, "streaming-k", header, "terms"), np.zeros_like(index.terms()))
    stale = load_index(tmp_path, "streaming", "k")
    assert stale is not None and stale._logdets is None and stale._terms is None and stale._embedded is not None
    np.testing.assert_array_equal(stale.timbre_logdets(), index.timbre_logdets())
    np.testing.assert_array_equal(stale.terms(), index.terms())
    assert TIMBRE_COLUMNS == N_MFCC + len(UPPER[0])


def test_a_loaded_index_answers_as_the_one_it_was_saved_from(tmp_path):
    """The loaded (memory-mapped, features read back from the terms) index gives the
    same hits and distances, bit for bit."""
    index = _index(200, seed=12)
    assert save_index(index, tmp_path)
    loaded = load_index(tmp_path, "streaming", "k")
    assert loaded is not None and loaded._scaled is None
    rows = np.arange(0, 200, 3)
    np.testing.assert_array_equal(loaded.normalised_rows(rows), index.normalised()[rows])
    weights = dim_weights(index.dims, default_weights(), index.low, index.high)
    for i in (0, 5, 77):
        args = dict(exclude_content=index.contents[i], query_timbre=index.timbre_rows()[i], timbre_weight=2.0,
                    candidates=50, explain=True)
        assert top_k(loaded, loaded.values[i], 10, weights, **args) == top_k(index, index.values[i], 10, weights,
                                                                               **args)
    assert loaded._scaled is None          # never encoded every row


def test_rows_with_content_matches_whole_digests_only():
    """Rows are first singled out by the XOR of the digest's four 64-bit words; digests
    whose words are a permutation of each other share that XOR and must still differ."""
    words = ["01234567", "89abcdef", "00ff00ff", "12121212"]     # 8 hex digits: one 64-bit word each
    contents = ["".join(words), "".join(reversed(words)), "".join(words[1:] + words[:1]), "".join(words)]
    n = len(contents)
    index = Index("streaming", "k", np.zeros((n, len(STREAMING_DIMS)), dtype=np.float32),
                  np.array([f"k{i}" for i in range(n)]), np.array([f"/m/{i}.flac" for i in range(n)]),
                  np.array(contents), np.zeros(0), np.zeros(0))
    assert index.rows_with_content(contents[0]).tolist() == [True, False, False, True]
    assert index.rows_with_content(contents[1]).tolist() == [False, True, False, False]
    assert not index.rows_with_content("f" * 32).any()


def test_the_timbre_fit_does_not_depend_on_the_order_of_the_rows():
    """The same library on diskcache and on Redis (rows in another order) gave other
    distances (0.390 vs 0.392): the fit sampled rows by position."""
    from fpcli.search.timbre import fit_timbre

    rows = _gaussians(60, np.random.default_rng(4)).astype(np.float64)
    shuffled = rows[np.random.default_rng(5).permutation(len(rows))]
    first, second = fit_timbre(rows), fit_timbre(shuffled)
    assert (first.embed_scale, first.js_scale) == (second.embed_scale, second.js_scale)
    np.testing.assert_array_equal(first.whiten, second.whiten)


def test_a_fit_on_one_timbre_repeated_keeps_other_tracks_finite():
    """Fitted on copies of one track's timbre (the float noise of equal rows made the
    distance scale 8.8e-123), every other track embedded as inf: the prefilter's
    squared norms overflowed, and the timbre term of every track was 1."""
    from fpcli.search.timbre import embed, fit_timbre

    rows = _gaussians(5, np.random.default_rng(6)).astype(np.float64)
    same = np.repeat(rows[:1], 6, axis=0)
    same[1:, 0] += np.finfo(np.float64).tiny * np.arange(1, 6)   # equal up to the float noise
    fit = fit_timbre(same)
    with np.errstate(over="raise"):
        embedded = embed(rows, fit)
    assert np.isfinite(embedded).all() and fit.embed_scale == fit.js_scale == 1.0

