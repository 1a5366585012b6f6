"""The libsndfile back end: WAV, FLAC, Ogg Vorbis/Opus, MP3 and MP2, AIFF, AU, CAF, W64.

The read loop calls libsndfile's ``sf_readf_float`` itself rather than
``SoundFile.read``: python-soundfile wraps every read in ``tell()`` and
``seek(position + frames)``, and on MP3 that seek goes through mpg123's fuzzy
(Xing-table) seeking, which moves the decoder and corrupts the audio after every
block (measured with libsndfile 1.2.2: 4,408 wrong samples in a 2-minute MP3 read in
65536-frame blocks, 74,388 with 4096; with the direct call every block size is
bit-identical to the mpg123 command-line decoder).

``sf.blocks()`` is not used either: it trusts the header's frame count and, on a
truncated MP3, keeps yielding a stale buffer up to that length. The loop stops on a
short or empty read and so gets exactly the audio that is there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import soundfile as sf

from fpcli.audio import headers
from fpcli.audio.base import PARTIAL_TOLERANCE_S, AudioInfo, DecodeFailure
from fpcli.errors import AudioReadError
from fpcli.files import special_file_kind

_SNDFILE: Any = getattr(sf, "_snd", None)  # cffi handles: untyped
_FFI: Any = getattr(sf, "_ffi", None)
# libsndfile's names of a RIFF WAVE file: "WAVEX" is the extensible header (WAVE_FORMAT_
# EXTENSIBLE) that writers use for more than 16 bits or 2 channels, "RF64" the form of
# broadcast recorders for files past 4 GB; their cut or unfinished files were "ok" or
# failed where a plain WAV's were partial or read whole.
RIFF_WAVE_FORMATS = ("WAV", "WAVEX", "RF64")
_SAMPLE_EXACT_SEEKS = (*RIFF_WAVE_FORMATS, "FLAC", "AIFF", "W64", "CAF")
_DIRECT_READ = _SNDFILE is not None and _FFI is not None and hasattr(_SNDFILE, "sf_readf_float")


# Ogg Vorbis and Opus (mapping family 1) keep their channels in Vorbis order (L C R ...,
# the LFE last), and libsndfile hands them on so; the analyzers take WAV/SMPTE order
# (L R C LFE ...: ``dsp.loudness``). A 5.1 Opus file had its LFE measured as a surround
# and a surround left out, and its stereo width taken from L and C. FFmpeg (stdin, and
# other containers) reorders them itself. The columns to take, by channel count:
VORBIS_TO_WAV_ORDER = {
    3: (0, 2, 1),                    # L C R -> L R C
    5: (0, 2, 1, 3, 4),              # L C R Ls Rs -> L R C Ls Rs
    6: (0, 2, 1, 5, 3, 4),           # L C R Ls Rs LFE -> L R C LFE Ls Rs
    7: (0, 2, 1, 6, 5, 3, 4),        # L C R SL SR RC LFE -> L R C LFE RC SL SR
    8: (0, 2, 1, 7, 5, 6, 3, 4),     # L C R SL SR RL RR LFE -> L R C LFE RL RR SL SR
}


class NotSndfile(Exception):
    """libsndfile cannot open the file (another back end may); the message says why."""


class SndfileSource:
    """An open libsndfile handle; see ``base.Source``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = open_sndfile(path)
        frames = int(self._file.frames)
        self.flac_lengths = headers.flac_file_lengths(path) if self._file.format == "FLAC" else None
        if self.flac_lengths is not None and self.flac_lengths.stated is None:
            frames = 0  # STREAMINFO's "unknown" (0), which libsndfile gives as 2**63 - 1 frames
        self.info = AudioInfo(path, self._file.format, self._file.subtype, int(self._file.samplerate),
                              int(self._file.channels), frames)
        self.expected_frames = self.info.frames
        self.length_exact = True
        self._position = 0   # the frame the next read starts at (``seek``)
        self.damage: list[str] = []   # damaged spots FFmpeg read past (``_read_on``)
        self._other: Any = None       # the FFmpeg source reading on, closed with this one
        vorbis_order = self.info.format == "OGG" and self.info.subtype in ("VORBIS", "OPUS")
        order = VORBIS_TO_WAV_ORDER.get(self.info.channels) if vorbis_order else None
        self._columns = None if order is None else list(order)
        if self.flac_lengths is not None:
            # A FLAC written by an encoder that could not seek back (to a pipe) states no
            # total: it was "header says 209146758205323.72 s", partial, as a file.
            self.length_exact = self.flac_lengths.stated is not None
        elif self.info.format in RIFF_WAVE_FORMATS:
            # libsndfile clamps a WAV's frame count to the bytes present, so a truncated
            # WAV would look complete; the RIFF data chunk size still tells the truth.
            claimed = headers.header_of_file(path, headers.wav_stated_frames)
            if claimed is not None:
                self.expected_frames = claimed
        elif self.info.format in headers.STATED_BY_FORMAT:
            # Clamped like a WAV's count; the header states the length written.
            claimed = headers.header_of_file(path, headers.STATED_BY_FORMAT[self.info.format])
            if claimed is not None:
                self.expected_frames = claimed
        elif self.info.subtype.startswith("MPEG_LAYER"):
            self.length_exact = headers.mp3_states_length(path)

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks until the first short read. Where libsndfile
        stops at a damaged spot (an error, or a FLAC read short of frames its tail
        holds), FFmpeg reads on past it (``_read_on``): one damaged spot a quarter into
        an MP3 or a FLAC lost the other three quarters of the track."""
        delivered = self._position
        failure: DecodeFailure | None = None
        try:
            for block in self._decoded(block_frames):
                delivered += len(block)
                yield block
        except DecodeFailure as exc:
            failure = exc
        if failure is None and not self._holds_more_than(delivered):
            return
        rest = self._read_on(delivered, block_frames, failure)
        if rest is None:
            if failure is not None:
                raise failure
            return
        yield from rest

    def _holds_more_than(self, frames: int) -> bool:
        """Whether the file may hold audio past ``frames`` that libsndfile did not read: a
        FLAC whose last frame (in its tail) starts later, an MP3 or Ogg whose stated
        length is longer (its bytes cannot tell: FFmpeg is asked), a PCM file whose
        bytes hold more frames. A file cut short holds none."""
        gap = PARTIAL_TOLERANCE_S * self.info.samplerate
        if self.flac_lengths is not None:
            held = self.flac_lengths.held
            return held is not None and held - frames > gap
        if self.info.subtype.startswith("MPEG_LAYER") or self.info.format == "OGG":
            return self.length_exact and self.expected_frames - frames > gap
        return self.info.frames - frames > gap   # libsndfile's count: the frames its bytes hold

    def _read_on(self, delivered: int, block_frames: int,
                 failure: DecodeFailure | None) -> Iterator[np.ndarray] | None:
        """The file's blocks after its first ``delivered`` frames, decoded by FFmpeg
        (``ReadOn``); None when FFmpeg cannot read it, or reads it with other parameters."""
        from fpcli.audio.pyav import AvSource, NotAv

        try:
            other = AvSource(self.path)
        except NotAv:
            return None
        if (other.info.samplerate, other.info.channels) != (self.info.samplerate, self.info.channels):
            other.close()
            return None
        self._other = other
        return ReadOn(other, delivered, failure, self.damage).blocks(block_frames)

    def _decoded(self, block_frames: int) -> Iterator[np.ndarray]:
        """libsndfile's float32 (n, channels) blocks until the first short read."""
        frames = self._position
        while True:
            try:
                block = _read_float32(self._file, block_frames)
            except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
                raise DecodeFailure(_reason(exc)) from None
            if len(block) == 0:
                return
            frames += len(block)
            yield block if self._columns is None else block[:, self._columns]
            if len(block) < block_frames:
                # A short read is the end, whatever the header claims (a stated length
                # then tells a cut file: ``base``). Without one, a read that stopped on a
                # decoding error is damage: a FLAC that states no length (written to a
                # pipe), cut mid-frame, was "ok" as a file, partial on stdin.
                error = None if self.length_exact or self._all_frames_read(frames) else _pending_error(self._file)
                if error is not None:
                    raise DecodeFailure(_reason(error))
                return

    def _all_frames_read(self, frames: int) -> bool:
        """Whether the file was read to exactly the end of the last FLAC frame in its
        tail (``frames`` from its start): an error after it is about bytes after the
        audio (an ID3v1 tag), not a cut. Not so past it: two files joined, whose
        second's frames number from 0 again, read only the first's."""
        held = None if self.flac_lengths is None else self.flac_lengths.held
        return held is not None and frames == held

    def seek(self, frame: int) -> bool:
        """Start reading at ``frame``; False where libsndfile's seeking is not
        sample-exact (MP3, Ogg), so the caller decodes and discards instead."""
        if self.info.format not in _SAMPLE_EXACT_SEEKS or self.info.subtype.startswith("MPEG"):
            return False
        try:
            self._file.seek(frame)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            return False
        self._position = frame
        return True

    def truncation(self, seconds_read: float) -> str | None:
        """A reason if the file's own structure shows it was cut (Ogg: no end page), or
        that libsndfile stopped short of its end (a chained Ogg: at the first link's)."""
        if self.info.format != "OGG":
            return None
        if headers.ogg_ends_with_eos(self.path) is False:
            return f"Ogg stream ends without its end-of-stream page: truncated after {seconds_read:.2f} s"
        links = len(headers.ogg_links(self.path))
        if links > 1:
            return f"a chained Ogg of {links} links: only the first ({seconds_read:.2f} s) was read"
        return None

    def close(self) -> None:
        self._file.close()
        if self._other is not None:
            self._other.close()


class ReadOn:
    """FFmpeg reading a file on from where libsndfile stopped at damage: the file is
    decoded from its start (the ``delivered`` frames libsndfile read are dropped) and
    FFmpeg skips the packets that do not decode. ``damage`` (the source's list) gets a
    note of it before the first audio read past the spot, so that a preview or a
    snapshot that stops after it is partial."""

    def __init__(self, other: Any, delivered: int, failure: DecodeFailure | None, damage: list[str]) -> None:
        self.other, self.delivered, self.failure, self.damage = other, delivered, failure, damage
        rate = other.info.samplerate
        at = f"{delivered / rate:.2f} s"
        self.why = f"decoding failed at {at}: {str(failure).rstrip('.')}" if failure is not None else \
            f"a damaged frame at {at}"
        # A file cut mid-frame gives FFmpeg a few more milliseconds: no damaged spot read
        # past (its completeness check says it was cut).
        self.least_frames = PARTIAL_TOLERANCE_S * rate

    def said(self) -> str:
        skipped = self.other.damaged_packets
        return f"{self.why}, read on past it by FFmpeg" + (
            f" ({skipped} damaged packet{'s' if skipped != 1 else ''} skipped)" if skipped else "")

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """The blocks past ``delivered``; libsndfile's own failure when FFmpeg reads no
        further than it did."""
        skip, read_on = self.delivered, 0
        noted: int | None = None   # where in ``damage`` the note is
        try:
            for block in self.other.blocks(block_frames):
                dropped = min(skip, len(block))
                skip -= dropped
                if dropped == len(block):
                    continue
                read_on += len(block) - dropped
                if noted is None and (read_on > self.least_frames or self.other.damaged_packets):
                    self.damage.append(self.said())
                    noted = len(self.damage) - 1
                yield block[dropped:]
        except DecodeFailure:
            if read_on or self.failure is None:
                raise
            # FFmpeg fails where libsndfile did: libsndfile's reason, below
        finally:
            if noted is not None:
                self.damage[noted] = self.said()   # with every damaged packet counted
        if not read_on and self.failure is not None:
            raise self.failure


def open_sndfile(path: str) -> sf.SoundFile:
    """Open with libsndfile; ``NotSndfile`` if it refuses the contents."""
    try:
        with _c_stderr_muted():
            # bytes: soundfile encodes a str path strictly, and a name that is not
            # UTF-8 (surrogate-escaped by os.fsdecode) would not open
            return sf.SoundFile(os.fsencode(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise NotSndfile(_reason(exc)) from None


def check_readable(path: str) -> None:
    """``AudioReadError`` for what no decoder can fix: a directory, a missing, empty or
    unreadable file (libsndfile would report these as "System error.")."""
    try:
        st = os.stat(path)
        kind = special_file_kind(st)
        if kind is not None:  # a FIFO or a device said "empty file (0 bytes)" by its size
            raise AudioReadError(path, f"is {'a directory' if kind == 'a folder' else kind}, not an audio file")
        if st.st_size == 0:
            raise AudioReadError(path, "empty file (0 bytes)")
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise AudioReadError(path, "no such file") from None
    except PermissionError:
        raise AudioReadError(path, "permission denied") from None
    except OSError as exc:
        raise AudioReadError(path, f"cannot read: {exc.strerror or exc}") from None
    except ValueError:  # "embedded null byte": no file system allows one in a name
        raise AudioReadError(path, "the path holds a NUL byte, which no file name can") from None


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


def _pending_error(f: sf.SoundFile) -> sf.LibsndfileError | None:
    """The decoding error a read left on the handle (``_read_float32`` keeps the frames
    before one), or None."""
    if not _DIRECT_READ:   # the plain read raises its errors itself
        return None
    error = _SNDFILE.sf_error(f._file)
    return sf.LibsndfileError(error) if error else None


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


# libsndfile's words for "these bytes are not audio I know", said of files that exist
# and were opened (check_readable ran first): what they mean to a user.
_MISLEADING = {
    "File does not exist or is not a regular file (possibly a pipe?).": "the file exists but is not audio",
    "Format not recognised.": "the file exists but is not audio",
    "File contains data in an unknown format.": "the file exists but is not audio",
    "Supported file format but file is malformed.": "the header is damaged",
    # libsndfile's words for a header whose sample rate (or channel count) it cannot take: 0 or 4 GHz
    "Internal error : SF_INFO struct incomplete.": "the header states no usable sample rate or channel count",
}


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    # libsndfile prefixes messages with the path it was given; the caller names the file.
    text = text.split(": ", 1)[-1] if text.startswith("Error opening") else text
    return _MISLEADING.get(text, text)

