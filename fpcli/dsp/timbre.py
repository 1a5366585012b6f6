"""The timbre group: MFCCs of the shared mel spectrogram and one Gaussian per track.

Each non-silent frame's 64-band mel power spectrum becomes N_MFCC = 13 mel-frequency
cepstral coefficients (natural log of the mel powers floored at -100 dB re full scale,
then an orthonormal DCT-II, coefficients c0..c12; c0 carries the frame's level). The
track's timbre is the mean and full covariance of those vectors (a single Gaussian,
as in Mandel & Ellis 2005). 13 coefficients scored as well as 20 on the quality corpus
(benchmarks/quality) and keep the model at 13 + 91 numbers.

The streaming analyzer keeps the running sums (count, sum x, sum x x^T: O(1) memory,
exactly mergeable across blocks); the batch analyzer keeps every frame's vector and
computes ``np.mean`` / ``np.cov`` at the end, so the two are independent computations
of the same statistic, equal up to float rounding. A ``Timbre`` holds single-precision
values (float32, about 7 significant digits): what search ranks by, far below the
statistic's own noise, and half the bytes of a stored record's largest block.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

N_MFCC = 13
LOG_FLOOR_DB = -100.0      # mel powers below this (re a full-scale sine) are floored


def dct_matrix(n_mel: int, n_mfcc: int = N_MFCC) -> np.ndarray:
    """(n_mel, n_mfcc) float64 orthonormal DCT-II basis: ``log_mel @ D`` = the first
    n_mfcc coefficients of ``scipy.fft.dct(log_mel, type=2, norm="ortho")``."""
    import scipy.fft  # here: reading a stored timbre block must not pay for importing scipy

    return scipy.fft.dct(np.eye(n_mel), type=2, norm="ortho", axis=1)[:, :n_mfcc]


def mfcc(mel: np.ndarray, dct: np.ndarray, full_scale_power: float) -> np.ndarray:
    """(n, n_mel) float32 mel power -> (n, n_mfcc) float64 MFCCs (natural log, relative
    to a full-scale sine's peak-bin power, so c0 does not depend on the FFT size).
    The log and DCT run in float64: in float32, c0 (about -130) would carry rounding
    of 1e-5 that differs with how the audio was chunked."""
    relative = mel.astype(np.float64) / full_scale_power
    return np.log(np.maximum(relative, 10 ** (LOG_FLOOR_DB / 10))) @ dct


class GaussianSums:
    """count, sum x (d,) and sum x x^T (d, d), float64: the exact O(1)-memory sufficient
    statistics of a Gaussian; adding blocks in any split gives the same sums up to
    rounding."""

    def __init__(self, d: int = N_MFCC) -> None:
        self.count = 0
        self.sum = np.zeros(d)
        self.outer = np.zeros((d, d))

    def add(self, x: np.ndarray) -> None:
        """Fold (n, d) rows in."""
        if len(x) == 0:
            return
        x64 = x.astype(np.float64)
        self.count += len(x64)
        self.sum += x64.sum(axis=0)
        self.outer += x64.T @ x64

    def gaussian(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(mean (d,), population covariance (d, d)) or None with no frames."""
        if self.count == 0:
            return None
        mean = self.sum / self.count
        cov = self.outer / self.count - np.outer(mean, mean)
        return mean, (cov + cov.T) / 2


def gaussian_of(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The batch reference: mean and population covariance of (n, d) frames (float64)."""
    if len(frames) == 0:
        return None
    x = frames.astype(np.float64)
    cov = np.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])
    return x.mean(axis=0), cov


@dataclasses.dataclass(frozen=True)
class Timbre:
    """A track's timbre: the mean (d,) and covariance (d, d) of its MFCC frames, and
    how many non-silent frames they summarise."""

    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]
    frames: int
    # The packed form, made once (a record read, written and indexed packs it three times).
    _packed: np.ndarray | None = dataclasses.field(default=None, init=False, compare=False, repr=False)

    def packed(self) -> np.ndarray:
        """(d + d (d + 1) / 2,) float64, read-only: the mean, then the covariance's upper
        triangle row by row (the layout a store keeps and a search index holds)."""
        if self._packed is None:
            cov = np.asarray(self.cov, dtype=np.float64)
            values = np.concatenate([np.asarray(self.mean, dtype=np.float64), cov[np.triu_indices(len(cov))]])
            values.flags.writeable = False
            object.__setattr__(self, "_packed", values)
        assert self._packed is not None
        return self._packed

    @classmethod
    def from_packed(cls, packed: np.ndarray, cov: np.ndarray, frames: int) -> Timbre:
        """The timbre of ``packed`` values (``packed()``'s layout) whose full covariance
        (d, d) the caller has unpacked already, rounded to single precision (records
        stored before timbres were single precision hold doubles)."""
        d = len(cov)
        values = _single(packed)
        timbre = cls(tuple(values[:d].tolist()), tuple(map(tuple, _single(cov).tolist())), frames)
        values.flags.writeable = False
        object.__setattr__(timbre, "_packed", values)
        return timbre

    @classmethod
    def of(cls, gaussian: tuple[np.ndarray, np.ndarray] | None, frames: int) -> Timbre | None:
        if gaussian is None or frames == 0:
            return None
        mean, cov = gaussian
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            return None
        # Through 9 significant digits first, as records stored before timbres were single
        # precision hold them: rounded straight to float32, a fresh analysis differed from
        # such a stored one in the last bit of a few values.
        return cls.rounded(_nine_digits(mean), _nine_digits(cov), frames)

    @classmethod
    def rounded(cls, mean: Any, cov: Any, frames: int) -> Timbre:
        """The timbre of a mean (d,) and a covariance (d, d), rounded to single precision."""
        return cls(tuple(_single(mean).tolist()), tuple(map(tuple, _single(cov).tolist())), int(frames))

    def to_dict(self) -> dict[str, Any]:
        """{"mean": [d], "cov": [[d] x d], "frames": n}, each value written with the 9
        significant digits that name its float32 exactly (``from_dict`` reads it back
        to the same value)."""
        return {"mean": [_shortest(v) for v in self.mean], "cov": [[_shortest(v) for v in row] for row in self.cov],
                "frames": self.frames}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timbre:
        return cls.rounded(data["mean"], data["cov"], data["frames"])

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.mean, dtype=np.float64), np.array(self.cov, dtype=np.float64)


def _single(values: np.ndarray) -> np.ndarray:
    """float64 values rounded to the nearest float32 (read-only float64 array of the same
    shape): the precision a timbre holds, so a fresh and a stored one are equal."""
    rounded = np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)
    rounded.flags.writeable = False
    return rounded


def _nine_digits(values: np.ndarray) -> np.ndarray:
    """Each value rounded to 9 significant decimal digits (same shape, float64)."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    return np.array([_shortest(v) for v in flat.tolist()]).reshape(np.shape(values))


def _shortest(value: float) -> float:
    """A float32 value as the shortest decimal that reads back to it (9 significant
    digits always do): a third of the JSON of its float64 repr."""
    return float(f"{value:.9g}") if math.isfinite(value) else value
