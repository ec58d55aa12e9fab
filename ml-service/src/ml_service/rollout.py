"""Model updates without a restart. The repository is re-read every `ML_SERVICE_REPOSITORY_POLL_S` seconds and on
demand (`POST /models/reload`, `POST /v2/repository/index`, `ml-service models reload`):

* a new version becomes a model's default only once it has loaded and passed its warm-up check; until then,
  and for good if it fails, the old default keeps serving (the failure shows on `/models` and in the log);
* a version removed from disk stops taking new requests at once (404 when pinned), drains what it has in
  flight, and unloads;
* a changed `model.toml` is applied: its loaded versions drain and unload, and load again with it on their next
  request.

Only complete version directories are seen: a directory counts when its name is a number, so publishing is
atomic when the files are written elsewhere and renamed into place (`ml-service models add` does exactly that).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Any

from ml_service.errors import MLServiceError
from ml_service.repository import ModelEntry

if TYPE_CHECKING:
    from ml_service.service import InferenceService

log = logging.getLogger(__name__)


def _mtime(entry: ModelEntry) -> float:
    try:
        return os.stat(entry.path / "model.toml").st_mtime
    except OSError:
        return 0.0


def _dir_mtime(entry: ModelEntry, version: int) -> float:
    try:
        return os.stat(entry.versions[version].path).st_mtime
    except OSError:
        return 0.0


class Rollout:
    """Which version of each model answers requests that pin none, and how the repository's changes go live."""

    def __init__(self, service: InferenceService) -> None:
        self.service = service
        self.defaults: dict[str, int] = {}
        self._manifests: dict[str, float] = {}
        self._failed: dict[tuple[str, int], float] = {}  # versions that did not go live, by their directory's mtime
        self._lock = asyncio.Lock()

    def default(self, entry: ModelEntry) -> int | None:
        """The version that answers requests pinning none: the last one that went live, while it is served."""
        number = self.defaults.get(entry.name)
        return number if number is not None and number in entry.served_versions else None

    def adopt(self) -> None:
        """Take what is on disk as live (at startup: the highest served version of each model)."""
        for name, entry in self.service.repository.entries.items():
            if entry.served_versions:
                self.defaults.setdefault(name, entry.served_versions[-1])
            self._manifests[name] = _mtime(entry)

    async def reload(self, retry_failed: bool = False) -> dict[str, Any]:
        """Re-read the repository and apply what changed; returns what happened. The periodic re-read does not try
        a version that failed again until its directory changes; an explicit one (`retry_failed`) does."""
        async with self._lock:
            if retry_failed:
                self._failed.clear()
            service, registry = self.service, self.service.registry
            service.repository.scan()
            entries = service.repository.entries
            report: dict[str, Any] = {"switched": {}, "failed": {}, "unloaded": [], "manifest_changed": []}
            for key in [(m.name, m.version) for m in registry.loaded]:  # gone from disk: drain and unload
                entry = entries.get(key[0])
                if entry is None or key[1] not in entry.versions or entry.versions[key[1]].error:
                    await registry.unload(*key)
                    report["unloaded"].append(f"{key[0]}:{key[1]}")
            for name, entry in entries.items():
                if not entry.valid:
                    continue
                mtime = _mtime(entry)
                if name in self._manifests and self._manifests[name] != mtime:
                    report["manifest_changed"].append(name)
                    log.info("model %s: model.toml changed; its loaded versions reload with it", name)
                    await registry.unload(name)
                self._manifests[name] = mtime
                await self._roll(entry, report)
            for name in list(self.defaults):
                if name not in entries:
                    del self.defaults[name]
            return report

    async def _roll(self, entry: ModelEntry, report: dict[str, Any]) -> None:
        served = entry.served_versions
        if not served:
            return
        current = self.default(entry)
        newest = served[-1]
        if current is None:  # a new model, or its default left the disk: the newest is all there is
            self.defaults[entry.name] = newest
            return
        if newest <= current:
            return
        stamp = _dir_mtime(entry, newest)
        if self._failed.get((entry.name, newest)) == stamp:
            return  # it failed as it is: tried again only once it changes (or on an explicit load)
        try:
            await self.service.registry.load_ready(entry.name, newest, retry_failed=True)  # warm-up and checks included
        except MLServiceError as exc:
            self._failed[(entry.name, newest)] = stamp
            report["failed"][f"{entry.name}:{newest}"] = exc.message
            log.error("model %s version %d did not go live (version %d keeps serving): %s", entry.name, newest,
                      current, exc.message)
            return
        self.defaults[entry.name] = newest
        report["switched"][entry.name] = [current, newest]
        log.info("model %s: version %d is live (was %d)", entry.name, newest, current)

    async def poll(self, interval_s: float) -> None:
        """Reload every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:
                log.exception("re-reading the model repository failed")
