"""Decode audio files in float32 blocks with a read loop that trusts no header.

``sf.blocks()`` is not used: it trusts the header's frame count and, on a truncated
MP3, keeps yielding a stale buffer up to that length. A read loop that stops on a
short or empty read gets exactly the audio that is there; comparing that count with
the header's count tells whether the file is ``partial``.

The loop calls libsndfile's ``sf_readf_float`` itself rather than
``SoundFile.read``: python-soundfile wraps every read in ``tell()`` and
``seek(position + frames)``, and on MP3 that seek goes through mpg123's fuzzy
(Xing-table) seeking, which moves the decoder and corrupts the audio after every
block (measured with libsndfile 1.2.2: 4,408 wrong samples in a 2-minute MP3 read in
65536-frame blocks, 74,388 with 4096; with the direct call every block size is
bit-identical to the mpg123 command-line decoder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from fpcli.errors import AudioReadError

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc"}
)
DEFAULT_BLOCK_FRAMES = 65536
PARTIAL_TOLERANCE_S = 0.1


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


def probe(path: str | os.PathLike) -> AudioInfo:
    """Header facts of ``path``; raises ``AudioReadError`` if it is not decodable."""
    with _open(path) as f:
        return _info(path, f)


class AudioReader:
    """Iterate a file as float32 blocks of shape (frames, channels).

    After iteration, ``frames_read``, ``partial`` and ``partial_reason`` describe what
    was decoded. A decoding error after some audio keeps that audio and marks the
    result partial; a file that yields no audio at all raises ``AudioReadError``.

    Example::

        reader = AudioReader("track.flac")
        for block in reader:          # block: float32 (n, channels), n <= block_frames
            ...
        reader.partial, reader.frames_read
    """

    def __init__(self, path: str | os.PathLike, *, block_frames: int = DEFAULT_BLOCK_FRAMES):
        if block_frames <= 0:
            raise ValueError(f"block_frames={block_frames}: must be positive")
        self.path = os.fspath(path)
        self.block_frames = block_frames
        self.info = probe(self.path)
        self.expected_frames = _expected_frames(self.path, self.info)
        self.frames_read = 0
        self.partial = False
        self.partial_reason: str | None = None
        self.nonfinite_samples = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        with _open(self.path) as f:
            size = self.block_frames
            while True:
                try:
                    block = _read_float32(f, size)
                except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                    if self.frames_read == 0:
                        raise AudioReadError(self.path, f"decoding failed: {_reason(exc)}") from None
                    self._mark_partial(f"decoding failed after {self._seconds_read():.2f} s: {_reason(exc)}")
                    break
                if len(block) == 0:
                    break
                if not np.isfinite(block).all():
                    self.nonfinite_samples += int(np.count_nonzero(~np.isfinite(block)))
                    block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
                self.frames_read += len(block)
                yield block
                if len(block) < size:
                    break  # a short read is the end, whatever the header claims
        if self.frames_read == 0:
            raise AudioReadError(self.path, "no audio frames could be decoded")
        self._check_length()

    def _seconds_read(self) -> float:
        return self.frames_read / self.info.samplerate

    def _check_length(self) -> None:
        expected = self.expected_frames
        if self.partial or expected <= 0:
            return
        if abs(expected - self.frames_read) > PARTIAL_TOLERANCE_S * self.info.samplerate:
            self._mark_partial(
                f"header says {expected / self.info.samplerate:.2f} s, "
                f"decoded {self._seconds_read():.2f} s"
            )

    def _mark_partial(self, reason: str) -> None:
        self.partial = True
        self.partial_reason = reason


_SNDFILE = getattr(sf, "_snd", None)
_FFI = getattr(sf, "_ffi", None)
_DIRECT_READ = _SNDFILE is not None and _FFI is not None and hasattr(_SNDFILE, "sf_readf_float")


def _read_float32(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Up to ``frames`` frames as float32 (n, channels), without soundfile's per-read
    seek (see the module docstring). Raises ``sf.LibsndfileError`` on a decoding error."""
    if not _DIRECT_READ:  # a soundfile without its cffi handles: the plain (seeking) read
        return f.read(frames, dtype="float32", always_2d=True)
    out = np.empty((frames, f.channels), dtype=np.float32)
    count = _SNDFILE.sf_readf_float(f._file, _FFI.cast("float *", out.ctypes.data), frames)
    error = _SNDFILE.sf_error(f._file)
    if error and count <= 0:
        raise sf.LibsndfileError(error)
    # With an error after some frames, keep them: the next read raises it.
    return out[: max(count, 0)]


def mixdown(block: np.ndarray) -> np.ndarray:
    """Mono = mean of all channels. (frames, channels) -> (frames,) float32."""
    channels = block.shape[1]
    if channels == 1:
        return block[:, 0]
    # A matrix product: numpy's reduction over a length-2 axis is ~40x slower.
    return block @ np.full(channels, 1.0 / channels, dtype=np.float32)


def _open(path: str | os.PathLike) -> sf.SoundFile:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise AudioReadError(path, "is a directory, not an audio file")
    try:
        if os.path.getsize(path) == 0:
            raise AudioReadError(path, "empty file (0 bytes)")
        # libsndfile reports an unreadable file as "System error."; let the OS name it.
        with open(path, "rb"):
            pass
        with _c_stderr_muted():
            return sf.SoundFile(path)
    except AudioReadError:
        raise
    except FileNotFoundError:
        raise AudioReadError(path, "no such file") from None
    except PermissionError:
        raise AudioReadError(path, "permission denied") from None
    except OSError as exc:
        raise AudioReadError(path, f"cannot read: {exc.strerror or exc}") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioReadError(path, f"not a decodable audio file ({_reason(exc)})") from None


@contextlib.contextmanager
def _c_stderr_muted() -> Iterator[None]:
    """Silence C-level writes to stderr while libsndfile opens a file: mpg123 prints
    "Warning: Xing stream size off..." for every truncated MP3, which fpcli reports
    properly as ``partial``. Only the open call (about a millisecond) is covered."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _info(path: str | os.PathLike, f: sf.SoundFile) -> AudioInfo:
    if f.samplerate <= 0 or f.channels <= 0:
        raise AudioReadError(os.fspath(path), f"bad header: {f.samplerate} Hz, {f.channels} channels")
    return AudioInfo(os.fspath(path), f.format, f.subtype, int(f.samplerate), int(f.channels), int(f.frames))


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile prefixes messages with the path it was given; the caller names the file.
    return text.split(": ", 1)[-1] if text.startswith("Error opening") else text


def _expected_frames(path: str, info: AudioInfo) -> int:
    """The frame count the file claims.

    For WAV, libsndfile silently clamps the frame count to the bytes present, so a
    truncated WAV would look complete; the RIFF ``data`` chunk size still tells the
    truth, so read it ourselves.
    """
    if info.format == "WAV":
        claimed = _wav_data_frames(path, info.channels, info.subtype)
        if claimed is not None:
            return claimed
    return info.frames


_WAV_SAMPLE_BYTES = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _wav_data_frames(path: str, channels: int, subtype: str) -> int | None:
    """Frames the RIFF ``data`` chunk declares, or None if not a plain PCM/float RIFF."""
    width = _WAV_SAMPLE_BYTES.get(subtype)
    if width is None:
        return None
    try:
        with open(path, "rb") as fh:
            if fh.read(4) != b"RIFF" or len(fh.read(4)) != 4 or fh.read(4) != b"WAVE":
                return None
            while True:
                header = fh.read(8)
                if len(header) < 8:
                    return None
                chunk_id, size = header[:4], struct.unpack("<I", header[4:])[0]
                if chunk_id == b"data":
                    # 0 and 0xFFFFFFFF mean "unknown / streamed" (and RF64): trust libsndfile.
                    if size in (0, 0xFFFFFFFF):
                        return None
                    return size // (width * channels)
                fh.seek(size + (size & 1), os.SEEK_CUR)
    except OSError:
        return None
