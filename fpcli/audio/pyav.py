"""The PyAV (FFmpeg) back end, for what libsndfile cannot read: AAC and ALAC in MP4,
raw AAC/AC-3, WMA, Monkey's Audio, WavPack, Musepack, Matroska/WebM audio, and the
links after the first of a chained Ogg file; and every container on stdin.

``av`` is imported on first use only: it loads FFmpeg's shared libraries (tens of
milliseconds), which ``fpcli --help`` and libsndfile-only libraries never need.
Samples are converted to float32 here (no resampler): native rate and channel
layout, integer formats scaled by their full range (s16 by 2**15, s32 by 2**31).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np

from fpcli.audio import headers
from fpcli.audio.base import AudioInfo, DecodeFailure
from fpcli.extensions import AV_EXTENSIONS

# Container names (FFmpeg's first demuxer name) as fpcli reports them in ``info.format``.
_FORMAT_NAMES = {
    "mov": "MP4", "matroska": "MATROSKA", "asf": "ASF", "ape": "APE", "wv": "WAVPACK",
    "mpc": "MUSEPACK", "mpc8": "MUSEPACK", "aac": "ADTS", "ac3": "AC3", "eac3": "EAC3",
}
# Codec names as libsndfile names the same subtype, so that a file reads alike from a
# path and from stdin (a WAV's was PCM_16 as a file and PCM_S16LE on a pipe). Others
# keep FFmpeg's name (AAC, ALAC, ...); FLAC's is its bit depth, as libsndfile gives it.
_SNDFILE_SUBTYPES = {
    "pcm_s16le": "PCM_16", "pcm_s16be": "PCM_16", "pcm_s24le": "PCM_24", "pcm_s24be": "PCM_24",
    "pcm_s32le": "PCM_32", "pcm_s32be": "PCM_32", "pcm_f32le": "FLOAT", "pcm_f32be": "FLOAT",
    "pcm_f64le": "DOUBLE", "pcm_f64be": "DOUBLE", "pcm_u8": "PCM_U8", "pcm_s8": "PCM_S8",
    "pcm_alaw": "ALAW", "pcm_mulaw": "ULAW", "mp3": "MPEG_LAYER_III", "mp3float": "MPEG_LAYER_III",
    "mp2": "MPEG_LAYER_II",
}
# Demuxers whose duration is a stated sample count (MP4 sample tables, Matroska's
# Duration element, APE, WavPack and TTA headers), not a bit-rate estimate: only these
# can prove that a file which decodes short was cut.
_EXACT_LENGTH_DEMUXERS = frozenset({"mov", "matroska", "ape", "wv", "tta"})
# Demuxers of files whose header fpcli reads for a stated count itself (``headers.file_stated_frames``).
_STATED_LENGTH_DEMUXERS = frozenset({"wav", "flac", "aiff", "mp3", "au", "caf", "w64", "dsf", "iff"})
# Integer sample formats: scale that maps the full range to ±1.
_INT_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}
_AV_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError)
_DAMAGED_PACKET: tuple[type[BaseException], ...] = ()   # FFmpeg's "invalid data" (set by load_av)
# Damaged packets in a row after which the rest of the file is taken as unreadable:
# a damaged spot is a few packets (3,000 random bytes in an MP3: 2), garbage is all.
MAX_DAMAGED_IN_A_ROW = 64
# PyAV reads the planes of a planar frame of 8 channels or more past their end (it
# counts 9 planes for 8 channels): a 7.1 Opus file killed the process (SIGSEGV). Such
# frames are converted to packed ones by FFmpeg first (``AvSource._packed``).
MAX_PLANES = 8
_AVERROR_PATCHWELCOME = 0x45574150  # "not yet implemented": FFmpeg's -MKTAG("P", "A", "W", "E"), negated by PyAV
# What FFmpeg may read of a pipe to find its streams before the first packet is handed
# on (its default: 5 MB). A WAV's PCM is read until then in case it hides another
# codec: 820 KB (4.6 s of CD audio) before the stream opened. 64 KiB is what the WAV
# demuxer reads ahead anyway; every container tried on a pipe (WAV, AU, FLAC, Ogg FLAC/
# Opus, MP3, MP2, ADTS, AC-3, MPEG-TS, Matroska, fragmented MP4, CAF) needed less to
# find its parameters. ``analyzeduration`` never ended the probing first: left as is.
PIPE_PROBE_BYTES = 65536


class NotAv(Exception):
    """FFmpeg cannot open the file or finds no audio in it; the message says why."""


class AvMissing(NotAv):
    """PyAV is not installed."""


def load_av() -> ModuleType:
    """Import PyAV with FFmpeg's own logging off (damaged files would print to stderr;
    fpcli reports them itself). ``NotAv`` if PyAV is not installed."""
    global _AV_ERRORS, _DAMAGED_PACKET
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
    _DAMAGED_PACKET = (av.error.InvalidDataError,)
    return av


class AvSource:
    """The first audio stream of a file opened with FFmpeg; see ``base.Source``."""

    def __init__(self, path: str, *, stream: BinaryIO | None = None,
                 has_input: Callable[[], bool] | None = None) -> None:
        """Open ``path``, or read ``stream`` (a pipe: stdin) which ``path`` only names.
        ``has_input``: whether a read of ``stream`` would return at once; while it
        would not, what was decoded is handed on in a short block."""
        av = load_av()
        self.path = path
        self._is_pipe = stream is not None
        self._has_input = has_input
        # A pipe cannot be read twice: what its header states and how it ends are kept as it is read.
        self._recorded: RecordedStream | None = RecordedStream(stream) if stream is not None else None
        # WAV files joined on a pipe are read one at a time (see WavLinks).
        self._links: WavLinks | None = WavLinks(self._recorded) if self._recorded is not None else None
        try:
            # FFmpeg gets an open file, not a name: any bytes the OS allows in a name work (closed in close())
            self._file: Any = self._links if self._links is not None else open(path, "rb")  # noqa: SIM115
        except OSError as exc:
            raise NotAv(exc.strerror or str(exc)) from None
        try:
            self._container: Any = av.open(self._file, metadata_errors="ignore", container_options=self._probing())
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
        self.damaged_packets = 0   # packets that did not decode, skipped (``_decoded``)
        self._packer: Any = None   # the converter of planar frames of MAX_PLANES channels or more
        # What a chained Ogg's first differing link is, to name when FFmpeg stops there.
        self._link_change: str | None = None
        if not self._is_pipe and self.info.format == "OGG":
            self._link_change = link_change(headers.ogg_links(path))

    def _probing(self) -> dict[str, str] | None:
        return {"probesize": str(PIPE_PROBE_BYTES)} if self._is_pipe else None

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
        exact = demuxer in _EXACT_LENGTH_DEMUXERS and frames > 0
        # On stdin FFmpeg reports no WAV length (it takes the data size only where it
        # can check it against the file's size), and a FLAC's, an AIFF's or an MP3's
        # duration is no stated count to it: a WAV's data size, a FLAC's STREAMINFO
        # count, an AIFF's COMM count and an MP3's Xing count are read from the header
        # itself, unless placeholders, from a stream's first bytes or a file's.
        if self._recorded is not None:
            stated = headers.stated_frames(bytes(self._recorded.head))
        else:
            stated = headers.file_stated_frames(self.path) if demuxer in _STATED_LENGTH_DEMUXERS else None
        if stated is not None:
            frames, exact = stated, True
        info = AudioInfo(self.path, _FORMAT_NAMES.get(demuxer, demuxer.upper()), _subtype(codec),
                         rate, channels, frames)
        return info, exact

    def blocks(self, block_frames: int) -> Iterator[np.ndarray]:
        """float32 (n, channels) blocks of ``block_frames`` frames but the last; from a
        pipe also a shorter one whenever its producer falls silent, so that a live
        stream's snapshots (and a kill -9) find all audio decoded so far."""
        return rebuffer(self._decoded(), block_frames, more_waiting=self._has_input)

    def _decoded(self) -> Iterator[np.ndarray]:
        """Each decoded frame as float32 (n, channels); ``DecodeFailure`` on an FFmpeg
        error or when the stream changes rate or channel count midway (the analyzers
        are built for one of each)."""
        rate, channels = self.info.samplerate, self.info.channels
        in_a_row = 0
        try:
            while True:
                for packet in self._container.demux(self._stream):
                    try:
                        frames = packet.decode()
                    except _DAMAGED_PACKET as exc:
                        # A damaged packet is skipped, as FFmpeg's own tools do: an MP3 with
                        # one damaged spot a quarter in was read to there only (the rest of
                        # the track lost). The reader calls the file partial for it.
                        self.damaged_packets += 1
                        in_a_row += 1
                        if in_a_row > MAX_DAMAGED_IN_A_ROW:
                            raise DecodeFailure(self._failure_reason(exc)) from None
                        continue
                    in_a_row = 0
                    for frame in frames:
                        if frame.samples == 0:
                            continue
                        if frame.sample_rate != rate or len(frame.layout.channels) != channels:
                            count = len(frame.layout.channels)
                            raise DecodeFailure(self._link_change or f"the stream changes to {frame.sample_rate} Hz, "
                                                f"{count} channel{'s' if count != 1 else ''}")
                        if channels >= MAX_PLANES and frame.format.is_planar:
                            yield from (frame_to_float32(packed) for packed in self._packed(frame))
                        else:
                            yield frame_to_float32(frame)
                if not self._open_next_wav():
                    return
        except _AV_ERRORS as exc:
            raise DecodeFailure(self._failure_reason(exc)) from None

    def _packed(self, frame: Any) -> list[Any]:
        """``frame`` (planar, MAX_PLANES channels or more) as packed float frames, by
        FFmpeg's own converter (same rate and layout: no resampling, no delay)."""
        if self._packer is None:
            self._packer = load_av().AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
        return list(self._packer.resample(frame))

    @property
    def damage(self) -> list[str]:
        """Why the file is partial for the damaged packets skipped so far (none: [])."""
        n = self.damaged_packets
        return [f"{n} damaged packet{'s' if n != 1 else ''} skipped"] if n else []

    def _open_next_wav(self) -> bool:
        """Go on with the next WAV file of a stream of WAV files joined one after another,
        decoded as what it is (its own sample format; a change of rate or channel count
        ends the reading, as in a FLAC stream); False at the stream's end."""
        if self._links is None or not self._links.next_link():
            return False
        self._container.close()
        self._container = load_av().open(self._links, format="wav", metadata_errors="ignore",
                                         container_options=self._probing())
        try:
            self._stream = self._first_audio_stream()
        except NotAv as exc:
            raise DecodeFailure(f"the next WAV file in the stream: {exc}") from None
        return True

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
        """A reason if the file's own structure shows it was cut (Ogg: no end page;
        Matroska or WebM: a last Cluster that runs past the end)."""
        if self.info.format == "MATROSKA":
            cut = headers.matroska_file_cut(self.path) if self._recorded is None else \
                headers.matroska_tail_cut(bytes(self._recorded.tail)) if self._recorded.ended else None
            if cut:
                return f"the last Matroska cluster runs past the end: truncated after {seconds_read:.2f} s"
            return None
        if self.info.format != "OGG":
            return None
        if self._recorded is None:
            ends_with_eos = headers.ogg_ends_with_eos(self.path)
        else:
            ends_with_eos = headers.ogg_tail_ends_with_eos(bytes(self._recorded.tail)) if self._recorded.ended else None
        if ends_with_eos is False:
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


def _subtype(codec: Any) -> str:
    """The subtype of a codec context, in libsndfile's names where it has one (FLAC's
    by the sample format FFmpeg decodes it to: 16-bit to s16, 24-bit to s32)."""
    if codec.name == "flac":
        return {"s16": "PCM_16", "s16p": "PCM_16", "s32": "PCM_24", "s32p": "PCM_24"}.get(codec.format.name, "FLAC")
    return _SNDFILE_SUBTYPES.get(codec.name, codec.name.upper())


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


def rebuffer(chunks: Iterable[np.ndarray], block_frames: int,
             more_waiting: Callable[[], bool] | None = None) -> Iterator[np.ndarray]:
    """Regroup (n_i, channels) chunks into blocks of ``block_frames`` frames (the last
    may be shorter). With ``more_waiting`` (a live source: is more input there?), what
    is held is also yielded, as a shorter block, whenever it says no: the next chunk
    may be seconds away. A ``DecodeFailure`` from ``chunks`` is raised only after the
    audio decoded before it has been yielded, so that audio is kept."""
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
            if held and more_waiting is not None and not more_waiting():
                yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                pending, held = [], 0
    except DecodeFailure as exc:
        failure = exc
    if held:
        yield np.concatenate(pending)
    if failure is not None:
        raise failure


class RecordedStream:
    """A stream (stdin) read on FFmpeg's behalf, keeping its first ``HEAD_BYTES`` (the
    header, for the length it states) and its last ``TAIL_BYTES`` (an Ogg stream's
    last pages): a pipe cannot be read again to look at them. Seeks (a redirected
    file) are passed on, and the bytes are kept where they lie in the stream."""

    HEAD_BYTES = 1 << 20  # a WAV's chunks before its data (tags, cover art) fit in this or are not read
    # Two of the largest Ogg pages (a cut one leaves the page before), and a Matroska
    # recording's last Cluster: 5 s of PCM or FLAC is 1-3 MB (``headers.matroska_tail_cut``).
    TAIL_BYTES = max(2 * (27 + 255 + 255 * 255), 4 << 20)

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.head = bytearray()
        self.tail = bytearray()
        self.ended = False  # the last read found the end right after ``tail`` (or a stop: then nothing is judged)
        self._position = 0
        self._tail_end = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        at = self._position
        if not data:
            self.ended = at == self._tail_end
            return data
        self.ended = False
        end = self._position = at + len(data)
        if at <= len(self.head) < min(end, self.HEAD_BYTES):  # new bytes next to the head (a seek back reads old ones)
            self.head += data[len(self.head) - at : self.HEAD_BYTES - at]
        if not self._tail_end - len(self.tail) <= at <= self._tail_end:  # a seek away: the tail starts again
            self.tail.clear()
            self._tail_end = at
        if end > self._tail_end:
            self.tail += data[self._tail_end - at :]
            self._tail_end = end
            if len(self.tail) > 2 * self.TAIL_BYTES:  # trimmed now and then: a copy of the tail per read is slow
                del self.tail[: -self.TAIL_BYTES]
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._position = self._stream.seek(offset, whence)
        return self._position

    def tell(self) -> int:
        return self._stream.tell()

    def close(self) -> None:
        self._stream.close()


class WavLinks:
    """A stream (stdin) handed to FFmpeg one WAV file at a time when it holds WAV files
    joined one after another (``cat a.wav b.wav |``); any other stream passes as it is.

    FFmpeg reads a WAV whose sizes are the placeholders of a writer to a pipe up to the
    stream's end: the next file's header and samples became audio in the first file's
    format (two 3 s files at 44.1 and 22.05 kHz read as 4.5 s at 44.1 kHz, "ok"); after
    a sized file's data it skipped the rest of the stream. So the bytes are searched for
    the next ``RIFF....WAVE`` as they pass, wherever it falls in FFmpeg's reads: the
    current file ends right before it (FFmpeg finds the stream's end there), and
    ``next_link`` goes on from it. Up to 11 bytes that may begin a header cut by a
    read's end are held back until the next read settles it. Positions (``tell``,
    ``seek``: a redirected file) count from the current file's start."""

    CHUNK_BYTES = 65536  # a read of "everything", and the search's steps when FFmpeg stopped early
    _FAR = 1 << 62  # FFmpeg seeks to INT64_MAX to find a sizeless data chunk's end: no offset past this exists

    def __init__(self, stream: BinaryIO | RecordedStream) -> None:
        self._stream = stream
        self._wav: bool | None = None  # whether the stream starts with a WAV header; None until 12 bytes came
        self._ahead = bytearray()  # bytes read from the stream and not handed on; the first lies at ``_pos``
        self._pos = 0  # where the next byte handed on lies in the stream
        self._base = 0  # where the current WAV file starts
        self._next: int | None = None  # where the next WAV file starts, once found
        self._searched = 0  # how much of ``_ahead`` holds no header start (a header begun in its last 11 is unsettled)
        self._ended = False  # the stream ended after ``_ahead``
        self._own_end: int | None = None  # where the current file ends by its stated RIFF size (None: unstated)

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of the current file; b"" at its end (the next file's start)."""
        if self._wav is False and not self._ahead:
            return self._stream.read(size)
        wanted = size if size > 0 else self.CHUNK_BYTES
        if self._wav and not self._ahead and self._next is None and not self._ended:
            return self._read_direct(wanted)
        return self._hand_on(wanted)

    def _hand_on(self, wanted: int) -> bytes:
        """Up to ``wanted`` bytes of ``_ahead``, read on until some can be handed on."""
        while not (ready := self._ready()) and not self._ended and not self._at_next():
            self._fill(max(wanted - len(self._ahead), headers.WAV_HEADER_BYTES))
        data = bytes(self._ahead[: min(ready, wanted)])
        self._discard(len(data))
        return data

    def _read_direct(self, wanted: int) -> bytes:
        """A read as it came when it holds no header, whole or begun at its end (nearly
        every read: no copy is kept); else the bytes go the way of ``_ahead``."""
        data = self._stream.read(wanted)
        if self._pos == self._base:
            self._note_own_size(data)   # the file's first bytes (after a jump to its start)
        own_header_end = max(0, self._search_start() - self._pos)
        if data and headers.find_wav_header(data, own_header_end) == -1 \
                and headers.incomplete_wav_header(data, own_header_end) == len(data):
            self._pos += len(data)
            return data
        self._ended = not data
        self._ahead += data
        self._search()
        return self._hand_on(wanted)

    def next_link(self) -> bool:
        """Move on to the next WAV file in the stream: True if there is one, False at
        the stream's end (always for a stream that does not start with a WAV file)."""
        if not self._wav:
            return False
        while self._next is None and not self._ended:  # FFmpeg stopped before it (chunks after a sized data chunk)
            self._discard(self._searched)
            self._fill(self.CHUNK_BYTES)
        if self._next is None:
            return False
        if self._pos <= self._next <= self._pos + len(self._ahead):
            self._discard(self._next - self._pos)
        else:  # FFmpeg seeked away (a redirected file)
            self._jump(self._next)
        self._base, self._next, self._own_end = self._pos, None, None
        self._note_own_size(self._ahead)   # held unless FFmpeg seeked away: then at the first read
        self._search()  # what is held may hold the header after this one
        return True

    def _note_own_size(self, head: bytes | bytearray) -> None:
        """Note where the current file ends by the RIFF size its header states, ``head``
        being its first bytes: no next file is looked for before it (a file's samples
        may hold the bytes "RIFF....WAVE": a sized WAV was cut there). The size of a
        writer to a pipe (0 or 0xFFFFFFFF, a placeholder) says nothing."""
        if self._own_end is None and len(head) >= 8 and head[:4] == b"RIFF":
            size = int.from_bytes(head[4:8], "little")
            if 4 <= size < 0xFFFFFFFF:
                self._own_end = self._base + 8 + size + (size & 1)   # chunks are padded to even sizes

    def _search_start(self) -> int:
        """The first stream position where the next file's header may begin: after the
        current file's own header, and after its stated end if it states one."""
        return max(self._base + headers.WAV_HEADER_BYTES, self._own_end or 0)

    def _fill(self, size: int) -> None:
        """Read up to ``size`` more bytes of the stream and search them."""
        data = self._stream.read(size)
        self._ended = not data
        self._ahead += data
        if self._wav is None and (len(self._ahead) >= headers.WAV_HEADER_BYTES or self._ended):
            self._wav = headers.is_wav_header(self._ahead)  # nothing was handed on: ``_ahead`` starts the stream
        if self._wav and self._pos == self._base:
            self._note_own_size(self._ahead)
        if self._wav:
            self._search()

    def _search(self) -> None:
        """Note where the next WAV file starts if ``_ahead`` holds its header; its own
        first 12 bytes are the current file's header."""
        if self._next is not None:
            return
        start = max(self._searched, self._search_start() - self._pos)
        found = headers.find_wav_header(self._ahead, start)
        if found != -1:
            self._next = self._pos + found
        self._searched = max(self._searched, len(self._ahead) - headers.WAV_HEADER_BYTES + 1)

    def _ready(self) -> int:
        """How many bytes of ``_ahead`` can be handed on: all but the next file's, and but
        a possible header's start at the end while more may come."""
        if self._wav is None:
            return len(self._ahead) if self._ended else 0
        if self._next is not None:
            return max(0, min(len(self._ahead), self._next - self._pos))
        if not self._wav or self._ended:
            return len(self._ahead)
        return headers.incomplete_wav_header(self._ahead, max(self._searched, self._search_start() - self._pos, 0))

    def _at_next(self) -> bool:
        return self._next is not None and self._pos >= self._next

    def _discard(self, count: int) -> None:
        del self._ahead[:count]
        self._pos += count
        self._searched = max(0, self._searched - count)

    def _jump(self, position: int) -> None:
        """Go to ``position`` of the stream (seekable: a redirected file)."""
        if self._next is None or position <= self._next:  # beyond the next file's start nothing is read
            self._stream.seek(min(position, self._FAR))
        self._ahead.clear()
        self._pos, self._searched, self._ended = position, 0, False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._stream.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._wav is False:  # passed on as it is, once what was read to tell is handed on
            if whence == os.SEEK_CUR:
                offset, whence = self.tell() + offset, os.SEEK_SET
            self._ahead.clear()
            return self._stream.seek(offset, whence)
        if whence == os.SEEK_END:  # FFmpeg's look at an Ogg's end; never a WAV's
            self._ahead.clear()
            self._pos, self._searched, self._ended = self._stream.seek(offset, whence), 0, False
            return self._pos - self._base
        position = self._base + offset if whence == os.SEEK_SET else self._pos + offset
        if self._pos <= position <= self._pos + len(self._ahead):
            self._discard(position - self._pos)
        else:
            self._jump(position)
        return self._pos - self._base

    def tell(self) -> int:
        if self._wav is False:
            return self._stream.tell() - len(self._ahead)
        return self._pos - self._base

    def close(self) -> None:
        self._stream.close()


def av_reason(exc: BaseException) -> str:
    """FFmpeg's message without the errno and file name PyAV adds."""
    text = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
    return str(text).splitlines()[0]


def is_av_path(path: str | os.PathLike) -> bool:
    """Extensions libsndfile never reads: go to PyAV directly."""
    return os.path.splitext(os.fspath(path))[1].lower() in AV_EXTENSIONS

