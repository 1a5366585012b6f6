"""Mergeable O(1)-memory statistics: Welford moments and fixed-bin histograms.

The streaming analyzer uses these where the batch analyzer keeps a whole series; the
histogram bin width bounds the difference (FINGERPRINT.md rule 3).
"""

from __future__ import annotations

import math

import numpy as np


class Welford:
    """Running count, mean and variance of a stream of floats (float64, stable)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        n = values.size
        if n == 0:
            return
        batch_mean = float(values.mean())
        batch_m2 = float(((values - batch_mean) ** 2).sum())
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self._m2 += batch_m2 + delta * delta * self.count * n / total
        self.count = total

    @property
    def variance(self) -> float:
        """Population variance (ddof=0), NaN when empty."""
        return self._m2 / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        return math.sqrt(self.variance) if self.count else math.nan


class Histogram:
    """Counts of values in ``n_bins`` equal bins over [low, high) on a linear or log10 axis.

    Values outside the range go to the first/last bin. Quantiles interpolate linearly
    inside a bin, so their error is at most one bin width (on the chosen axis).
    Optional per-bin sums of extra quantities (``sums``) support gated statistics.
    """

    def __init__(self, low: float, high: float, n_bins: int, *, log: bool = False,
                 sums: tuple[str, ...] = ()) -> None:
        if not high > low or n_bins < 1 or (log and low <= 0):
            raise ValueError(f"bad histogram range [{low}, {high}) with {n_bins} bins (log={log})")
        self.log = log
        self.low = math.log10(low) if log else low
        self.high = math.log10(high) if log else high
        self.n_bins = n_bins
        self.width = (self.high - self.low) / n_bins
        self.counts = np.zeros(n_bins, dtype=np.float64)
        self.sums = {name: np.zeros(n_bins, dtype=np.float64) for name in sums}

    @property
    def total(self) -> float:
        return float(self.counts.sum())

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        axis = np.log10(np.maximum(values, 1e-300)) if self.log else values
        index = np.floor((np.asarray(axis, dtype=np.float64) - self.low) / self.width)
        return np.clip(index, 0, self.n_bins - 1).astype(np.intp)

    def add(self, values: np.ndarray, **weights: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        if values.size == 0:
            return
        index = self.bin_index(values)
        self.counts += np.bincount(index, minlength=self.n_bins)
        for name, weight in weights.items():
            self.sums[name] += np.bincount(index, weights=weight, minlength=self.n_bins)

    def bin_lower_edges(self) -> np.ndarray:
        """Lower edge of each bin on the axis (log10 units when ``log``)."""
        return self.low + self.width * np.arange(self.n_bins)

    def quantile(self, q: float, *, mask: np.ndarray | None = None) -> float:
        """The q-quantile (0..1) of the counted values (of the bins in ``mask``); NaN if empty."""
        counts = self.counts if mask is None else np.where(mask, self.counts, 0.0)
        total = counts.sum()
        if total <= 0:
            return math.nan
        cumulative = np.cumsum(counts)
        target = q * total
        i = int(np.searchsorted(cumulative, target, side="left"))
        i = min(i, self.n_bins - 1)
        before = cumulative[i] - counts[i]
        inside = (target - before) / counts[i] if counts[i] > 0 else 0.5
        axis_value = self.low + self.width * (i + float(np.clip(inside, 0.0, 1.0)))
        return 10.0 ** axis_value if self.log else axis_value
