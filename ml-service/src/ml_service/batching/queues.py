"""The batcher's data: a request's items, their fair lanes, the window splitter, the statistics, and the heads'
post-steps on a computed batch."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_service.dataplane import ItemResult
from ml_service.errors import InferenceFailed, MLServiceError
from ml_service.manifest import Batching
from ml_service.tasks.base import PostStep, Prepared, RequestBudget

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Request:
    """What the items of one `submit` share: their post-step, preprocessing budget, and when a batch last served
    them (requests served least recently go first)."""

    post: PostStep | None
    budget: RequestBudget
    served: int = 0


@dataclass(eq=False)
class Item:
    raw: Any
    future: asyncio.Future[ItemResult]
    loop: asyncio.AbstractEventLoop
    enqueued: float
    deadline: float
    request: Request
    seq: int = 0  # its place in its request
    prepared: Prepared | None = None


class Lanes:
    """Items in one lane per request, taken round-robin across lanes, up to `quantum` items a lane a turn (not
    thread-safe: the batcher's lock).

    A quantum of one batch keeps a big request from holding back a small one (it gives one batch, then goes to the
    back of the line) while requests no bigger than that are served whole, first come first served: under a backlog
    each is answered after the work queued ahead of it, not after everything queued (one item a turn would make
    every request wait for the whole queue, and for what arrives after it)."""

    def __init__(self, quantum: int = 1) -> None:
        self._lanes: OrderedDict[Request, deque[Item]] = OrderedDict()
        self._n = 0
        self.quantum = quantum

    def __len__(self) -> int:
        return self._n

    def add(self, items: Sequence[Item]) -> None:
        for it in items:
            lane = self._lanes.get(it.request)
            if lane is None:
                lane = self._lanes[it.request] = deque()
            lane.append(it)
        self._n += len(items)

    def take(self, n: int) -> list[Item]:
        """Up to `n` items, up to a quantum per lane in turn; a lane served goes to the back of the line."""
        out: list[Item] = []
        lanes = self._lanes
        quantum = self.quantum
        while lanes and len(out) < n:
            for req in list(lanes):
                lane = lanes[req]
                for _ in range(min(quantum, len(lane), n - len(out))):
                    out.append(lane.popleft())
                if lane:
                    lanes.move_to_end(req)
                else:
                    del lanes[req]
                if len(out) == n:
                    break
        self._n -= len(out)
        return out

    def put_back(self, items: Sequence[Item]) -> None:
        """Return taken items to the front of their lanes, in their order, and those lanes to the front."""
        groups: dict[Request, list[Item]] = {}
        for it in items:
            groups.setdefault(it.request, []).append(it)
        for req, group in reversed(groups.items()):
            lane = self._lanes.get(req)
            if lane is None:
                lane = self._lanes[req] = deque()
            lane.extendleft(sorted(group, key=lambda it: it.seq, reverse=True))
            self._lanes.move_to_end(req, last=False)
        self._n += len(items)

    def oldest(self) -> float:
        return min(lane[0].enqueued for lane in self._lanes.values())

    def clear(self) -> list[Item]:
        out = [it for lane in self._lanes.values() for it in lane]
        self._lanes.clear()
        self._n = 0
        return out

    def __iter__(self) -> Iterator[Item]:
        return (it for lane in self._lanes.values() for it in lane)


@dataclass
class BatchStats:
    """Counters a batcher keeps about itself (updated under its lock; read by /models)."""

    batches: int = 0
    items: int = 0
    padded_tokens: int = 0
    real_tokens: int = 0
    expired: int = 0
    cancelled: int = 0
    rejected: int = 0  # refused at submit: queue full
    failed_batches: int = 0
    recent_sizes: deque[int] = field(default_factory=lambda: deque(maxlen=256))

    def mean_recent_size(self) -> float | None:
        """Mean size of the last 256 batches."""
        sizes = list(self.recent_sizes)
        return round(sum(sizes) / len(sizes), 2) if sizes else None


def split_window(items: Sequence[Prepared], cfg: Batching) -> list[list[int]]:
    """Indices of `items` grouped into batches: same key, sorted by cost, balanced in size and capped by
    `max_batch_size` items and `max_batch_tokens` padded tokens."""
    groups: dict[str, list[int]] = {}
    for i in sorted(range(len(items)), key=lambda i: items[i].cost):
        groups.setdefault(repr(items[i].key), []).append(i)
    batches: list[list[int]] = []
    for order in groups.values():
        n_batches = -(-len(order) // cfg.max_batch_size)
        size = -(-len(order) // n_batches)  # balanced: 40 items -> 20 + 20, not 32 + 8
        current: list[int] = []
        for i in order:
            if current:
                widest = max(items[current[-1]].cost, items[i].cost)
                if len(current) >= size or widest * (len(current) + 1) > cfg.max_batch_tokens:
                    batches.append(current)
                    current = []
            current.append(i)
        if current:
            batches.append(current)
    return batches


def run_post_steps(name: str, batch: list[Item], rows: list[dict[str, Any]]
                   ) -> list[tuple[MLServiceError, list[Item]]]:
    """Replace the rows of items whose request has a post-step (a head) by its outputs; returns the items whose
    step failed, with the error to fail them with."""
    groups: dict[PostStep, list[int]] = {}
    for i, it in enumerate(batch):
        if it.request.post is not None:
            groups.setdefault(it.request.post, []).append(i)
    failures: list[tuple[MLServiceError, list[Item]]] = []
    for step, idx in groups.items():
        try:
            out = step([rows[i] for i in idx])
        except MLServiceError as exc:
            failures.append((exc, [batch[i] for i in idx]))
            continue
        except Exception:
            log.exception("a post-step on model %s failed", name)
            failures.append((InferenceFailed(f"a classifier head on model '{name}' failed"), [batch[i] for i in idx]))
            continue
        for i, row in zip(idx, out, strict=True):
            rows[i] = row
    return failures
