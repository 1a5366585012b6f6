"""The PyAV (FFmpeg) back end, for what libsndfile cannot read: AAC and ALAC in MP4,
raw AAC/AC-3, WMA, Monkey's Audio, WavPack, Musepack, Matroska/WebM audio, and the
links after the first of a chained Ogg file.

``av`` is imported on first use only: it loads FFmpeg's shared libraries (tens of
milliseconds), which ``fpcli --help`` and libsndfile-only libraries never need.
Samples are converted to float32 here (no resampler): native rate and channel
layout, integer formats scaled by their full range (s16 by 2**15, s32 by 2**31).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np

from fpcli.audio import headers
from fpcli.audio.base import AudioInfo, DecodeFailure

# Container names (FFmpeg's first demuxer name) as fpcli reports them in ``info.format``.
_FORMAT_NAMES = {
    "mov": "MP4", "matroska": "MATROSKA", "asf": "ASF", "ape": "APE", "wv": "WAVPACK",
    "mpc": "MUSEPACK", "mpc8": "MUSEPACK", "aac": "ADTS", "ac3": "AC3", "eac3": "EAC3",
}
# Demuxers whose duration is a stated sample count (MP4 sample tables, Matroska's
# Duration element, APE and WavPack headers), not a bit-rate estimate: only these can
# prove that a file which decodes short was cut.
_EXACT_LENGTH_DEMUXERS = frozenset({"mov", "matroska", "ape", "wv"})
# Integer sample formats: scale that maps the full range to ±1.
_INT_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}
_AV_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)
_AVERROR_PATCHWELCOME = 0x45574150  # "not yet implemented": FFmpeg's -MKTAG("P", "A", "W", "E"), negated by PyAV


class NotAv(Exception):
    """FFmpeg cannot open the file or finds no audio in it; the message says why."""


class AvMissing(NotAv):
    """PyAV is not installed."""


def load_av() -> ModuleType:
    """Import PyAV with FFmpeg's own logging off (damaged files would print to stderr;
    fpcli reports them itself). ``NotAv`` if PyAV is not installed."""
    global _AV_ERRORS
    try:
        import av
        import av.logging
    except ImportError:
        raise AvMissing("decoding it needs PyAV (the 'av' package), which is not installed") from None
    try:
        av.logging.set_level(None)  # PyAV >= 13: FFmpeg logs nothing at all
    except (TypeError, ValueError):
        av.logging.set_level(av.logging.PANIC)
    _AV_ERRORS = (av.error.FFmpegError, OSError, ValueError)
    return av


class AvSource:
    """The first audio stream of a file opened with FFmpeg; see ``base.Source``."""

    def __init__(self, path: str, *, stream: BinaryIO | None = None) -> None:
        """Open ``path``, or read ``stream`` (a pipe: stdin) which ``path`` only names."""
        av = load_av()
        self.path = path
        self._is_pipe = stream is not None
        try:
            # FFmpeg gets an open file, not a name: any bytes the OS allows in a name work
            self._file = stream if stream is not None else open(path, "rb")  # noqa: SIM115  (closed in close())
        except OSError as exc:
            raise NotAv(exc.strerror or str(exc)) from None
        try:
            self._container: Any = av.open(self._file, metadata_errors="ignore")
        except _AV_ERRORS as exc:
            self._file.close()
            if not self._is_pipe and headers.mp4_lacks_index(path):
                raise NotAv("the MP4 has no index ('moov' box): the file was cut or never finalized") from None
            raise NotAv(av_reason(exc)) from None
        try:
            self._stream = self._first_audio_stream()
            self.info, self.length_exact = self._describe()
        except BaseException:
            self.close()
            raise
        self.expected_frames = self.info.frames
        # What a chained Ogg's first differing link is, to name when FFmpeg stops there.
        self._link_change: str | None = None
        if not self._is_pipe and self.info.format == "OGG":
            self._link_change = link_change(headers.ogg_links(path))

    def _first_audio_stream(self) -> Any:
        streams = self._container.streams.audio
        if not streams:
            raise NotAv("no audio stream")
        if streams[0].codec_context is None:
            raise NotAv("no decoder for its audio stream")
        return streams[0]

    def _describe(self) -> tuple[AudioInfo, bool]:
        """(header facts, whether the length is exact) from container and stream."""
        codec = self._stream.codec_context
        rate, channels = int(codec.sample_rate or 0), int(codec.channels or 0)
        if rate <= 0 or channels <= 0:
            # FFmpeg's raw demuxers accept any bytes by extension and find no stream.
            raise NotAv(f"no audio parameters found ({rate} Hz, {channels} channels)")
        demuxer = self._container.format.name.split(",")[0]
        if self._stream.duration and self._stream.time_base:
            frames = round(float(self._stream.duration * self._stream.time_base) * rate)
        elif self._container.duration:
            frames = round(self._container.duration / 1_000_000 * rate)  # AV_TIME_BASE: µs
        else:
            frames = 0
        info = AudioInfo(self.path, _FORMAT_NAMES.get(demuxer, demuxer.upper()), codec.name.upper(),
                         rate, channels, frames)
        return info, demuxer in _EXACT_LENGTH_DEMUXERS and frames > 0

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks of exactly ``block_frames`` frames but the last."""
        return rebuffer(self._decoded(), block_frames)

    def _decoded(self) -> Iterator[np.ndarray]:
        """Each decoded frame as float32 (n, channels); ``DecodeFailure`` on an FFmpeg
        error or when the stream changes rate or channel count midway (the analyzers
        are built for one of each)."""
        rate, channels = self.info.samplerate, self.info.channels
        try:
            for packet in self._container.demux(self._stream):
                for frame in packet.decode():
                    if frame.samples == 0:
                        continue
                    if frame.sample_rate != rate or len(frame.layout.channels) != channels:
                        raise DecodeFailure(self._link_change or f"the stream changes to {frame.sample_rate} Hz, "
                                            f"{len(frame.layout.channels)} channels")
                    yield frame_to_float32(frame)
        except _AV_ERRORS as exc:
            raise DecodeFailure(self._failure_reason(exc)) from None

    def _failure_reason(self, exc: BaseException) -> str:
        """FFmpeg's reason, or the chained Ogg's change of format where FFmpeg stops at
        one: "not yet implemented" for another rate or channel count, "invalid
        argument" for another codec."""
        if self.info.format == "OGG" and getattr(exc, "errno", None) in (_AVERROR_PATCHWELCOME, errno.EINVAL):
            if self._link_change:
                return self._link_change
            if self._is_pipe:  # its links cannot be looked at ahead
                return "the chained Ogg stream changes its codec, sample rate or channel count"
        return av_reason(exc)

    def truncation(self, seconds_read: float) -> str | None:
        """A reason if the file's own structure shows it was cut (Ogg: no end page)."""
        if not self._is_pipe and self.info.format == "OGG" and headers.ogg_ends_with_eos(self.path) is False:
            return f"Ogg stream ends without its end-of-stream page: truncated after {seconds_read:.2f} s"
        return None

    def close(self) -> None:
        self._container.close()
        self._file.close()


def link_change(links: list[headers.OggLink]) -> str | None:
    """The first link of a chained Ogg whose codec, rate or channel count differs from
    the first link's, said as the reason why it and the links after it are not read
    (an analysis needs one of each); None if all links are alike."""
    for number, link in enumerate(links[1:], start=2):
        if link.audio_format != links[0].audio_format:
            rest = f"links {number}-{len(links)} were" if number < len(links) else f"link {number} was"
            return (f"link {number} of this chained Ogg is {link.describe()} after {links[0].describe()}: "
                    f"one analysis needs one codec, rate and channel count, so {rest} not read")
    return None


def frame_to_float32(frame: Any) -> np.ndarray:
    """An ``av.AudioFrame`` as float32 (samples, channels), interleaved.

    Planar formats (``fltp``, ``s16p``...) come as (channels, samples), packed ones as
    (1, samples * channels); integers are scaled so that full scale is ±1."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    data = data.T if frame.format.is_planar else data.reshape(-1, channels)
    kind = frame.format.name.rstrip("p")
    if kind in ("flt", "dbl"):
        out = data.astype(np.float32, copy=False)
    elif kind == "u8":
        out = (data.astype(np.float32) - 128.0) / 128.0
    else:
        # Power-of-two scales are exact in float32: s16 stays bit-exact, s32 rounds to
        # float32's 24-bit mantissa as any float32 decoder output does.
        out = data.astype(np.float32) * np.float32(1.0 / _INT_SCALE[kind])
    return np.ascontiguousarray(out)


def rebuffer(chunks: Iterable[np.ndarray], block_frames: int) -> Iterator[np.ndarray]:
    """Regroup (n_i, channels) chunks into blocks of ``block_frames`` frames (the last
    may be shorter). A ``DecodeFailure`` from ``chunks`` is raised only after the audio
    decoded before it has been yielded, so that audio is kept."""
    pending: list[np.ndarray] = []
    held = 0
    failure: DecodeFailure | None = None
    try:
        for chunk in chunks:
            pending.append(chunk)
            held += len(chunk)
            while held >= block_frames:
                joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
                yield joined[:block_frames]
                rest = joined[block_frames:]
                pending, held = ([rest] if len(rest) else []), len(rest)
    except DecodeFailure as exc:
        failure = exc
    if held:
        yield np.concatenate(pending)
    if failure is not None:
        raise failure


def av_reason(exc: BaseException) -> str:
    """FFmpeg's message without the errno and file name PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).splitlines()[0]


def is_av_path(path: str | os.PathLike) -> bool:
    """Extensions libsndfile never reads: go to PyAV directly."""
    return os.path.splitext(os.fspath(path))[1].lower() in AV_EXTENSIONS


AV_EXTENSIONS = frozenset(
    {".m4a", ".m4b", ".mp4", ".aac", ".wma", ".ape", ".wv", ".mka", ".webm", ".mpc", ".ac3"}
)
