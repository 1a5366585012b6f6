"""Ranking: distances, top-k (prefilter then exact re-rank) and explanations.

The distance of two tracks combines the named dims and the timbre:

    D^2 = sum_i w_i (x_i - q_i)^2  +  w_timbre * t

* Named dims are scaled robustly on the library (5th..95th percentile -> [0, 1],
  clipped); a dim with no spread weighs 0; a dim null on one side costs NULL_PENALTY.
  The tempo is a point on a circle (one octave per turn, pulled to the centre by its
  confidence: ``index.tempo_point``), so 70 and 140 BPM are close.
* Group weights (frequency, dynamics, temporal, spectral, harmonic, variation, stereo)
  default to 1 and are shared by the dims of the group, so each group counts the same
  whatever its size; ``timbre`` (default TIMBRE_WEIGHT) weighs the timbre term.
* t = min(JS / js_scale, 1): the Jensen-Shannon divergence of the MFCC Gaussians
  (``search.timbre``) over its library 95th percentile; NULL_PENALTY^2 when one side
  has no timbre.

Top-k: the prefilter ranks every row with the timbre term approximated by the
embedding's squared distance (one matrix-vector product), then the best
PREFILTER_ROWS (at least 20 k) are re-ranked with the exact divergence.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from fpcli.errors import ParameterError
from fpcli.fingerprint import DIM_BY_NAME, GROUPS
from fpcli.search.index import Index, Reference, encode, feature_dims
from fpcli.search.proximity import MP_LIMIT, MP_ROWS, reference_of, scores
from fpcli.search.threads import one_blas_thread
from fpcli.search.timbre import TIMBRE_COLUMNS, embed, js_divergence, js_divergence_pairs
from fpcli.search.timbre import logdets as _logdets_of  # the name ``logdets`` is a parameter here

NULL_PENALTY = 0.5       # normalised difference charged when one side of a dim is null
TIMBRE_WEIGHT = 2.0      # default weight of the timbre group (benchmarks/quality: best style and album ranks)
WEIGHT_GROUPS = (*GROUPS, "timbre")
PREFILTER_ROWS = 1000    # rows re-ranked exactly (benchmarks/search.md: recall and latency of this prefilter)
EXACT_ROWS = 4096        # rows whose exact distances are computed at once (bounded memory)
MAX_WEIGHT = 1000.0      # largest group weight: far beyond any use, far below float32 overflow of the prefilter


def default_weights() -> dict[str, float]:
    weights = dict.fromkeys(GROUPS, 1.0)
    weights["timbre"] = TIMBRE_WEIGHT
    return weights


def dim_weights(dims: tuple[str, ...], group_weights: dict[str, float], low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    """Per-dim weights (d,): each group's weight shared by its dims; zero-spread dims
    weigh 0 (the tempo, a circle, never has zero spread)."""
    groups = [DIM_BY_NAME[d].group for d in dims]
    sizes = {g: groups.count(g) for g in set(groups)}
    weights = np.array([group_weights.get(g, 1.0) / sizes[g] for g in groups])
    flat = (high - low <= 0) & (np.array(dims) != "tempo_bpm")
    return np.where(flat, 0.0, weights)


def parse_weights(text: str | None) -> dict[str, float]:
    """``"temporal=2,stereo=0,timbre=4"`` -> group weights (others at their default)."""
    weights = default_weights()
    items = [part.strip() for part in (text or "").split(",") if part.strip()]
    if text is not None and not items:   # "," or " , ": read as the defaults, as if not given
        raise ParameterError(f"{text!r} names no group: write GROUP=WEIGHT, e.g. timbre=4", "weights")
    for item in items:
        group, equals, value = item.partition("=")
        if not equals:
            raise ParameterError(f"{item!r}: write GROUP=WEIGHT, e.g. {item}=2", "weights")
        group = group.strip()
        if group not in weights:
            raise ParameterError(f"{item!r}: {group!r} is not a group ({', '.join(WEIGHT_GROUPS)})", "weights")
        try:
            weights[group] = float(value)
        except ValueError:
            raise ParameterError(f"{item!r}: {value!r} is not a number", "weights") from None
        if not 0 <= weights[group] <= MAX_WEIGHT:
            raise ParameterError(f"{item!r}: must be a number from 0 to {MAX_WEIGHT:g} (weights are relative: "
                                 f"the defaults are 1, timbre {TIMBRE_WEIGHT:g})", "weights")
    if not any(weights.values()):
        raise ParameterError("at least one group must weigh more than 0 (else every distance is 0)", "weights")
    return weights


@dataclasses.dataclass(frozen=True)
class Hit:
    """A search hit: its distance from the query and, when the hits were re-ranked by
    it, their mutual proximity (``search.proximity``: 0 nearest, 1 farthest)."""

    path: str
    distance: float
    digest: str
    explain: tuple[dict[str, Any], ...] = ()
    mutual_proximity: float | None = None
    probably_the_query: bool = False   # a partial query's own recording, perhaps (it opens alike)


def _columns(index: Index, weights: np.ndarray) -> np.ndarray:
    """Per-dim weights (d,) -> per-feature-column weights (F,) (the tempo's two columns
    each carry the tempo dim's weight)."""
    position = {d: i for i, d in enumerate(index.dims)}
    return np.array([weights[position[d]] for d in feature_dims(index.dims)])


def _query_features(index: Index, query: np.ndarray) -> np.ndarray:
    return encode(query[None, :].astype(np.float32), index.dims, index.low, index.high)[0].astype(np.float64)


def prefilter_distances(index: Index, query: np.ndarray, weights: np.ndarray, query_timbre: np.ndarray | None = None,
                        timbre_weight: float = 0.0) -> np.ndarray:
    """Squared prefilter distances (n,): named dims exact, timbre by the embedding.

    Computed as ``terms() @ u + c`` by expanding w (x - q)^2 = w x^2 - 2 w x q + w q^2
    with the null cases folded into u and c; the embedding term likewise
    (|t|^2 - 2 t.e + |e|^2), one pass over the matrix per query.
    """
    q = _query_features(index, query)
    known = ~np.isnan(q)
    qf = np.where(known, q, 0.0)
    w = _columns(index, weights)
    penalty = NULL_PENALTY * NULL_PENALTY
    u_square = w * known                                   # w x^2 where the query is known
    u_cross = -2.0 * w * known * qf                        # -2 w x q
    u_absent = w * known * qf * qf + w * ~known * penalty  # charged where x is known (1 - M)
    u_mask = w * known * penalty                           # charged where x is null (M)
    constant = u_absent.sum()
    u_timbre, constant = _timbre_terms(index, query_timbre, timbre_weight, constant)
    u = np.concatenate([u_square, u_cross, u_mask - u_absent, u_timbre]).astype(np.float32)
    return np.maximum(index.terms() @ u + np.float32(constant), 0.0)


def _timbre_terms(index: Index, query_timbre: np.ndarray | None, weight: float,
                  constant: float) -> tuple[np.ndarray, float]:
    """Coefficients of [T, |T|^2, N] and the updated constant: weight (|t - e|^2) for
    rows with timbre, weight NULL_PENALTY^2 for rows without (or for every row with
    timbre when the query has none)."""
    e_dims = index.embedded().shape[1]
    penalty = NULL_PENALTY * NULL_PENALTY
    if weight == 0 or e_dims == 0:
        return np.zeros(e_dims + 2), constant
    e = _query_embedding(index, query_timbre)
    if e is None:        # the query has no timbre: rows with timbre pay the penalty
        return np.concatenate([np.zeros(e_dims), [0.0, -weight * penalty]]), constant + weight * penalty
    square = float(e @ e)
    return (np.concatenate([-2.0 * weight * e, [weight, weight * (penalty - square)]]),
            constant + weight * square)


def _query_embedding(index: Index, query_timbre: np.ndarray | None) -> np.ndarray | None:
    if query_timbre is None or index.timbre_fit is None or np.isnan(query_timbre).any():
        return None
    return embed(query_timbre.reshape(1, TIMBRE_COLUMNS), index.timbre_fit)[0].astype(np.float64)


def timbre_term(index: Index, query_timbre: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
    """(r,) exact timbre term t in [0, 1] of ``rows``: min(JS / js_scale, 1), with
    NULL_PENALTY^2 when exactly one side has no timbre and 0 when neither has."""
    theirs = index.timbre_rows()[rows]
    mine_known = query_timbre is not None and not np.isnan(query_timbre).any()
    known = ~np.isnan(theirs).any(axis=1)
    penalty = NULL_PENALTY * NULL_PENALTY
    out = np.where(known == mine_known, 0.0, penalty)
    if mine_known and known.any() and index.timbre_fit is not None:
        assert query_timbre is not None
        js = js_divergence(query_timbre, theirs[known], index.timbre_logdets()[rows][known])
        out[known] = np.minimum(js / index.timbre_fit.js_scale, 1.0)
    return out


def exact_distances(index: Index, query: np.ndarray, weights: np.ndarray, rows: np.ndarray,
                    query_timbre: np.ndarray | None = None, timbre_weight: float = 0.0) -> np.ndarray:
    """(r,) distances of ``rows``: the named dims plus the exact timbre term, EXACT_ROWS
    rows at a time: the timbre term's covariance products take about 6 KB a row while
    they are made (a search widened to 95,000 rows, its hits' files gone, took 0.8 GB)."""
    out = np.empty(len(rows))
    for start in range(0, len(rows), EXACT_ROWS):
        part = rows[start : start + EXACT_ROWS]
        named = _named_squares(index, query, weights, part).sum(axis=1)
        if timbre_weight > 0:
            named = named + timbre_weight * timbre_term(index, query_timbre, part)
        out[start : start + len(part)] = np.sqrt(np.maximum(named, 0.0))
    return out


def distances(index: Index, query: np.ndarray, weights: np.ndarray, query_timbre: np.ndarray | None = None,
              timbre_weight: float = 0.0) -> np.ndarray:
    """Exact distances (n,) from ``query`` (physical units, (d,)) to every row."""
    return exact_distances(index, query, weights, np.arange(len(index)), query_timbre, timbre_weight)


def _named_squares(index: Index, query: np.ndarray, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(r, F) weighted squared differences per feature column (nulls as NULL_PENALTY)."""
    return _weighted_squares(index.normalised_rows(rows).astype(np.float64), _query_features(index, query),
                             _columns(index, weights))


def _weighted_squares(x: np.ndarray, q: np.ndarray, column_weights: np.ndarray) -> np.ndarray:
    """w (x - q)^2 per feature column, broadcast over ``x`` and ``q`` (..., F): 0 where
    both are null, NULL_PENALTY^2 (times w) where one is."""
    diff = x - q
    diff = np.where(np.isnan(diff), np.where(np.isnan(x) & np.isnan(q), 0.0, NULL_PENALTY), diff)
    return column_weights * diff * diff


def pair_distances(index: Index, features: np.ndarray, timbres: np.ndarray | None, logdets: np.ndarray | None,
                   reference: Reference, weights: np.ndarray, timbre_weight: float) -> np.ndarray:
    """(r, R) distances between r tracks (search features (r, F), packed timbres (r,
    TIMBRE_COLUMNS) or None for none, their log-determinants (r,) when known) and the R
    reference rows, with per-dim ``weights`` (d,) and ``timbre_weight``: the exact
    distance, except that the divergences are factorised in float32 (within 3e-5 nats),
    enough for the distance distributions mutual proximity models."""
    named = _weighted_squares(features[:, None, :], reference.features[None, :, :],
                              _columns(index, weights)).sum(axis=2)
    if timbre_weight > 0:
        theirs = np.full((len(features), TIMBRE_COLUMNS), np.nan) if timbres is None else timbres
        named += timbre_weight * _timbre_term_pairs(index, theirs, logdets, reference)
    return np.sqrt(np.maximum(named, 0.0))


def _timbre_term_pairs(index: Index, timbres: np.ndarray, logdets: np.ndarray | None,
                       reference: Reference) -> np.ndarray:
    """(r, R) ``timbre_term`` between r packed timbres (NaN rows: none) and the
    references: the same null rules, the divergences of every pair in one call
    (float32)."""
    known = ~np.isnan(timbres).any(axis=1)
    known_reference = ~np.isnan(reference.timbre).any(axis=1)
    out = np.where(known[:, None] == known_reference[None, :], 0.0, NULL_PENALTY * NULL_PENALTY)
    if known.any() and known_reference.any() and index.timbre_fit is not None:
        js = js_divergence_pairs(timbres[known], reference.timbre[known_reference],
                                 None if logdets is None else logdets[known], reference.logdets[known_reference],
                                 dtype=np.float32)  # they model a distribution: 3e-5 nats is plenty
        out[np.ix_(known, known_reference)] = np.minimum(js / index.timbre_fit.js_scale, 1.0)
    return out


def _proximity(index: Index, query: np.ndarray, weights: np.ndarray, rows: np.ndarray, distance: np.ndarray,
               query_timbre: np.ndarray | None, timbre_weight: float,
               query_content: str | None, query_copies: Sequence[str] = ()) -> np.ndarray | None:
    """(r,) mutual proximity (``search.proximity``) of ``rows`` at ``distance`` from the
    query; None when the index has too few references. The query's and the rows'
    distances to the references are computed together (one divergence call). Neither
    the query's own row nor ``query_copies`` (digests of other records of the query's
    recording) is one of the query's references."""
    reference = reference_of(index)
    mine = np.full((1, TIMBRE_COLUMNS), np.nan) if query_timbre is None else query_timbre.reshape(1, TIMBRE_COLUMNS)
    features = np.concatenate([_query_features(index, query)[None, :],
                               index.normalised_rows(rows).astype(np.float64)])
    timbres = np.concatenate([mine.astype(np.float64), index.timbre_rows()[rows].astype(np.float64)])
    logdets = np.concatenate([_logdets_of(mine), index.timbre_logdets()[rows]])  # NaN: no timbre
    both = pair_distances(index, features, timbres, logdets, reference, weights, timbre_weight)
    contents = np.concatenate([[query_content], index.contents[rows].astype(str)])
    both[contents[:, None] == reference.contents[None, :]] = np.nan   # never one's own reference
    # Nor a copy of the query's recording: a stream of a stored file, or a file whose
    # WAV copy is a reference, met its own recording at distance 0 among its
    # references, which moved its scores (the file and its stream ranked differently).
    both[0, np.isin(reference.contents, list(query_copies))] = np.nan
    return scores(distance, both[0], both[1:])


def top_k(index: Index, query: np.ndarray, k: int, weights: np.ndarray, *, exclude_content: str | None = None,
          under: str | None = None, explain: bool = False, query_timbre: np.ndarray | None = None,
          timbre_weight: float = 0.0, candidates: int = PREFILTER_ROWS, mutual: bool = False,
          query_content: str | None = None, also_under: np.ndarray | None = None,
          query_copies: Sequence[str] = ()) -> list[Hit]:
    """The k nearest rows, nearest first, ties by path: every row ranked by the
    prefilter, the best ``max(candidates, k)`` re-ranked exactly (all rows when the
    timbre weighs nothing: the prefilter is then exact). With ``mutual``, the
    max(MP_ROWS, k) nearest (at most MP_LIMIT; any further hits follow by distance)
    are then ranked by mutual proximity (``search.proximity``; ties by distance, then
    path; ``query_content``, default ``exclude_content``, is the query's digest: its
    row, when indexed, is never one of the query's references, nor are the rows of
    ``query_copies``, other records of the query's recording). ``under``: only rows
    filed under that folder, and the rows of the boolean mask ``also_under`` (records
    with another file there). Excluded rows get an infinite distance rather than a
    copy of the matrix without them."""
    if len(index) == 0 or k <= 0:
        return []
    with one_blas_thread():
        return _top_k(index, query, k, weights, exclude_content, under, explain, query_timbre, timbre_weight,
                      candidates, mutual, query_content or exclude_content, also_under, query_copies)


def _top_k(index: Index, query: np.ndarray, k: int, weights: np.ndarray, exclude_content: str | None,
           under: str | None, explain: bool, query_timbre: np.ndarray | None, timbre_weight: float,
           candidates: int, mutual: bool, query_content: str | None, also_under: np.ndarray | None,
           query_copies: Sequence[str] = ()) -> list[Hit]:
    d = prefilter_distances(index, query, weights, query_timbre, timbre_weight)
    if exclude_content is not None:
        d[index.rows_with_content(exclude_content)] = np.inf
    if under is not None:
        allowed = index.rows_under(os.path.join(os.path.realpath(under), ""))
        d[~(allowed if also_under is None else allowed | also_under)] = np.inf
    wanted = max(MP_ROWS, k) if mutual else k
    take = min(wanted if timbre_weight == 0 else max(candidates, wanted), len(d))
    best = np.argpartition(d, take - 1)[:take] if take < len(d) else np.arange(len(d))
    best = best[np.isfinite(d[best])]
    exact = exact_distances(index, query, weights, best, query_timbre, timbre_weight) if timbre_weight > 0 \
        else np.sqrt(d[best])
    paths = index.path_strings(best)
    order = _nearest_first(exact, paths, wanted)
    scored = order[:MP_LIMIT]   # a huge k: the rest follow by distance (memory stays bounded)
    proximity = _proximity(index, query, weights, best[scored], exact[scored], query_timbre, timbre_weight,
                           query_content, query_copies) if mutual and scored else None
    ranked: list[tuple[int, float | None]] = [(j, None) for j in order]
    if proximity is not None:
        by_proximity = sorted(range(len(scored)), key=lambda j: (float(proximity[j]), float(exact[scored[j]]),
                                                                  paths[scored[j]]))
        ranked = [(scored[j], float(proximity[j])) for j in by_proximity] + ranked[len(scored):]
    ranked = ranked[:k]
    return [Hit(paths[j], float(exact[j]), str(index.contents[best[j]]),
                explain_row(index, query, int(best[j]), weights, query_timbre, timbre_weight) if explain else (),
                mp)
            for j, mp in ranked]


def _nearest_first(distance: np.ndarray, paths: list[str], k: int) -> list[int]:
    """Positions of the k smallest ``distance`` (r,), nearest first, ties by path. Only
    the rows within the k-th distance are sorted in Python (not all candidates)."""
    within = np.arange(len(distance))
    if len(distance) > k:
        within = np.flatnonzero(distance <= np.partition(distance, k - 1)[k - 1])
    return sorted(within.tolist(), key=lambda j: (float(distance[j]), paths[j]))[:k]


def explain_row(index: Index, query: np.ndarray, row: int, weights: np.ndarray,
                query_timbre: np.ndarray | None = None, timbre_weight: float = 0.0, n: int = 3) -> tuple[dict, ...]:
    """The ``n`` largest contributions to a hit's squared distance: named dims (the
    tempo's two columns summed) and "timbre" as one line (its JS divergence in nats)."""
    per_column = _named_squares(index, query, weights, np.array([row]))[0]
    contribution: dict[str, float] = {}
    for name, value in zip(feature_dims(index.dims), per_column, strict=True):
        contribution[name] = contribution.get(name, 0.0) + float(value)
    lines: list[dict[str, Any]] = [{"dim": name, "query": _value(query[index.dims.index(name)]),
              "hit": _value(index.values[row][index.dims.index(name)]), "contribution": value}
             for name, value in contribution.items()]
    if timbre_weight > 0:
        theirs = index.timbre_rows()[row]
        js = None if query_timbre is None or np.isnan(query_timbre).any() or np.isnan(theirs).any() \
            else float(js_divergence(query_timbre, theirs[None, :])[0])
        lines.append({"dim": "timbre", "query": None, "hit": None, "divergence": js,
                      "contribution": float(timbre_weight * timbre_term(index, query_timbre, np.array([row]))[0])})
    lines.sort(key=lambda line: -float(line["contribution"]))
    return tuple(line for line in lines[:n] if line["contribution"] > 0)


def _value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
