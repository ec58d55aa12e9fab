"""InferenceService: the data plane. Every protocol and the CLI reach the models through it, and it is the only
thing that resolves a request's model version (once, through the rollout's one version policy), admits it by the
model's expected wait (batching/pressure.py), checks its items (once), submits them to the batcher and times the
answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ml_service.dataplane import InferenceRequest, InferenceResult, ItemResult, ModelSpec
from ml_service.errors import DeadlineExceeded, MLServiceError, ModelUnavailable
from ml_service.observe import RequestContext
from ml_service.registry import Lease, ModelRegistry
from ml_service.repository import ModelVersion
from ml_service.rollout import Rollout, Target
from ml_service.settings import Settings
from ml_service.tasks import model_spec

log = logging.getLogger(__name__)
_CHUNKS_IN_FLIGHT = 2  # a request over the item limit: the next chunk is queued while one computes


@dataclass(frozen=True)
class Resolved:
    """A request's model version, resolved once, with the spec its codec decodes against and its deadline."""

    target: Target
    spec: ModelSpec
    deadline: float  # time.monotonic() by which the answer is due


class InferenceService:
    """Resolve, check, submit, time: the protocol-neutral operation every route and the CLI call."""

    def __init__(self, settings: Settings, rollout: Rollout, registry: ModelRegistry) -> None:
        self.settings = settings
        self.rollout = rollout
        self.registry = registry
        self._specs: dict[tuple[str, int], tuple[ModelVersion, ModelSpec]] = {}

    async def resolve(self, model: str, version: str | int | None = None, ctx: RequestContext | None = None
                      ) -> Resolved:
        """The model version a request gets (see rollout.py), with its spec; loads it if it never went live. The
        request's deadline (the client's `X-Request-Timeout-Ms`, else the server's) starts now."""
        timeout = (ctx.timeout_s if ctx is not None and ctx.timeout_s else None) or self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        try:
            target = await self.rollout.resolve(model, version, deadline)
        except MLServiceError:
            if ctx is not None:  # a model that cannot serve still counts the request
                with contextlib.suppress(MLServiceError):
                    ctx.model = self.rollout.repository.canonical_name(model)
            raise
        if ctx is not None:
            ctx.model, ctx.version = target.entry.name, target.mv.number
        return Resolved(target, self.spec_of(target), deadline)

    def admit(self, resolved: Resolved, items: int) -> None:
        """Refuse at once (503 `deadline_unreachable` or `overloaded`) a request of `items` that the resolved
        version's queue cannot answer by its deadline or within its target wait. The routes call it with the count
        the envelope declares, before decoding the payload; a model not loaded yet admits everything."""
        target = resolved.target
        key = target.key if target.encoder is None else (target.encoder[0].name, target.encoder[1].number)
        if items > resolved.spec.limits.max_items:  # too big to serve at all: decoding answers 413, not shedding
            return
        model = self.registry.loaded_model(key)
        if model is not None and model.batcher is not None:
            model.batcher.admit(items, resolved.deadline - time.monotonic())

    def describe(self, model: str, version: str | int | None = None) -> ModelSpec:
        """The spec of the version a request would get, without loading anything (metadata routes)."""
        return self.spec_of(self.rollout.peek(model, version))

    def describe_all(self) -> list[ModelSpec]:
        """The spec of every model that can serve, by name."""
        out = []
        for name, entry in sorted(self.rollout.repository.entries.items()):
            if entry.valid:
                with contextlib.suppress(MLServiceError):
                    out.append(self.describe(name))
        return out

    def spec_of(self, target: Target) -> ModelSpec:
        """The spec of a resolved version: the loaded instance's, else built from the files (cached)."""
        loaded = self.registry.loaded_model(target.key)
        if loaded is not None:
            return loaded.spec
        cached = self._specs.get(target.key)
        if cached is not None and cached[0] is target.mv:
            return cached[1]
        spec = model_spec(target.entry, target.mv)
        self._specs[target.key] = (target.mv, spec)
        return spec

    async def infer(self, request: InferenceRequest, resolved: Resolved, ctx: RequestContext | None = None
                    ) -> InferenceResult:
        """Check the items once, run them through the resolved model version's batcher, and time the answer."""
        t0 = time.perf_counter()
        deadline = resolved.deadline
        target = resolved.target
        items = request.items
        if ctx is not None:  # known before the load: a model that cannot load still counts the request
            ctx.model, ctx.version, ctx.items = target.entry.name, target.mv.number, len(items)
        async with self.registry.use(target.entry, target.mv, target.encoder, deadline) as lease:
            task = lease.model.task
            task.check_count(len(items), request.where, most=request.max_items)
            left = deadline - time.monotonic()
            if left <= 0:  # the time went on loading the model (or waiting for memory): nothing was computed
                raise ModelUnavailable("the model was not ready in time for this request (it was loading); "
                                       "retry shortly", retry_after_s=1)
            lease.batcher.admit(len(items), left)  # before a rate limit charges it
            if ctx is not None and ctx.admit is not None:  # a rate limit counted in items
                await ctx.admit(len(items))
            for i, item in enumerate(items):  # cheap type/size checks, so a bad item never fails a batch
                task.check_item(item, request.label(i))
            chunk = min(task.limits.max_items, task.manifest.batching.max_queue_size)
            results = await self._run(lease, items, chunk, deadline - time.monotonic())
        total = (time.perf_counter() - t0) * 1000
        timings = {"queue": round(max(r.queue_ms for r in results), 3),
                   "inference": round(max(r.inference_ms for r in results), 3), "total": round(total, 3)}
        if ctx is not None:
            ctx.timings_ms = timings
        return InferenceResult(lease.model.spec, results, timings)

    async def _run(self, lease: Lease, items: Sequence[Any], chunk: int, timeout: float) -> list[ItemResult]:
        """Submit items (a request over the model's item limit in chunks) and gather the results in order."""
        budget = lease.model.task.new_budget()
        submitted: list[asyncio.Future[ItemResult]] = []

        def submit(part: Sequence[Any]) -> list[asyncio.Future[ItemResult]]:
            futures = lease.batcher.submit(part, timeout, lease.post, budget)
            submitted.extend(futures)
            return futures

        async def chunked() -> list[ItemResult]:
            results: list[ItemResult] = []
            in_flight: deque[list[asyncio.Future[ItemResult]]] = deque()
            for start in range(0, len(items), chunk):
                in_flight.append(submit(items[start:start + chunk]))
                if len(in_flight) == _CHUNKS_IN_FLIGHT:
                    results.extend(await _all(in_flight.popleft(), None))
            while in_flight:
                results.extend(await _all(in_flight.popleft(), None))
            return results

        try:
            if len(items) == 1:
                return [await asyncio.wait_for(submit(items)[0], timeout)]
            if len(items) <= chunk:
                return await _all(submit(items), timeout)
            return await asyncio.wait_for(chunked(), timeout)
        except TimeoutError:
            raise DeadlineExceeded(f"inference took longer than {timeout:g} s; retry later") from None
        finally:  # an error, a timeout or a client that left: what is still queued is dropped uncomputed
            for f in submitted:
                if not f.done():
                    f.cancel()


async def _all(futures: list[asyncio.Future[ItemResult]], timeout: float | None) -> list[ItemResult]:
    """Every item's result in order; the first failure (in item order) as soon as there is one. Unlike
    gather, being cancelled leaves no future with an exception nobody retrieved."""
    done, pending = await asyncio.wait(futures, timeout=timeout, return_when=asyncio.FIRST_EXCEPTION)
    errors = [f.exception() for f in futures if f in done and not f.cancelled()]  # every one retrieved
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    if pending:
        raise TimeoutError
    return [f.result() for f in futures]


__all__ = ["InferenceService", "Resolved"]
