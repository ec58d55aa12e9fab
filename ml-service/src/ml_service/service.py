"""InferenceService: the data plane. Every protocol and the CLI reach the models through it, and it is the only
thing that resolves models, checks items (once), submits them to the batcher and times the answer."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from ml_service.dataplane import InferenceRequest, InferenceResult, ItemResult, ModelSpec
from ml_service.errors import DeadlineExceeded, MLServiceError, ModelUnavailable
from ml_service.observe import RequestContext
from ml_service.registry import Lease, ModelRegistry
from ml_service.repository import ModelEntry, ModelRepository
from ml_service.rollout import Rollout
from ml_service.settings import Settings
from ml_service.tasks import task_signature
from ml_service.vertex import StorageError, check_repository, copy_from_gcs, served_model

log = logging.getLogger(__name__)
_CHUNKS_IN_FLIGHT = 2  # a request over the item limit: the next chunk is queued while one computes


def model_spec(entry: ModelEntry, version: int) -> ModelSpec:
    """What the protocols need to know of a model version, from its manifest and labels (nothing loaded)."""
    m = entry.manifest
    if m is None:
        raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
    mv = m.for_version(version)
    try:
        created = int(os.stat(entry.path / "model.toml").st_mtime)
    except OSError:
        created = 0
    labels = tuple(entry.labels or ())
    return ModelSpec(name=entry.name, version=version, task=m.task, runtime=mv.runtime,
                     served_versions=tuple(entry.served_versions), signature=task_signature(mv, labels),
                     limits=mv.limits, labels=labels, normalized=mv.postprocessing.normalize, created=created)


class InferenceService:
    """Owns the repository and registry; the protocol-neutral operations every route and the CLI call."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.model_cache_dir)
        self.registry = ModelRegistry(self.repository, settings)
        self.rollout = Rollout(self)
        self.preload_errors: dict[str, str] = {}
        self.preloaded = False
        self.vertex_model: str | None = None  # the model Vertex predictions use (Vertex mode only)
        self._specs: dict[tuple[str, int], tuple[ModelEntry, ModelSpec]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        """Scan the repository and load each preloaded model's default version; readiness waits for it, and
        stays false (with the reason on /health) while any of them failed."""
        if self.settings.vertex:
            await self._vertex_repository()
        elif not self.repository.entries:
            self.repository.scan()
        self.rollout.adopt()
        entries = self.repository.entries
        log.info("model repository %s: %d valid model(s) %s, %d invalid %s", self.settings.model_cache_dir,
                 sum(e.valid for e in entries.values()), sorted(n for n, e in entries.items() if e.valid),
                 sum(not e.valid for e in entries.values()), sorted(n for n, e in entries.items() if not e.valid))
        opts = self.registry.options
        log.info("device %s, %d compute worker(s) per model, %d thread(s) each, memory budget %d MB", opts.device,
                 self.settings.workers(), opts.threads, self.settings.memory_budget_mb)
        names = self.settings.preload_names
        if names == ["*"]:
            names = [n for n, e in self.repository.entries.items() if e.valid]
        if self.settings.vertex:
            self.vertex_model = served_model(self.settings, self.repository)
            log.info("Vertex AI mode: predictions use %s", self.vertex_model)
            names = [*names, self.vertex_model] if self.vertex_model not in names else names
        for name in names:
            try:
                spec = self.spec(name)
                await self.registry.load_ready(spec.name, spec.version)  # the default version
                self.preload_errors.pop(name, None)
            except Exception as exc:  # one bad model never stops the others
                reason = getattr(exc, "message", None) or str(exc)
                self.preload_errors[name] = reason
                log.error("preload of %s failed: %s", name, reason)
        self.preloaded = True
        loaded = sorted(f"{m.name}:{m.version}" for m in self.registry.loaded)
        log.info("preloading done: loaded %s; failed %s; ready: %s", loaded, sorted(self.preload_errors), self.ready)

    async def _vertex_repository(self) -> None:
        """Vertex mode: copy a gs:// AIP_STORAGE_URI to the local repository, check it, and read it."""
        uri = (self.settings.aip_storage_uri or "").strip()
        try:
            if uri.startswith("gs://"):
                await asyncio.to_thread(copy_from_gcs, uri, self.settings.model_cache_dir)
            check_repository(self.settings.model_cache_dir)
        except StorageError as exc:
            self.preload_errors["AIP_STORAGE_URI"] = str(exc)
            log.error("AIP_STORAGE_URI: %s", exc)
        except Exception as exc:  # the client's own errors (credentials, network, 403, ...)
            self.preload_errors["AIP_STORAGE_URI"] = f"could not copy {uri}: {type(exc).__name__} (see the log)"
            log.error("AIP_STORAGE_URI: could not copy %s: %s", uri, exc)
        self.repository.scan()

    @property
    def vertex_ready(self) -> bool:
        """Vertex mode: the served model's default version is loaded (Vertex's health check)."""
        if self.vertex_model is None:
            return False
        try:
            return self.version_ready(self.spec(self.vertex_model))
        except MLServiceError:
            return False

    async def stop(self) -> None:
        await self.registry.close()

    @property
    def ready(self) -> bool:
        """Preloading is done and every model it named is loaded."""
        return self.preloaded and not self.preload_errors

    async def rescan(self) -> dict[str, Any]:
        """Re-read the repository now and apply its changes (new versions go live once loaded; see rollout.py)."""
        return await self.rollout.reload(retry_failed=True)

    # -- metadata ----------------------------------------------------------------------------------
    def spec(self, name: str, version: str | int | None = None) -> ModelSpec:
        """A served model version by name or alias (the default version when none is pinned)."""
        entry = self.repository.get(name)
        pinned = self.rollout.default(entry) if version is None or version == "" else None
        number = pinned if pinned is not None else entry.version(version).number
        cached = self._specs.get((entry.name, number))
        if cached is not None and cached[0] is entry:
            return cached[1]
        spec = model_spec(entry, number)
        self._specs[(entry.name, number)] = (entry, spec)
        return spec

    def specs(self) -> list[ModelSpec]:
        """The default version of every valid model, by name."""
        return [self.spec(name) for name, e in sorted(self.repository.entries.items())
                if e.valid and e.served_versions]

    def version_ready(self, spec: ModelSpec) -> bool:
        """Whether a request on this version would be answered without loading anything."""
        return self.registry.state(spec.name, spec.version)[0] == "ready"

    # -- inference ---------------------------------------------------------------------------------
    async def infer(self, request: InferenceRequest, ctx: RequestContext | None = None) -> InferenceResult:
        """Check the items once, run them through the model's batcher, and time the answer."""
        t0 = time.perf_counter()
        timeout = (ctx.timeout_s if ctx is not None and ctx.timeout_s else None) or self.settings.request_timeout_s
        deadline = time.monotonic() + timeout
        spec = self.spec(request.model, request.version)
        items = request.items
        if ctx is not None:  # known before the load: a model that cannot load still counts the request
            ctx.model, ctx.version, ctx.items = spec.name, spec.version, len(items)
        async with self.registry.use(spec.name, spec.version, deadline) as lease:
            task = lease.model.task
            task.check_count(len(items), request.where, most=request.max_items)
            if ctx is not None and ctx.admit is not None:  # a rate limit counted in items
                await ctx.admit(len(items))
            for i, item in enumerate(items):  # cheap type/size checks, so a bad item never fails a batch
                task.check_item(item, request.label(i))
            chunk = min(task.limits.max_items, task.manifest.batching.max_queue_size)
            results = await self._run(lease, items, chunk, max(0.0, deadline - time.monotonic()))
        total = (time.perf_counter() - t0) * 1000
        timings = {"queue": round(max(r.queue_ms for r in results), 3),
                   "inference": round(max(r.inference_ms for r in results), 3), "total": round(total, 3)}
        if ctx is not None:
            ctx.timings_ms = timings
        return InferenceResult(spec, results, timings)

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

    # -- model lifecycle ---------------------------------------------------------------------------
    async def load(self, name: str, version: int | None = None, rescan: bool = False) -> tuple[str, list[int]]:
        """Load one version, or every served version, retrying failed loads; returns (name, versions)."""
        if rescan:
            await self.rescan()
        entry = self.repository.get(name)
        versions = [entry.version(version).number] if version is not None else entry.served_versions
        if not versions:
            entry.version(None)  # raises with the reason
        for v in versions:
            await self.registry.load_ready(entry.name, v, retry_failed=True)
        for key in (name, entry.name, *self.repository.aliases_of(entry.name)):
            self.preload_errors.pop(key, None)
        return entry.name, versions

    async def unload(self, name: str, version: int | None = None) -> tuple[str, list[int]]:
        """Unload one version, or every loaded version (after their requests finish); returns what was unloaded."""
        entry = self.repository.get(name)
        if version is not None:
            entry.version(version)
        return entry.name, await self.registry.unload(entry.name, version)

    # -- reports -----------------------------------------------------------------------------------
    def version_rows(self) -> list[dict[str, Any]]:
        """One row per model version on disk (invalid models: one row without a version), with the reason a
        version is not available."""
        rows: list[dict[str, Any]] = []
        for name, entry in sorted(self.repository.entries.items()):
            if not entry.valid:
                rows.append({"name": name, "version": None, "served": False, "state": "failed",
                             "reason": entry.error or "invalid"})
                continue
            served = set(entry.served_versions)
            for v, mv in sorted(entry.versions.items()):
                state, error, _ = self.registry.state(name, v)
                if mv.error:
                    reason = mv.error
                elif v not in served:
                    reason = "not served under the version policy"
                else:
                    reason = error or ("" if state in ("ready", "loading") else "unloaded")
                rows.append({"name": name, "version": v, "served": v in served, "state": state, "reason": reason})
        return rows

    def models(self) -> list[dict[str, Any]]:
        """Every model in the repository with its versions, state, memory and last error (from the scanned
        state: POST /models/{name}/load or the V2 repository API re-read the disk)."""
        out = []
        for name, entry in sorted(self.repository.entries.items()):
            m = entry.manifest
            versions: list[dict[str, Any]] = []
            for v in sorted(entry.versions):
                state, error, loaded = self.registry.state(name, v)
                mv = entry.versions[v]
                stats = loaded.batcher.stats if loaded and loaded.batcher else None
                versions.append({
                    "version": str(v),
                    "served": v in entry.served_versions,
                    "state": state,
                    "error": error or mv.error,
                    "memory_mb": round(loaded.memory_bytes / 2**20, 1) if loaded else None,
                    "estimated_memory_mb": round(self.registry.estimate(entry, mv) / 2**20, 1),
                    "device": loaded.runtime.device if loaded else None,
                    "encoder": f"{loaded.encoder[0]}:{loaded.encoder[1]}" if loaded and loaded.encoder else None,
                    "batches": stats.batches if stats else None,
                    "items": stats.items if stats else None,
                    "mean_batch_size": stats.mean_recent_size() if stats else None,
                    "cancelled_items": stats.cancelled if stats else None,
                    "expired_items": stats.expired if stats else None,
                    "evictions": self.registry.evictions(name, v),
                })
            states = [v["state"] for v in versions if v["served"]]
            out.append({
                "name": name,
                "valid": entry.valid,
                "task": m.task if m else None,
                "runtime": m.runtime if m else None,
                "aliases": self.repository.aliases_of(name),
                "alias_conflicts": entry.alias_conflicts,
                "versions": [v["version"] for v in versions],
                "served_versions": [str(v) for v in entry.served_versions],
                "default_version": str(self.rollout.default(entry) or entry.served_versions[-1])
                if entry.served_versions else None,
                "state": _overall(states) if entry.valid else "failed",
                "error": entry.error or next((v["error"] for v in versions if v["state"] == "failed"), None),
                "memory_mb": round(sum(v["memory_mb"] or 0 for v in versions), 1),
                "labels": len(entry.labels) if entry.labels else None,
                "card": m.card.model_dump() if m else None,
                "version_details": versions,
            })
        return out

    def health(self) -> dict[str, Any]:
        """`ok` when preloading succeeded and no model failed, else `degraded` with the reasons."""
        models: dict[str, Any] = {}
        degraded = bool(self.preload_errors)
        for info in self.models():
            models[info["name"]] = {"state": info["state"], **({"error": info["error"]} if info["error"] else {})}
            if info["state"] == "failed":
                degraded = True
        out: dict[str, Any] = {"status": "degraded" if degraded else "ok", "ready": self.ready, "models": models}
        if self.preload_errors:
            out["preload_errors"] = dict(self.preload_errors)
        return out


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


def _overall(states: list[str]) -> str:
    for s in ("failed", "loading", "unloading", "ready"):
        if s in states:
            return s
    return "unloaded"


__all__ = ["InferenceService", "model_spec"]
