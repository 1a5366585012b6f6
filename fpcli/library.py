"""Analyse files: one decode feeding the streaming (and, on request, batch) analyzer.

Results are plain data (``TrackResult``); nothing here prints.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

from fpcli.audio import DEFAULT_BLOCK_FRAMES, AudioReader
from fpcli.batch import BatchAnalyzer
from fpcli.errors import AudioReadError
from fpcli.fingerprint import Fingerprint
from fpcli.params import FINGERPRINT_VERSION, AnalysisParams
from fpcli.streaming import StreamingAnalyzer


@dataclasses.dataclass(frozen=True)
class TrackResult:
    """The outcome of analysing one file: status ``ok``, ``partial`` or ``error``."""

    path: str
    status: str
    error: str | None = None
    error_type: str | None = None
    duration_s: float | None = None
    samplerate: int | None = None
    channels: int | None = None
    format: str | None = None
    subtype: str | None = None
    partial_reason: str | None = None
    streaming: Fingerprint | None = None
    batch: Fingerprint | None = None
    seconds_taken: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status == "error"

    def to_json(self) -> dict[str, Any]:
        """The JSON Lines record of ``fpcli analyze --json`` (README, "Output")."""
        out: dict[str, Any] = {
            "path": self.path,
            "status": self.status,
            "error": self.error,
            "duration_s": self.duration_s,
            "samplerate": self.samplerate,
            "channels": self.channels,
            "format": self.format,
            "subtype": self.subtype,
            "partial_reason": self.partial_reason,
            "fingerprint_version": FINGERPRINT_VERSION,
        }
        if self.streaming is not None:
            fp = self.streaming
            out["params_key"] = fp.params_key
            out["chunks"] = fp.chunks
            out["streaming"] = {name: {"value": value, "confidence": fp.confidence[name]}
                                for name, value in fp.values.items()}
            out["streaming_null_reasons"] = fp.reasons
        if self.batch is not None:
            out["batch"] = dict(self.batch.values)
            out["batch_null_reasons"] = self.batch.reasons
        return out


def analyze_file(path: str | os.PathLike, *, params: AnalysisParams | None = None, batch: bool = False,
                 block_frames: int = DEFAULT_BLOCK_FRAMES) -> TrackResult:
    """Decode ``path`` once, streaming every block into the 13D analyzer (and the 25D
    batch analyzer when ``batch``). Undecodable files give a result with status
    ``error``; this function does not raise for bad audio."""
    params = params or AnalysisParams()
    path = os.fspath(path)
    started = time.perf_counter()
    try:
        reader = AudioReader(path, block_frames=block_frames)
        info = reader.info
        streaming = StreamingAnalyzer(info.samplerate, info.channels, params,
                                      expected_frames=reader.expected_frames or None)
        reference = BatchAnalyzer(info.samplerate, info.channels, params) if batch else None
        for block in reader:
            streaming.push(block)
            if reference is not None:
                reference.push(block)
    except AudioReadError as exc:
        return TrackResult(path=path, status="error", error=str(exc), error_type=type(exc).__name__,
                           seconds_taken=time.perf_counter() - started)
    return TrackResult(
        path=path,
        status="partial" if reader.partial else "ok",
        duration_s=reader.frames_read / info.samplerate,
        samplerate=info.samplerate,
        channels=info.channels,
        format=info.format,
        subtype=info.subtype,
        partial_reason=reader.partial_reason,
        streaming=streaming.finish(),
        batch=reference.finish() if reference is not None else None,
        seconds_taken=time.perf_counter() - started,
    )
