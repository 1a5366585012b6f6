"""Mutual proximity: the nearest hits re-ranked by how mutual their nearness is.

In a space of many dimensions some tracks ("hubs") are near almost everything and
crowd every result list, while others are nobody's neighbour. Mutual proximity
(Schnitzer et al. 2012, as musly does it) asks instead how likely two tracks are to
be each other's near neighbours:

    MP(q, y) = 1 - P(D_q > d) P(D_y > d),   d = D(q, y),

where D_x is the distance from x to a random track of the library, modelled as a
normal distribution with the mean and standard deviation of x's distances to
REFERENCE_ROWS reference tracks. Lower is nearer (0: both see the other as nearer
than any track). The references are the library's rows with the smallest content
digests: a stable sample whatever the order of the index's rows.

Only the MP_ROWS nearest rows by distance are re-ranked (a hit far by distance never
becomes a top hit by mutual proximity; on the quality corpus 25 rows gave the whole
gain), so a query computes (MP_ROWS + 1) x REFERENCE_ROWS extra distances, with the
same weights as its own: any ``--weights`` gives a consistent ranking.
"""

from __future__ import annotations

import math

import numpy as np

from fpcli.search.index import Index, Reference

MP_ROWS = 30             # nearest rows (by distance) re-ranked by mutual proximity
REFERENCE_ROWS = 32      # rows whose distances model a track's distance distribution
MIN_REFERENCE = 8        # fewer usable references than this: no re-rank (too few to model)
MP_LIMIT = 1000          # at most this many rows scored, whatever k (bounded memory and time); the rest by distance


def reference_of(index: Index) -> Reference:
    """The index's reference rows, chosen once per index (an index built from a subset,
    as ``accurate`` does, is given its full index's with ``use_reference``)."""
    if index._reference is None:
        rows = _reference_rows(index)
        index._reference = Reference(index.normalised_rows(rows).astype(np.float64), index.timbre_rows()[rows],
                                     index.timbre_logdets()[rows], index.contents[rows].astype(str))
    return index._reference


def use_reference(index: Index, reference: Reference) -> None:
    """Make ``index`` (a subset of a library's rows) rank against its library's references."""
    index._reference = reference


def _reference_rows(index: Index) -> np.ndarray:
    """Positions of up to REFERENCE_ROWS rows with distinct content digests: those whose
    digest's first 8 characters, read as one 64-bit word, are smallest (a digest is a
    hash: a uniform sample of the library, whatever the order of its rows)."""
    first_word = index.content_words()[:, 0]
    wanted = min(len(first_word), 4 * REFERENCE_ROWS)
    smallest = np.argpartition(first_word, wanted - 1)[:wanted] if wanted < len(first_word) \
        else np.arange(len(first_word))
    smallest = smallest[np.argsort(first_word[smallest], kind="stable")]
    _, first = np.unique(index.contents[smallest], return_index=True)
    return np.sort(smallest[np.sort(first)][:REFERENCE_ROWS])


def scores(distance: np.ndarray, mine: np.ndarray, theirs: np.ndarray) -> np.ndarray | None:
    """(r,) MP(query, row) in [0, 1] of r rows at ``distance`` (r,) from the query, given
    the query's distances to the references ``mine`` (R,) and the rows' ``theirs``
    (r, R) (NaN: not a reference of that row, e.g. itself). None when the query has
    fewer than MIN_REFERENCE references: too few to model its distances (the caller
    ranks by distance then)."""
    if np.count_nonzero(~np.isnan(mine)) < MIN_REFERENCE:
        return None
    farther_mine = _farther(distance, *_moments(mine[None, :]))
    farther_theirs = _farther(distance, *_moments(theirs))
    return np.asarray(1.0 - farther_mine * farther_theirs)


def _moments(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (r,) of each row of ``distances`` (r, R), NaN ignored;
    a row with fewer than two values gets NaN."""
    count = np.count_nonzero(~np.isnan(distances), axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count >= 2, np.nansum(distances, axis=1) / np.maximum(count, 1), np.nan)
        spread = np.sqrt(np.nansum((distances - mean[:, None]) ** 2, axis=1) / np.maximum(count, 1))
    return mean, np.where(count >= 2, spread, np.nan)


def _farther(distance: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """P(D > distance) under N(mean, spread^2), elementwise; 0.5 where the model is
    unknown (no evidence either way), a step where the spread is 0."""
    out = np.full(np.broadcast(distance, mean).shape, 0.5)
    known = np.broadcast_to(np.isfinite(mean) & np.isfinite(spread), out.shape)
    d, m, s = (np.broadcast_to(a, out.shape)[known] for a in (distance, mean, spread))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(s > 0, (d - m) / np.where(s > 0, s, 1.0), np.where(d < m, -np.inf, np.inf))
    out[known] = [0.5 * math.erfc(v / math.sqrt(2.0)) for v in z.tolist()]
    return out
