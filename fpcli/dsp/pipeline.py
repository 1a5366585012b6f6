"""The shared front end: sample blocks in, per-frame feature series out.

Both analyzers push the same blocks through one ``FeaturePipeline``; the batch
analyzer keeps the series it returns, the streaming analyzer folds them into
fixed-size accumulators. Every stateful step carries its state across blocks, so the
output does not depend on how the audio was chunked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from fpcli.audio import MAX_FLOAT_PEAK, mixdown
from fpcli.dsp.dupes import SignatureBuilder
from fpcli.dsp.framing import Framer
from fpcli.dsp.hpss import HarmonicRatio
from fpcli.dsp.loudness import LoudnessMeter
from fpcli.dsp.onset import (
    TEMPO_BANDS_HZ,
    OnsetAutocorrelation,
    OnsetEnvelope,
    OnsetHistory,
    OnsetPicker,
    mel_centres_hz,
)
from fpcli.dsp.pitch import PitchTracker, stable_pairs
from fpcli.dsp.spectral import SpectralTools, spectral_centroid, spectral_flatness, spectral_rolloff
from fpcli.dsp.tempo import RECENT_S, TempoEstimate, autocorrelation_lags, estimate_tempo
from fpcli.dsp.timbre import N_MFCC, dct_matrix, mfcc
from fpcli.errors import ParameterError
from fpcli.params import MAX_CHANNELS, AnalysisParams, as_number, checked_rate

PEAK_WINDOW_S = 1.0          # peak_consistency windows (#23)
SILENT_PEAK_DB = -60.0       # windows whose peak is below this are ignored (#23)


def checked_format(samplerate: int, channels: int) -> tuple[int, int]:
    """(rate, channels) as Python ints, or a ParameterError unless the rate is an
    integer the analyzers support (8-768 kHz, as for files) and the channel count an
    integer from 1 to MAX_CHANNELS. A numpy integer passes, as a Python int: kept as
    given, it made the seconds heard a numpy float and a saved record unwritable."""
    rate = checked_rate(samplerate)
    # bool is an int to Python: True would pass as one channel, then break the framing.
    if not 1 <= (as_number(channels, int) or 0) <= MAX_CHANNELS:
        raise ParameterError(f"{channels!r}: a channel count from 1 to {MAX_CHANNELS}", "channels")
    return rate, int(channels)


def checked_block(block: Any, channels: int) -> np.ndarray:
    """``block`` as (frames, channels) float32, or a ParameterError saying what is
    wrong: samples must be floats scaled to +-1 (integer PCM would be read as a
    deafening 30,000 times full scale), in a 2-D array of the analyzer's channel
    count (a 1-D array for one channel), finite (one NaN, once binned, stopped the
    analyzer with a numpy error far from its cause) and within ``MAX_FLOAT_PEAK``, the
    limit the file reader applies (beyond it the loudness sums overflow float32 and
    every loudness value is lost). The test is the block's minimum and maximum (NaN
    if any sample is NaN): 47 us for a 3 s stereo block, 0.4 % of its analysis."""
    array = block_array(block)
    if array.dtype.kind != "f":
        # The hint for integers only: complex, bool or text samples were told to divide by 32768.
        hint = "integer PCM: divide by its full scale, e.g. int16 by 32768" if array.dtype.kind in "iu" else \
            "audio samples are real numbers"
        raise ParameterError(f"samples must be floats scaled to +-1, not {array.dtype} ({hint})", "block")
    if array.ndim == 1 and channels == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != channels:
        raise ParameterError(f"a block of shape {array.shape}: expected (frames, {channels})", "block")
    if array.size:   # before the cast: a float64 1e300 became inf in float32, "not finite"
        _check_scale(float(array.min()), float(array.max()))
    return array.astype(np.float32, copy=False)


def block_array(block: Any) -> np.ndarray:
    """``block`` as a numpy array; a ParameterError for rows of different lengths (numpy's
    "inhomogeneous shape" ValueError reached the caller from deep inside it)."""
    try:
        return np.asarray(block)
    except ValueError:
        raise ParameterError("a block whose rows differ in length: expected (frames, channels) samples",
                             "block") from None


def _check_scale(low: float, high: float) -> None:
    """ParameterError unless a block's extremes are finite and within ``MAX_FLOAT_PEAK``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ParameterError("the block holds samples that are not finite (NaN or infinity): replace them "
                             "first (e.g. np.nan_to_num)", "block")
    peak = max(high, -low)
    if peak > MAX_FLOAT_PEAK:
        raise ParameterError(f"samples up to {peak!r}, above the limit of {MAX_FLOAT_PEAK!r}: not audio scaled "
                             "to +-1", "block")


@dataclasses.dataclass
class FrameStep:
    """What one ``push`` (or ``finish``) produced. Per-frame arrays have one row per new
    STFT frame; the other fields are sums or counts over the frames completed now."""

    silent: np.ndarray          # (n,) bool, frame RMS below the silence threshold
    centroid_hz: np.ndarray     # (n,) float64 (NaN for an all-zero frame)
    rolloff_hz: np.ndarray      # (n,) float64
    flatness: np.ndarray        # (n,) float64
    chroma_sum: np.ndarray      # (12,) sum over non-silent frames of sum-normalised chroma
    chroma_frames: int          # frames in chroma_sum
    band_power: np.ndarray      # (7,) float64 power summed over frames per band
    onsets: int                 # onsets confirmed now (delayed by the look-ahead)
    voiced_pairs: int           # consecutive voiced frame pairs
    stable_pairs: int           # ... of which within 50 cents
    harmonic_energy: float      # HPSS harmonic mel energy of frames confirmed now
    total_energy: float         # their total mel energy
    momentary: np.ndarray       # (k,) 400 ms block energies (channel-weighted mean square)
    short_term: np.ndarray      # (j,) 3 s block energies
    window_peaks: np.ndarray    # (p,) sample peak of each complete 1 s window
    mfcc: np.ndarray            # (a, 13) float64 MFCCs of the non-silent frames (timbre)


class FeaturePipeline:
    """Per-frame features of one stream of (frames, channels) float32 blocks, pushed
    from one thread at a time: a push entered while another runs is a ParameterError
    (two threads pushing into one analyzer interleaved their updates, and gave wrong
    loudness values without a word)."""

    def __init__(self, samplerate: int, channels: int, params: AnalysisParams, *, signal_sums: bool = True) -> None:
        """``signal_sums``: keep the whole-signal sums of the batch-only dims (``peak``,
        ``sum_squares``, ``stereo_sums``); the streaming analyzer does without them,
        which saves about 5 % of its time (two passes over every sample)."""
        samplerate, channels = checked_format(samplerate, channels)
        params = params.at_rate(samplerate)   # frames of the same duration at every rate
        self.samplerate = samplerate
        self.signal_sums = signal_sums
        self.channels = channels
        self.params = params
        self.frame_rate = samplerate / params.hop
        self.tools = SpectralTools.create(samplerate, params)
        self._framer = Framer(params.n_fft, params.hop)
        self._silence_power = 10 ** (params.silence_db / 10)
        self._onset_envelope = OnsetEnvelope(self.tools.full_scale_power,
                                             mel_centres_hz(self.tools.mel_matrix, self.tools.freqs))
        self._onset_picker = OnsetPicker(self.frame_rate, params)
        # Columns: all mel bands, then the low / mid / high tempo bands (dsp/tempo.py).
        self.autocorrelation = OnsetAutocorrelation(autocorrelation_lags(self.frame_rate, params),
                                                    channels=1 + len(TEMPO_BANDS_HZ))
        self._recent_onsets = OnsetHistory(math.ceil(RECENT_S * self.frame_rate), len(TEMPO_BANDS_HZ))
        self._tempo: tuple[int, TempoEstimate] | None = None   # (frames heard, their tempo)
        self._pitch = PitchTracker(samplerate, self.tools.window, params)
        self._last_f0 = np.nan
        self._hpss = HarmonicRatio(params.n_mel_bands, params.hpss_time_radius, params.hpss_freq_radius)
        self._loudness = LoudnessMeter(samplerate, channels)
        self._dct = dct_matrix(params.n_mel_bands)
        # The duplicate key (first minute, fixed-size table): shared, computed once per stream.
        self.signature = SignatureBuilder(samplerate, params.n_fft, params.hop, self.tools.freqs,
                                          self.tools.full_scale_power)
        self._peak_window = max(1, round(PEAK_WINDOW_S * samplerate))
        self._peak_partial = 0.0
        self._peak_filled = 0
        # The loudest 400 ms block's channel-weighted mean square (the loudness meter's
        # energy): what the channels carry when the mono mix is silent (``silent_reason``).
        self.loudest_block = 0.0
        # Whole-signal sums for the batch-only dims (#9, #24, #25), float64.
        self.samples = 0
        self.chunks = 0              # blocks pushed that held audio
        self.finished = False
        self._in_use = threading.RLock()   # held by the push or finish that runs (and the analyzer's around it)
        self.peak = 0.0
        self.sum_squares = 0.0      # over all samples of all channels
        self.stereo_sums = np.zeros(5)  # sum L, sum R, sum L^2, sum R^2, sum L*R

    def push(self, block: np.ndarray) -> FrameStep:
        """Feed a (frames, channels) float32 block; return the features completed now.
        An empty block changes nothing (and is no chunk); a block after ``finish`` is
        a ParameterError: the look-ahead stages were flushed, so more audio would be
        analysed as if after a gap."""
        with self.alone():
            if self.finished:
                raise ParameterError("the analyzer was finished: push() after finish() (start a new analyzer for "
                                     "more audio)")
            return self._push(checked_block(block, self.channels))

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its lock (a lock cannot be), which an unpickled copy makes anew."""
        state = self.__dict__.copy()
        del state["_in_use"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._in_use = threading.RLock()

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        """Hold the pipeline for this thread (an analyzer's push holds it while it folds
        the step in too); ParameterError when another thread holds it."""
        if not self._in_use.acquire(blocking=False):
            raise ParameterError("push() or finish() is running in another thread: an analyzer takes one "
                                 "stream, from one thread at a time (use one analyzer per thread)")
        try:
            yield
        finally:
            self._in_use.release()

    def _push(self, block: np.ndarray) -> FrameStep:
        if not len(block):  # nothing to add (and the peak's max() has no empty answer)
            return _empty_step()
        self.chunks += 1
        self._sample_sums(block)
        frames, buffer = self._framer.push(mixdown(block))
        step = self._frame_features(frames, buffer)
        step.momentary, step.short_term = self._loudness.push(block)
        if step.momentary.size:
            self.loudest_block = max(self.loudest_block, float(step.momentary.max()))
        step.window_peaks = self._window_peaks(block)
        return step

    def finish(self) -> FrameStep:
        """Flush the look-ahead stages at the end of the stream."""
        with self.alone():
            self.finished = True
            step = _empty_step()
            step.onsets = self._onset_picker.finish()
            step.harmonic_energy, step.total_energy = self._hpss.finish()
        return step

    def tempo(self) -> TempoEstimate:
        """The tempo of what was pushed so far: the onset autocorrelation's, its level
        checked by beats tracked over the last RECENT_S seconds (``fpcli.dsp.tempo``).
        Kept until more frames come: the values and the confidence both ask for it,
        and a level check tracks beats for 10-60 ms."""
        frames = self.autocorrelation.count
        if self._tempo is None or self._tempo[0] != frames:
            self._tempo = (frames, estimate_tempo(self.autocorrelation.normalized(), self.frame_rate, self.params,
                                                  self._recent_onsets.recent()))
        return self._tempo[1]

    def _frame_features(self, frames: np.ndarray, buffer: np.ndarray) -> FrameStep:
        n = len(frames)
        step = _empty_step()
        if n == 0:
            return step
        silent = self._frame_mean_square(buffer, n) < self._silence_power
        tools = self.tools
        power, magnitude = tools.spectrum(frames)
        mel, chroma, bands = tools.project(power)
        step.silent = silent
        audible = slice(0, tools.centroid_bins)    # nothing above CENTROID_MAX_HZ
        step.centroid_hz = spectral_centroid(magnitude[:, audible], tools.freqs[audible])
        step.rolloff_hz = spectral_rolloff(power, tools.freqs, self.params.rolloff_fraction)
        band = slice(1, tools.flatness_bins)    # DC excluded, and nothing above FLATNESS_MAX_HZ
        step.flatness = spectral_flatness(power[:, band], magnitude[:, band])
        step.band_power = bands.sum(axis=0, dtype=np.float64)
        chroma = chroma[~silent]
        totals = chroma.sum(axis=1, keepdims=True, dtype=np.float64)
        keep = totals[:, 0] > 0
        step.chroma_sum = (chroma[keep] / totals[keep]).sum(axis=0)
        step.chroma_frames = int(keep.sum())
        envelope = self._onset_envelope.push(mel)
        self.autocorrelation.push(envelope)
        self._recent_onsets.push(envelope[:, 1:])
        step.onsets = self._onset_picker.push(envelope[:, 0])
        f0 = self._pitch.push(power, ~silent)
        step.voiced_pairs, step.stable_pairs = stable_pairs(f0, self._last_f0)
        self._last_f0 = f0[-1]
        step.harmonic_energy, step.total_energy = self._hpss.push(mel)
        step.mfcc = mfcc(mel[~silent], self._dct, tools.full_scale_power)
        self.signature.push(power)
        return step

    def _frame_mean_square(self, buffer: np.ndarray, n: int) -> np.ndarray:
        """Mean square of each of the n frames at the start of ``buffer``, float64."""
        hop, size = self.params.hop, self.params.n_fft
        span = buffer[: (n - 1) * hop + size]
        if size % hop == 0:
            # Frames are whole numbers of hops: sum squares per hop, then add neighbours.
            per_hop = np.einsum("ij,ij->i", *(span.reshape(-1, hop),) * 2, dtype=np.float64)
            return np.convolve(per_hop, np.ones(size // hop), mode="valid") / size
        squares = span.astype(np.float64) ** 2
        cumulative = np.concatenate([[0.0], np.cumsum(squares)])
        starts = np.arange(n) * hop
        return (cumulative[starts + size] - cumulative[starts]) / size

    def _sample_sums(self, block: np.ndarray) -> None:
        self.samples += len(block)
        if not self.signal_sums:
            return
        self.peak = max(self.peak, float(block.max()), -float(block.min()))
        self.sum_squares += float(np.einsum("ij,ij->", block, block, dtype=np.float64))
        left = block[:, 0]
        right = block[:, 1] if block.shape[1] > 1 else left
        # Products summed in float64: np.dot of float32 sums in float32, and a DC offset
        # (var = sum L^2 - (sum L)^2 / n cancels most digits) made phase_correlation
        # depend on the block size (0.99970 in 64 Ki-frame blocks, 0.99994 exactly).
        self.stereo_sums += [left.sum(dtype=np.float64), right.sum(dtype=np.float64),
                             *(np.einsum("i,i->", a, b, dtype=np.float64) for a, b in
                               ((left, left), (right, right), (left, right)))]

    def _window_peaks(self, block: np.ndarray) -> np.ndarray:
        """Peaks of the 1 s windows completed by this block (all channels)."""
        peaks = []
        position = 0
        while position < len(block):
            take = min(self._peak_window - self._peak_filled, len(block) - position)
            part = block[position : position + take]
            self._peak_partial = max(self._peak_partial, float(part.max()), -float(part.min()))
            self._peak_filled += take
            position += take
            if self._peak_filled == self._peak_window:
                peaks.append(self._peak_partial)
                self._peak_partial, self._peak_filled = 0.0, 0
        return np.array(peaks)


def _empty_step() -> FrameStep:
    empty = np.zeros(0)
    return FrameStep(
        silent=np.zeros(0, dtype=bool), centroid_hz=empty, rolloff_hz=empty, flatness=empty,
        chroma_sum=np.zeros(12), chroma_frames=0, band_power=np.zeros(7), onsets=0,
        voiced_pairs=0, stable_pairs=0, harmonic_energy=0.0, total_energy=0.0,
        momentary=empty, short_term=empty, window_peaks=empty, mfcc=np.zeros((0, N_MFCC)),
    )
