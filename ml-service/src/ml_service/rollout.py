"""The one version policy: which version of each model answers, and how what changes on disk goes live.

* A version becomes a model's default only once it has loaded and passed its warm-up: the newest candidate (a
  version the manifest's `version_policy` allows, with its files complete) that does so. Until then, and for
  good if it fails, the current default keeps serving; when the default stops being served (removed, or its
  files changed and no longer work), the newest *working* candidate takes over. Nothing that failed ever
  takes traffic, at start or later.
* A model that never went live (not preloaded, never asked for) goes live on its first request the same way.
* Requests may pin any candidate under `all` or a list policy; under `latest` only the default is served.
* A head (model.toml `encoder`) runs on its encoder's live default unless it pins `encoder_version`.
* The repository is re-read every `ML_SERVICE_REPOSITORY_POLL_S` seconds and on demand (`reload`):
  - a new version goes live as above;
  - a version whose files, labels or manifest changed (its fingerprint) is a new publication: a loaded one is
    swapped only once the new files loaded and passed the warm-up, else the old instance keeps serving;
  - a version removed from disk stops taking new requests at once, drains what it has in flight, and unloads;
  - a model.toml that no longer parses keeps the last good manifest in force (reported, never applied).
* A rollback (`rollback`) makes the newest working version below the default the default at once, and holds the
  versions it left back (persisted in the model directory's rollback.json: it survives reloads and restarts); a
  held-back version may still be pinned where the policy allows, and the rollback ends when a version newer than
  every held-back one goes live.

Publishing is atomic when the files are written elsewhere and renamed into place (`ml-service models add`).
A version written in place is tried once its files change again, so a slow copy is picked up when complete.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from ml_service.errors import (
    MLServiceError,
    ModelFailed,
    ModelNotFound,
    ModelUnavailable,
    NoPreviousVersion,
    VersionNotFound,
)
from ml_service.loading import LoadedModel
from ml_service.publish import write_held_back
from ml_service.registry import ModelRegistry
from ml_service.repository import ModelEntry, ModelRepository, ModelVersion
from ml_service.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """A request's model version, resolved once: the model, the version, and for a head its encoder's."""

    entry: ModelEntry
    mv: ModelVersion
    encoder: tuple[ModelEntry, ModelVersion] | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.entry.name, self.mv.number


class Rollout:
    """Which version of each model answers, preloading, and applying the repository's changes."""

    def __init__(self, repository: ModelRepository, registry: ModelRegistry, settings: Settings) -> None:
        self.repository = repository
        self.registry = registry
        self.settings = settings
        self._live: dict[str, int] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reload_lock = asyncio.Lock()
        self.preload_errors: dict[str, str] = {}
        self.preloaded = False

    # -- the policy --------------------------------------------------------------------------------
    def default(self, entry: ModelEntry) -> int | None:
        """The live default: the version that last went live, while it is a candidate and either still loaded
        or unchanged since it passed its warm-up."""
        v = self._live.get(entry.name)
        if v is None or v not in entry.candidates or v in entry.held_back:
            return None
        key = (entry.name, v)
        if self.registry.loaded_model(key) is not None or self.registry.proven(entry.versions[v], key):
            return v
        return None

    def expected(self, entry: ModelEntry) -> int | None:
        """The default, or before the model went live, the version that would be tried first."""
        d = self.default(entry)
        if d is not None:
            return d
        return next((v for v in reversed(entry.candidates) if not self._failed(entry, v) and
                     v not in entry.held_back), None)

    def served(self, entry: ModelEntry) -> list[int]:
        """Versions a request may get: under `latest` the default alone, else every candidate that has not
        failed as it is on disk."""
        if entry.manifest is None:
            return []
        if entry.manifest.version_policy == "latest":
            e = self.expected(entry)
            return [e] if e is not None else []
        return [v for v in entry.candidates if not self._failed(entry, v)]

    def _failed(self, entry: ModelEntry, v: int) -> bool:
        return self.registry.failed(entry.versions[v], (entry.name, v)) is not None and \
            self.registry.loaded_model((entry.name, v)) is None

    def _lock(self, name: str) -> asyncio.Lock:
        return self._locks.setdefault(name, asyncio.Lock())

    async def resolve(self, name_or_alias: str, version: str | int | None = None, deadline: float | None = None
                      ) -> Target:
        """The version a request gets (the live default unless it pins one), and a head's encoder version. A model
        that never went live goes live now (waiting for memory until `deadline`)."""
        entry = self.repository.get(name_or_alias)
        if version is None or version == "":
            v = self._live.get(entry.name)
            if v is None or self.default(entry) is None:
                v = await self.go_live(entry, deadline)
        else:
            v = self._pinned(entry, version)
        mv = entry.versions[v]
        manifest = mv.manifest
        if manifest is None or not manifest.encoder:
            return Target(entry, mv)
        return Target(entry, mv, await self._encoder(manifest.encoder, manifest.encoder_version, entry, deadline))

    def peek(self, name_or_alias: str, version: str | int | None = None) -> Target:
        """The version a request would get, without loading anything (metadata): the default, or before the model
        went live the version that would be tried first. A head's encoder is not resolved."""
        entry = self.repository.get(name_or_alias)
        if version is None or version == "":
            if not entry.valid:
                raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
            v = self.expected(entry)
            if v is None:
                raise ModelFailed(f"model '{entry.name}' has no working version: {self._reasons(entry)}")
        else:
            v = self._pinned(entry, version)
        return Target(entry, entry.versions[v])

    def _pinned(self, entry: ModelEntry, version: str | int) -> int:
        """A pinned version: under `latest` only the default; else any candidate (one that failed as it is on
        disk answers 503 `model_failed` when asked for, not 404: it exists)."""
        if not entry.valid:
            raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise VersionNotFound(f"version must be a positive integer, got {version!r}") from None
        latest = entry.manifest is not None and entry.manifest.version_policy == "latest"
        if number not in (self.served(entry) if latest else entry.candidates):
            raise VersionNotFound(f"model '{entry.name}' has no served version {number}; served versions: "
                                  f"{self.served(entry)}")
        return number

    async def _encoder(self, name: str, pinned: int | None, head: ModelEntry, deadline: float | None = None
                       ) -> tuple[ModelEntry, ModelVersion]:
        try:
            enc = self.repository.get(name)
        except MLServiceError:
            raise ModelFailed(f"model '{head.name}': its encoder {name!r} is not in the repository") from None
        if enc.manifest is None or enc.manifest.task != "embedding" or enc.manifest.encoder or enc.name == head.name:
            raise ModelFailed(f"model '{head.name}': its encoder {name!r} is not an embedding model")
        if pinned is None:
            target = await self.resolve(enc.name, None, deadline)
            return target.entry, target.mv
        if pinned not in enc.candidates:  # a head's pin is its own need, whatever clients may pin
            raise ModelFailed(f"model '{head.name}': its encoder {enc.name} has no version {pinned} that can serve")
        return enc, enc.versions[pinned]

    async def go_live(self, entry: ModelEntry, deadline: float | None = None) -> int:
        """Make the newest working candidate the default (loading it), unless a default is live already."""
        async with self._lock(entry.name):
            d = self.default(entry)
            if d is not None:
                return d
            if not entry.valid:
                raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
            switched = await self._newest_working(entry, None, {}, deadline)
            if switched is None:
                raise ModelFailed(f"model '{entry.name}' has no working version: {self._reasons(entry)}")
            return switched

    async def _newest_working(self, entry: ModelEntry, above: int | None, failed: dict[str, str],
                              deadline: float | None = None, below: int | None = None) -> int | None:
        """Try candidates newer than `above` (all when None) and older than `below`, newest first; the first that
        loads goes live."""
        for v in reversed(entry.candidates):
            if above is not None and v <= above:
                break
            if below is not None and v >= below:
                continue
            mv = entry.versions[v]
            if self.registry.failed(mv, (entry.name, v)) or v in entry.held_back:
                continue  # failed as it is on disk (tried again once its files change), or rolled back
            try:
                await self.load(entry, mv, deadline=deadline)
            except ModelFailed as exc:
                failed[f"{entry.name}:{v}"] = exc.message
                log.error("model %s version %d did not go live%s: %s", entry.name, v,
                          f" (version {above} keeps serving)" if above is not None else "", exc.message)
                continue
            before = self._live.get(entry.name)
            self._live[entry.name] = v
            if before != v:
                log.info("model %s: version %d is live%s", entry.name, v, f" (was {before})" if before else "")
            if entry.held_back and v > max(entry.held_back):  # a newer version is live: the rollback is over
                log.info("model %s: version %d ends the rollback of %s", entry.name, v, list(entry.held_back))
                write_held_back(entry.path, ())
                entry.held_back = ()
            return v
        return None

    def _reasons(self, entry: ModelEntry) -> str:
        out = [f"v{v}: {self.registry.failed(entry.versions[v], (entry.name, v))}" for v in reversed(entry.candidates)
               if self.registry.failed(entry.versions[v], (entry.name, v))]
        return "; ".join(out) or "none loads"

    async def load(self, entry: ModelEntry, mv: ModelVersion, retry_failed: bool = False,
                   deadline: float | None = None) -> LoadedModel:
        """Load a version so that it answers without loading anything: a head with its encoder."""
        model = await self.registry.load(entry, mv, retry_failed=retry_failed, deadline=deadline)
        manifest = mv.manifest
        if manifest is not None and manifest.encoder:
            enc_entry, enc_mv = await self._encoder(manifest.encoder, manifest.encoder_version, entry, deadline)
            encoder = await self.registry.load(enc_entry, enc_mv, retry_failed=retry_failed, deadline=deadline)
            want, have = _head_width(model), encoder.spec.embedding_dim
            if want is not None and have > 0 and want != have:
                raise ModelFailed(f"model '{entry.name}' version {mv.number} takes {want}-d embeddings but its "
                                  f"encoder {enc_entry.name}:{enc_mv.number} gives {have}-d")
        return model

    # -- start -------------------------------------------------------------------------------------
    async def preload(self, names: list[str], errors: dict[str, str] | None = None) -> None:
        """Make each named model's newest working version live (loaded); readiness waits for it, and stays
        false (with the reason on /health) while any of them, or an earlier start-up step (`errors`), failed."""
        self.preload_errors.update(errors or {})

        async def one(name: str) -> None:
            try:
                await self.go_live(self.repository.get(name))
                self.preload_errors.pop(name, None)
            except Exception as exc:  # one bad model never stops the others
                reason = getattr(exc, "message", None) or str(exc)
                self.preload_errors[name] = reason
                log.error("preload of %s failed: %s", name, reason)

        # side by side: loads with a known profile overlap; measured ones still take turns (loading.py)
        await asyncio.gather(*(one(name) for name in names))
        self.preloaded = True
        loaded = sorted(f"{m.name}:{m.version}" for m in self.registry.loaded)
        log.info("preloading done: loaded %s; failed %s; ready: %s", loaded, sorted(self.preload_errors), self.ready)

    @property
    def ready(self) -> bool:
        """Preloading is done and every model it named is live."""
        return self.preloaded and not self.preload_errors

    # -- changes on disk ---------------------------------------------------------------------------
    async def reload(self, only: str | None = None, retry_failed: bool = False) -> dict[str, Any]:
        """Re-read the repository (or one model's directory) and apply what changed; returns what happened. A
        version that failed as it is on disk is tried again only once its files change, unless `retry_failed`."""
        async with self._reload_lock:
            self.repository.scan(only)
            entries = self.repository.entries
            report: dict[str, Any] = {"switched": {}, "republished": [], "failed": {}, "unloaded": [],
                                      "manifest_errors": {}}
            for m in list(self.registry.loaded):  # gone from disk, incomplete, or no longer allowed: drain, unload
                if only is not None and m.name != only:
                    continue
                entry = entries.get(m.name)
                if entry is None or m.version not in entry.candidates:
                    await self.registry.unload(m.name, m.version)
                    report["unloaded"].append(f"{m.name}:{m.version}")
            for name, entry in entries.items():
                if only is not None and name != only:
                    continue
                if entry.manifest_error:
                    report["manifest_errors"][name] = entry.manifest_error
                await self._roll(entry, report, retry_failed)
            for name in [n for n in self._live if n not in entries]:
                del self._live[name]
            return report

    async def _roll(self, entry: ModelEntry, report: dict[str, Any], retry_failed: bool) -> None:
        async with self._lock(entry.name):
            for m in [m for m in self.registry.loaded if m.name == entry.name]:  # republished: load, check, swap
                mv = entry.versions.get(m.version)
                if mv is None or m.mv.fingerprint == mv.fingerprint:
                    continue
                if self.registry.failed(mv, (m.name, m.version)) and not retry_failed:
                    continue
                try:
                    if await self.registry.restage(entry, mv, retry_failed=retry_failed):
                        report["republished"].append(f"{m.name}:{m.version}")
                except ModelFailed as exc:
                    report["failed"][f"{m.name}:{m.version}"] = exc.message
                    log.error("model %s version %d was republished but its new files do not work (the previous "
                              "files keep serving while loaded): %s", m.name, m.version, exc.message)
                except ModelUnavailable as exc:
                    log.warning("model %s version %d: republished, not swapped yet: %s", m.name, m.version,
                                exc.message)
            if retry_failed:
                for v in entry.candidates:
                    mv = entry.versions[v]
                    if self.registry.failed(mv, (entry.name, v)) and self.registry.loaded_model((entry.name, v)) \
                            is None:
                        self.registry.forget(entry.name, v)
            if entry.name not in self._live or not entry.valid:
                return  # never went live: it does on its first request (or its preload)
            current = self.default(entry)
            try:
                newest = await self._newest_working(entry, current, report["failed"])
            except ModelUnavailable as exc:  # no memory for it now: the next re-read tries again
                log.warning("model %s: a newer version waits for memory: %s", entry.name, exc.message)
                return
            if newest is None and current is None:
                del self._live[entry.name]
                log.error("model %s has no working version now: %s", entry.name, self._reasons(entry))
                return
            if newest is not None and newest != current:
                report["switched"][entry.name] = [current, newest]
                if entry.manifest is not None and entry.manifest.version_policy == "latest":
                    for m in [m for m in self.registry.loaded if m.name == entry.name and m.version != newest]:
                        await self.registry.unload(m.name, m.version)  # no longer served: drains first
                        report["unloaded"].append(f"{m.name}:{m.version}")

    async def poll(self, interval_s: float) -> None:
        """Reload every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reload()
            except Exception:
                log.exception("re-reading the model repository failed")

    # -- explicit operations -----------------------------------------------------------------------
    async def load_model(self, name: str, version: int | None = None) -> tuple[str, list[int]]:
        """Re-read this model's directory, then load one version or every served one, retrying failed loads;
        returns (name, versions)."""
        try:
            canonical = self.repository.canonical_name(name)
        except ModelNotFound:  # perhaps new on disk
            canonical = name
        await self.reload(only=canonical, retry_failed=True)
        entry = self.repository.get(name)
        if not entry.valid:
            raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
        if version is not None:
            versions = [self._pinned(entry, version)]
        elif entry.manifest is not None and entry.manifest.version_policy == "latest":
            versions = [await self.go_live(entry)]
        else:
            versions = list(entry.candidates)
        for v in versions:
            await self.load(entry, entry.versions[v], retry_failed=True)
        if version is None:
            await self.go_live(entry)
        for key in (name, entry.name, *self.repository.aliases_of(entry.name)):
            self.preload_errors.pop(key, None)
        return entry.name, versions

    async def rollback(self, name: str) -> tuple[str, int, int]:
        """Make the newest working version below the default the default now, and hold the default back until a
        newer version goes live; returns (model, new default, rolled-back version). NoPreviousVersion (409) when
        no earlier version works."""
        entry = self.repository.get(name)
        if not entry.valid:
            raise ModelUnavailable(f"model '{entry.name}' is invalid: {entry.error}")
        async with self._lock(entry.name):
            current = self.default(entry) or self.expected(entry)
            if current is None:
                raise NoPreviousVersion(f"model '{entry.name}' has no working version to roll back from")
            previous = await self._newest_working(entry, None, {}, below=current)
            if previous is None:
                raise NoPreviousVersion(f"model '{entry.name}' has no working version before {current} to roll "
                                        f"back to")
            held = tuple(sorted({*entry.held_back, current}))
            write_held_back(entry.path, held)
            entry.held_back = held
            log.info("model %s: rolled back from version %d to %d", entry.name, current, previous)
        if entry.manifest is not None and entry.manifest.version_policy == "latest":
            await self.registry.unload(entry.name, current)  # no longer served: drains first
        return entry.name, previous, current

    async def unload_model(self, name: str, version: int | None = None) -> tuple[str, list[int]]:
        """Unload one version, or every loaded version (after their requests finish); returns what was unloaded."""
        entry = self.repository.get(name)
        if version is not None and version not in entry.candidates and \
                self.registry.loaded_model((entry.name, version)) is None:
            raise VersionNotFound(f"model '{entry.name}' has no served version {version}; served versions: "
                                  f"{self.served(entry)}")
        return entry.name, await self.registry.unload(entry.name, version)



def _head_width(model: LoadedModel) -> int | None:
    inputs = model.runtime.inputs
    if inputs and inputs[0].shape and inputs[0].shape[-1] > 0:
        return int(inputs[0].shape[-1])
    return None


__all__ = ["Rollout", "Target"]
