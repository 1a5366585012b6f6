"""The tempo-only front end of ``FeaturePipeline``, for the tempo and confidence benchmarks.

It runs exactly the pipeline's tempo path (framing, STFT power, mel, the 4-column
onset envelope, the onset autocorrelation) and nothing else, so a corpus can be
re-scored by a new tempo estimator without re-running the whole analyzer. It keeps
the ring of recent envelopes fingerprint v6's level checks read (``recent_*`` beside
each autocorrelation); the quality benchmark (``benchmarks/quality/evaluate.py``)
runs the analyzers themselves.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np

from fpcli.audio import AudioReader, mixdown
from fpcli.dsp.framing import Framer
from fpcli.dsp.onset import TEMPO_BANDS_HZ, OnsetAutocorrelation, OnsetEnvelope, OnsetHistory, mel_centres_hz
from fpcli.dsp.spectral import SpectralTools
from fpcli.dsp.tempo import RECENT_S, autocorrelation_lags
from fpcli.params import AnalysisParams

CACHE_FORMAT = 2   # 2: the recent envelopes beside each autocorrelation (fingerprint v6)


class TempoFront:
    """Blocks (frames, channels) in; ``acf()`` the (lags, 4) normalised autocorrelation."""

    def __init__(self, samplerate: int, params: AnalysisParams | None = None) -> None:
        self.params = params or AnalysisParams()
        self.samplerate = samplerate
        self.frame_rate = samplerate / self.params.hop
        self.tools = SpectralTools.create(samplerate, self.params)
        self.framer = Framer(self.params.n_fft, self.params.hop)
        self.envelope = OnsetEnvelope(self.tools.full_scale_power,
                                      mel_centres_hz(self.tools.mel_matrix, self.tools.freqs))
        self.autocorrelation = OnsetAutocorrelation(autocorrelation_lags(self.frame_rate, self.params),
                                                    channels=1 + len(TEMPO_BANDS_HZ))
        self.recent = OnsetHistory(math.ceil(RECENT_S * self.frame_rate), len(TEMPO_BANDS_HZ))
        self.samples = 0

    def push(self, block: np.ndarray) -> None:
        self.samples += len(block)
        frames, _ = self.framer.push(mixdown(block))
        if len(frames):
            mel = self.tools.power(frames) @ self.tools.mel_matrix
            onsets = self.envelope.push(mel)
            self.autocorrelation.push(onsets)
            self.recent.push(onsets[:, 1:])

    def acf(self) -> np.ndarray:
        return self.autocorrelation.normalized()


def file_acfs(path: str | Path, checkpoints: tuple[float, ...] = (),
              params: AnalysisParams | None = None) -> dict[str, np.ndarray]:
    """ACFs of one file at each checkpoint (s) before its end, and of the whole file.

    Keys: ``"5"``, ``"10"``, ... and ``"full"``, each with its ``"recent_..."`` envelopes
    (the level checks' input); also ``"frame_rate"``, ``"seconds"`` and
    ``"onset_frames"`` (per checkpoint, then the whole file).
    """
    reader = AudioReader(str(path), block_frames=8192)
    front = TempoFront(reader.info.samplerate, params)
    rate = reader.info.samplerate
    marks = [int(round(s * rate)) for s in sorted(checkpoints)]
    out: dict[str, np.ndarray] = {}
    counts = []
    for block in reader:
        while len(block):
            stop = next((m for m in marks if m > front.samples), None)
            take = len(block) if stop is None else min(len(block), stop - front.samples)
            front.push(block[:take])
            block = block[take:]
            if stop is not None and front.samples == stop:
                out[f"{stop / rate:g}"] = front.acf()
                out[f"recent_{stop / rate:g}"] = front.recent.recent()
                counts.append(front.autocorrelation.count)
    out["full"] = front.acf()
    out["recent_full"] = front.recent.recent()
    out["frame_rate"] = np.array(front.frame_rate)
    out["seconds"] = np.array(front.samples / rate)
    out["onset_frames"] = np.array(counts + [front.autocorrelation.count])
    return out


def cached_acfs(path: str | Path, cache: Path | None, checkpoints: tuple[float, ...] = (),
                tag: str = "") -> dict[str, np.ndarray]:
    """``file_acfs`` with an .npz cache keyed by the path, its size and mtime."""
    if cache is None:
        return file_acfs(path, checkpoints)
    stat = Path(path).stat()
    digest = hashlib.sha256(repr((str(path), stat.st_size, int(stat.st_mtime), checkpoints, tag,
                                  CACHE_FORMAT)).encode())
    key = f"{Path(path).stem}-{digest.hexdigest()[:16]}"
    target = cache / f"{key}.npz"
    if target.exists():
        with np.load(target) as data:
            return dict(data)
    out = file_acfs(path, checkpoints)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, **out)
    return out


def bpm_of_lag(lag: float, frame_rate: float) -> float:
    return 60 * frame_rate / lag if lag > 0 else math.nan
