"""Ranking: distances, exact top-k and explanations.

Distances are weighted Euclidean in a robust per-dimension scaling fitted on the
library: the 5th..95th percentile maps to [0, 1], clipped; a dim with no spread
weighs 0. Group weights (frequency, dynamics, temporal, spectral, harmonic,
variation, stereo) default to 1 and are shared by the dims of the group, so each
group counts the same whatever its size.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

import numpy as np

from fpcli.errors import ParameterError
from fpcli.fingerprint import DIM_BY_NAME, GROUPS
from fpcli.search.index import Index, scale

NULL_PENALTY = 0.5       # normalised difference charged when one side of a dim is null


def dim_weights(dims: tuple[str, ...], group_weights: dict[str, float], low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    """Per-dim weights: each group's weight shared by its dims; zero-spread dims weigh 0."""
    groups = [DIM_BY_NAME[d].group for d in dims]
    sizes = {g: groups.count(g) for g in set(groups)}
    weights = np.array([group_weights.get(g, 1.0) / sizes[g] for g in groups])
    return np.where(high - low > 0, weights, 0.0)


def parse_weights(text: str | None) -> dict[str, float]:
    """``"temporal=2,stereo=0"`` -> group weights (others 1.0)."""
    weights = dict.fromkeys(GROUPS, 1.0)
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        group, _, value = item.partition("=")
        if group not in weights:
            raise ParameterError(f"--weights {item!r}: {group!r} is not a group ({', '.join(GROUPS)})")
        try:
            weights[group] = float(value)
        except ValueError:
            raise ParameterError(f"--weights {item!r}: {value!r} is not a number") from None
        if not 0 <= weights[group] < math.inf:
            raise ParameterError(f"--weights {item!r}: must be a finite number >= 0")
    if not any(weights.values()):
        raise ParameterError("--weights: at least one group must weigh more than 0 (else every distance is 0)")
    return weights


@dataclasses.dataclass(frozen=True)
class Hit:
    path: str
    distance: float
    digest: str
    explain: tuple[dict[str, Any], ...] = ()


def distances(index: Index, query: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted Euclidean distances (n,) from ``query`` (physical units, (d,)) to every row.

    Nulls: a dim null on one side costs NULL_PENALTY, null on both costs 0. Computed
    as ``terms() @ u + c`` by expanding w (x - q)^2 = w x^2 - 2 w x q + w q^2 with
    the null cases folded into u and c, one pass over the matrix per query.
    """
    q = scale(query[None, :], index.low, index.high)[0].astype(np.float64)
    known = ~np.isnan(q)
    qf = np.where(known, q, 0.0)
    w = weights.astype(np.float64)
    penalty = NULL_PENALTY * NULL_PENALTY
    u_square = w * known                                   # w x^2 where the query is known
    u_cross = -2.0 * w * known * qf                        # -2 w x q
    u_absent = w * known * qf * qf + w * ~known * penalty  # charged where x is known (1 - M)
    u_mask = w * known * penalty                           # charged where x is null (M)
    u = np.concatenate([u_square, u_cross, u_mask - u_absent]).astype(np.float32)
    squared = index.terms() @ u + np.float32(u_absent.sum())
    return np.sqrt(np.maximum(squared, 0.0))


def top_k(index: Index, query: np.ndarray, k: int, weights: np.ndarray, *, exclude_content: str | None = None,
          under: str | None = None, explain: bool = False) -> list[Hit]:
    """The k nearest rows (exact; vectorised), nearest first; ties by path. Excluded
    rows get an infinite distance rather than a copy of the matrix without them."""
    if len(index) == 0 or k <= 0:
        return []
    d = distances(index, query, weights)
    if exclude_content is not None:
        d[index.rows_with_content(exclude_content)] = np.inf
    if under is not None:
        prefix = os.path.join(os.path.realpath(under), "")
        d[~np.char.startswith(index.paths.astype(str), prefix)] = np.inf
    take = min(k, len(d))
    best = np.argpartition(d, take - 1)[:take] if take < len(d) else np.arange(len(d))
    finite = [int(i) for i in best if np.isfinite(d[i])]
    order = sorted(finite, key=lambda i: (float(d[i]), index.paths[i]))
    return [Hit(str(index.paths[i]), float(d[i]), str(index.contents[i]),
                _explain(index, query, i, weights) if explain else ()) for i in order]


def _explain(index: Index, query: np.ndarray, row: int, weights: np.ndarray, n: int = 3) -> tuple[dict, ...]:
    q = scale(query[None, :], index.low, index.high)[0]
    x = scale(index.values[row][None, :], index.low, index.high)[0]
    diff = np.where(np.isnan(x - q), np.where(np.isnan(x) & np.isnan(q), 0.0, NULL_PENALTY), x - q)
    contribution = weights * diff * diff
    order = np.argsort(-contribution)[:n]
    return tuple({"dim": index.dims[i], "query": _value(query[i]), "hit": _value(index.values[row][i]),
                  "contribution": float(contribution[i])} for i in order if contribution[i] > 0)


def _value(v: float) -> float | None:
    return None if math.isnan(v) else float(v)
