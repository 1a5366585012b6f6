"""What every decoder back end shares: the header facts, the failure signal, the
sample-rate bounds the analyzers can work with."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from fpcli.errors import AudioReadError

# The analyzers need a few hundred Hz of spectrum and 46 ms frames: below 8 kHz the
# band edges fall outside the spectrum, and headers claiming 1 or 7 Hz are damage,
# not audio. Above 768 kHz (4 x 192 kHz) no recorded music exists; a larger value is
# a broken header whose STFT frames would cover microseconds.
MIN_SAMPLERATE = 8000
MAX_SAMPLERATE = 768000


@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What the header of a file says (``frames`` may be wrong for damaged files)."""

    path: str
    format: str
    subtype: str
    samplerate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.samplerate


class DecodeFailure(Exception):
    """A back end could not decode further; the message is the human reason.

    ``AudioReader`` turns it into ``AudioReadError`` (no audio yet) or ``partial``."""


class Source(Protocol):
    """One opened file of one back end.

    ``expected_frames`` is the length the file claims (for WAV the RIFF data chunk's,
    which libsndfile clamps in ``info.frames``). ``length_exact`` says whether that is
    a count the file states exactly (a WAV/FLAC frame count, an MP3 Xing frame count,
    an MP4 sample table) rather than an estimate from the bit rate; only an exact
    count can prove a file ``partial``."""

    info: AudioInfo
    expected_frames: int
    length_exact: bool

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks, n <= block_frames; raises ``DecodeFailure``."""
        ...

    def truncation(self, seconds_read: float) -> str | None:
        """After a complete read: a reason if the file's structure shows it was cut."""
        ...

    def close(self) -> None: ...


def check_info(info: AudioInfo) -> AudioInfo:
    """``info`` if the analyzers can work on it, else ``AudioReadError`` naming why."""
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioReadError(info.path, f"bad header: {info.samplerate} Hz, {info.channels} channels")
    if info.samplerate < MIN_SAMPLERATE:
        raise AudioReadError(info.path, f"sample rate {info.samplerate} Hz is below the 8 kHz minimum")
    if info.samplerate > MAX_SAMPLERATE:
        raise AudioReadError(info.path, f"sample rate {info.samplerate} Hz is above the 768 kHz maximum")
    return info
