"""The parts that serve models, built once in dependency order and usable without HTTP (the app, the CLI, tests
and benchmarks all build them here): repository (on disk) -> registry (loaded) -> rollout (which version
serves) -> service (the data plane)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from ml_service.loading import prime
from ml_service.registry import ModelEvents, ModelRegistry
from ml_service.repository import ModelRepository
from ml_service.rollout import Rollout
from ml_service.service import InferenceService
from ml_service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Core:
    """The model house: what is on disk, what is loaded, which version serves, and the data plane."""

    settings: Settings
    repository: ModelRepository
    registry: ModelRegistry
    rollout: Rollout
    service: InferenceService

    @classmethod
    def build(cls, settings: Settings, events: ModelEvents | None = None) -> Core:
        repository = ModelRepository(settings.model_cache_dir)
        registry = ModelRegistry(settings, events)
        rollout = Rollout(repository, registry, settings)
        return cls(settings, repository, registry, rollout, InferenceService(settings, rollout, registry))

    async def start(self, also: tuple[str, ...] = (), errors: dict[str, str] | None = None) -> None:
        """Read the repository and make the preloaded models (ML_SERVICE_PRELOAD, plus `also`) live. `errors`
        from earlier start-up steps keep the service unready with their reason."""
        self.repository.scan()
        entries = self.repository.entries
        log.info("model repository %s: %d valid model(s) %s, %d invalid %s", self.settings.model_cache_dir,
                 sum(e.valid for e in entries.values()), sorted(n for n, e in entries.items() if e.valid),
                 sum(not e.valid for e in entries.values()), sorted(n for n, e in entries.items() if not e.valid))
        opts = self.registry.options
        log.info("device %s, %d compute worker(s) per model, %d thread(s) each, memory budget %d MB", opts.device,
                 self.settings.workers(), opts.threads, self.settings.memory_budget_mb)
        manifests = [mv.manifest for e in entries.values() if e.valid for mv in e.versions.values()
                     if mv.manifest is not None]
        await asyncio.to_thread(prime, manifests, opts)  # libraries' one-time costs: the process's, not a model's
        names = self.settings.preload_names
        if names == ["*"]:
            names = [n for n, e in entries.items() if e.valid]
        names += [n for n in also if n not in names]
        await self.rollout.preload(names, errors)

    async def stop(self) -> None:
        await self.registry.close()


__all__ = ["Core"]
