"""Process memory: what the process holds (RSS), handing freed heap back to the OS, and the memory budget that
loaded models share."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from ml_service.errors import ModelUnavailable

log = logging.getLogger(__name__)
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
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


def peak_rss_bytes() -> int:
    """The process's peak resident memory since it started or since `reset_peak_rss` (Linux VmHWM), 0 where
    unknown."""
    try:
        with open("/proc/self/status") as f:
            return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError, IndexError):
        return 0


def reset_peak_rss() -> bool:
    """Start measuring the peak afresh (Linux: /proc/self/clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def trim_heap() -> None:
    """Return freed heap pages to the OS (after a model is unloaded), so RSS follows what is loaded."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)


def map_large_blocks(threshold: int = 512 * 1024) -> None:
    """Serve every block of `threshold` bytes or more with its own mapping (glibc's M_MMAP_THRESHOLD, fixed):
    a model's working memory, given back when its queue empties, then leaves the process at once instead of
    staying in a fragmented heap (glibc otherwise raises the threshold after the first such block is freed).
    Called once by `ml-service serve`."""
    lib = _glibc()
    if lib is not None and not lib.mallopt(_M_MMAP_THRESHOLD, threshold):
        log.debug("mallopt(M_MMAP_THRESHOLD) was refused")


def estimate_bytes(file_bytes: int, working_set: int = 0) -> int:
    """Memory a model will take before it has been measured: its files, room for the runtime's buffers, and the
    working set its task expects for the batches in flight."""
    return int(file_bytes * 1.3) + 16 * 1024 * 1024 + working_set


class _Held(Protocol):
    name: str
    version: int
    memory_bytes: int
    last_used: float

    @property
    def busy(self) -> bool: ...


RETRY_AFTER_S = 1
Evict = Callable[[Any], Awaitable[bool]]


class MemoryBudget:
    """The memory budget for loaded models: reservations of loads in progress, LRU eviction of idle models only
    when that makes a load fit, and waiting (bounded by a deadline) for memory otherwise."""

    def __init__(self, total: int, idle_s: float, loaded: Callable[[], Sequence[Any]], evict: Evict) -> None:
        self.total = total
        self.idle_s = idle_s
        self._loaded = loaded
        self._evict = evict
        self._reserved: dict[tuple[str, int], int] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def used(self) -> int:
        """Bytes held by loaded models plus those of loads in progress."""
        held: int = sum(m.memory_bytes for m in self._loaded())
        return held + sum(self._reserved.values())

    @contextlib.contextmanager
    def reserve(self, key: tuple[str, int], need: int) -> Iterator[None]:
        """Count a load in progress against the budget until it is done."""
        self._reserved[key] = self._reserved.get(key, 0) + need
        try:
            yield
        finally:
            left = self._reserved.pop(key, 0) - need
            if left > 0:
                self._reserved[key] = left
            self.changed()

    def changed(self) -> None:
        """Memory was freed or a model became idle: loads waiting for memory look again."""
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def evictable(self, exclude: tuple[str, int]) -> tuple[list[Any], float | None]:
        """Models that may be evicted now (LRU first), and when the next busy-but-idle one becomes evictable."""
        now = time.monotonic()
        ready: list[_Held] = []
        soonest = None
        for m in self._loaded():
            if m.busy or (m.name, m.version) == exclude:
                continue
            if now - m.last_used >= self.idle_s:
                ready.append(m)
            else:
                t = m.last_used + self.idle_s
                soonest = t if soonest is None else min(soonest, t)
        return sorted(ready, key=lambda m: m.last_used), soonest

    async def make_room(self, need: int, key: tuple[str, int], deadline: float | None) -> None:
        """Make `need` bytes fit: evict idle models only when that makes it fit; else wait until the deadline."""
        if need > self.total:
            raise ModelUnavailable(
                f"model '{key[0]}' version {key[1]} needs ~{need // 2**20} MB, more than the whole memory budget "
                f"of {self.total // 2**20} MB; raise ML_SERVICE_MEMORY_BUDGET_MB", retry_after_s=RETRY_AFTER_S)
        loop = asyncio.get_running_loop()
        while True:
            free = self.total - self.used()
            if need <= free:
                return
            victims, soonest = self.evictable(key)
            if free + sum(m.memory_bytes for m in victims) >= need:
                for victim in victims:
                    log.info("evicting model %s version %d (least recently used, idle)", victim.name, victim.version)
                    if await self._evict(victim):
                        free += victim.memory_bytes
                    if need <= free:
                        return
                continue
            now = time.monotonic()
            left = (deadline - now) if deadline is not None else 0.0
            if left <= 0:
                raise ModelUnavailable(
                    f"not enough memory budget to load model '{key[0]}' now (needs ~{need // 2**20} MB, "
                    f"{self.used() // 2**20} of {self.total // 2**20} MB held by models in use); "
                    "retry later or raise ML_SERVICE_MEMORY_BUDGET_MB", retry_after_s=RETRY_AFTER_S)
            wait = min(left, 0.5 if soonest is None else max(0.01, soonest - now))
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)

    async def settle(self, just_loaded: tuple[str, int]) -> None:
        """After a load measured more than its estimate: evict idle models until the budget holds again."""
        victims, _ = self.evictable(just_loaded)
        for victim in victims:
            if self.used() <= self.total:
                return
            log.info("evicting model %s version %d (the last load cost more than estimated)", victim.name,
                     victim.version)
            await self._evict(victim)
        if self.used() > self.total:
            log.warning("loaded models hold %d MB, over the budget of %d MB, until some are idle",
                        self.used() // 2**20, self.total // 2**20)
