"""The one place every request passes: its context, and the hooks (metrics, `/stats` windows, request logs, rate
limits) that see it once for every protocol. Also a throttle for log lines that a flood of requests would repeat.

`metrics.py` (Prometheus), `stats.py` (sliding windows for /stats), `logs.py` (JSON or console logs) plug in here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RequestContext:
    """One request as the hooks see it: opened by the HTTP layer (or the CLI), filled in by the data plane."""

    protocol: str  # native | v2 | openai | cli
    route: str  # the route's name
    caller: str | None = None  # which key authenticated it ("key-1", ...); never the token itself
    request_id: str = ""
    started: float = field(default_factory=time.perf_counter)
    model: str | None = None
    version: int | None = None
    items: int = 0
    status: int = 0
    error: str | None = None  # the error code when it failed
    timings_ms: dict[str, float] | None = None
    timeout_s: float | None = None  # the client's own deadline (X-Request-Timeout-Ms), within the setting
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (rate-limit state)
    admit: Callable[[int], Awaitable[None]] | None = None  # charge N items to the caller's rate limit

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


class RequestHook(Protocol):
    """What a cross-cutting concern implements to see every request. It may also define
    `on_start(ctx)`, run before the route (after auth), which can refuse the request by raising an
    MLServiceError; hooks without one cost nothing there."""

    def on_end(self, ctx: RequestContext) -> None:
        """After the answer is sent (or the client left), with the status and timings filled in."""


class Observers:
    """The hooks of one app; with none, a request pays two empty loops."""

    def __init__(self, hooks: tuple[RequestHook, ...] = ()) -> None:
        self.hooks = hooks
        self._starters: tuple[Callable[[RequestContext], None], ...] = tuple(
            start for h in hooks if callable(start := getattr(h, "on_start", None)))

    def start(self, ctx: RequestContext) -> None:
        for on_start in self._starters:
            on_start(ctx)

    def end(self, ctx: RequestContext) -> None:
        for hook in self.hooks:
            try:
                hook.on_end(ctx)
            except Exception:  # an observer must never break a request
                log.exception("request hook %r failed", hook)


@dataclass
class Telemetry:
    """What the observability routes read: the Prometheus metrics and the /stats windows."""

    metrics: Any
    stats: Any


class LogThrottle:
    """Logs the first line of a kind, then at most one line per `interval_s` saying how many were left out."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def warning(self, kind: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < self.interval_s:
                self._skipped[kind] = self._skipped.get(kind, 0) + 1
                return
            skipped = self._skipped.pop(kind, 0)
            self._last[kind] = now
        if skipped:
            msg += f" (and {skipped} more like it in the last {self.interval_s:g} s)"
        self.logger.warning(msg, *args)
