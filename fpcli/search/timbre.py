"""The timbre distance: Jensen-Shannon divergence between the tracks' MFCC Gaussians,
and the vector embedding that prefilters it at scale.

* ``js_divergence``: JS between two Gaussians with the mixture replaced by the
  Gaussian of its first two moments (closed form; musly's "timbre" distance):
  JS = 1/2 [logdet(S_m) - (logdet S_1 + logdet S_2) / 2],
  S_m = (S_1 + S_2) / 2 + (m_1 - m_2)(m_1 - m_2)^T / 4. Chosen over symmetric KL
  because it ranked better on the quality corpus (benchmarks/quality/results.md).
* ``embed``: a Gaussian as a vector whose squared Euclidean distance approximates the
  symmetric KL (hence the JS ranking) near the library's average timbre:
  [W m, vech*(log(W S W)) / sqrt 2] with W = (library mean covariance)^(-1/2) and
  vech* the upper triangle with off-diagonals times sqrt 2 (so that its squared norm
  is the Frobenius norm), then projected on the top EMBED_DIMS principal axes.
  For commuting covariances, sKL = 1/2 sum (e^d + e^-d - 2) ~ 1/2 ||log S_1 - log S_2||_F^2,
  and the mean term is a Mahalanobis distance under the average covariance.

Rows are stored as TIMBRE_COLUMNS float32: the mean (13) then the covariance's upper
triangle (91), NaN for a track without timbre.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fpcli.dsp.timbre import N_MFCC, Timbre

TIMBRE_COLUMNS = N_MFCC + N_MFCC * (N_MFCC + 1) // 2
EMBED_DIMS = 32          # principal axes kept for the prefilter
RIDGE = 1e-3             # added to covariances' diagonals (MFCC variances are 0.1 .. 1e3): keeps them invertible
FIT_SAMPLE = 2000        # rows used to fit the whitening, the axes and the scales
SCALE_FLOOR = 1e-6       # a 95th-percentile distance below this is no spread (10 real tracks: 3 and 39)
SCALE_PAIRS = 4000       # random pairs whose 95th percentile divergence scales the distance to ~[0, 1]
SLICE_ROWS = 8192        # rows per slice of logdets / embed: ~60 MB of 13 x 13 float64 temporaries, not ~450
MAX_EMBED_THREADS = 4    # slices embedded at once (each holds its ~60 MB of temporaries)
_UPPER = np.triu_indices(N_MFCC)
_OFF_DIAGONAL = np.where(_UPPER[0] == _UPPER[1], 1.0, np.sqrt(2.0))
_RIDGE_PACKED = np.where(_UPPER[0] == _UPPER[1], RIDGE, 0.0)     # (91,) the ridge on the packed upper triangle


def _full_positions() -> np.ndarray:
    """(169,) for each entry of a row-major 13 x 13 matrix, its position in the packed
    upper triangle (91,): ``packed[_FULL].reshape(13, 13)`` is the symmetric matrix."""
    position = np.zeros((N_MFCC, N_MFCC), dtype=np.intp)
    position[_UPPER] = np.arange(len(_UPPER[0]))
    position[_UPPER[1], _UPPER[0]] = np.arange(len(_UPPER[0]))
    return position.ravel()


_FULL = _full_positions()


def pack(timbre: Timbre | None) -> np.ndarray:
    """(TIMBRE_COLUMNS,) float32 [mean, upper triangle of cov]; NaN without timbre."""
    if timbre is None:
        return np.full(TIMBRE_COLUMNS, np.nan, dtype=np.float32)
    return timbre.packed().astype(np.float32)


def unpack(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(r, TIMBRE_COLUMNS) -> means (r, 13) and ridged covariances (r, 13, 13), float64."""
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, TIMBRE_COLUMNS)
    covs = np.zeros((len(rows), N_MFCC, N_MFCC))
    covs[:, _UPPER[0], _UPPER[1]] = rows[:, N_MFCC:]
    covs[:, _UPPER[1], _UPPER[0]] = rows[:, N_MFCC:]
    return rows[:, :N_MFCC], covs + RIDGE * np.eye(N_MFCC)


def js_divergence(query: np.ndarray, rows: np.ndarray, row_logdets: np.ndarray | None = None) -> np.ndarray:
    """(r,) JS divergences (nats, >= 0) between the packed query (TIMBRE_COLUMNS,) and
    packed rows (r, TIMBRE_COLUMNS); ``row_logdets`` (r,) are the rows' ``logdets``
    when the caller has them (an index keeps them: one 13 x 13 factorisation less per row).

    Works on the packed upper triangles with the rows last, so that the mixture and its
    log-determinant are a few whole-array operations over all rows rather than one
    LAPACK call per 13 x 13 matrix (2.4x faster for 1,000 rows)."""
    if len(rows) == 0:
        return np.zeros(0)
    q = np.asarray(query, dtype=np.float64).reshape(TIMBRE_COLUMNS)
    mixed = _mixture_logdets(_rows_last(rows), q[:, None], np.float64)                # (r,)
    if row_logdets is None:
        row_logdets = logdets(rows)
    logdet_q = logdets(q[None, :])[0]
    return _js(mixed, row_logdets, logdet_q)


def js_divergence_pairs(a: np.ndarray, b: np.ndarray, a_logdets: np.ndarray | None = None,
                        b_logdets: np.ndarray | None = None, dtype: type = np.float64) -> np.ndarray:
    """(r, s) JS divergences (nats, >= 0) between every packed row of ``a`` (r,
    TIMBRE_COLUMNS) and of ``b`` (s, TIMBRE_COLUMNS), with their ``logdets`` when the
    caller has them: ``js_divergence`` for many queries at once, all r x s mixtures
    factorised in one vectorised elimination (the cost of a handful of numpy calls,
    not of r x s). Rows must have timbre (no NaN). ``dtype`` float32 factorises the
    mixtures 2.6x faster, within 3e-5 nats (2.5e-5 at most, median 3e-7, on the quality
    corpus's timbres): enough to model a distance distribution, not to rank."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    mixed = _mixture_logdets(_rows_last(a)[:, :, None], _rows_last(b)[:, None, :], dtype)      # (r, s)
    a_logdets = logdets(a) if a_logdets is None else a_logdets
    b_logdets = logdets(b) if b_logdets is None else b_logdets
    return _js(mixed, a_logdets[:, None], b_logdets[None, :])


def js_divergence_paired(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) JS divergences (nats, >= 0) of row i of ``a`` and row i of ``b`` (both (n,
    TIMBRE_COLUMNS), with timbre), all n mixtures factorised at once."""
    if len(a) == 0:
        return np.zeros(0)
    mixed = _mixture_logdets(_rows_last(a), _rows_last(b), np.float64)
    return _js(mixed, logdets(a), logdets(b))


def _js(mixed: np.ndarray, logdet_a: np.ndarray | float, logdet_b: np.ndarray | float) -> np.ndarray:
    """JS divergence (nats, >= 0) of two Gaussians from the log-determinants of their
    mixture and of each: 0.5 (log|M| - (log|A| + log|B|) / 2), broadcast; the mean
    term is inside the mixture's covariance."""
    return np.maximum(0.5 * (mixed - 0.5 * (logdet_a + logdet_b)), 0.0)


def _mixture_logdets(pa: np.ndarray, pb: np.ndarray, dtype: type) -> np.ndarray:
    """Log-determinants of the moment-matched mixtures of packed Gaussians ``pa`` and
    ``pb`` (TIMBRE_COLUMNS, ...), rows first and broadcast against each other: shape
    the broadcast of their other axes. Computed in ``dtype``."""
    pa, pb = pa.astype(dtype, copy=False), pb.astype(dtype, copy=False)
    dm = pa[:N_MFCC] - pb[:N_MFCC]                                                   # (13, ...)
    # For two equal Gaussians this is bit for bit the ridged covariance of each (0.5 (x +
    # x) = x, then the same ridge, then + 0), and ``logdets`` factorises it the same
    # way: a track's divergence from its copy is exactly 0.
    ridge: np.ndarray = _RIDGE_PACKED.astype(dtype).reshape(-1, *([1] * (dm.ndim - 1)))
    mixture = 0.5 * (pa[N_MFCC:] + pb[N_MFCC:]) + ridge + 0.25 * dm[_UPPER[0]] * dm[_UPPER[1]]   # (91, ...)
    return spd_logdet(_square(mixture.reshape(len(_UPPER[0]), -1))).reshape(mixture.shape[1:])


def _rows_last(rows: np.ndarray) -> np.ndarray:
    """(r, TIMBRE_COLUMNS) packed rows -> (TIMBRE_COLUMNS, r) float64, contiguous."""
    return np.ascontiguousarray(np.asarray(rows, dtype=np.float64).reshape(-1, TIMBRE_COLUMNS).T)


def _square(packed: np.ndarray) -> np.ndarray:
    """(91, r) packed upper triangles -> (13, 13, r) symmetric matrices."""
    return packed[_FULL].reshape(N_MFCC, N_MFCC, -1)


def logdets(rows: np.ndarray) -> np.ndarray:
    """(r, TIMBRE_COLUMNS) packed rows -> (r,) float64 log-determinants (nats) of their
    ridged covariances; NaN for rows without timbre. In slices to bound memory."""
    rows = np.asarray(rows).reshape(-1, TIMBRE_COLUMNS)
    out = np.full(len(rows), np.nan)
    known = np.flatnonzero(~np.isnan(rows).any(axis=1))
    for start in range(0, len(known), SLICE_ROWS):
        part = known[start:start + SLICE_ROWS]
        ridged = _rows_last(rows[part])[N_MFCC:] + _RIDGE_PACKED[:, None]
        out[part] = spd_logdet(_square(ridged))
    return out


def spd_logdet(matrices: np.ndarray) -> np.ndarray:
    """(13, 13, r) symmetric positive definite matrices, the batch last -> (r,) log-
    determinants (nats). Gaussian elimination without pivoting (safe for SPD matrices:
    every pivot is positive): log det = the sum of the pivots' logs. Each of the 13
    steps is one vectorised update over all r matrices. A matrix whose pivots are not
    all positive (not numerically positive definite) gets ``np.linalg.slogdet``'s
    answer instead, as before this fast path."""
    a = matrices.copy()
    n, r = a.shape[0], a.shape[-1]
    total = np.zeros(r)
    positive = np.ones(r, dtype=bool)
    # Scratch for each step's rank-one update, allocated once: a fresh (m, m, r)
    # temporary per step costs ~20 % more.
    update = np.empty((n - 1) * (n - 1) * r, dtype=a.dtype)
    for j in range(n):
        pivot = a[j, j].copy()
        positive &= pivot > 0
        pivot[pivot <= 0] = 1.0
        total += np.log(pivot)
        m = n - j - 1
        factor = a[j + 1:, j] / pivot                                        # (m, r)
        product = np.multiply(factor[:, None], a[j, j + 1:][None, :], out=update[:m * m * r].reshape(m, m, r))
        a[j + 1:, j + 1:] -= product
    if not positive.all():
        bad = np.flatnonzero(~positive)
        total[bad] = np.linalg.slogdet(np.moveaxis(matrices[:, :, bad], -1, 0))[1]
    return total


@dataclasses.dataclass(frozen=True)
class TimbreFit:
    """What the library fitted: the whitening W (13, 13), the embedding's centre (104,)
    and principal axes (104, EMBED_DIMS), and the 95th percentiles of the squared
    embedding distance and of the JS divergence over random pairs (the scales that map
    each to about [0, 1])."""

    whiten: np.ndarray
    centre: np.ndarray
    axes: np.ndarray
    embed_scale: float
    js_scale: float


def full_embedding(rows: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    """(r, TIMBRE_COLUMNS) packed rows -> (r, TIMBRE_COLUMNS) float64 [W m, vech*(log(W S W)) / sqrt 2]."""
    means, covs = unpack(rows)
    white = whiten @ covs @ whiten
    values, vectors = np.linalg.eigh(white)
    logs = (vectors * np.log(np.maximum(values, 1e-12))[:, None, :]) @ np.swapaxes(vectors, 1, 2)
    return np.concatenate([means @ whiten, logs[:, _UPPER[0], _UPPER[1]] * _OFF_DIAGONAL / np.sqrt(2.0)], axis=1)


def fit_timbre(rows: np.ndarray, seed: int = 0) -> TimbreFit | None:
    """Fit the embedding and the scales on (n, TIMBRE_COLUMNS) packed rows (NaN rows
    ignored); None with fewer than two rows with timbre."""
    known = rows[~np.isnan(rows).any(axis=1)]
    if len(known) < 2:
        return None
    rng = np.random.default_rng(seed)
    sample = known[_by_content(known, rng)]
    _, covs = unpack(sample)
    values, vectors = np.linalg.eigh(covs.mean(axis=0))
    whiten = (vectors / np.sqrt(np.maximum(values, 1e-12))) @ vectors.T
    full = full_embedding(sample, whiten)
    centre = full.mean(axis=0)
    _, _, vt = np.linalg.svd(full - centre, full_matrices=False)
    axes = vt[:EMBED_DIMS].T
    a, b = rng.integers(len(sample), size=(2, SCALE_PAIRS))
    a, b = a[a != b], b[a != b]
    projected = (full - centre) @ axes
    embed_d = ((projected[a] - projected[b]) ** 2).sum(axis=1)
    js_d = js_divergence_paired(sample[a[:500]], sample[b[:500]])
    return TimbreFit(whiten, centre, axes, _positive(np.percentile(embed_d, 95)), _positive(np.percentile(js_d, 95)))


def _by_content(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of up to FIT_SAMPLE of ``rows``, chosen and ordered by their content (a
    random projection of each row), not by their position: an index's row order
    depends on how it was built (a scan of one backend or another, an import), and
    the same library gave other distances on diskcache and Redis (0.390 vs 0.392)."""
    key = rows @ rng.standard_normal(rows.shape[1])
    chosen = np.argpartition(key, FIT_SAMPLE)[:FIT_SAMPLE] if len(rows) > FIT_SAMPLE else np.arange(len(rows))
    return chosen[np.argsort(key[chosen], kind="stable")]


def _positive(value: float) -> float:
    """A distance scale: ``value``, or 1.0 when the sample shows no spread. Copies of
    one timbre differ by float noise alone: a scale of 8.8e-123 embedded every other
    track at about 1e33 (inf in float32), and made its timbre term 1."""
    return float(value) if value > SCALE_FLOOR else 1.0


def embed(rows: np.ndarray, fit: TimbreFit) -> np.ndarray:
    """(n, TIMBRE_COLUMNS) packed rows -> (n, EMBED_DIMS) float32 prefilter vectors, in
    units where the squared distance ~ divergence / js_scale; NaN rows stay NaN.
    Computed in slices to bound memory at millions of rows, on every core the process
    may use: the eigendecompositions (~9 us a row) release the GIL, and an index of
    1,000,000 tracks embeds 1.8 million rows when it is saved."""
    out = np.full((len(rows), fit.axes.shape[1]), np.nan, dtype=np.float32)
    known = np.flatnonzero(~np.isnan(rows).any(axis=1))
    unit = 1.0 / np.sqrt(fit.embed_scale)

    def fill(part: np.ndarray) -> None:
        out[part] = ((full_embedding(rows[part], fit.whiten) - fit.centre) @ fit.axes * unit).astype(np.float32)

    slices = [known[start:start + SLICE_ROWS] for start in range(0, len(known), SLICE_ROWS)]
    threads = min(len(slices), MAX_EMBED_THREADS, _usable_cores())
    if threads <= 1:
        for part in slices:
            fill(part)
    else:
        with ThreadPoolExecutor(threads, thread_name_prefix="fpcli-embed") as pool:
            list(pool.map(fill, slices))   # list(): an error in a slice is raised here
    return out


def _usable_cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1
