"""Process memory: what the process holds (RSS), and handing freed heap back to the OS."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)
_M_ARENA_MAX = -8  # glibc mallopt parameter
_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name or "libc.so.6")
            lib.malloc_trim  # noqa: B018 - glibc only (musl has none)
            _libc = lib
        except (OSError, AttributeError):
            return None
    return _libc


def rss_bytes() -> int:
    """Resident memory of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def trim_heap() -> None:
    """Return freed heap pages to the OS (after a model is unloaded), so RSS follows what is loaded."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def limit_malloc_arenas(n: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas: every pre and compute thread would otherwise keep its own
    heap, and memory freed in one is not reused by another (RSS grows with threads, not with models)."""
    lib = _glibc()
    if lib is not None and not lib.mallopt(_M_ARENA_MAX, n):
        log.debug("mallopt(M_ARENA_MAX) was refused")
