"""Raw PCM from a pipe (``fpcli analyze - --raw-format s16le --rate 44100 --channels 2``):
interleaved little-endian samples, no header, read until the stream ends."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from fpcli.audio.base import AudioInfo, check_info

# name -> (numpy dtype of one sample, full scale: the value that maps to 1.0)
RAW_FORMATS: dict[str, tuple[str, float]] = {
    "s16le": ("<i2", 2.0**15), "s32le": ("<i4", 2.0**31), "f32le": ("<f4", 1.0), "f64le": ("<f8", 1.0),
    "u8": ("u1", 2.0**7),
}


MAX_READ_BYTES = 1 << 24


class RawSource:
    """Interleaved PCM of a known format, rate and channel count; see ``base.Source``."""

    def __init__(self, stream: BinaryIO, *, raw_format: str, samplerate: int, channels: int,
                 name: str = "-") -> None:
        if raw_format not in RAW_FORMATS:
            raise ValueError(f"raw format {raw_format!r}: one of {', '.join(RAW_FORMATS)}")
        self._stream = stream
        self._dtype, self._scale = np.dtype(RAW_FORMATS[raw_format][0]), RAW_FORMATS[raw_format][1]
        self.info = check_info(AudioInfo(name, "RAW", raw_format.upper(), samplerate, channels, 0))
        self.expected_frames = 0
        self.length_exact = False

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks of at most ``block_frames``: a full block when
        the pipe has one, else what has arrived (a live source must not wait for 1.5 s
        of audio before its first snapshot); a trailing partial frame is dropped."""
        frame_bytes = self._dtype.itemsize * self.info.channels
        # At most MAX_READ_BYTES a read: 131,072 frames of 100,000 channels asked for 26 GB.
        wanted = max(1, min(block_frames, MAX_READ_BYTES // frame_bytes)) * frame_bytes
        read = getattr(self._stream, "read1", self._stream.read)  # read1: what is there, waiting only for 1 byte
        pending = b""
        while True:
            chunk = read(wanted - len(pending))
            if not chunk:
                break
            pending += chunk
            usable = len(pending) - len(pending) % frame_bytes
            if usable:
                yield self._samples(pending[:usable])
                pending = pending[usable:]

    def _samples(self, data: bytes) -> np.ndarray:
        samples = np.frombuffer(data, dtype=self._dtype).reshape(-1, self.info.channels)
        if self._dtype.kind == "u":  # unsigned 8-bit: 128 is silence
            return ((samples.astype(np.float32) - 128.0) / self._scale).astype(np.float32)
        if self._dtype.kind == "f":
            # Float bytes may hold NaN (signalling ones raise "invalid" in any arithmetic)
            # or, as f64, values beyond float32: converted quietly, then counted and
            # judged by the reader like those of a float file.
            with np.errstate(invalid="ignore", over="ignore"):
                return samples.astype(np.float32)
        return (samples.astype(np.float32) / np.float32(self._scale)).astype(np.float32, copy=False)

    def truncation(self, seconds_read: float) -> str | None:
        return None

    def close(self) -> None:
        pass
