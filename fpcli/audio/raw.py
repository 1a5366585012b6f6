"""Raw PCM from a pipe (``fpcli analyze - --raw-format s16le --rate 44100 --channels 2``):
interleaved little-endian samples, no header, read until the stream ends; and raw CD
audio in a file (the image of a BIN/CUE pair, ``CdImageSource``)."""

from __future__ import annotations

import os
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
        self._left_over = 0   # bytes of a frame the stream ended inside (dropped)

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks of at most ``block_frames``: a full block when
        the pipe has one, else what has arrived (a live source must not wait for 1.5 s
        of audio before its first snapshot); a trailing partial frame is dropped, and
        ``truncation`` says so."""
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
        self._left_over = len(pending)

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
        """Why the stream looks cut: it ended inside a frame (its bytes were called "ok",
        the leftover dropped without a word; a wrong channel count or format shows so too)."""
        if not self._left_over:
            return None
        frame_bytes = self._dtype.itemsize * self.info.channels
        return (f"the stream ended inside a frame: {self._left_over} of its {frame_bytes} bytes dropped (cut, or "
                "read as another sample format or channel count than the stream's)")

    def close(self) -> None:
        pass


CD_RATE, CD_CHANNELS, CD_FRAME_BYTES = 44100, 2, 4   # Red Book audio: 16-bit stereo at 44.1 kHz
CD_SECTOR_BYTES = 2352                                # 1/75 s


class CdImageSource:
    """Raw CD audio in a file (``FILE "album.bin" BINARY`` in a CUE sheet; MOTOROLA is
    big-endian): its length is its size, and a read starts at any frame; see
    ``base.Source``. ``byte_order``: numpy's "<" or ">"."""

    def __init__(self, path: str, byte_order: str) -> None:
        if byte_order not in ("<", ">"):
            raise ValueError(f"byte order {byte_order!r}: '<' or '>'")
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close(), as the other sources
        self._size = os.fstat(self._file.fileno()).st_size
        self._dtype = np.dtype(f"{byte_order}i2")
        frames = self._size // CD_FRAME_BYTES
        self.info = AudioInfo(path, "RAW", "PCM_16", CD_RATE, CD_CHANNELS, frames)
        self.expected_frames = frames
        self.length_exact = True

    def seek(self, frame: int) -> bool:
        """Start reading at ``frame``: exact, the samples have a fixed size."""
        self._file.seek(frame * CD_FRAME_BYTES)
        return True

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, 2) blocks of at most ``block_frames`` to the file's end; a
        trailing partial frame is dropped (``truncation`` says the image was cut)."""
        while True:
            data = self._file.read(block_frames * CD_FRAME_BYTES)
            usable = len(data) - len(data) % CD_FRAME_BYTES
            if usable:
                samples = np.frombuffer(data[:usable], dtype=self._dtype).reshape(-1, CD_CHANNELS)
                yield samples.astype(np.float32) * np.float32(1.0 / 2**15)
            if len(data) < block_frames * CD_FRAME_BYTES:
                return

    def truncation(self, seconds_read: float) -> str | None:
        """Why the image looks cut: CD images hold whole sectors."""
        if self._size % CD_SECTOR_BYTES:
            return (f"the image ends inside a CD sector ({self._size} bytes are not a whole number of "
                    f"{CD_SECTOR_BYTES}-byte sectors): it was cut")
        return None

    def close(self) -> None:
        self._file.close()
