"""`GET /stats`: per model version, latency percentiles, request and error rates over the last 1 and 5 minutes
(sliding windows: what happens now, not since start), plus batch size, queue depth, the expected wait and whether
the model is shedding load, and memory.

Each model version keeps one latency histogram per second for the last 5 minutes, with log-spaced bins (10%
apart, 0.1 ms to 60 s): a percentile is read from the summed bins, within one bin (~5%) of the exact value.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_service.memory import rss_bytes
from ml_service.observe import RequestContext

if TYPE_CHECKING:
    from ml_service.batching import Batcher
    from ml_service.registry import ModelRegistry
    from ml_service.repository import ModelRepository
    from ml_service.rollout import Rollout

WINDOWS_S = (60, 300)
_LO_S, _RATIO = 1e-4, 1.1
_BINS = math.ceil(math.log(60.0 / _LO_S) / math.log(_RATIO)) + 2
#: each bin's representative latency (geometric middle), ms
_CENTERS_MS = np.array([_LO_S * _RATIO ** (i - 0.5) * 1000 for i in range(_BINS)])
_CENTERS_MS[0] = _LO_S * 1000


def _bin(seconds: float) -> int:
    if seconds <= _LO_S:
        return 0
    return min(_BINS - 1, int(math.log(seconds / _LO_S) / math.log(_RATIO)) + 1)


class Window:
    """Per-second histograms of one model version for the last `span` seconds (a ring)."""

    def __init__(self, span: int = WINDOWS_S[-1]) -> None:
        self.span = span
        self.hist = np.zeros((span, _BINS), dtype=np.int64)
        self.errors = np.zeros(span, dtype=np.int64)
        self.stamp = np.full(span, -1, dtype=np.int64)  # which second each slot holds

    def add(self, now_s: int, seconds: float, error: bool) -> None:
        """One request that ended at `now_s` after `seconds`; `error`: the server failed it (5xx)."""
        slot = now_s % self.span
        if self.stamp[slot] != now_s:
            self.hist[slot] = 0
            self.errors[slot] = 0
            self.stamp[slot] = now_s
        self.hist[slot, _bin(seconds)] += 1
        if error:
            self.errors[slot] += 1

    def summary(self, now_s: int, last: int) -> dict[str, Any]:
        live = (self.stamp > now_s - last) & (self.stamp <= now_s)
        counts = self.hist[live].sum(axis=0)
        n = int(counts.sum())
        out: dict[str, Any] = {"requests": n, "rate_per_s": round(n / last, 3),
                               "error_rate": round(int(self.errors[live].sum()) / n, 4) if n else 0.0}
        cum = np.cumsum(counts)
        for q in (50, 95, 99):
            out[f"p{q}_ms"] = round(float(_CENTERS_MS[int(np.searchsorted(cum, n * q / 100))]), 3) if n else None
        return out


def _pressure(batcher: Batcher | None) -> dict[str, Any]:
    """The load-shedding figures of a batcher (batching/pressure.py): its expected wait and rate (None before its
    first batch), whether it is shedding, its target."""
    if batcher is None:
        return {"expected_wait_ms": None, "service_rate_per_s": None, "overloaded": False, "target_wait_ms": None}
    p = batcher.pressure
    wait = batcher.expected_wait()
    return {"expected_wait_ms": round(wait * 1000, 1) if wait is not None else None,
            "service_rate_per_s": round(p.rate, 1) if p.rate is not None else None, "overloaded": p.overloaded,
            "target_wait_ms": p.policy.target_wait_s * 1000}


_EMPTY: dict[str, Any] = {"requests": 0, "rate_per_s": 0.0, "error_rate": 0.0, "p50_ms": None, "p95_ms": None,
                          "p99_ms": None}


class Stats:
    """The request hook that feeds the windows, and the `/stats` report."""

    def __init__(self, repository: ModelRepository, registry: ModelRegistry, rollout: Rollout,
                 clock: Any = time.time) -> None:
        self.repository, self.registry, self.rollout = repository, registry, rollout
        self.clock = clock
        self._windows: dict[tuple[str, int], Window] = {}
        self._lock = threading.Lock()

    def on_end(self, ctx: RequestContext) -> None:
        if ctx.model is None or ctx.version is None:
            return  # not a request on a model (health, metadata) or refused before one was chosen
        key = (ctx.model, ctx.version)
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                window = self._windows[key] = Window()
            window.add(int(self.clock()), ctx.elapsed_s, ctx.status >= 500)

    def report(self) -> dict[str, Any]:
        """Every model version that is loaded, or on disk and used in the last 5 minutes."""
        now = int(self.clock())
        registry = self.registry
        rows = []
        entries = self.repository.entries
        with self._lock:
            for key in [k for k in self._windows if k[0] not in entries or k[1] not in entries[k[0]].versions]:
                del self._windows[key]  # the version left the disk
            windows = dict(self._windows)
        keys = set(windows) | {(m.name, m.version) for m in registry.loaded}
        for name, version in sorted(keys):
            state, _, loaded = registry.state(name, version)
            batcher = loaded.batcher if loaded is not None else None
            row: dict[str, Any] = {
                "model": name, "version": str(version), "state": state,
                "memory_mb": round(loaded.resident_bytes / 2**20, 1) if loaded else None,
                "queue_depth": batcher.pending if batcher else 0,
                "in_flight": loaded.in_flight if loaded else 0,
                "mean_batch_size": batcher.stats.mean_recent_size() if batcher else None,
                **_pressure(batcher),
            }
            window = windows.get((name, version))
            for span in WINDOWS_S:
                label = f"last_{span // 60}m"
                row[label] = window.summary(now, span) if window else _EMPTY
            rows.append(row)
        return {"time": now, "windows_s": list(WINDOWS_S), "rss_mb": round(rss_bytes() / 2**20, 1),
                "memory_budget_mb": round(registry.budget_bytes / 2**20), "ready": self.rollout.ready,
                "models": rows}
