"""Rows read straight from the pages of an SQLite database file, for a repair.

A damaged page inside a table's b-tree (its root or an interior page) hides every row
below it from SQL, though the leaf pages that hold the rows are intact: a repair that
read through SQL alone rebuilt such a store empty. Here the file is read as the
SQLite file format (https://www.sqlite.org/fileformat2.html) describes it: every
table leaf page is parsed on its own, its cells and their overflow chains followed,
whatever state the pages above it are in. Pages on the freelist hold deleted rows and
are skipped. A cell that does not parse (the damaged part) is skipped, never guessed.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

_HEADER = b"SQLite format 3\x00"
_LEAF_TABLE = 0x0D
_DEFAULT_PAGE_SIZE = 4096   # when the file's header is itself damaged


class _Unparsable(Exception):
    """A cell whose bytes do not hold a record (damage)."""


def table_rows(path: str | os.PathLike[str], columns: int) -> Iterator[tuple[int, list[Any]]]:
    """(rowid, values) of every cell on the table leaf pages of the database at
    ``path`` whose record has ``columns`` values (a rowid alias counts, as NULL); in
    page order. Nothing when the file cannot be read."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
                yield from _File(data).rows(columns)
    except (OSError, ValueError):
        return


class _File:
    def __init__(self, data: mmap.mmap) -> None:
        self.data = data
        size = int.from_bytes(data[16:18], "big")
        size = 65536 if size == 1 else size
        # The header is trusted only whole: its magic, a page size SQLite allows, and the
        # three bytes the format fixes (64, 32, 32). Damage past an intact magic once made
        # 255 reserved bytes a page, and every row with an overflow chain was lost.
        header_ok = (data[:16] == _HEADER and 512 <= size <= 65536 and not size & (size - 1)
                     and data[21:24] == b"\x40\x20\x20")
        self.page_size = size if header_ok else _DEFAULT_PAGE_SIZE
        self.usable = self.page_size - (data[20] if header_ok else 0)
        self.pages = len(data) // self.page_size
        self.free = self._freelist() if header_ok else set()

    def rows(self, columns: int) -> Iterator[tuple[int, list[Any]]]:
        for number in range(1, self.pages + 1):
            if number in self.free:
                continue
            start = (number - 1) * self.page_size
            at = start + (100 if number == 1 else 0)
            if self.data[at] != _LEAF_TABLE:
                continue
            cells = int.from_bytes(self.data[at + 3 : at + 5], "big")
            for i in range(min(cells, self.page_size // 2)):
                pointer = int.from_bytes(self.data[at + 8 + 2 * i : at + 10 + 2 * i], "big")
                try:
                    rowid, values = self._cell(start, pointer)
                except (_Unparsable, IndexError, struct.error, UnicodeDecodeError):
                    continue
                if len(values) == columns:
                    yield rowid, values

    def _freelist(self) -> set[int]:
        """Trunk and leaf pages of the freelist (a damaged list ends where it breaks)."""
        free: set[int] = set()
        trunk = int.from_bytes(self.data[32:36], "big")
        while 0 < trunk <= self.pages and trunk not in free:
            free.add(trunk)
            at = (trunk - 1) * self.page_size
            leaves = int.from_bytes(self.data[at + 4 : at + 8], "big")
            for i in range(min(leaves, self.usable // 4 - 2)):
                leaf = int.from_bytes(self.data[at + 8 + 4 * i : at + 12 + 4 * i], "big")
                if 0 < leaf <= self.pages:
                    free.add(leaf)
            trunk = int.from_bytes(self.data[at : at + 4], "big")
        return free

    def _cell(self, page_start: int, pointer: int) -> tuple[int, list[Any]]:
        """(rowid, values) of the leaf table cell at ``pointer`` in the page."""
        if not 8 <= pointer < self.page_size:
            raise _Unparsable
        at = page_start + pointer
        size, at = _varint(self.data, at)
        rowid, at = _varint(self.data, at)
        return rowid, _record(self._payload(page_start, at, size))

    def _payload(self, page_start: int, at: int, size: int) -> bytes:
        """The cell's ``size`` bytes of payload: the part on its page, then the rest
        from its overflow pages (the file format's rule for how much stays local)."""
        most = self.usable - 35
        if size <= most:
            local = size
        else:
            least = (self.usable - 12) * 32 // 255 - 23
            local = least + (size - least) % (self.usable - 4)
            local = local if local <= most else least
        if at + local > page_start + self.page_size:
            raise _Unparsable
        parts = [self.data[at : at + local]]
        missing = size - local
        page = int.from_bytes(self.data[at + local : at + local + 4], "big") if missing else 0
        seen: set[int] = set()
        while missing > 0:
            if not 0 < page <= self.pages or page in seen:
                raise _Unparsable
            seen.add(page)
            start = (page - 1) * self.page_size
            chunk = min(missing, self.usable - 4)
            parts.append(self.data[start + 4 : start + 4 + chunk])
            missing -= chunk
            page = int.from_bytes(self.data[start : start + 4], "big")
        return b"".join(parts)


def _varint(data: Any, at: int) -> tuple[int, int]:
    """(value, offset after it) of the SQLite varint at ``at`` (1-9 bytes, big-endian)."""
    value = 0
    for i in range(8):
        byte = data[at + i]
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value, at + i + 1
    return (value << 8) | data[at + 8], at + 9


_INT_SIZES = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 8}


def _record(payload: bytes) -> list[Any]:
    """The values of a record (header of serial types, then the values)."""
    header_size, at = _varint(payload, 0)
    if not 0 < header_size <= len(payload):
        raise _Unparsable
    types = []
    while at < header_size:
        serial, at = _varint(payload, at)
        types.append(serial)
    if at != header_size:
        raise _Unparsable
    values: list[Any] = []
    for serial in types:
        if serial in (0, 8, 9):
            values.append(None if serial == 0 else serial - 8)
        elif serial in _INT_SIZES:
            width = _INT_SIZES[serial]
            values.append(int.from_bytes(payload[at : at + width], "big", signed=True))
            at += width
        elif serial == 7:
            values.append(struct.unpack(">d", payload[at : at + 8])[0])
            at += 8
        elif serial >= 12:
            width = (serial - 12) // 2
            raw = payload[at : at + width]
            values.append(raw.decode("utf-8") if serial % 2 else bytes(raw))
            at += width
        else:
            raise _Unparsable   # 10 and 11 are reserved
        if at > len(payload):
            raise _Unparsable
    return values
