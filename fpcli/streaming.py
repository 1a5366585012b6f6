"""The 13-dimension streaming analyzer: O(1) memory in track length, a confidence per
value, a partial fingerprint at any point and the final one at the end.

It shares the per-frame maths with the batch reference (``FeaturePipeline``) and the
exact reductions (``FrameTally``). Where the batch analyzer needs a whole series (the
medians of #15-17, the percentiles of #21, the relative gate of #22), it uses
fixed-resolution histograms; their bin widths bound the difference:

===================== =================================== ==========================
dim                   histogram                           bound vs batch
===================== =================================== ==========================
spectral_centroid_hz  log10, 1/100 octave, 1 Hz-50 kHz   0.7 % relative
spectral_rolloff_hz   one bin per FFT bin                 one FFT bin (sr / n_fft)
spectral_flatness     log10, 0.002 decade bins            0.5 % relative
loudness_range_lu     0.01 LU bins                        0.02 LU
loudness_std_lu       0.01 LU bins with sums              blocks in one 0.01 LU bin
===================== =================================== ==========================
"""

from __future__ import annotations

import math

import numpy as np

from fpcli.blas import one_blas_thread
from fpcli.dsp.loudness import (
    ABSOLUTE_GATE_LUFS,
    LRA_RELATIVE_GATE_LU,
    RELATIVE_GATE_LU,
    energy_to_lufs,
)
from fpcli.dsp.pipeline import FeaturePipeline, FrameStep, checked_format
from fpcli.dsp.stats import Histogram
from fpcli.dsp.tally import FrameTally, silent_reason
from fpcli.dsp.timbre import GaussianSums, Timbre
from fpcli.errors import ParameterError
from fpcli.fingerprint import STREAMING_DIMS, Fingerprint, within_domains
from fpcli.params import AnalysisParams, as_number, checked_params

# The loudness histograms' range (LUFS) and bin. Float files may hold audio above full
# scale: a mix left unnormalised at +30 dBFS reads about +30 LUFS, and a top of +10 put
# all of it in the last bin, out of its own relative gate.
LOUDNESS_LOW, LOUDNESS_HIGH, LOUDNESS_BIN = -80.0, 40.0, 0.01
ABOVE_TOP_REASON = f"louder than {LOUDNESS_HIGH:+.0f} LUFS, the top of the meter's range"

# The centroid histogram: 1,230 log bins from 10 Hz to 50 kHz (1/100 octave), with
# 332 more of the same width below, down to 1.0 Hz. A frame of DC alone has its
# centroid at a third of the first FFT bin (7.2 Hz at 44.1 kHz, 1.3 Hz at 8 kHz with
# 2048 points): a floor of 10 Hz put a DC-heavy track's median 40 % above the batch one.
CENTROID_HIGH_HZ, _CENTROID_BINS_ABOVE_10_HZ, _CENTROID_BINS_BELOW = 50000.0, 1230, 332
CENTROID_LOW_HZ = 10.0 / (CENTROID_HIGH_HZ / 10.0) ** (_CENTROID_BINS_BELOW / _CENTROID_BINS_ABOVE_10_HZ)
CENTROID_BINS = _CENTROID_BINS_ABOVE_10_HZ + _CENTROID_BINS_BELOW

# The confidence model (docs/fingerprint.md, "Confidence"). A confidence c means: the
# probability that the value shown now is within the dim's validation tolerance
# (fpcli.validate.DEFAULT_TOLERANCES) of the value this analyzer gives for the whole
# track. Per dim, c = sigmoid(w0 + w1 log(1 + evidence / scale) + w2 share_read
# + w3 log2(seconds heard) [+ w4 tempo margin]), with the weights fitted by logistic
# regression on streams cut at 5-60 s (benchmarks/bench_confidence.py, fit half of
# the corpus; benchmarks/confidence.md). Evidence weights are >= 0, so more evidence
# never lowers a confidence. Evidence is in the unit given, normalised by the scale.
EVIDENCE_SCALES = {
    "tempo_bpm": ("onset seconds", 60.0),
    "rhythm_stability": ("onset seconds", 60.0),
    "transient_density": ("seconds", 30.0),
    "silence_ratio": ("seconds", 30.0),
    "spectral_centroid_hz": ("non-silent seconds", 10.0),
    "spectral_rolloff_hz": ("non-silent seconds", 10.0),
    "spectral_flatness": ("non-silent seconds", 10.0),
    "harmonic_ratio": ("non-silent seconds", 10.0),
    "pitch_stability": ("voiced pairs", 300.0),
    "key_clarity": ("non-silent seconds", 20.0),
    "loudness_range_lu": ("gated short-term blocks", 300.0),
    "loudness_std_lu": ("gated momentary blocks", 200.0),
    "peak_consistency": ("non-silent 1 s windows", 20.0),
}
# Fitted weights (w0, w1 evidence, w2 share read, w3 log2 seconds, w4 tempo margin).
# Fitted on 81 whole tracks (median 231 s) and 156 clips of at most 31 s, none of the library the
# table is reported on (benchmarks/confidence.md): fitted on the clips alone, seconds
# heard stood for the share of a 30 s track, and on whole tracks the confidences said
# 0.75 where 16 % of the values were within tolerance.
CONFIDENCE_WEIGHTS: dict[str, tuple[float, float, float, float, float]] = {
    "tempo_bpm": (-0.262, 0.083, 2.471, 0.0, 6.308),
    "rhythm_stability": (-1.893, 0.0, 3.821, 0.0, 0.338),
    "transient_density": (-2.488, 0.0, 3.653, 0.0, 0.0),
    "silence_ratio": (0.195, 0.0, 4.029, 0.0, 0.0),
    "spectral_centroid_hz": (-3.034, 0.0, 3.446, 0.0, 0.0),
    "spectral_rolloff_hz": (-1.821, 0.0, 2.495, 0.0, 0.0),
    "spectral_flatness": (-2.001, 0.0, 3.647, 0.0, 0.0),
    "harmonic_ratio": (-1.017, 0.0, 5.04, 0.0, 0.0),
    "pitch_stability": (-1.107, 1.186, 2.722, 0.0, 0.0),
    "key_clarity": (-1.965, 0.0, 2.138, 0.0, 0.0),
    "loudness_range_lu": (-3.643, 0.0, 4.614, 0.0, 0.0),
    "loudness_std_lu": (-2.079, 0.0, 3.786, 0.0, 0.0),
    "peak_consistency": (-1.462, 0.0, 3.931, 0.0, 0.0),
}
TYPICAL_TRACK_S = 240.0   # share-read stand-in when the length is unknown: seconds / (seconds + 240)
UNFINISHED_CAP = 0.99     # confidence reaches 1.0 only at the end of the track


def evidence_features(name: str, evidence: float, share: float, seconds: float,
                      margin: float = 0.0) -> tuple[float, float, float, float]:
    """The model's inputs for one dim: (log(1 + evidence / scale), share read in [0, 1],
    log2(seconds heard, at least 1), tempo margin clipped to [0, 4] (0 for other dims))."""
    scale = EVIDENCE_SCALES[name][1]
    return (math.log1p(max(evidence, 0.0) / scale), min(max(share, 0.0), 1.0), math.log2(max(seconds, 1.0)),
            min(max(margin, 0.0), 4.0) if math.isfinite(margin) else 4.0)


def confidence_from_evidence(name: str, evidence: float, share: float | None, seconds: float,
                             margin: float = 0.0) -> float:
    """Calibrated probability (0..0.99) that an unfinished value is within tolerance of
    the full-track value; ``share`` None when the track length is unknown."""
    if share is None:
        share = seconds / (seconds + TYPICAL_TRACK_S)
    w = CONFIDENCE_WEIGHTS[name]
    x = evidence_features(name, evidence, share, seconds, margin)
    logit = w[0] + sum(wi * xi for wi, xi in zip(w[1:], x, strict=True))
    return round(min(1.0 / (1.0 + math.exp(-min(max(logit, -50.0), 50.0))), UNFINISHED_CAP), 4)


def checked_expected_frames(frames: float | None) -> float | None:
    """``frames`` (the track's expected length in frames; None or 0: unknown), or a
    ParameterError: a NaN length made every confidence NaN."""
    if frames is None:
        return None
    number = as_number(frames)
    if number is None or not 0 <= number < math.inf:
        raise ParameterError(f"{frames!r}: a number of frames of at least 0 (or None: unknown)",
                             "expected_frames")
    return number or None


class StreamingAnalyzer:
    """Feed blocks with ``push``; ``snapshot()`` any time; ``finish()`` at the end.

    ``expected_frames`` (the header's length) lets the confidence use the share of
    the track already read; without it that share is estimated as seconds / (seconds
    + 240), a typical track's. Ten dims' confidence rests on that share alone (the
    fitted ``CONFIDENCE_WEIGHTS`` weigh evidence only for tempo and pitch stability,
    and the tempo margin for tempo and rhythm stability). ``push``
    and ``finish`` run with one BLAS thread (fpcli/blas.py). Blocks of ~100,000 frames
    or more keep the per-block overhead small (fpcli.audio.DEFAULT_BLOCK_FRAMES).
    """

    def __init__(self, samplerate: int, channels: int, params: AnalysisParams | None = None, *,
                 expected_frames: int | None = None) -> None:
        samplerate, channels = checked_format(samplerate, channels)
        self.params = checked_params(params)
        self.pipeline = FeaturePipeline(samplerate, channels, self.params, signal_sums=False)
        self.tally = FrameTally()
        self.timbre = GaussianSums()
        self.expected_frames = checked_expected_frames(expected_frames)
        self._finished = False
        self._margin = (-1, 0.0)  # (onset frames, tempo margin) of the last confidence
        frames = self.pipeline.params    # n_fft and hop at this rate
        nyquist_bins = frames.n_fft // 2 + 1
        bin_hz = samplerate / frames.n_fft
        self._centroid = Histogram(CENTROID_LOW_HZ, CENTROID_HIGH_HZ, CENTROID_BINS, log=True)
        self._rolloff = Histogram(-bin_hz / 2, (nyquist_bins - 0.5) * bin_hz, nyquist_bins)
        self._flatness = Histogram(1e-8, 1.0, 4000, log=True)
        n_loudness_bins = round((LOUDNESS_HIGH - LOUDNESS_LOW) / LOUDNESS_BIN)
        self._momentary = Histogram(LOUDNESS_LOW, LOUDNESS_HIGH, n_loudness_bins,
                                    sums=("energy", "loudness", "loudness_sq"))
        self._short_term = Histogram(LOUDNESS_LOW, LOUDNESS_HIGH, n_loudness_bins, sums=("energy",))
        # 3 s blocks above LOUDNESS_HIGH: the histogram counts them in its top bin, where
        # a percentile landing on them would be a made-up number.
        self._short_term_above_top = 0

    def push(self, block: np.ndarray) -> None:
        """Add a (frames, channels) float block (1-D for mono); an empty one changes
        nothing, one after ``finish`` is refused (``FeaturePipeline.push``)."""
        with self.pipeline.alone(), one_blas_thread():
            self._fold(self.pipeline.push(block))

    def finish(self) -> Fingerprint:
        if not self._finished:
            with self.pipeline.alone(), one_blas_thread():
                self._fold(self.pipeline.finish())
            self._finished = True
        return self.snapshot()

    def _fold(self, step: FrameStep) -> None:
        self.tally.add(step)
        self.timbre.add(step.mfcc)
        audible = ~step.silent
        centroid = step.centroid_hz[audible]
        self._centroid.add(centroid[np.isfinite(centroid)])
        self._rolloff.add(step.rolloff_hz[audible])
        self._flatness.add(step.flatness[audible])
        if step.momentary.size:
            loud = energy_to_lufs(step.momentary)
            self._momentary.add(loud, energy=step.momentary, loudness=loud, loudness_sq=loud * loud)
        if step.short_term.size:
            short_term = energy_to_lufs(step.short_term)
            self._short_term.add(short_term, energy=step.short_term)
            self._short_term_above_top += int(np.count_nonzero(short_term >= LOUDNESS_HIGH))

    def snapshot(self) -> Fingerprint:
        """The fingerprint of everything pushed so far (final after ``finish``)."""
        values, reasons = self.tally.values(self.pipeline)
        for name, (value, reason) in self._histogram_values().items():
            values[name] = value if value is not None and math.isfinite(value) else None
            if values[name] is None:
                reasons[name] = reason
        values = within_domains({name: values[name] for name in STREAMING_DIMS})
        reasons = {name: reasons[name] for name in STREAMING_DIMS if values[name] is None}
        return Fingerprint(
            kind="streaming",
            values=values,
            reasons=reasons,
            params_key=self.params.key(),
            seconds=self.pipeline.samples / self.pipeline.samplerate,
            complete=self._finished,
            confidence={name: self.confidence_of(name, values[name]) for name in STREAMING_DIMS},
            chunks=self.pipeline.chunks,
            timbre=Timbre.of(self.timbre.gaussian(), self.timbre.count),
            dupe_key=self.pipeline.signature.key(),
        )

    def _histogram_values(self) -> dict[str, tuple[float | None, str]]:
        reason = silent_reason(self.pipeline, self.tally.frames)
        too_short = "track is shorter than one 400 ms gating block"
        return {
            "spectral_centroid_hz": (self._centroid.quantile(0.5), reason),
            "spectral_rolloff_hz": (self._rolloff.quantile(0.5), reason),
            "spectral_flatness": (self._flatness.quantile(0.5), reason),
            "loudness_std_lu": (self._gated_loudness_std(), self._loudness_std_reason(too_short)),
            "loudness_range_lu": self._loudness_range(),
        }

    def _gate_masks(self, histogram: Histogram, relative_lu: float) -> np.ndarray | None:
        """Bins passing the absolute gate and the relative gate (by bin centre)."""
        lower = histogram.bin_lower_edges()
        absolute = lower >= ABSOLUTE_GATE_LUFS
        energy = histogram.sums["energy"][absolute].sum()
        count = histogram.counts[absolute].sum()
        if count == 0:
            return None
        relative_gate = energy_to_lufs(energy / count) + relative_lu
        return absolute & (lower + histogram.width / 2 > relative_gate)

    def _loudness_std_reason(self, too_short: str) -> str:
        """Why the loudness spread is null, when it is."""
        if self._momentary.total == 0:
            return too_short
        if self._gate_masks(self._momentary, RELATIVE_GATE_LU) is None:
            return "every 400 ms block is below the -70 LUFS absolute gate"
        return ABOVE_TOP_REASON

    def _gated_loudness_std(self) -> float:
        mask = self._gate_masks(self._momentary, RELATIVE_GATE_LU)
        if mask is None:
            return math.nan
        h = self._momentary
        n = h.counts[mask].sum()
        if n == 0:  # every block above the histogram's top: its relative gate passes no bin
            return math.nan
        mean = h.sums["loudness"][mask].sum() / n
        variance = h.sums["loudness_sq"][mask].sum() / n - mean * mean
        return math.sqrt(max(variance, 0.0))

    def _loudness_range(self) -> tuple[float, str]:
        """The loudness range and why it is null (NaN) when it is. 3 s blocks above the
        histogram's top all sit in its top bin: a 95th percentile there (or a relative
        gate above the top, which passes no bin) would be a number the audio does not
        have, so the range is null for that reason instead."""
        histogram = self._short_term
        mask = self._gate_masks(histogram, LRA_RELATIVE_GATE_LU)
        too_few = "fewer than two 3 s short-term blocks pass the gates"
        if mask is None:
            return math.nan, too_few
        above_top = self._short_term_above_top
        if histogram.counts[mask].sum() < 2:
            # With two blocks or more above the top, the bins passed none because the gate
            # rose above the top: how many the true gate passes is past knowing.
            return math.nan, ABOVE_TOP_REASON if above_top >= 2 else too_few
        high = histogram.quantile(0.95, mask=mask)
        if above_top and high >= LOUDNESS_HIGH - histogram.width:
            return math.nan, ABOVE_TOP_REASON
        return high - histogram.quantile(0.10, mask=mask), too_few

    def _evidence(self, name: str) -> float:
        unit, _ = EVIDENCE_SCALES[name]
        seconds_per_frame = self.pipeline.params.hop / self.pipeline.samplerate
        t = self.tally
        if unit == "onset seconds":
            return self.pipeline.autocorrelation.count * seconds_per_frame
        if unit == "seconds":
            return self.pipeline.samples / self.pipeline.samplerate
        if unit == "non-silent seconds":
            return t.voiced_frames * seconds_per_frame
        if unit == "voiced pairs":
            return t.voiced_pairs
        if unit == "gated short-term blocks":
            return self._short_term.total
        if unit == "gated momentary blocks":
            return self._momentary.total
        return t.window_peaks.count

    def confidence_of(self, name: str, value: float | None) -> float:
        """Probability that ``value`` is within its validation tolerance of the final
        value, in [0, 1] (see CONFIDENCE_WEIGHTS): 1.0 once the track has been read to
        its end; 0 for a value that cannot be computed (yet or at all).
        """
        if value is None:
            return 0.0
        if self._finished:
            return 1.0
        seconds = self.pipeline.samples / self.pipeline.samplerate
        share = min(self.pipeline.samples / self.expected_frames, 1.0) if self.expected_frames else None
        margin = self._tempo_margin() if name in ("tempo_bpm", "rhythm_stability") else 0.0
        return confidence_from_evidence(name, self._evidence(name), share, seconds, margin)

    def _tempo_margin(self) -> float:
        """Score margin of the current tempo over the best other tempo (log units),
        computed once per amount of audio heard."""
        count = self.pipeline.autocorrelation.count
        if self._margin[0] != count:
            estimate = self.pipeline.tempo()
            self._margin = (count, estimate.margin)
        return self._margin[1]
