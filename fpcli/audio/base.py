"""What every decoder back end shares: the header facts, the failure signal, the
sample-rate bounds the analyzers can work with, and a pipe that a Ctrl-C can end."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import select
import sys
import termios
from collections.abc import Iterator
from typing import BinaryIO, Protocol

import numpy as np

from fpcli.errors import AudioReadError
from fpcli.params import MAX_SAMPLERATE, MIN_SAMPLERATE


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


# How far a decoded length may differ from a length the file states before the file is
# partial (a codec's padding, a rounding of the stated count): 0.1 s.
PARTIAL_TOLERANCE_S = 0.1


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


class StoppablePipe:
    """A pipe (stdin) read so that a stop request ends the stream within ``POLL_S``.

    A blocking read of a pipe cannot be told to stop: a signal handler that does not
    raise lets the read resume waiting (a stalled producer then holds fpcli forever),
    and one that raises KeyboardInterrupt inside a decoder's read callback (FFmpeg's,
    through PyAV) has it printed as a traceback and swallowed. So this waits for data in
    short ``select`` polls and reads only what is there; after ``stop()`` (safe to call
    from a signal handler: it sets a flag) every read returns b"" -- the end of the
    stream -- and the decoder finishes what it already has. A KeyboardInterrupt that
    does arrive during a read stops it the same way and is remembered in
    ``interrupted`` for the caller to raise again outside the decoder.

    The bytes come from the file descriptor (``os.read``), bypassing the stream's
    buffer: nothing must have been read from ``stream`` before. Streams without a
    descriptor (in memory) and seekable ones (a redirected file) never block and are
    read, and seeked, through their own methods."""

    POLL_S = 0.1
    CHUNK_BYTES = 65536  # for a read of "everything": what a pipe holds at once
    PACKET_BYTES = 65536  # the most a decoder reads at once for one packet (an Ogg page: 65,307)

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.stopped = False
        self.interrupted = False
        self.bytes_read = 0  # none at all: the stream was empty, whatever a decoder makes of that
        self._fd = None if _seekable(stream) else _descriptor(stream)

    def stop(self) -> None:
        """End the stream: every read from now on returns b""."""
        self.stopped = True

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, as soon as some are there; b"" at the end or once stopped."""
        if self.stopped:
            return b""
        try:
            if self._fd is None:
                data = getattr(self._stream, "read1", self._stream.read)(size)
            else:
                while not self._readable():
                    if self.stopped:
                        return b""
                data = os.read(self._fd, size if size > 0 else self.CHUNK_BYTES)
        except KeyboardInterrupt:
            self.interrupted = self.stopped = True
            return b""
        self.bytes_read += len(data)
        return data

    def has_input(self) -> bool:
        """Whether a read would return at once: bytes are waiting, the stream has
        ended or was stopped, or it never blocks (in memory, a redirected file). False
        while a producer is silent: audio decoded so far is then to be handed on, not
        held back for more."""
        if self._fd is None or self.stopped:
            return True
        try:
            if not select.select([self._fd], [], [], 0)[0]:
                return False
            waiting = int.from_bytes(fcntl.ioctl(self._fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
        except (OSError, ValueError):  # no select() or FIONREAD on this descriptor: as a file
            return True
        # Fewer bytes than a packet may need is no input yet: the decoder would block in
        # a read for the rest while the producer is silent, and the audio decoded so far
        # waited with it (a snapshot due at 4 s of 5.5 s sent never came). 0 with the
        # descriptor readable is the stream's end, which a read returns at once.
        return waiting == 0 or waiting >= self.PACKET_BYTES

    read1 = read  # what RawSource calls: a read already returns what has arrived

    def _readable(self) -> bool:
        """Wait up to ``POLL_S`` for bytes (or the end); True when a read won't block."""
        assert self._fd is not None
        try:
            return bool(select.select([self._fd], [], [], self.POLL_S)[0])
        except (OSError, ValueError):  # no select() on this descriptor (Windows pipes): block
            return True

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._fd is None and _seekable(self._stream)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()


def _seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable())
    except (OSError, ValueError, AttributeError):
        return False


def _descriptor(stream: BinaryIO) -> int | None:
    try:
        return stream.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return None
