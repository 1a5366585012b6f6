"""Exact O(1)-memory reductions shared by both analyzers.

Dims whose whole-track statistic is a sum, a count, a mean or an autocorrelation are
reduced here, identically for batch and streaming: tempo, rhythm stability,
transient density, silence ratio, harmonic ratio, pitch stability, key clarity and
peak consistency.
"""

from __future__ import annotations

import math

import numpy as np

from fpcli.dsp.loudness import LOUDNESS_OFFSET
from fpcli.dsp.pipeline import SILENT_PEAK_DB, FeaturePipeline, FrameStep
from fpcli.dsp.spectral import key_clarity
from fpcli.dsp.stats import Welford
from fpcli.dsp.tempo import TempoEstimate
from fpcli.params import AnalysisParams

NO_FRAMES = "track is shorter than one analysis frame"
ALL_SILENT = "every frame is silent (below the silence threshold)"
MIX_CANCELS = ("every frame of the mono mix is silent though the channels are not: they cancel out "
               "(one channel polarity-inverted?)")
# A 400 ms block this loud (LUFS) while every frame of the mix is below -60 dBFS means
# the channels cancelled in the mix: 10 LU of margin over the frames' threshold.
CANCELLED_MIX_LUFS = -50.0


def silent_reason(pipeline: FeaturePipeline, frames: int) -> str:
    """Why the frame-based dims are null when no frame of the mono mix is audible: no
    frame at all, silence, or channels that cancel in the mix (a track at -23 LUFS
    with one channel inverted was called "every frame is silent")."""
    if frames == 0:
        return NO_FRAMES
    loudest = LOUDNESS_OFFSET + 10 * math.log10(pipeline.loudest_block) if pipeline.loudest_block > 0 else -math.inf
    return MIX_CANCELS if pipeline.channels > 1 and loudest > CANCELLED_MIX_LUFS else ALL_SILENT


class FrameTally:
    """Counts and sums over every ``FrameStep`` of one stream."""

    def __init__(self) -> None:
        self.frames = 0
        self.silent_frames = 0
        self.onsets = 0
        self.voiced_pairs = 0
        self.stable_pairs = 0
        self.harmonic_energy = 0.0
        self.total_energy = 0.0
        self.chroma_sum = np.zeros(12)
        self.chroma_frames = 0
        self.band_power = np.zeros(7)
        self.window_peaks = Welford()
        self.windows = 0

    def add(self, step: FrameStep) -> None:
        self.frames += len(step.silent)
        self.silent_frames += int(step.silent.sum())
        self.onsets += step.onsets
        self.voiced_pairs += step.voiced_pairs
        self.stable_pairs += step.stable_pairs
        self.harmonic_energy += step.harmonic_energy
        self.total_energy += step.total_energy
        self.chroma_sum += step.chroma_sum
        self.chroma_frames += step.chroma_frames
        self.band_power += step.band_power
        self.windows += len(step.window_peaks)
        self.window_peaks.add(step.window_peaks[step.window_peaks >= 10 ** (SILENT_PEAK_DB / 20)])

    @property
    def voiced_frames(self) -> int:
        return self.frames - self.silent_frames

    def values(self, pipeline: FeaturePipeline) -> tuple[dict[str, float | None], dict[str, str]]:
        """The eight shared dims, with a reason for each that is None."""
        values: dict[str, float | None] = {}
        reasons: dict[str, str] = {}

        def put(name: str, value: float, reason: str) -> None:
            ok = value is not None and math.isfinite(value)
            values[name] = float(value) if ok else None
            if not ok:
                reasons[name] = reason

        seconds = pipeline.samples / pipeline.samplerate
        no_frames = self.frames == 0
        tempo = pipeline.tempo()
        tempo_reason = NO_FRAMES if no_frames else "no periodicity in the onset envelope"
        if pipeline.autocorrelation.steady:
            tempo = TempoEstimate(math.nan, 0.0)   # no beat: no tempo, and no rhythm at all
        elif not self.onsets and not no_frames:
            # Nothing marks a beat: a steady tone with low partials, a held chord or a drone
            # beats against the hop, and its envelope's periodicity read as a confident
            # tempo (a 110 Hz sine: 143.6 BPM, rhythm stability 0.92).
            tempo = TempoEstimate(math.nan, 0.0)
            tempo_reason = "no onset heard: nothing marks a beat"
        put("tempo_bpm", tempo.bpm, tempo_reason)
        put("rhythm_stability", tempo.stability, tempo_reason)
        put("transient_density", self.onsets / seconds if not no_frames else math.nan, NO_FRAMES)
        put("silence_ratio", self.silent_frames / self.frames if not no_frames else math.nan, NO_FRAMES)
        sound_reason = silent_reason(pipeline, self.frames)
        audible = self.voiced_frames > 0
        # Fewer frames than the split's median in time: that median was mostly the zeros
        # padded at the ends, so one 50 ms sine read 0.0 (all "percussive").
        window = 2 * pipeline.params.hpss_time_radius + 1
        split = audible and self.total_energy > 0 and self.frames >= window
        short = f"track is shorter than the {window} frames ({window / pipeline.frame_rate:.2f} s) the " \
                "harmonic/percussive split needs"
        put("harmonic_ratio", self.harmonic_energy / self.total_energy if split else math.nan,
            short if audible and not no_frames and self.frames < window else sound_reason)
        put("pitch_stability", self.stable_pairs / self.voiced_pairs if self.voiced_pairs else math.nan,
            sound_reason if not audible else "no pair of consecutive voiced (pitched) frames")
        put("key_clarity", key_clarity(self.chroma_sum / self.chroma_frames) if self.chroma_frames else math.nan,
            sound_reason if not audible else _no_tonal_content(pipeline.params, pipeline.samplerate))
        peaks = self.window_peaks
        put("peak_consistency", 1.0 / (1.0 + peaks.std / peaks.mean) if peaks.count else math.nan,
            "no complete 1 s window" if self.windows == 0 else "every 1 s window is below -60 dBFS")
        return values, reasons


def _no_tonal_content(params: AnalysisParams, samplerate: int) -> str:
    """Why key_clarity is missing from audible frames: the chroma range in use (it named
    the default's 55 Hz-5 kHz whatever the range), or that the range lies above the
    file's Nyquist frequency, where no chroma can be measured."""
    nyquist = samplerate / 2
    if params.chroma_min_hz >= nyquist:
        return (f"the chroma range starts at {params.chroma_min_hz:g} Hz, at or above this rate's Nyquist "
                f"frequency ({nyquist:g} Hz)")
    return f"no tonal content between {params.chroma_min_hz:g} Hz and {min(params.chroma_max_hz, nyquist):g} Hz"
