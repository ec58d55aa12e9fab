"""Dynamic batching for one model version.

A two-stage pipeline on threads, so the event loop only enqueues and receives results:

* the **pre** thread takes every raw item queued so far and preprocesses them (tokenize, decode),
  while the compute thread runs the previous batch;
* the **compute** thread waits until `max_batch_size` items are ready or the oldest has waited
  `max_queue_delay_ms`, takes a window of the oldest ready items (up to `window_factor` batches),
  sorts it by length to cut padding, splits it into batches capped by `max_batch_size` and
  `max_batch_tokens`, runs each and post-processes it.

Each item has its own asyncio future, resolved on the loop. A full queue fails at once
(`QueueFull`); an item whose deadline passed before its batch started is dropped uncomputed
(`DeadlineExceeded`); a cancelled item is skipped; an exception fails only its own batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_service.errors import DeadlineExceeded, MLServiceError, ModelUnavailable, QueueFull
from ml_service.manifest import Batching
from ml_service.runtime.base import Runtime
from ml_service.tasks.base import ItemResult, Prepared, Task

log = logging.getLogger(__name__)


class InferenceFailed(MLServiceError):
    """The runtime raised while computing a batch; details go to the log only."""

    status_code = 500
    code = "inference_failed"


@dataclass(eq=False)
class _Item:
    raw: Any
    future: asyncio.Future[ItemResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float
    deadline: float
    prepared: Prepared | None = None


@dataclass
class BatchStats:
    """Counters a batcher keeps about itself (read by /models and metrics)."""

    batches: int = 0
    items: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    expired: int = 0
    failed_batches: int = 0
    recent_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=256))


def split_window(items: Sequence[Prepared], cfg: Batching) -> list[list[int]]:
    """Indices of `items` grouped into batches: same key, sorted by cost, capped by size and tokens."""
    order = sorted(range(len(items)), key=lambda i: (repr(items[i].key), items[i].cost))
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current:
            widest = max(items[current[-1]].cost, items[i].cost)
            full = len(current) >= cfg.max_batch_size or widest * (len(current) + 1) > cfg.max_batch_tokens
            if full or items[i].key != items[current[0]].key:
                batches.append(current)
                current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _settle(pairs: list[tuple[asyncio.Future[ItemResult], ItemResult | BaseException]]) -> None:
    for fut, value in pairs:
        if fut.done():
            continue
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)


class Batcher:
    """Queues items for one runtime and computes them in dynamic batches."""

    def __init__(
        self,
        name: str,
        task: Task,
        runtime: Runtime,
        cfg: Batching,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.name = name
        self.task = task
        self.runtime = runtime
        self.cfg = cfg
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._cv = threading.Condition()
        self._raw: deque[_Item] = deque()
        self._ready: deque[_Item] = deque()
        self._pending = 0  # submitted and not yet settled
        self._stopped = False
        self._threads: list[threading.Thread] = []

    # -- event loop side -------------------------------------------------------------------
    def start(self) -> None:
        """Start the pre and compute threads."""
        for stage, target in (("pre", self._pre_loop), ("compute", self._compute_loop)):
            t = threading.Thread(target=target, name=f"{self.name}-{stage}", daemon=True)
            t.start()
            self._threads.append(t)

    @property
    def pending(self) -> int:
        """Items submitted and not yet answered."""
        return self._pending

    def submit(self, raws: Sequence[Any], timeout_s: float) -> list[asyncio.Future[ItemResult]]:
        """Queue items; returns one future per item, in order. Raises QueueFull at once when full."""
        loop = asyncio.get_running_loop()
        now = time.perf_counter()
        items = [_Item(r, loop.create_future(), loop, now, now + timeout_s) for r in raws]
        with self._cv:
            if self._stopped:
                raise ModelUnavailable(f"model '{self.name}' is unloading; retry")
            if self._pending + len(items) > self.cfg.max_queue_size:
                raise QueueFull(
                    f"model '{self.name}' has {self._pending} items queued (limit "
                    f"{self.cfg.max_queue_size}); retry shortly"
                )
            self._pending += len(items)
            self._raw.extend(items)
            self._cv.notify_all()
        return [it.future for it in items]

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the threads; items still queued fail with ModelUnavailable."""
        with self._cv:
            self._stopped = True
            leftovers = list(self._raw) + list(self._ready)
            self._raw.clear()
            self._ready.clear()
            self._cv.notify_all()
        self._fail(leftovers, ModelUnavailable(f"model '{self.name}' was unloaded; retry"))
        for t in self._threads:
            t.join(timeout_s)

    # -- worker side -----------------------------------------------------------------------
    def _fail(self, items: Sequence[_Item], exc: BaseException) -> None:
        self._settle_items([(it, exc) for it in items])

    def _settle_items(self, pairs: Sequence[tuple[_Item, ItemResult | BaseException]]) -> None:
        if not pairs:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[ItemResult], Any]]] = {}
        for it, value in pairs:
            by_loop.setdefault(it.loop, []).append((it.future, value))
        with self._cv:
            self._pending -= len(pairs)
        for loop, fpairs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, fpairs)

    def _live(self, items: Sequence[_Item]) -> list[_Item]:
        """Drop cancelled items and fail expired ones."""
        now = time.perf_counter()
        live, dead, expired = [], [], []
        for it in items:
            if it.future.cancelled():
                dead.append(it)
            elif now > it.deadline:
                expired.append(it)
            else:
                live.append(it)
        if dead:
            with self._cv:
                self._pending -= len(dead)
        if expired:
            self.stats.expired += len(expired)
            self._fail(expired, DeadlineExceeded(
                f"the request waited longer than its deadline in model '{self.name}''s queue"))
        return live

    def _pre_loop(self) -> None:
        while True:
            with self._cv:
                while not self._raw and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                items = list(self._raw)
                self._raw.clear()
            items = self._live(items)
            if not items:
                continue
            try:
                prepared = self.task.preprocess([it.raw for it in items])
            except Exception:
                log.exception("preprocessing failed in model %s", self.name)
                self._fail(items, InferenceFailed("preprocessing failed"))
                continue
            ok, bad = [], []
            for it, p in zip(items, prepared, strict=True):
                if isinstance(p, Exception):
                    bad.append((it, p))
                else:
                    it.prepared = p
                    ok.append(it)
            self._settle_items(bad)
            with self._cv:
                self._ready.extend(ok)
                self._cv.notify_all()

    def _take_window(self) -> list[_Item] | None:
        cfg = self.cfg
        delay = cfg.max_queue_delay_ms / 1000
        with self._cv:
            while True:
                while not self._ready and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return None
                if len(self._ready) >= cfg.max_batch_size or (not self._raw and self._pending <= len(self._ready)):
                    break  # a full batch, or nothing else is on its way
                remaining = self._ready[0].enqueued + delay - time.perf_counter()
                if remaining <= 0:
                    break
                self._cv.wait(remaining)
            n = min(len(self._ready), cfg.max_batch_size * cfg.window_factor)
            return [self._ready.popleft() for _ in range(n)]

    def _compute_loop(self) -> None:
        while True:
            window = self._take_window()
            if window is None:
                return
            window = self._live(window)
            if not window:
                continue
            prepared = [it.prepared for it in window if it.prepared is not None]
            for idx in split_window(prepared, self.cfg):
                self._run_batch([window[i] for i in idx])

    def _run_batch(self, batch: list[_Item]) -> None:
        batch = self._live(batch)
        if not batch:
            return
        prepared = [it.prepared for it in batch if it.prepared is not None]
        t0 = time.perf_counter()
        try:
            feeds = self.task.collate(prepared)
            outputs = self.runtime.predict(feeds)
            rows = self.task.postprocess(outputs, feeds, prepared)
        except Exception:
            log.exception("inference failed in model %s (batch of %d)", self.name, len(batch))
            self.stats.failed_batches += 1
            self._fail(batch, InferenceFailed(f"model '{self.name}' failed to compute this batch"))
            return
        t1 = time.perf_counter()
        infer_ms = (t1 - t0) * 1000
        n = len(batch)
        st = self.stats
        st.batches += 1
        st.items += n
        st.recent_sizes.append(n)
        st.real_tokens += sum(p.cost for p in prepared)
        st.padded_tokens += max(p.cost for p in prepared) * n
        self._settle_items([
            (it, ItemResult(row, it.prepared.meta if it.prepared else {}, (t0 - it.enqueued) * 1000,
                            infer_ms, n))
            for it, row in zip(batch, rows, strict=True)
        ])
        if self._on_batch is not None:
            self._on_batch(n, infer_ms)
