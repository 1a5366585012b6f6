"""Facts that libsndfile does not report, read from the bytes of a file.

- Whether an MP3's length is exact: only a Xing/Info frame with a frame count (LAME
  and most encoders write one) or a Fraunhofer VBRI frame states it; without one,
  mpg123 estimates the length from the first frame's bit rate, which is off by
  seconds for VBR files and proves nothing about damage.
- Whether an MP4 file lacks its index (the ``moov`` box): encoders write it last by
  default, so a cut MP4 has none, and FFmpeg only says "Invalid data found".
- Whether an Ogg file ends with its end-of-stream page: libsndfile takes an Ogg
  file's length from the last page's granule position, so a truncated file reports
  exactly the length it still has; the missing end-of-stream flag is the evidence.
- The links of a chained Ogg file (whole Ogg streams one after another, as
  internet-radio recorders write them): libsndfile reads only the first, FFmpeg
  reads on while the codec, rate and channel count stay the same.
- How many samples a FLAC file's frames hold: libsndfile stops at the total that
  STREAMINFO states, so a header that understates it would hide the rest.
- The length an AU, CAF, Wave64, DSF or DSDIFF header states: libsndfile and FFmpeg
  give the length of the data present, so a cut file looked whole.
- Where a WAV file's header starts in a stream of WAV files joined one after another:
  FFmpeg reads a WAV whose sizes are a pipe's placeholders to the stream's end, the
  next file's header and samples as audio of the first file's format.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import os
import re
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import BinaryIO, TypeVar

T = TypeVar("T")

# -- MP3 ----------------------------------------------------------------------------------

_MP3_SCAN_BYTES = 65536  # where the first frame must start after the ID3v2 tag(s)


def mp3_states_length(path: str | os.PathLike) -> bool:
    """True if the first MPEG audio frame of ``path`` is a Xing/Info frame with a frame
    count, or carries a VBRI header: then the decoder's length is exact."""
    data = _head_after_id3(path)
    if data is None:
        return False
    start = _first_frame(data)
    if start is None:
        return False
    return _has_length_header(data[start:])


# What may follow the stream an MP3's Xing frame states before the file is looked at:
# an ID3v1 tag (128 bytes), a small APE tag.
_MP3_TAIL_SLACK = 4096
_MP3_NEXT_STREAM_WINDOW = 4096   # where after the stated end another stream's first frame may start


def mp3_holds_more_than_stated(path: str | os.PathLike) -> bool:
    """Whether an MP3 file holds MPEG audio after the stream its first frame's Xing/Info
    frame states (flag 2: its size in bytes): MP3 files joined one after another (``cat
    a.mp3 b.mp3``) state the first one's size and frame count, and mpg123 stops at that
    count, the rest unheard and the file "ok". What follows must be frames (two in a
    row), after an ID3v2 tag if one starts there: a tag, a cover or padding after the
    audio is no more audio (a whole file read so by FFmpeg stopped at it, "partial")."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fh:
            start = _id3v2_end(fh)
            fh.seek(start)
            data = fh.read(_MP3_SCAN_BYTES)
            first = _first_frame(data)
            stated = None if first is None else _xing_stream_bytes(data[first:])
            if first is None or stated is None or size - (start + first + stated) <= _MP3_TAIL_SLACK:
                return False
            end = start + first + stated
            fh.seek(end)
            after = fh.read(_MP3_NEXT_STREAM_WINDOW + 2 * _MAX_FRAME_BYTES)
            tag = _id3v2_size(after)   # the next file's ID3v2 tag, of any size
            if tag:
                fh.seek(end + tag)
                after = fh.read(_MP3_NEXT_STREAM_WINDOW + 2 * _MAX_FRAME_BYTES)
            return _frames_follow(after)
    except OSError:
        return False


def _xing_stream_bytes(frame: bytes) -> int | None:
    """The stream size in bytes the Xing/Info frame at the start of ``frame`` states, or None."""
    tag_at = _xing_offset(frame)
    if tag_at is None or len(frame) < tag_at + 16:
        return None
    flags = struct.unpack(">I", frame[tag_at + 4 : tag_at + 8])[0]
    if not flags & 0x2:
        return None
    at = tag_at + 8 + (4 if flags & 0x1 else 0)   # the byte count follows the frame count
    return int(struct.unpack(">I", frame[at : at + 4])[0])


# Layer III bit rates (kbit/s) by index, MPEG-1 and MPEG-2/2.5; sample rates by version bits.
_L3_BITRATES = {3: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
                2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_L3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MAX_FRAME_BYTES = 144 * 320_000 // 32000 + 1


def _frame_bytes(data: bytes, i: int) -> int | None:
    """The length of the valid layer III frame whose header is at ``data[i]``, or None."""
    header = _frame_header(data, i)
    if header is None:
        return None
    version, bits = header[0], data[i + 2]
    bitrate = _L3_BITRATES[3 if version == 3 else 2][bits >> 4] * 1000
    rate = _L3_RATES[version][(bits >> 2) & 3]
    return (144 if version == 3 else 72) * bitrate // rate + ((bits >> 1) & 1)


def _frames_follow(data: bytes) -> bool:
    """Whether two layer III frames in a row start within the first
    _MP3_NEXT_STREAM_WINDOW bytes of ``data`` (one alone may be a chance match in a
    picture's bytes)."""
    i = data.find(b"\xff")
    while i != -1 and i < _MP3_NEXT_STREAM_WINDOW:
        length = _frame_bytes(data, i)
        if length and _frame_header(data, i + length) is not None:
            return True
        i = data.find(b"\xff", i + 1)
    return False


def mp3_stated_frames(head: bytes) -> int | None:
    """The sample frames the Xing/Info frame at the start of ``head`` (a stream's first
    bytes, after any ID3v2 tag) states: its MPEG frame count times the samples of a
    frame, less the encoder's delay and padding when a LAME tag gives them (as a
    gapless decoder reads a file). None without such a frame (a VBRI header's count is
    not read: a stream then has no stated length, as before)."""
    data = head[_id3v2_size(head):][:_MP3_SCAN_BYTES]
    start = _first_frame(data)
    if start is None:
        return None
    frame = data[start:]
    header = _frame_header(frame, 0)
    tag_at = _xing_offset(frame)
    if header is None or tag_at is None:
        return None
    flags = struct.unpack(">I", frame[tag_at + 4 : tag_at + 8])[0]
    if not flags & 0x1 or len(frame) < tag_at + 12:
        return None
    count = struct.unpack(">I", frame[tag_at + 8 : tag_at + 12])[0]
    samples = count * (1152 if header[0] == 3 else 576)   # MPEG-1 layer III frames hold 1152
    # The optional fields after the count: byte count (flag 2), table of contents (4), quality (8).
    lame_at = tag_at + 12 + (4 if flags & 0x2 else 0) + (100 if flags & 0x4 else 0) + (4 if flags & 0x8 else 0)
    # LAME's tag, or FFmpeg's of the same layout ("Lavc"/"Lavf"), whose delays FFmpeg's decoder trims too.
    if frame[lame_at : lame_at + 4] in (b"LAME", b"Lavc", b"Lavf") and len(frame) >= lame_at + 24:
        delays = int.from_bytes(frame[lame_at + 21 : lame_at + 24], "big")  # 12 bits delay, 12 bits padding
        samples -= (delays >> 12) + (delays & 0xFFF)
    return samples if samples > 0 else None


def _xing_offset(frame: bytes) -> int | None:
    """Where a Xing/Info tag starts in this first frame (it follows the side
    information, whose size depends on the MPEG version and mode), or None."""
    header = _frame_header(frame, 0)
    if header is None:
        return None
    version, mono, crc = header
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    for offset in (4 + side, 4 + side + 2) if crc else (4 + side,):
        if frame[offset : offset + 4] in (b"Xing", b"Info") and len(frame) >= offset + 8:
            return offset
    return None


def _id3v2_end(fh: BinaryIO) -> int:
    """Byte offset after the ID3v2 tag(s) at the start of the file (0 if none)."""
    offset = 0
    while True:
        fh.seek(offset)
        head = fh.read(10)
        if len(head) < 10 or head[:3] != b"ID3":
            return offset
        # The size is "synchsafe": four 7-bit bytes, excluding the 10-byte header.
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        footer = 10 if head[5] & 0x10 else 0
        offset += 10 + size + footer


def _frame_header(data: bytes, i: int) -> tuple[int, bool, bool] | None:
    """(MPEG version bits, mono, crc) of a valid layer III frame header at ``data[i]``."""
    if i + 4 > len(data) or data[i] != 0xFF or data[i + 1] & 0xE0 != 0xE0:
        return None
    version, layer = (data[i + 1] >> 3) & 3, (data[i + 1] >> 1) & 3
    bitrate, rate = data[i + 2] >> 4, (data[i + 2] >> 2) & 3
    if version == 1 or layer != 1 or bitrate in (0, 15) or rate == 3:
        return None  # reserved values, free format, or not layer III
    return version, data[i + 3] >> 6 == 3, not data[i + 1] & 1


def _first_frame(data: bytes) -> int | None:
    """Offset of the first layer III frame header in ``data`` (junk may precede it)."""
    i = data.find(b"\xff")
    while i != -1:
        if _frame_header(data, i) is not None:
            return i
        i = data.find(b"\xff", i + 1)
    return None


def _has_length_header(frame: bytes) -> bool:
    """Does this first frame (bytes from its sync word on) state the stream length?"""
    if _frame_header(frame, 0) is None:
        return False
    tag_at = _xing_offset(frame)
    if tag_at is not None:
        return bool(struct.unpack(">I", frame[tag_at + 4 : tag_at + 8])[0] & 0x1)  # bit 0: a frame count
    return frame[36:40] == b"VBRI"  # always 32 bytes after the 4-byte header


# -- MP4 ----------------------------------------------------------------------------------


def mp4_lacks_index(path: str | os.PathLike) -> bool:
    """True if ``path`` starts like an MP4 (an ``ftyp`` box) but none of its top-level
    boxes is the ``moov`` index (a file cut before its end, or never finalized)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            offset, first = 0, True
            while offset + 8 <= size:
                fh.seek(offset)
                length, kind = struct.unpack(">I4s", fh.read(8))
                if first and kind != b"ftyp":
                    return False
                if kind == b"moov":
                    return False
                if length == 1:  # a 64-bit size follows the type
                    length = struct.unpack(">Q", fh.read(8))[0]
                if length < 8:  # 0 = "to the end of the file"; smaller is damage
                    break
                offset, first = offset + length, False
    except OSError:
        return False
    return not first


# -- Ogg ----------------------------------------------------------------------------------

_OGG_MAX_PAGE = 27 + 255 + 255 * 255
_OGG_EOS = 0x04


def ogg_ends_with_eos(path: str | os.PathLike) -> bool | None:
    """Whether the last complete Ogg page of ``path`` carries the end-of-stream flag;
    None if no complete page is found in the tail (not Ogg, or unreadable)."""
    tail = file_tail(path)
    return None if tail is None else ogg_tail_ends_with_eos(tail)


def ogg_tail_ends_with_eos(tail: bytes) -> bool | None:
    """Whether the last complete Ogg page in ``tail`` (a file's or a stream's last two
    pages' worth of bytes) carries the end-of-stream flag; None if none is there."""
    pos = _last_complete_page(tail)
    return None if pos is None else bool(tail[pos + 5] & _OGG_EOS)


def _last_page_header(path: str | os.PathLike) -> bytes | None:
    """The 27-byte header of the last complete Ogg page of ``path``, read from its tail
    alone; None if there is none there (not Ogg, or unreadable)."""
    tail = file_tail(path)
    pos = None if tail is None else _last_complete_page(tail)
    return None if tail is None or pos is None else tail[pos : pos + 27]


# -- Matroska / WebM: a recording cut mid-block ---------------------------------------------

_MKV_CLUSTER = b"\x1f\x43\xb6\x75"
_MKV_CLUSTER_FIRST = (0xE7, 0xBF)  # a Cluster's first child: its Timestamp, or a CRC-32 before it
_MKV_MAX_OVERRUN = 1 << 26         # a cut Cluster misses less than this; more is a chance match


MATROSKA_TAILS = (1 << 18, 1 << 21, 1 << 24)   # bytes of a file's end read for its last Cluster, in turn


def matroska_file_cut(path: str | os.PathLike) -> bool | None:
    """``matroska_tail_cut`` of a file's end, read in larger pieces (MATROSKA_TAILS)
    until one holds a Cluster: a recorder that writes Clusters of 5 s of PCM (about
    1 MB) left none in the last 130 KB, and its cut file passed for whole. None when
    none is found in the last 16 MiB, or the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            return _from_the_end(fh, fh.seek(0, os.SEEK_END), MATROSKA_TAILS, matroska_tail_cut)
    except OSError:
        return None


def _from_the_end(fh: BinaryIO, size: int, windows: Sequence[int], judge: Callable[[bytes], T | None]) -> T | None:
    """``judge`` of the last ``window`` bytes of a file of ``size`` bytes, for each of
    ``windows`` (growing) in turn, until it answers or a window holds the whole file."""
    for window in windows:
        fh.seek(max(0, size - window))
        verdict = judge(fh.read())
        if verdict is not None or window >= size:
            return verdict
    return None


def matroska_tail_cut(tail: bytes) -> bool | None:
    """Whether the last Cluster in ``tail`` (a Matroska or WebM file's or stream's last
    bytes) runs past their end: a recording cut mid-block, which FFmpeg reads to the cut
    without a word (a live WebM states no Duration to compare with). None when no
    Cluster starts in the tail, or one of its elements cannot be measured."""
    end = len(tail)
    while (pos := tail.rfind(_MKV_CLUSTER, 0, end)) != -1:
        verdict = _cluster_cut(tail, pos)
        if verdict is not None:
            return verdict
        end = pos   # the ID by chance inside a block: look further back
    return None


def _cluster_cut(tail: bytes, pos: int) -> bool | None:
    """``matroska_tail_cut`` of the Cluster whose ID starts at ``tail[pos]``; None when
    it is no Cluster (its first child is not a Timestamp or CRC-32) or cannot be read.
    A Cluster of known size is cut when it ends past the tail; one of unknown size
    (written live) when its last child does."""
    size, at = _ebml_size(tail, pos + len(_MKV_CLUSTER))
    if at is None or at >= len(tail) or tail[at] not in _MKV_CLUSTER_FIRST:
        return None
    if size is not None:
        return at + size > len(tail) if at + size - len(tail) < _MKV_MAX_OVERRUN else None
    while at < len(tail):
        width = _ebml_id_width(tail[at])
        if width is None:
            return None
        if at + width > len(tail):
            return True
        child, body = _ebml_size(tail, at + width)
        if body is None:
            return True        # the child's size is cut off
        if child is None:
            return None        # a child of unknown size: nothing to measure it by
        at = body + child
    return at > len(tail)


def _ebml_id_width(first: int) -> int | None:
    """The bytes of an EBML element ID whose first byte is ``first`` (1-4), or None."""
    for width in range(1, 5):
        if first & (0x80 >> (width - 1)):
            return width
    return None


def _ebml_size(data: bytes, at: int) -> tuple[int | None, int | None]:
    """(size, where the element's body starts) of the EBML size at ``data[at]``: size
    None for "unknown" (all value bits set); (None, None) when the size is cut off or
    not a size."""
    if at >= len(data) or data[at] == 0:
        return None, None
    width = 8 - data[at].bit_length() + 1
    if at + width > len(data):
        return None, None
    value = data[at] & (0xFF >> width)
    for byte in data[at + 1:at + width]:
        value = value << 8 | byte
    return (None if value == (1 << (7 * width)) - 1 else value), at + width


def file_tail(path: str | os.PathLike) -> bytes | None:
    """The last two largest Ogg pages' worth of ``path`` (a cut inside the last page
    leaves the previous page up to two pages back); None if unreadable."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, size - 2 * _OGG_MAX_PAGE))
            return fh.read()
    except OSError:
        return None


def _last_complete_page(tail: bytes) -> int | None:
    """Where the last complete (CRC-checked) Ogg page in ``tail`` starts, or None."""
    end = len(tail)
    while (pos := tail.rfind(b"OggS", 0, end)) != -1:
        if _complete_page_type(tail, pos) is not None:
            return pos
        end = pos  # a cut page, or "OggS" inside packet data: look further back
    return None


@dataclasses.dataclass(frozen=True)
class OggLink:
    """One link of an Ogg file: where it starts, and its audio as its first packet
    states it (``codec`` "" and rate 0 for a codec not read here)."""

    offset: int
    codec: str
    samplerate: int
    channels: int

    @property
    def audio_format(self) -> tuple[str, int, int]:
        return self.codec, self.samplerate, self.channels

    def describe(self) -> str:
        channels = f"{self.channels} channel{'s' if self.channels != 1 else ''}"
        return f"{self.codec}, {self.samplerate} Hz, {channels}" if self.codec else "another codec"


# A beginning-of-stream page: capture pattern, version 0, header type BOS (never a
# continuation; possibly also EOS when the stream is one page long).
_OGG_BOS = re.compile(rb"OggS\x00[\x02\x06]")
_SCAN_BYTES = 1 << 20


def ogg_links(path: str | os.PathLike) -> list[OggLink]:
    """The links of an Ogg file in order: one for a plain file, more for a chained one;
    [] if no beginning-of-stream page is found (not Ogg, or unreadable). Streams
    multiplexed side by side (their beginning pages all together) are one link."""
    try:
        stat = os.stat(path)
    except OSError:
        return []
    return list(_ogg_links(os.fspath(path), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=8)  # a file is opened twice (its header, then its audio)
def _ogg_links(path: str, size: int, mtime_ns: int) -> tuple[OggLink, ...]:
    links: list[OggLink] = []
    previous_end = -1  # where the last beginning page ended: the next one there is grouped
    try:
        with open(path, "rb") as fh:
            # One link when the last page belongs to the first page's stream (each link
            # has its own serial number): its beginning pages are at the start, and the
            # rest of the file need not be read (a second pass over every Ogg file).
            first = fh.read(27)
            last = _last_page_header(path)
            one_link = last is not None and len(first) == 27 and first[14:18] == last[14:18]
            fh.seek(0)
            for offset in _bos_candidates(fh, limit=_SCAN_BYTES if one_link else None):
                fh.seek(offset)
                page = fh.read(_OGG_MAX_PAGE)
                length = _complete_page_length(page)
                if length is None:
                    continue  # "OggS" inside packet data, or a damaged page
                link = _link_of(offset, page[:length])
                if offset != previous_end:
                    links.append(link)
                elif not links[-1].codec and link.codec:
                    links[-1] = dataclasses.replace(link, offset=links[-1].offset)  # the audio of a group
                previous_end = offset + length
    except OSError:
        return ()
    return tuple(links)


def _bos_candidates(fh: BinaryIO, limit: int | None = None) -> list[int]:
    """Offsets of every byte run that looks like a beginning-of-stream page header, read
    in large chunks (up to ``limit`` bytes): a regular expression finds them without a
    Python step per page."""
    found: list[int] = []
    start, overlap = 0, b""
    while (limit is None or start < limit) and (chunk := fh.read(_SCAN_BYTES)):
        data = overlap + chunk
        base = start - len(overlap)
        found.extend(base + match.start() for match in _OGG_BOS.finditer(data))
        overlap, start = data[-5:], start + len(chunk)  # a pattern cut by the chunk's end
    return found


def _link_of(offset: int, page: bytes) -> OggLink:
    """The link starting with the beginning page ``page``: what its first packet says."""
    segments = page[26]
    table = page[27 : 27 + segments]
    packet_length = 0
    for lacing in table:  # the first packet ends at the first lacing value below 255
        packet_length += lacing
        if lacing < 255:
            break
    body = 27 + segments
    codec, rate, channels = _audio_header(page[body : body + packet_length])
    return OggLink(offset, codec, rate, channels)


def _audio_header(packet: bytes) -> tuple[str, int, int]:
    """(codec, sample rate, channels) from the identification packet of the codecs
    libsndfile reads in Ogg; ("", 0, 0) for any other."""
    if packet[:7] == b"\x01vorbis" and len(packet) >= 16:
        return "Vorbis", struct.unpack("<I", packet[12:16])[0], packet[11]
    if packet[:8] == b"OpusHead" and len(packet) >= 10:
        return "Opus", 48000, packet[9]  # Opus always decodes at 48 kHz
    if packet[:5] == b"\x7fFLAC" and len(packet) >= 30 and packet[9:13] == b"fLaC":
        info = packet[17:]  # STREAMINFO: rate in 20 bits after 10 bytes, then channels - 1 in 3
        return "FLAC", info[10] << 12 | info[11] << 4 | info[12] >> 4, ((info[12] >> 1) & 7) + 1
    return "", 0, 0


def _complete_page_length(data: bytes) -> int | None:
    """The length of the Ogg page at the start of ``data`` if all of it is there and its
    CRC matches, else None."""
    if len(data) < 27 or data[:4] != b"OggS" or data[4] != 0:
        return None
    segments = data[26]
    table = data[27 : 27 + segments]
    if len(table) < segments:
        return None
    length = 27 + segments + sum(table)
    page = data[:length]
    if len(page) < length:
        return None
    stored = struct.unpack("<I", page[22:26])[0]
    return length if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) == stored else None


def _complete_page_type(data: bytes, pos: int) -> int | None:
    """The header_type byte of the Ogg page at ``data[pos]`` if the whole page is present
    and its CRC matches, else None."""
    if _complete_page_length(data[pos : pos + _OGG_MAX_PAGE]) is None:
        return None
    return data[pos + 5]


def _make_crc_table() -> tuple[int, ...]:
    """CRC-32 of Ogg: polynomial 0x04C11DB7, not reflected, initial value 0 (zlib's
    crc32 is the reflected variant, so it cannot be used)."""
    table = []
    for byte in range(256):
        crc = byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        table.append(crc & 0xFFFFFFFF)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def _ogg_crc(data: bytes) -> int:
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


# Data sizes a WAV writer that cannot seek back (to a pipe) puts in its header for "up
# to the stream's end": 0, 0xFFFFFFFF (FFmpeg), 0x7FFFF000 (SoX); above that nothing
# is taken as a stated length (a real 2 GB data chunk only loses the check).
_WAV_UNKNOWN_SIZE_FROM = 0x7FFFF000
# WAVE format tags whose data size divided by the block size is the frame count: PCM,
# IEEE float, A-law, mu-law (EXTENSIBLE: its subformat's tag).
_WAV_FRAME_TAGS = frozenset({1, 3, 6, 7})
_WAV_EXTENSIBLE = 0xFFFE
_RF64_MAGICS = (b"RF64", b"BW64")   # a RIFF WAVE whose sizes may pass 4 GB (EBU Tech 3306, ITU-R BS.2088)


def stated_frames(head: bytes) -> int | None:
    """The frame count a WAV, FLAC, AIFF, AU, CAF, W64, DSF, DSDIFF or MP3 (Xing/Info)
    header at the start of ``head`` (a stream's first bytes) states exactly, or None
    when it states none: a placeholder a streaming writer left, a data chunk beyond
    ``head``, or another format."""
    if head[:4] in (b"RIFF", *_RF64_MAGICS):
        return wav_stated_frames(io.BytesIO(head))
    info = flac_streaminfo(head)
    if info is not None:
        return info.total or None  # 0: unknown (a pipe's encoder)
    for reader in _CHUNKED_HEADER_READERS:
        try:
            stated = reader(io.BytesIO(head))
        except (ValueError, OverflowError):   # a seek past what an offset holds: a damaged header
            stated = None
        if stated is not None:
            return stated
    return mp3_stated_frames(head)


def file_stated_frames(path: str | os.PathLike) -> int | None:
    """``stated_frames`` of a file's header (a FLAC's after an ID3v2 tag of any size,
    an MP3's within the first 64 KiB after its ID3v2 tags), or the count an AU, CAF,
    W64, DSF or DSDIFF header states (a cut CAF, which libsndfile refuses, goes to FFmpeg). FFmpeg reads
    files libsndfile does not take by their name (an MP3 or AIFF named .m4a): a cut
    one was "ok" there, its stated length unread."""
    lengths = flac_file_lengths(path)
    if lengths is not None:
        return lengths.stated
    for reader in (wav_stated_frames, *_CHUNKED_HEADER_READERS):
        stated = header_of_file(path, reader)
        if stated is not None:
            return stated
    head = _head_after_id3(path)
    return None if head is None else mp3_stated_frames(head)


def _head_after_id3(path: str | os.PathLike) -> bytes | None:
    """The first _MP3_SCAN_BYTES of a file after its ID3v2 tag(s); None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            fh.seek(_id3v2_end(fh))
            return fh.read(_MP3_SCAN_BYTES)
    except OSError:
        return None


# AIFF-C compression types whose COMM frame count is a count of sample frames (PCM,
# float, the u-law, A-law and GSM 6.10 that libsndfile writes); IMA ADPCM's counts packets.
_AIFC_FRAME_TYPES = frozenset({b"NONE", b"sowt", b"twos", b"raw ", b"in24", b"in32", b"42n1", b"23ni", b"42ni",
                               b"fl32", b"FL32", b"fl64", b"FL64", b"ulaw", b"ULAW", b"alaw", b"ALAW", b"GSM "})


# Chunks a header reader walks at most: a 50 MB file of empty chunks took 1.6 s to read
# for a length (real headers hold a few dozen before their audio).
MAX_HEADER_CHUNKS = 10_000


def _chunk_headers(fh: BinaryIO, width: int) -> Iterator[bytes]:
    """The next ``width`` bytes of ``fh`` (a chunk's id and size), while there are that
    many, at most MAX_HEADER_CHUNKS times; the reader seeks past each chunk's body."""
    for _ in range(MAX_HEADER_CHUNKS):
        header = fh.read(width)
        if len(header) < width:
            return
        yield header


# SoX writing AIFF to a pipe states a FORM size of 0x7F000000 plus its header (which holds
# the input's tags as a comment: any size) and a frame count of 0x7F000000 bytes' worth:
# a complete stream read as cut, 3.4 hours long. Known by that count, so that a real
# AIFF of 2.13 GB or more keeps its stated length.
_SOX_PIPE_BYTES = 0x7F000000


def aiff_stated_frames(fh: BinaryIO) -> int | None:
    """The sample frames the COMM chunk of the AIFF or AIFF-C read from ``fh`` (at its
    start: a file, or a stream's first bytes) states, or None: not one, no COMM chunk
    within what ``fh`` holds, a count of 0 (what a writer to a pipe leaves), or a
    compressed AIFF-C. libsndfile clamps a file's count to the bytes present, as a
    WAV's; on stdin FFmpeg states none."""
    head = fh.read(12)
    if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
        return None
    form_size = struct.unpack(">I", head[4:8])[0]
    for header in _chunk_headers(fh, 8):
        tag, size = header[:4], struct.unpack(">I", header[4:])[0]
        if tag == b"COMM":
            body = fh.read(min(size, 22))
            if len(body) < 18 or (head[8:12] == b"AIFC" and body[18:22] not in _AIFC_FRAME_TYPES):
                return None
            channels, frames, bits = struct.unpack(">hIh", body[:8])
            frame_bytes = max(channels, 1) * max((bits + 7) // 8, 1)
            if form_size >= _SOX_PIPE_BYTES and frames == _SOX_PIPE_BYTES // frame_bytes:
                return None
            return frames or None
        fh.seek(size + (size & 1), os.SEEK_CUR)   # chunks are padded to an even length
    return None


# A stated length of more seconds than this is a damaged header, not a length (about 32
# years: audio.MAX_STATED_S); a size of 2**64 - 1 made an intact file "partial".
_MAX_STATED_SECONDS = 1e9


def _plausible(frames: int, rate: float) -> int | None:
    """``frames`` if it is a length a file can have at ``rate`` (Hz), else None."""
    return frames if frames > 0 and rate > 0 and frames / rate <= _MAX_STATED_SECONDS else None


# Sun/NeXT AU encodings whose data size over (bytes per sample x channels) is the frame
# count: mu-law, 8/16/24/32-bit PCM, float, double, A-law.
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
_AU_UNKNOWN_SIZE = 0xFFFFFFFF


def au_stated_frames(fh: BinaryIO) -> int | None:
    """The frames the header of the Sun/NeXT AU file read from ``fh`` states: its data
    size over the frame size. None: not an AU, the "unknown" size a writer to a pipe
    leaves, or a compressed encoding (G.72x) whose size is no frame count. libsndfile
    clamps the count to the bytes present, so a cut AU looked whole."""
    head = fh.read(24)
    if len(head) < 24:
        return None
    order = {b".snd": ">", b"dns.": "<"}.get(head[:4])
    if order is None:
        return None
    _, data_size, encoding, rate, channels = struct.unpack(order + "5I", head[4:24])
    width = _AU_SAMPLE_BYTES.get(encoding)
    if width is None or not channels or data_size == _AU_UNKNOWN_SIZE:
        return None
    return _plausible(data_size // (width * channels), rate)


# Sony Wave64: chunk ids are GUIDs, the first four bytes the RIFF tag's letters.
_W64_GUID_TAIL = bytes.fromhex("f3acd3118cd100c04f8edb8a")
_W64_RIFF = bytes.fromhex("726966662e91cf11a5d628db04c10000")
_W64_CHUNK_HEAD = 24   # a chunk's GUID and its 64-bit size (which counts them)


def w64_stated_frames(fh: BinaryIO) -> int | None:
    """The frames a Sony Wave64 file's ``data`` chunk states (its size, less its header,
    over the ``fmt `` block size), read from ``fh``; None: not a W64, no such chunk, a
    chunk size beyond the file's stated size (a damaged header), or a codec whose size
    is no frame count. A W64 is a WAV with 64-bit sizes, clamped by libsndfile as a WAV
    is."""
    head = fh.read(40)
    if len(head) < 40 or head[:16] != _W64_RIFF or head[24:28] != b"wave" or head[28:] != _W64_GUID_TAIL:
        return None
    riff_size = struct.unpack("<Q", head[16:24])[0]
    block_align, rate = 0, 0
    for header in _chunk_headers(fh, _W64_CHUNK_HEAD):
        guid, size = header[:16], struct.unpack("<Q", header[16:])[0]
        if guid[4:] != _W64_GUID_TAIL or not _W64_CHUNK_HEAD <= size <= riff_size:
            return None
        body = size - _W64_CHUNK_HEAD
        if guid[:4] == b"data":
            return _plausible(body // block_align, rate) if block_align else None
        if guid[:4] == b"fmt ":
            fmt = fh.read(min(body, 26))
            if len(fmt) < 16:
                return None
            format_tag, _, rate = struct.unpack("<HHI", fmt[:8])
            block_align = struct.unpack("<H", fmt[12:14])[0]
            if format_tag == _WAV_EXTENSIBLE and len(fmt) >= 26:
                format_tag = struct.unpack("<H", fmt[24:26])[0]
            if format_tag not in _WAV_FRAME_TAGS:
                return None
            body -= len(fmt)
        fh.seek(body + (-size % 8), os.SEEK_CUR)   # chunks are padded to 8 bytes
    return None


_CAF_TO_THE_END = -1   # a data chunk's size when its writer could not seek back: "to the file's end"


def caf_stated_frames(fh: BinaryIO) -> int | None:
    """The frames an Apple CAF file states: the ``pakt`` chunk's count of valid frames
    (ALAC and other packet formats), else for linear PCM the ``data`` chunk's size
    (less its 4-byte edit count) over the bytes of a packet. None: not a CAF, a data
    size "to the file's end" (a writer to a pipe), a size no file has, or no such
    chunks."""
    head = fh.read(8)
    if len(head) < 8 or head[:4] != b"caff":
        return None
    rate, packet_bytes, data_size = 0.0, 0, None
    for header in _chunk_headers(fh, 12):
        tag, size = header[:4], struct.unpack(">q", header[4:])[0]
        if tag == b"data" and size == _CAF_TO_THE_END:
            return None   # the last chunk: no pakt can follow it
        if size < 0:
            return None
        if tag == b"desc":
            desc = fh.read(min(size, 32))
            if len(desc) < 32:
                return None
            rate = struct.unpack(">d", desc[:8])[0]
            linear_pcm = desc[8:12] == b"lpcm"
            bytes_per_packet, frames_per_packet = struct.unpack(">II", desc[16:24])
            packet_bytes = bytes_per_packet if linear_pcm and frames_per_packet == 1 else 0
            size -= len(desc)
        elif tag == b"pakt":
            pakt = fh.read(16)
            return _plausible(struct.unpack(">q", pakt[8:16])[0], rate) if len(pakt) == 16 else None
        elif tag == b"data" and size >= 4:
            data_size = size - 4   # after its edit count
        fh.seek(size, os.SEEK_CUR)
    if data_size is None or not packet_bytes:
        return None
    return _plausible(data_size // packet_bytes, rate)


def dsf_stated_frames(fh: BinaryIO) -> int | None:
    """The frames FFmpeg decodes from the DSF file read from ``fh`` by its ``fmt ``
    chunk: the 1-bit samples per channel it states over 8 (DSD decodes to 1/8 of its
    bit rate). None: not a DSF of raw 1-bit DSD (an 8-bit one states no length here).
    FFmpeg's duration is the data the file holds, so a cut DSF looked whole."""
    head = fh.read(28 + 12 + 32)   # the DSD chunk, then the fmt chunk's id, size and fields
    if len(head) < 72 or head[:4] != b"DSD " or head[28:32] != b"fmt ":
        return None
    format_id = struct.unpack("<I", head[44:48])[0]
    rate, bits, samples = struct.unpack("<IIQ", head[56:72])
    if format_id != 0 or bits != 1:
        return None
    return _plausible(samples // 8, rate / 8)


def dff_stated_frames(fh: BinaryIO) -> int | None:
    """The frames FFmpeg decodes from the DSDIFF (.dff) file read from ``fh``: the size
    of its uncompressed ``DSD `` chunk over the channel count of its ``PROP`` chunk (a
    byte per channel holds 8 bits, one decoded frame). None: not a DSDIFF of plain DSD
    (a DST-compressed one states packets), or a chunk size beyond the file's stated
    size. FFmpeg's duration is the data the file holds, so a cut DSDIFF looked whole."""
    head = fh.read(16)
    if len(head) < 16 or head[:4] != b"FRM8" or head[12:16] != b"DSD ":
        return None
    form_size = struct.unpack(">Q", head[4:12])[0]
    channels, rate = 0, 0
    for header in _chunk_headers(fh, 12):
        tag, size = header[:4], struct.unpack(">Q", header[4:])[0]
        if size > form_size:
            return None
        if tag == b"PROP":
            prop = fh.read(min(size, 4096))
            channels, rate = _dff_channels_and_rate(prop)
            fh.seek(size - len(prop) + (size & 1), os.SEEK_CUR)   # chunks are padded to an even length
            continue
        if tag == b"DSD ":
            return _plausible(size // channels, rate / 8) if channels else None
        if tag == b"DST ":
            return None
        fh.seek(size + (size & 1), os.SEEK_CUR)
    return None


def _dff_channels_and_rate(prop: bytes) -> tuple[int, int]:
    """(channels, DSD rate in Hz) of a DSDIFF ``PROP`` chunk's body (``SND `` then
    sub-chunks); 0 for either it does not hold."""
    channels = rate = 0
    at = 4
    while at + 12 <= len(prop):
        tag, size = prop[at:at + 4], struct.unpack(">Q", prop[at + 4:at + 12])[0]
        if tag == b"CHNL" and at + 14 <= len(prop):
            channels = int(struct.unpack(">H", prop[at + 12:at + 14])[0])
        elif tag == b"FS  " and at + 16 <= len(prop):
            rate = int(struct.unpack(">I", prop[at + 12:at + 16])[0])
        at += 12 + size + (size & 1)
    return channels, rate


# libsndfile's formats whose frame count it clamps to the bytes present, by its name, with
# the reader of the count their header states (a cut file then shows as partial).
STATED_BY_FORMAT: dict[str, Callable[[BinaryIO], int | None]] = {
    "AIFF": aiff_stated_frames, "AU": au_stated_frames, "CAF": caf_stated_frames, "W64": w64_stated_frames,
}
# The readers of headers that state a length, each telling its own format by its first bytes.
_CHUNKED_HEADER_READERS: tuple[Callable[[BinaryIO], int | None], ...] = (
    *STATED_BY_FORMAT.values(), dsf_stated_frames, dff_stated_frames)


def header_of_file(path: str | os.PathLike, reader: Callable[[BinaryIO], T | None]) -> T | None:
    """What ``reader`` (``wav_stated_frames``, ``aiff_stated_frames``) finds in the
    header of the file at ``path``; None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return reader(fh)
    except (OSError, ValueError, OverflowError):   # a seek past what an offset holds: a damaged header
        return None


def wav_stated_frames(fh: BinaryIO) -> int | None:
    """The frames the RIFF header read from ``fh`` (at its start: a file, or a stream's
    first bytes) states exactly: the ``data`` chunk's size over the ``fmt`` block size.
    None when it states none: not a WAV, a placeholder size, a codec whose size is no
    frame count, or no data chunk within what ``fh`` holds. One reader for files and
    streams (libsndfile clamps a file's count to the bytes present, so a truncated WAV
    looked complete; on stdin FFmpeg gives no length at all)."""
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", *_RF64_MAGICS):
        return None
    riff_size, data_size = struct.unpack("<I", head[4:8])[0], None
    if head[:4] in _RF64_MAGICS:   # sizes past 4 GB: the 64-bit ones are in the ds64 chunk that follows
        sizes = _ds64_sizes(fh)
        if sizes is None:
            return None
        riff_size, data_size = sizes
    elif not 0 < riff_size < _WAV_UNKNOWN_SIZE_FROM:
        return None
    block_align = 0
    for header in _chunk_headers(fh, 8):
        tag, size = header[:4], struct.unpack("<I", header[4:])[0]
        if tag == b"data":
            if data_size is not None and size == 0xFFFFFFFF:
                size = data_size
            elif not 0 < size < _WAV_UNKNOWN_SIZE_FROM:
                return None
            if not block_align or size > riff_size:
                return None
            return size // block_align
        body = fh.read(min(size, 26)) if tag == b"fmt " else b""
        if tag == b"fmt ":
            if len(body) < 16:
                return None
            format_tag, block_align = struct.unpack("<H", body[:2])[0], struct.unpack("<H", body[12:14])[0]
            if format_tag == _WAV_EXTENSIBLE and len(body) >= 26:
                format_tag = struct.unpack("<H", body[24:26])[0]  # the subformat GUID starts with the tag
            if format_tag not in _WAV_FRAME_TAGS:
                return None
        fh.seek(size - len(body) + (size & 1), os.SEEK_CUR)  # chunks are padded to an even length
    return None


def _ds64_sizes(fh: BinaryIO) -> tuple[int, int] | None:
    """(RIFF size, data size) of an RF64 / BW64 file's ds64 chunk, read from ``fh`` just
    after the 12-byte head (EBU Tech 3306: it is the first chunk); None when it is not
    there or states no size (0, or a placeholder past 2**62: a writer to a pipe)."""
    header = fh.read(8)
    if len(header) < 8 or header[:4] != b"ds64":
        return None
    size = struct.unpack("<I", header[4:])[0]
    body = fh.read(size + (size & 1))
    if size < 24 or len(body) < 24:
        return None
    riff_size, data_size = struct.unpack("<QQ", body[:16])
    return (riff_size, data_size) if 0 < data_size < 2**62 and 0 < riff_size < 2**62 else None


# -- WAV files joined on a stream ---------------------------------------------------------

WAV_HEADER_BYTES = 12  # "RIFF", the RIFF size, "WAVE": what makes a WAV file's start


def is_wav_header(data: bytes | bytearray, at: int = 0) -> bool:
    """Whether ``data[at:]`` starts with a WAV file's first 12 bytes."""
    return data[at : at + 4] == b"RIFF" and data[at + 8 : at + 12] == b"WAVE"


def find_wav_header(data: bytes | bytearray, start: int = 0) -> int:
    """Where the first WAV file header (``RIFF....WAVE``) wholly inside ``data`` at or
    after ``start`` begins, or -1. ``find`` runs at memory speed: PCM holds a chance
    "RIFF" about once per 4 GB, and "RIFF....WAVE" practically never."""
    at = data.find(b"RIFF", start)
    while at != -1 and at + WAV_HEADER_BYTES <= len(data):
        if is_wav_header(data, at):
            return at
        at = data.find(b"RIFF", at + 1)
    return -1


def incomplete_wav_header(data: bytes | bytearray, start: int = 0) -> int:
    """Where, among the last 11 bytes of ``data`` (at or after ``start``), a WAV header
    that the next bytes may complete begins; ``len(data)`` if nowhere."""
    at = data.find(b"R", max(start, len(data) - WAV_HEADER_BYTES + 1))
    while at != -1:
        tail = bytes(data[at:])
        if b"RIFF".startswith(tail[:4]) and b"WAVE".startswith(tail[8:]):
            return at
        at = data.find(b"R", at + 1)
    return len(data)


# -- FLAC: what STREAMINFO states and what the frames hold --------------------------------


@dataclasses.dataclass(frozen=True)
class FlacStreamInfo:
    """The STREAMINFO block's facts used here; ``total`` 0 means "unknown" (what an
    encoder writing to a pipe leaves), ``max_frame`` 0 too."""

    max_block: int
    max_frame: int
    samplerate: int
    channels: int
    bits: int
    total: int


def flac_streaminfo(head: bytes) -> FlacStreamInfo | None:
    """STREAMINFO of the FLAC stream at the start of ``head`` (after an ID3v2 tag, which
    some taggers put there), or None if ``head`` does not start with one."""
    start = _id3v2_size(head)
    head = head[start : start + 42]
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:  # STREAMINFO must come first
        return None
    info = head[8:42]
    return FlacStreamInfo(
        max_block=struct.unpack(">H", info[2:4])[0],
        max_frame=int.from_bytes(info[7:10], "big"),
        samplerate=info[10] << 12 | info[11] << 4 | info[12] >> 4,
        channels=((info[12] >> 1) & 7) + 1,
        bits=((info[12] & 1) << 4 | info[13] >> 4) + 1,
        # 36 bits after the rate, channels and bits per sample
        total=(info[13] & 0x0F) << 32 | struct.unpack(">I", info[14:18])[0],
    )


def _id3v2_size(head: bytes) -> int:
    """The bytes of the ID3v2 tag(s) at the start of ``head`` (0 if none)."""
    with io.BytesIO(head) as fh:
        return _id3v2_end(fh)


@dataclasses.dataclass(frozen=True)
class FlacLengths:
    """A FLAC file's length twice: as STREAMINFO states it (None: "unknown") and as its
    last frame's header numbers it (None if the file's end holds no frame header that
    the frame before confirms)."""

    stated: int | None
    held: int | None


def flac_file_lengths(path: str | os.PathLike) -> FlacLengths | None:
    """``FlacLengths`` of a FLAC file; None if it is not one (or cannot be read).

    libsndfile reads a FLAC file no further than STREAMINFO's total, so a header that
    understates the length (a tool that rewrote it, a file joined to another) drops
    audio in silence; FFmpeg reads every frame, as it does on stdin. Each frame header
    numbers its frame (fixed block size) or first sample (variable), so the last one
    in the file's tail says what the frames hold, at the cost of one read of the tail."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _flac_file_lengths(os.fspath(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)  # a file is opened twice (its header, then its audio)
def _flac_file_lengths(path: str, size: int, mtime_ns: int) -> FlacLengths | None:
    try:
        with open(path, "rb") as fh:
            fh.seek(_id3v2_end(fh))
            info = flac_streaminfo(fh.read(42))
            if info is None:
                return None
            # A file that states no length has only its frames to say it was read to
            # the end; a tag after them larger than the tail read (an APE tag with cover
            # art) hid them, so its end is read in larger pieces until one holds frames.
            windows = (_flac_tail_bytes(info),) if info.total else (_flac_tail_bytes(info), 1 << 21, 1 << 24)
            held = _from_the_end(fh, size, windows, lambda tail: _flac_frames_held(tail, info))
    except OSError:
        return None
    return FlacLengths(info.total or None, held)


def _flac_tail_bytes(info: FlacStreamInfo) -> int:
    """How much of a file's end to read to hold its last three frames: by STREAMINFO's
    largest frame, bounded by what an uncompressed block takes (the bound alone when
    the largest is unknown, 0; a damaged header may claim 16 MB); plus room for a tag
    after the audio (ID3v1, APE)."""
    uncompressed = info.max_block * info.channels * (info.bits + 7) // 8 + 64
    largest = min(info.max_frame, uncompressed) if info.max_frame else uncompressed
    return 3 * largest + 65536


# Frame header fields (RFC 9639, 9.1): sample rates and sample sizes by their codes.
_FLAC_RATES = {1: 88200, 2: 176400, 3: 192000, 4: 8000, 5: 16000, 6: 22050, 7: 24000, 8: 32000,
               9: 44100, 10: 48000, 11: 96000}
_FLAC_BITS = {1: 8, 2: 12, 4: 16, 5: 20, 6: 24, 7: 32}
_FLAC_SYNC = re.compile(rb"\xff[\xf8\xf9]")  # 14 sync bits, a reserved 0, the blocking strategy


@dataclasses.dataclass(frozen=True)
class _FlacFrame:
    variable: bool  # blocking strategy: ``number`` is a sample number, else a frame number
    number: int
    block: int  # samples in the frame


def _flac_frames_held(tail: bytes, info: FlacStreamInfo) -> int | None:
    """The samples up to the end of the last frame whose header is in ``tail``. A sync
    code with a matching CRC-8 turns up by chance in compressed audio, so a frame counts
    only when a frame header before it numbers the frame just before it."""
    frames = [frame for match in _FLAC_SYNC.finditer(tail) if (frame := _flac_frame_at(tail, match.start(), info))]
    held = None
    for index, frame in enumerate(frames):
        for before in frames[max(0, index - 4) : index]:  # a chance match may lie between two frames
            if before.variable == frame.variable:
                if frame.variable and frame.number == before.number + before.block:
                    held = frame.number + frame.block
                elif not frame.variable and frame.number == before.number + 1:
                    held = frame.number * before.block + frame.block  # every frame but the last has one size
    return held


def _flac_frame_at(data: bytes, at: int, info: FlacStreamInfo) -> _FlacFrame | None:
    """The frame whose header starts at ``data[at]`` (its sync code), if its CRC-8 is
    right and it agrees with STREAMINFO; else None."""
    if at + 6 > len(data):
        return None
    size_code, rate_code = data[at + 2] >> 4, data[at + 2] & 0x0F
    assignment, bits_code = data[at + 3] >> 4, (data[at + 3] >> 1) & 7
    if size_code == 0 or rate_code == 15 or assignment > 10 or bits_code == 3 or data[at + 3] & 1:
        return None  # reserved or forbidden codes
    if (assignment + 1 if assignment < 8 else 2) != info.channels:
        return None
    if bits_code and _FLAC_BITS[bits_code] != info.bits:
        return None
    if _FLAC_RATES.get(rate_code, info.samplerate) != info.samplerate:
        return None
    coded = _utf8_coded_number(data, at + 4)
    if coded is None:
        return None
    number, pos = coded
    if size_code == 6:
        block, pos = data[pos] + 1 if pos < len(data) else 0, pos + 1
    elif size_code == 7:
        block, pos = int.from_bytes(data[pos : pos + 2], "big") + 1, pos + 2
    else:
        block = 192 if size_code == 1 else 576 << (size_code - 2) if size_code < 6 else 256 << (size_code - 8)
    pos += {12: 1, 13: 2, 14: 2}.get(rate_code, 0)  # a rate stated in the header's own bytes
    if pos >= len(data) or not 0 < block <= max(info.max_block, 16) or _crc8(data[at:pos]) != data[pos]:
        return None
    return _FlacFrame(bool(data[at + 1] & 1), number, block)


def _utf8_coded_number(data: bytes, at: int) -> tuple[int, int] | None:
    """(the number, where its bytes end) of the UTF-8-like coded frame or sample number
    at ``data[at]`` (1 to 7 bytes), or None if its bytes are not such a code."""
    if at >= len(data):
        return None
    first = data[at]
    if first < 0x80:
        return first, at + 1
    length = 8 - (first ^ 0xFF).bit_length()  # its leading one bits: the bytes of the code
    if not 2 <= length <= 7 or at + length > len(data):
        return None
    number = first & (0x7F >> length)
    for byte in data[at + 1 : at + length]:
        if byte & 0xC0 != 0x80:
            return None
        number = number << 6 | byte & 0x3F
    return number, at + length


def _make_crc8_table() -> tuple[int, ...]:
    """CRC-8 of FLAC frame headers: polynomial 0x07, initial value 0."""
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else crc << 1
        table.append(crc)
    return tuple(table)


_CRC8_TABLE = _make_crc8_table()


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8_TABLE[crc ^ byte]
    return crc
