"""InferenceService: the one path to the models that every protocol and the CLI call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ml_service.errors import DeadlineExceeded
from ml_service.registry import LoadedModel, ModelRegistry, estimate_bytes
from ml_service.repository import ModelEntry, ModelRepository
from ml_service.settings import Settings
from ml_service.tasks import ItemResult, Options, Task

log = logging.getLogger(__name__)


@dataclass
class InferenceResult:
    """What a request gets back: per-item results in request order, and timings."""

    model: str
    version: int
    task: str
    items: list[ItemResult]
    model_task: Task
    timings_ms: dict[str, float] = field(default_factory=dict)


class InferenceService:
    """Owns the repository and registry; validates, batches and times inference."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.repository = ModelRepository(settings.model_cache_dir)
        self.registry = ModelRegistry(self.repository, settings)
        self.ready = False

    async def start(self) -> None:
        """Scan the repository and load each preloaded model's default version; readiness waits for it.

        Other served versions load lazily when a request pins them."""
        if not self.repository.entries:
            self.repository.scan()
        names = self.settings.preload_names
        if names == ["*"]:
            names = [n for n, e in self.repository.entries.items() if e.valid]
        for name in names:
            try:
                entry = self.repository.get(name)
                await self.registry.load(entry.name, entry.version(None).number)  # the default version
            except Exception as exc:  # one bad model never stops the others
                log.error("preload of %s failed: %s", name, getattr(exc, "message", exc))
        self.ready = True

    async def stop(self) -> None:
        await self.registry.close()

    async def model(self, name: str, version: str | int | None = None) -> LoadedModel:
        """The loaded model (loading it if needed) for metadata requests."""
        return await self.registry.get(name, version)

    def entry(self, name: str) -> ModelEntry:
        return self.repository.get(name)

    async def infer(self, name: str, raws: Sequence[Any], version: str | int | None = None) -> InferenceResult:
        """Run already-parsed raw items through the model's batcher; results come back in order."""
        t0 = time.perf_counter()
        async with self.registry.use(name, version) as model:
            model.task.check_count(len(raws), "inputs")
            for i, raw in enumerate(raws):  # cheap type/size checks, so a bad item never fails a batch
                model.task.check_item(raw, f"inputs[{i}]")
            return await self._run(model, raws, t0)

    async def infer_seed(self, model_type: str, data: dict[str, Any],
                         version: str | int | None = None) -> tuple[InferenceResult, Options]:
        """The seed API: parse (and check) `data` with the model's task, then infer."""
        t0 = time.perf_counter()
        async with self.registry.use(model_type, version) as model:
            raws, options = model.task.parse_seed(data)
            return await self._run(model, raws, t0), options

    async def _run(self, model: LoadedModel, raws: Sequence[Any], t0: float) -> InferenceResult:
        """Submit checked items to the model's batcher (the caller holds the model) and time the answer."""
        timeout = self.settings.request_timeout_s
        futures = model.batcher.submit(raws, timeout, head=model.head)
        try:
            results = await asyncio.wait_for(asyncio.gather(*futures), timeout)
        except TimeoutError:
            for f in futures:
                f.cancel()
            raise DeadlineExceeded(f"inference took longer than {timeout:g} s; retry later") from None
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        total = (time.perf_counter() - t0) * 1000
        queue = max(r.queue_ms for r in results)
        inference = max(r.inference_ms for r in results)
        return InferenceResult(
            model=model.name, version=model.version, task=model.task.name, items=list(results),
            model_task=model.task,
            timings_ms={"queue": round(queue, 3), "inference": round(inference, 3), "total": round(total, 3)},
        )

    async def load_model(self, name: str, version: int | None = None, rescan: bool = False) -> tuple[str, list[int]]:
        """Load one version, or every served version, retrying failed loads; returns (name, versions)."""
        if rescan:
            self.repository.scan()
        entry = self.repository.get(name)
        versions = [entry.version(version).number] if version is not None else entry.served_versions
        if not versions:
            entry.version(None)  # raises with the reason
        for v in versions:
            await self.registry.load(entry.name, v, retry_failed=True)
        return entry.name, versions

    async def unload_model(self, name: str, version: int | None = None) -> tuple[str, list[int]]:
        """Unload one version, or every loaded version; returns (name, versions unloaded)."""
        entry = self.repository.get(name)
        if version is not None:
            entry.version(version)
        return entry.name, await self.registry.unload(entry.name, version)

    def models_info(self) -> list[dict[str, Any]]:
        """Every model in the repository with its versions, state, memory and last error."""
        out = []
        for name, entry in sorted(self.repository.entries.items()):
            m = entry.manifest
            versions: list[dict[str, Any]] = []
            for v in sorted(entry.versions):
                state, error, loaded = self.registry.state(name, v)
                mv = entry.versions[v]
                versions.append({
                    "version": str(v),
                    "served": v in entry.served_versions,
                    "state": state,
                    "error": error or mv.error,
                    "memory_mb": round(loaded.memory_bytes / 2**20, 1) if loaded else None,
                    "estimated_memory_mb": round(estimate_bytes(mv) / 2**20, 1),
                    "device": loaded.runtime.device if loaded else None,
                    "batches": loaded.batcher.stats.batches if loaded else None,
                    "mean_batch_size": loaded.batcher.stats.mean_recent_size() if loaded else None,
                })
            states = [v["state"] for v in versions if v["served"]]
            out.append({
                "name": name,
                "valid": entry.valid,
                "task": m.task if m else None,
                "runtime": m.runtime if m else None,
                "aliases": self.repository.aliases_of(name),
                "versions": [v["version"] for v in versions],
                "served_versions": [str(v) for v in entry.served_versions],
                "default_version": str(entry.served_versions[-1]) if entry.served_versions else None,
                "state": _overall(states) if entry.valid else "failed",
                "error": entry.error or next((v["error"] for v in versions if v["state"] == "failed"), None),
                "memory_mb": round(sum(v["memory_mb"] or 0 for v in versions), 1),
                "labels": len(entry.labels) if entry.labels else None,
                "card": m.card.model_dump() if m else None,
                "version_details": versions,
            })
        return out

    def health(self) -> dict[str, Any]:
        """`ok` when every valid model is loadable (none failed), else `degraded`."""
        models = {}
        degraded = False
        for info in self.models_info():
            models[info["name"]] = {"state": info["state"], **({"error": info["error"]} if info["error"] else {})}
            if info["state"] == "failed":
                degraded = True
        return {"status": "degraded" if degraded else "ok", "ready": self.ready, "models": models}


def _overall(states: list[str]) -> str:
    for s in ("failed", "loading", "ready"):
        if s in states:
            return s
    return "unloaded"


__all__ = ["InferenceResult", "InferenceService"]
