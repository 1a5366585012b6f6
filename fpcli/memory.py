"""Process-level allocator tuning for fpcli's own processes (CLI, workers, Dask tasks).

Each analysed block allocates and frees a few MB of temporary arrays. With glibc's
defaults those large blocks are mmap'd and unmapped (or the heap trimmed) again and
again; keeping them on the heap makes the analysis 12-15 % faster here, and undoes
Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` for its workers, which made it 36 % slower
(measured on one 182 s track: 231 -> 258x real time locally; 151 -> 247x in a Dask
worker). The cost: a process may keep up to 128 MiB of freed memory for reuse.
The file-level library functions (``analyze_streaming``, ``analyze_batch``) call it
too, so the library is as fast as the command; callers of the analyzer classes may
call ``keep_buffers_on_heap()`` in their own processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3


def keep_buffers_on_heap() -> bool:
    """Raise glibc's trim (128 MiB) and mmap (32 MiB) thresholds; False if not glibc.
    Idempotent; affects the calling process only."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_TRIM_THRESHOLD, 128 * 2**20)) and bool(
            libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20))
    except (OSError, AttributeError):
        return False
