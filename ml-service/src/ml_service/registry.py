"""Loaded models: lazy loading (once, however many ask), a memory budget with LRU eviction that never thrashes,
draining unloads, failed-load memory, republished versions swapped in only once they work, and shared-encoder heads.

The registry loads what it is asked for; which version a request gets is the rollout's decision (rollout.py).

Memory policy (memory.py's `MemoryBudget`): each model counts what it really cost, the process RSS growth while it
loaded and ran its full-size warm-up batch on every compute worker (measured the first time these files load,
then kept in the repository's load profiles: loading.py), or the file estimate until it has been measured once.
A load that does not fit evicts least-recently-used models, but only models idle for `eviction_idle_s` and only
when that makes the load fit; else it waits for memory (bounded by the request's deadline) and then answers 503
with Retry-After. Being over budget is never a failed load.

Failures are remembered per version *and fingerprint*: a version that failed as it is on disk is not tried
again until its files change (or an explicit load asks), and a changed version is tried afresh without anyone
asking. A loaded version whose files change is swapped for a new instance only after that one loaded and
passed its warm-up (`restage`); if it fails, the old instance keeps serving.

Heads (model.toml `encoder`) hold only their head graph; a request on a head holds its encoder too and runs the
head as a post-step on the encoder's batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

from ml_service.batching import Batcher, BatchObserver
from ml_service.errors import ModelFailed
from ml_service.loading import LoadedModel, LoadFailure, load_version, profiled_cost
from ml_service.memory import MemoryBudget, estimate_bytes, trim_heap
from ml_service.profiles import LoadProfiles, runtime_options
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.settings import Settings
from ml_service.tasks import TASKS, PostStep

log = logging.getLogger(__name__)

State = Literal["unloaded", "loading", "ready", "failed", "unloading"]
Key = tuple[str, int]


class ModelEvents:
    """What the registry tells observers (metrics): loads, failed loads, and a batch observer per model version.
    The base class observes nothing."""

    def loaded(self, name: str, version: int, seconds: float) -> None:
        """A version loaded in `seconds`."""

    def load_failed(self, name: str, version: int) -> None:
        """A version failed to load."""

    def batch_observer(self, name: str, version: int) -> BatchObserver | None:
        """What sees this version's batches."""
        return None


@dataclass(frozen=True)
class Lease:
    """A model held for one request: its task and spec, the batcher to submit to, and the head step after it."""

    model: LoadedModel
    batcher: Batcher
    post: PostStep | None


@dataclass
class _Slot:
    model: LoadedModel | None = None
    loading: bool = False
    unloading: bool = False
    failure: tuple[str, str] | None = None  # (fingerprint, public reason) of the last failed load
    proven: str | None = None  # the fingerprint of the files that last loaded and passed the warm-up
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    measured_bytes: int | None = None  # what it cost when last loaded: the estimate for its next load
    evictions: int = 0


class ModelRegistry:
    """What is loaded now, and the policy for loading, evicting and unloading."""

    def __init__(self, settings: Settings, events: ModelEvents | None = None) -> None:
        self.settings = settings
        self.events = events or ModelEvents()
        self.options = runtime_options(settings)
        self._slots: dict[Key, _Slot] = {}
        self.profiles = LoadProfiles(settings.model_cache_dir if settings.load_profiles else None)
        self.budget = MemoryBudget(settings.memory_budget_mb * 1024 * 1024, settings.eviction_idle_s,
                                   lambda: self.loaded, self._evict)

    # -- state -------------------------------------------------------------------------------------
    def _slot(self, key: Key) -> _Slot:
        return self._slots.setdefault(key, _Slot())

    def state(self, name: str, version: int, fingerprint: str | None = None
              ) -> tuple[State, str | None, LoadedModel | None]:
        """A version's own state (a head's encoder is not considered) and its last failure, if it concerns these
        files (`fingerprint`; None: any)."""
        s = self._slots.get((name, version))
        if s is None:
            return "unloaded", None, None
        failure = s.failure[1] if s.failure and fingerprint in (None, s.failure[0]) else None
        if s.model is not None:
            return "ready", failure, s.model
        if s.loading:
            return "loading", None, None
        if s.unloading:
            return "unloading", None, None
        return ("failed", failure, None) if failure else ("unloaded", None, None)

    def loaded_model(self, key: Key) -> LoadedModel | None:
        s = self._slots.get(key)
        return s.model if s is not None else None

    def failed(self, mv: ModelVersion, key: Key) -> str | None:
        """The reason these very files failed to load, if they did."""
        s = self._slots.get(key)
        return s.failure[1] if s is not None and s.failure and s.failure[0] == mv.fingerprint else None

    def proven(self, mv: ModelVersion, key: Key) -> bool:
        """Whether these very files loaded and passed their warm-up before (a version evicted since included)."""
        s = self._slots.get(key)
        return s is not None and s.proven == mv.fingerprint

    def evictions(self, name: str, version: int) -> int:
        s = self._slots.get((name, version))
        return s.evictions if s else 0

    @property
    def loaded(self) -> list[LoadedModel]:
        return [s.model for s in self._slots.values() if s.model is not None]

    @property
    def budget_bytes(self) -> int:
        return self.budget.total

    def used_bytes(self) -> int:
        """Bytes held by loaded models plus those of loads in progress."""
        return self.budget.used()

    # -- requests ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def use(self, entry: ModelEntry, mv: ModelVersion, encoder: tuple[ModelEntry, ModelVersion] | None,
                  deadline: float | None = None) -> AsyncIterator[Lease]:
        """Hold a model (and a head's encoder) for one request: neither is evicted or stopped while held."""
        slot = self._slots.get((entry.name, mv.number))
        model = slot.model if slot is not None else None
        if model is None:
            model = await self.load(entry, mv, deadline=deadline)
        model.in_flight += 1
        try:
            if encoder is None:
                assert model.batcher is not None, f"{model.name}:{model.version} is a head; it needs its encoder"
                yield Lease(model, model.batcher, None)
            else:
                enc_slot = self._slots.get((encoder[0].name, encoder[1].number))
                enc = enc_slot.model if enc_slot is not None else None
                if enc is None:
                    enc = await self.load(*encoder, deadline=deadline)
                enc.in_flight += 1
                try:
                    assert enc.batcher is not None
                    yield Lease(model, enc.batcher, model.post)
                finally:
                    self._release(enc)
        finally:
            self._release(model)

    def _release(self, model: LoadedModel) -> None:
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if model.in_flight == 0:
            if model.drained is not None and not model.drained.done():
                model.drained.set_result(None)
            self.budget.changed()

    # -- loading -----------------------------------------------------------------------------------
    async def load(self, entry: ModelEntry, mv: ModelVersion, *, retry_failed: bool = False,
                   deadline: float | None = None) -> LoadedModel:
        """Load a version once, however many callers ask at the same time. The loaded instance is returned even
        when the files changed since (the rollout swaps it with `restage`)."""
        key = (entry.name, mv.number)
        slot = self._slot(key)
        async with slot.lock:
            if slot.model is not None:
                slot.model.last_used = time.monotonic()
                return slot.model
            slot.loading = True
            try:
                model = await self._build(entry, mv, slot, retry_failed, deadline)
            finally:
                slot.loading = False
            self._install(slot, model)
            await self.budget.settle(key)
            return model

    async def restage(self, entry: ModelEntry, mv: ModelVersion, *, retry_failed: bool = False) -> bool:
        """A loaded version whose files changed: load the new files beside it, and swap only once they loaded and
        passed the warm-up; the old instance then drains and unloads. False when there was nothing to swap.
        Raises (ModelFailed) with the old instance still serving when the new files do not work."""
        key = (entry.name, mv.number)
        slot = self._slot(key)
        async with slot.lock:
            old = slot.model
            if old is None or old.mv.fingerprint == mv.fingerprint:
                return False
            new = await self._build(entry, mv, slot, retry_failed, None)
            self._install(slot, new)
            log.info("model %s version %d: its new files are live (republished)", *key)
            await self._retire(old)
            await self.budget.settle(key)
            return True

    def _install(self, slot: _Slot, model: LoadedModel) -> None:
        slot.measured_bytes, slot.failure, slot.proven = model.memory_bytes, None, model.mv.fingerprint
        if model.batcher is not None:
            model.batcher.observer = self.events.batch_observer(model.name, model.version)
            model.batcher.start()
        slot.model = model
        log.info("model %s version %d ready (%.0f MB%s)", model.name, model.version, model.memory_bytes / 2**20,
                 ", as its load profile says" if model.profiled else "")

    async def _build(self, entry: ModelEntry, mv: ModelVersion, slot: _Slot, retry_failed: bool,
                     deadline: float | None) -> LoadedModel:
        """A new loaded instance of these files (not yet installed); failures are remembered on the slot."""
        key = (entry.name, mv.number)
        if slot.failure is not None and slot.failure[0] == mv.fingerprint and not retry_failed:
            raise ModelFailed(f"model '{entry.name}' version {mv.number} failed to load: {slot.failure[1]}; "
                              "it is tried again once its files change, or on an explicit load")
        floor = need = slot.measured_bytes or self.estimate(entry, mv)
        if slot.measured_bytes is None and self.settings.load_profiles:  # a restart: what it cost when measured
            known = await asyncio.to_thread(profiled_cost, entry, mv, self.settings, self.options, self.profiles)
            need = known or floor
        await self.budget.make_room(need, key, deadline)
        log.info("loading model %s version %d", *key)
        started = time.perf_counter()
        with self.budget.reserve(key, need):
            try:
                model = await asyncio.to_thread(self._load_sync, entry, mv, floor, self.profiles)
            except Exception as exc:
                self.events.load_failed(*key)
                reason = exc.reason if isinstance(exc, LoadFailure) else "failed to load (see the service log)"
                slot.failure = (mv.fingerprint, reason)
                log.error("model %s version %d failed to load: %s", *key, reason,
                          exc_info=exc.__cause__ if isinstance(exc, LoadFailure) else exc)
                raise ModelFailed(f"model '{entry.name}' version {mv.number} failed to load: {reason}") from None
        if model.memory_bytes > self.budget.total:  # now we know: it can never fit
            model.runtime.unload()
            reason = (f"needs {model.memory_bytes // 2**20} MB (measured), more than the whole memory budget of "
                      f"{self.budget.total // 2**20} MB; raise ML_SERVICE_MEMORY_BUDGET_MB")
            slot.failure = (mv.fingerprint, reason)
            await asyncio.to_thread(trim_heap)
            raise ModelFailed(f"model '{entry.name}' version {mv.number} {reason}")
        self.events.loaded(*key, time.perf_counter() - started)
        return model

    def _load_sync(self, entry: ModelEntry, mv: ModelVersion, estimate: int,
                   profiles: LoadProfiles | None = None) -> LoadedModel:
        return load_version(entry, mv, self.settings, self.options, estimate, profiles)

    def check(self, entry: ModelEntry, mv: ModelVersion) -> None:
        """Load a version, run its warm-up and checks, and unload it (`ml-service models validate`)."""
        model = self._load_sync(entry, mv, 0)
        model.runtime.unload()

    def estimate(self, entry: ModelEntry, mv: ModelVersion) -> int:
        """What a version is expected to cost before it has been measured."""
        manifest = mv.manifest
        assert manifest is not None
        workers = 1 if manifest.encoder else self.settings.workers()
        return estimate_bytes(mv.size_bytes, workers * TASKS[manifest.task].working_set_bytes(manifest))

    # -- unloading ---------------------------------------------------------------------------------
    async def unload(self, name: str, version: int | None = None) -> list[int]:
        """Unload one version, or every loaded version of a model, after its requests finish."""
        versions = [version] if version is not None else [v for (n, v) in list(self._slots) if n == name]
        return [v for v in versions if await self._unload_slot((name, v))]

    def forget(self, name: str, version: int) -> None:
        """Drop what is remembered of a version that left the disk (its failure, its measured size)."""
        s = self._slots.get((name, version))
        if s is not None and s.model is None and not s.loading and not s.unloading:
            del self._slots[(name, version)]

    async def _evict(self, model: LoadedModel) -> bool:
        return await self._unload_slot((model.name, model.version), evicted=True)

    async def _unload_slot(self, key: Key, evicted: bool = False) -> bool:
        slot = self._slots.get(key)
        if slot is None:
            return False
        if slot.model is None and not slot.loading:
            slot.failure = None  # unloading forgets a failed load
            return False
        async with slot.lock:  # a load in progress finishes first, then is unloaded
            model = slot.model
            if model is None:
                return False
            if evicted and model.busy:
                return False  # a request came in since it was chosen
            # new requests wait for the lock and load it afresh; requests holding it finish first
            slot.model, slot.unloading = None, True
            try:
                await self._retire(model)
            finally:
                slot.unloading = False
            if evicted:
                slot.evictions += 1
        log.info("model %s version %d unloaded%s", key[0], key[1], " (evicted)" if evicted else "")
        return True

    async def _retire(self, model: LoadedModel) -> None:
        """Let the requests holding a model finish (at most the request timeout), then stop and free it."""
        if model.in_flight:
            model.drained = asyncio.get_running_loop().create_future()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(model.drained), self.settings.request_timeout_s)
        if model.batcher is not None:
            await asyncio.to_thread(model.batcher.stop)
        model.runtime.unload()
        await asyncio.to_thread(trim_heap)
        self.budget.changed()

    async def close(self) -> None:
        """Unload everything (shutdown)."""
        for key, slot in list(self._slots.items()):
            if slot.model is not None:
                with contextlib.suppress(Exception):
                    await self._unload_slot(key)


__all__ = ["Key", "Lease", "ModelEvents", "ModelRegistry", "State"]
