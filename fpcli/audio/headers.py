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
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

# -- MP3 ----------------------------------------------------------------------------------

_MP3_SCAN_BYTES = 65536  # where the first frame must start after the ID3v2 tag(s)


def mp3_states_length(path: str | os.PathLike) -> bool:
    """True if the first MPEG audio frame of ``path`` is a Xing/Info frame with a frame
    count, or carries a VBRI header: then the decoder's length is exact."""
    try:
        with open(path, "rb") as fh:
            fh.seek(_id3v2_end(fh))
            data = fh.read(_MP3_SCAN_BYTES)
    except OSError:
        return False
    start = _first_frame(data)
    if start is None:
        return False
    return _has_length_header(data[start:])


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
    header = _frame_header(frame, 0)
    if header is None:
        return False
    version, mono, crc = header
    # The Xing tag follows the side information, whose size depends on version/mode.
    side = (17 if mono else 32) if version == 3 else (9 if mono else 17)
    for offset in (4 + side, 4 + side + 2) if crc else (4 + side,):
        tag = frame[offset : offset + 8]
        if tag[:4] in (b"Xing", b"Info") and len(tag) == 8:
            flags = struct.unpack(">I", tag[4:])[0]
            return bool(flags & 0x1)  # bit 0: the frame count field is present
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
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            # A cut inside the last page leaves the previous page up to two pages back.
            start = max(0, size - 2 * _OGG_MAX_PAGE)
            fh.seek(start)
            tail = fh.read()
    except OSError:
        return None
    end = len(tail)
    while (pos := tail.rfind(b"OggS", 0, end)) != -1:
        header_type = _complete_page_type(tail, pos)
        if header_type is not None:
            return bool(header_type & _OGG_EOS)
        end = pos  # a cut page, or "OggS" inside packet data: look further back
    return None


def _complete_page_type(data: bytes, pos: int) -> int | None:
    """The header_type byte of the Ogg page at ``data[pos]`` if the whole page is present
    and its CRC matches, else None."""
    if pos + 27 > len(data) or data[pos + 4] != 0:
        return None
    segments = data[pos + 26]
    table = data[pos + 27 : pos + 27 + segments]
    if len(table) < segments:
        return None
    length = 27 + segments + sum(table)
    page = data[pos : pos + length]
    if len(page) < length:
        return None
    stored = struct.unpack("<I", page[22:26])[0]
    if _ogg_crc(page[:22] + b"\0\0\0\0" + page[26:]) != stored:
        return None
    return page[5]


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
