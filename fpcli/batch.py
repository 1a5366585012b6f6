"""The 25-dimension batch reference analyzer (FINGERPRINT.md).

It reads the file in blocks through the shared ``FeaturePipeline`` and keeps the
frame-level series (O(frames) memory, never the decoded audio) so that medians,
percentiles and relative gates are exact whole-track statistics.
"""

from __future__ import annotations

import math

import numpy as np

from fpcli.blas import one_blas_thread
from fpcli.dsp.loudness import gated_momentary_loudness, integrated_loudness, loudness_range
from fpcli.dsp.pipeline import FeaturePipeline, FrameStep
from fpcli.dsp.tally import NO_FRAMES, FrameTally, silent_reason
from fpcli.dsp.timbre import N_MFCC, Timbre, gaussian_of
from fpcli.fingerprint import BANDS_HZ, BATCH_DIMS, Fingerprint, within_domains
from fpcli.params import AnalysisParams, checked_params


class BatchAnalyzer:
    """Push (frames, channels) float32 blocks, then ``finish()`` for the 25D fingerprint
    (an equal one however often it is called, each a copy of its own; no push after it)."""

    def __init__(self, samplerate: int, channels: int, params: AnalysisParams | None = None) -> None:
        self.params = checked_params(params)
        self.pipeline = FeaturePipeline(samplerate, channels, self.params)
        self.tally = FrameTally()
        self._series: dict[str, list[np.ndarray]] = {
            name: [] for name in ("silent", "centroid_hz", "rolloff_hz", "flatness", "momentary", "short_term",
                                  "mfcc")
        }
        self._final: Fingerprint | None = None

    def push(self, block: np.ndarray) -> None:
        """Add a (frames, channels) float block (1-D for mono); an empty one changes
        nothing, one after ``finish`` is refused (``FeaturePipeline.push``)."""
        with self.pipeline.alone(), one_blas_thread():
            self._keep(self.pipeline.push(block))

    def _keep(self, step: FrameStep) -> None:
        self.tally.add(step)
        for name, parts in self._series.items():
            value = getattr(step, name)
            if len(value):
                parts.append(value)

    def series(self, name: str) -> np.ndarray:
        parts = self._series[name]
        return np.concatenate(parts) if parts else np.zeros(0)

    def finish(self) -> Fingerprint:
        """The fingerprint of everything pushed (computed once; each call gives a copy)."""
        if self._final is None:
            self._final = self._fingerprint()
        return self._final.copy()

    def _fingerprint(self) -> Fingerprint:
        with self.pipeline.alone(), one_blas_thread():
            self._keep(self.pipeline.finish())
        values, reasons = self.tally.values(self.pipeline)
        for name, (value, reason) in self._exact_values().items():
            values[name] = value if value is not None and math.isfinite(value) else None
            if values[name] is None:
                reasons[name] = reason
        pipeline = self.pipeline
        mfcc = self.series("mfcc").reshape(-1, N_MFCC)
        return Fingerprint(
            kind="batch",
            values=within_domains({name: values[name] for name in BATCH_DIMS}),
            reasons=reasons,
            params_key=self.params.key(),
            seconds=pipeline.samples / pipeline.samplerate,
            complete=True,
            chunks=self.pipeline.chunks,
            timbre=Timbre.of(gaussian_of(mfcc), len(mfcc)),
        )

    def _exact_values(self) -> dict[str, tuple[float | None, str]]:
        out: dict[str, tuple[float | None, str]] = {}
        out.update(self._spectral_medians())
        out.update(self._band_values())
        out.update(self._loudness_values())
        out.update(self._sample_values())
        return out

    def _spectral_medians(self) -> dict[str, tuple[float | None, str]]:
        audible = ~self.series("silent").astype(bool)
        reason = silent_reason(self.pipeline, audible.size)
        out = {}
        for name, series in (("spectral_centroid_hz", "centroid_hz"), ("spectral_rolloff_hz", "rolloff_hz"),
                             ("spectral_flatness", "flatness")):
            values = self.series(series)[audible]
            values = values[np.isfinite(values)]
            # The lower median (an actual frame's value for even counts), so the streaming
            # histogram's one-bin error bound holds even across a gap at the middle.
            median = float(np.quantile(values, 0.5, method="inverted_cdf")) if values.size else None
            out[name] = (median, reason)
        return out

    def _band_values(self) -> dict[str, tuple[float | None, str]]:
        power = self.tally.band_power
        total = power.sum()
        no_frames = self.tally.frames == 0   # a track shorter than one frame has no spectrum at all
        reason = NO_FRAMES if no_frames else "no spectral energy between 20 Hz and 20 kHz"
        out = {name: (power[i] / total if total > 0 else None, reason) for i, (name, _, _) in enumerate(BANDS_HZ)}
        bass, mid = power[1], power[2] + power[3]
        ratio = 10 * math.log10(bass / mid) if bass > 0 and mid > 0 else None
        no_ratio = NO_FRAMES if no_frames else "no energy in the 60-250 Hz or 250-2000 Hz range"
        out["bass_mid_ratio_db"] = (ratio, no_ratio)
        return out

    def _loudness_values(self) -> dict[str, tuple[float | None, str]]:
        momentary = self.series("momentary")
        gated = gated_momentary_loudness(momentary)
        too_short = "track is shorter than one 400 ms gating block"
        gate = "every 400 ms block is below the -70 LUFS absolute gate"
        return {
            "lufs": (integrated_loudness(momentary), too_short if momentary.size == 0 else gate),
            "loudness_std_lu": (float(gated.std()) if gated.size else None, too_short if momentary.size == 0 else gate),
            "loudness_range_lu": (loudness_range(self.series("short_term")),
                                  "fewer than two 3 s short-term blocks pass the gates"),
        }

    def _sample_values(self) -> dict[str, tuple[float | None, str]]:
        p = self.pipeline
        silent = "the signal is digital silence"
        count = p.samples * p.channels
        rms = math.sqrt(p.sum_squares / count) if count else 0.0
        crest = 20 * math.log10(p.peak / rms) if rms > 0 else None
        width, correlation = stereo_image(p.stereo_sums, p.samples, p.channels)
        uncorrelated = silent if rms == 0 else "one channel is digital silence or constant: nothing to correlate"
        return {"crest_db": (crest, silent), "stereo_width": (width, silent),
                "phase_correlation": (correlation, uncorrelated)}


def stereo_image(sums: np.ndarray, n: int, channels: int) -> tuple[float | None, float | None]:
    """(stereo_width, phase_correlation) from sum L, sum R, sum L^2, sum R^2, sum LR.

    Width = E_side / (E_mid + E_side) with mid = (L+R)/2, side = (L-R)/2; mono -> 0
    and correlation 1 (FINGERPRINT.md #24-25); silence -> None.
    """
    sl, sr, sll, srr, slr = sums
    if n == 0 or sll + srr <= 0:
        return None, None
    if channels == 1:
        return 0.0, 1.0
    mid = (sll + srr + 2 * slr) / 4
    side = (sll + srr - 2 * slr) / 4
    width = side / (mid + side)
    var_l = sll - sl * sl / n
    var_r = srr - sr * sr / n
    if var_l <= 0 or var_r <= 0:
        return width, None
    correlation = (slr - sl * sr / n) / math.sqrt(var_l * var_r)
    return width, max(-1.0, min(1.0, correlation))
