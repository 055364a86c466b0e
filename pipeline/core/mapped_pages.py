"""Give back the pages of a file's read-only map that a long sequential read has touched.

LMDB reads through an mmap: every archive page a replay touches stays in the process's resident
set (as clean, file-backed pages) until the map is closed, so replaying an 8 GiB archive would
show 8 GiB of RSS although the process holds only a few MiB of its own. ``madvise(MADV_DONTNEED)``
drops those pages from this process's page tables; the data stays in the page cache and a later
read faults it back in unchanged (the map is shared and file-backed, so nothing can be lost).
Linux only: elsewhere ``release`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MADV_DONTNEED = 4
_libc: ctypes.CDLL | None = None


def _madvise() -> ctypes._NamedFuncPointer | None:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _libc.madvise.restype = ctypes.c_int
    return _libc.madvise


def mapped_ranges(path: str) -> list[tuple[int, int]]:
    """(start, end) of this process's maps of ``path`` (from /proc/self/maps; [] elsewhere)."""
    target = os.path.realpath(path)
    ranges: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) == 6 and parts[5].rstrip("\n") == target:
                    start, _, end = parts[0].partition("-")
                    ranges.append((int(start, 16), int(end, 16)))
    except OSError:
        return []
    return ranges


def release(path: str) -> int:
    """Drop this process's resident pages of its maps of ``path``; the bytes released from view."""
    madvise = _madvise()
    if madvise is None:
        return 0
    released = 0
    for start, end in mapped_ranges(path):
        if madvise(start, end - start, MADV_DONTNEED) == 0:
            released += end - start
    return released
