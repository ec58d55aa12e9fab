"""The real registry over a real repository for the registry tests: it counts its loads, and names models as a
request would (the rollout does that in the service)."""

from __future__ import annotations

import asyncio

import numpy as np

from ml_service.registry import ModelRegistry
from ml_service.repository import ModelRepository

MB = 1024 * 1024


class CountingRegistry(ModelRegistry):
    """The real registry, counting how often it actually loads a model version; models are named here as a
    request names them (the newest version unless one is given), which the rollout does in the service."""

    def __init__(self, repository, settings):
        super().__init__(settings)
        self.repository = repository
        self.loads: list[tuple[str, int]] = []

    def _load_sync(self, entry, mv, *args, **kwargs):
        self.loads.append((entry.name, mv.number))
        return super()._load_sync(entry, mv, *args, **kwargs)

    def target(self, name, version=None):
        entry = self.repository.get(name)
        return entry, entry.versions[int(version) if version else entry.candidates[-1]]

    async def get(self, name, version=None, deadline=None):
        return await self.load(*self.target(name, version), deadline=deadline)

    async def load_name(self, name, version=None, retry_failed=False):
        return await self.load(*self.target(name, version), retry_failed=retry_failed)

    def use_name(self, name, version=None):
        return self.use(*self.target(name, version), None)


def make_registry(root, settings_for, **overrides) -> CountingRegistry:
    """A registry over `root`; eviction as soon as a model is idle unless a test sets `eviction_idle_s`."""
    repo = ModelRepository(root)
    repo.scan()
    overrides.setdefault("eviction_idle_s", 0.0)
    return CountingRegistry(repo, settings_for(root, **overrides))


def rows(n, value=1.0):
    return [{"x": np.full(4, value, dtype=np.float32)} for _ in range(n)]


def run(registry: ModelRegistry, scenario):
    async def main():
        try:
            await scenario()
        finally:
            await registry.close()

    asyncio.run(main())


def sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)

