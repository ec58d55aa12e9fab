"""Loaded models: lazy loading (once, however many ask), a memory budget with LRU eviction that never thrashes,
draining unloads, failed-load reporting, and shared-encoder heads.

Memory policy. Each model counts what it really cost: the process RSS growth while it loaded and ran its
full-size warm-up batch on every compute worker (so its runtime's arena is at working size), or the file
estimate until it has been measured once. A load that does not fit evicts least-recently-used models, but
only models that have been idle for `eviction_idle_s` and only when evicting them makes the load fit; else it
waits for memory (bounded by the request's deadline) and then answers 503 with Retry-After. Being over budget
is never a failed load. So a model in use is never evicted, and a model evicted moments ago cannot evict its
evictor in turn until that one has been idle too: no load/evict loop.

Heads (model.toml `encoder`) hold only their head graph; a request on a head holds its encoder too (loading
it if needed) and runs the head as a post-step on the encoder's batches. An encoder can be unloaded or evicted
like any model: its heads load it again on their next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from ml_service.batching import Batcher, BatchObserver
from ml_service.errors import ModelNotFound, ModelUnavailable
from ml_service.memory import rss_bytes, trim_heap
from ml_service.repository import ModelEntry, ModelRepository, ModelVersion
from ml_service.runtime.base import Runtime, RuntimeOptions, create_runtime
from ml_service.settings import Settings
from ml_service.tasks import TASKS, Classifier, ModelTask, PostStep, create_task
from ml_service.tasks.base import LabelsMismatch

log = logging.getLogger(__name__)

_PATH_RE = re.compile(r"[^\s:'\"/]*(?:/[^\s:'\"/]+)+")
State = Literal["unloaded", "loading", "ready", "failed", "unloading"]
Key = tuple[str, int]
_LOAD_LOCK = threading.Lock()  # loads run one at a time so the RSS growth is this model's
RETRY_AFTER_S = 1


class LoadFailure(Exception):
    """Why a model did not load, as a fixed reason safe to show anyone; the details go to the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def estimate_bytes(version: ModelVersion, working_set: int = 0) -> int:
    """Memory a model will take before it has been measured: its files, room for the runtime's buffers, and the
    working set its task expects for the batches in flight."""
    return int(version.size_bytes * 1.3) + 16 * 1024 * 1024 + working_set


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


@dataclass
class LoadedModel:
    """A model version that is loaded: its runtime and task, and its batcher (or, for a head, its encoder)."""

    name: str
    version: int
    entry: ModelEntry
    runtime: Runtime
    task: ModelTask
    batcher: Batcher | None
    memory_bytes: int
    encoder: Key | None = None  # a head's encoder
    post: PostStep | None = None  # a head's step on its encoder's batches
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0


@dataclass(frozen=True)
class Lease:
    """A model held for one request: its task, the batcher to submit to, and the head step to run after."""

    model: LoadedModel
    batcher: Batcher
    post: PostStep | None


@dataclass
class _Slot:
    state: State = "unloaded"
    error: str | None = None
    model: LoadedModel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    measured_bytes: int | None = None  # what it cost when last loaded: the estimate for its next load
    evictions: int = 0


class ModelRegistry:
    """What is loaded now, and the policy for loading, evicting and unloading."""

    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self.budget_bytes = settings.memory_budget_mb * 1024 * 1024
        self.options = RuntimeOptions(threads=settings.threads, device=settings.device,
                                      spinning=settings.ort_spinning)
        self._slots: dict[Key, _Slot] = {}
        self._reserved: dict[Key, int] = {}  # bytes of loads in progress
        self._memory_waiters: list[asyncio.Future[None]] = []
        self.events = ModelEvents()  # replaced by the app's metrics

    # -- state -------------------------------------------------------------------------------------
    def slot(self, name: str, version: int) -> _Slot:
        return self._slots.setdefault((name, version), _Slot())

    def state(self, name: str, version: int) -> tuple[State, str | None, LoadedModel | None]:
        """A version's state as a request would find it: a head is only ready when its encoder is."""
        s = self._slots.get((name, version))
        if s is None:
            return "unloaded", None, None
        if s.model is not None and s.model.encoder is not None and s.state == "ready":
            enc_state, enc_error, _ = self.state(*s.model.encoder)
            if enc_state != "ready":
                reason = f"its encoder {s.model.encoder[0]}:{s.model.encoder[1]} is {enc_state}"
                return ("failed" if enc_state == "failed" else "unloaded"), enc_error or reason, s.model
        return s.state, s.error, s.model

    def evictions(self, name: str, version: int) -> int:
        s = self._slots.get((name, version))
        return s.evictions if s else 0

    @property
    def loaded(self) -> list[LoadedModel]:
        return [s.model for s in self._slots.values() if s.model is not None]

    def used_bytes(self) -> int:
        """Bytes held by loaded models plus those of loads in progress."""
        return sum(m.memory_bytes for m in self.loaded) + sum(self._reserved.values())

    # -- requests ----------------------------------------------------------------------------------
    async def get(self, name_or_alias: str, version: str | int | None = None, deadline: float | None = None
                  ) -> LoadedModel:
        """The loaded model for a request, loading it first if needed."""
        entry = self.repository.get(name_or_alias)
        mv = entry.version(version)
        slot = self.slot(entry.name, mv.number)
        if slot.model is not None:
            slot.model.last_used = time.monotonic()
            return slot.model
        return await self.load(entry.name, mv.number, deadline=deadline)

    @contextlib.asynccontextmanager
    async def use(self, name_or_alias: str, version: str | int | None = None, deadline: float | None = None
                  ) -> AsyncIterator[Lease]:
        """Hold a model (and a head's encoder) for one request: neither is evicted or stopped while held."""
        model = await self.get(name_or_alias, version, deadline)
        model.in_flight += 1
        try:
            if model.encoder is None:
                assert model.batcher is not None
                yield Lease(model, model.batcher, None)
            else:
                encoder = await self.get(*model.encoder, deadline=deadline)
                encoder.in_flight += 1
                try:
                    assert encoder.batcher is not None
                    yield Lease(model, encoder.batcher, model.post)
                finally:
                    self._release(encoder)
        finally:
            self._release(model)

    def _release(self, model: LoadedModel) -> None:
        model.in_flight -= 1
        model.last_used = time.monotonic()
        if model.in_flight == 0:
            self._memory_changed()

    # -- loading -----------------------------------------------------------------------------------
    async def load_ready(self, name: str, version: int | None = None, *, retry_failed: bool = False) -> LoadedModel:
        """Load a version and, for a head, its encoder: afterwards it answers without loading anything."""
        model = await self.load(name, version, retry_failed=retry_failed)
        if model.encoder is not None:
            await self.load(*model.encoder, retry_failed=retry_failed)
        return model

    async def load(self, name: str, version: int | None = None, *, retry_failed: bool = False,
                   deadline: float | None = None) -> LoadedModel:
        """Load a version once, however many callers ask at the same time."""
        entry = self.repository.get(name)
        mv = entry.version(version)
        key = (entry.name, mv.number)
        slot = self.slot(*key)
        async with slot.lock:
            if slot.model is not None:
                return slot.model
            if slot.state == "failed" and not retry_failed:
                raise ModelUnavailable(f"model '{entry.name}' version {mv.number} failed to load: {slot.error}; "
                                       "load it again once it is fixed")
            need = slot.measured_bytes or self.estimate(entry, mv)
            slot.state, slot.error = "loading", None
            try:
                await self._make_room(need, key, deadline)
            except BaseException:
                slot.state = "unloaded"  # over budget now is not a failed model
                raise
            log.info("loading model %s version %d", entry.name, mv.number)
            self._reserved[key] = need
            started = time.perf_counter()
            try:
                model = await asyncio.to_thread(self._load_sync, entry, mv, need)
            except Exception as exc:
                self.events.load_failed(entry.name, mv.number)
                cause = exc.__cause__ if isinstance(exc, LoadFailure) else exc
                slot.state = "failed"
                slot.error = exc.reason if isinstance(exc, LoadFailure) else "failed to load (see the service log)"
                log.error("model %s version %d failed to load: %s", entry.name, mv.number, slot.error,
                          exc_info=cause)
                raise ModelUnavailable(
                    f"model '{entry.name}' version {mv.number} failed to load: {slot.error}") from None
            except BaseException:
                slot.state = "unloaded"
                raise
            finally:
                self._reserved.pop(key, None)
                self._memory_changed()
            slot.measured_bytes = model.memory_bytes
            if model.memory_bytes > self.budget_bytes:  # now we know: it can never fit
                model.runtime.unload()
                slot.state = "failed"
                slot.error = (f"needs {model.memory_bytes // 2**20} MB (measured), more than the whole memory "
                              f"budget of {self.budget_bytes // 2**20} MB; raise ML_SERVICE_MEMORY_BUDGET_MB")
                await asyncio.to_thread(trim_heap)
                raise ModelUnavailable(f"model '{entry.name}' version {mv.number} {slot.error}")
            self.events.loaded(entry.name, mv.number, time.perf_counter() - started)
            if model.batcher is not None:
                model.batcher.observer = self.events.batch_observer(entry.name, mv.number)
                model.batcher.start()
            slot.model, slot.state = model, "ready"
            await self._settle_budget(key)
            log.info("model %s version %d ready (%.0f MB)", entry.name, mv.number, model.memory_bytes / 2**20)
            return model

    def _encoder_of(self, entry: ModelEntry, version: int) -> Key | None:
        """For a head, its encoder's key (checked, not loaded)."""
        assert entry.manifest is not None
        manifest = entry.manifest.for_version(version)
        if not manifest.encoder:
            return None
        enc = self.repository.get(manifest.encoder)
        if enc.manifest is None or enc.manifest.task != "embedding" or enc.manifest.encoder:
            raise RuntimeError(f"encoder {manifest.encoder!r} is not an embedding model")
        if enc.name == entry.name:
            raise RuntimeError("a model cannot be its own encoder")
        return enc.name, enc.version(manifest.encoder_version).number

    def _load_sync(self, entry: ModelEntry, mv: ModelVersion, estimate: int) -> LoadedModel:
        assert entry.manifest is not None
        manifest = entry.manifest.for_version(mv.number)
        try:
            encoder = self._encoder_of(entry, mv.number)
        except Exception as exc:
            raise LoadFailure("its encoder is missing or is not an embedding model") from exc
        path = entry.file(mv, manifest.file)
        if not path.is_file():
            raise LoadFailure("model file missing")
        with _LOAD_LOCK:
            before = rss_bytes()
            runtime = create_runtime(path, manifest, self.options)
            try:
                runtime.load()
            except Exception as exc:
                raise LoadFailure("model file unreadable or corrupt") from exc
            try:
                task = create_task(entry, mv, manifest)
                try:
                    task.load()
                except Exception as exc:
                    raise LoadFailure("preprocessing files (tokenizer) unreadable or corrupt") from exc
                workers = 1 if encoder else self.settings.workers(on_gpu=runtime.device == "cuda")
                # every worker runs a full batch at once: the runtime's arena grows to its working size now
                try:
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(lambda _: task.validate(runtime), range(workers)))
                except LabelsMismatch as exc:
                    raise LoadFailure("labels do not match the model's outputs") from exc
                except Exception as exc:
                    raise LoadFailure("the model failed its warm-up run") from exc
            except BaseException:
                runtime.unload()
                raise
        measured = rss_bytes() - before
        memory = max(measured, estimate if not encoder else 0, 1)
        if encoder is not None:
            assert isinstance(task, Classifier)
            return LoadedModel(entry.name, mv.number, entry, runtime, task, None, memory, encoder=encoder,
                               post=task.post_step(runtime))
        batcher = Batcher(f"{entry.name}:{mv.number}", task, runtime, manifest.batching, workers=workers)
        return LoadedModel(entry.name, mv.number, entry, runtime, task, batcher, memory)

    def check(self, entry: ModelEntry, version: int) -> None:
        """Load a version, run its warm-up and checks, and unload it (`ml-service models validate`)."""
        model = self._load_sync(entry, entry.versions[version], 0)
        model.runtime.unload()

    # -- memory ------------------------------------------------------------------------------------
    def estimate(self, entry: ModelEntry, mv: ModelVersion) -> int:
        """What a version is expected to cost before it has been measured."""
        assert entry.manifest is not None
        manifest = entry.manifest.for_version(mv.number)
        workers = 1 if manifest.encoder else self.settings.workers()
        return estimate_bytes(mv, workers * TASKS[manifest.task].working_set_bytes(manifest))

    async def _settle_budget(self, loaded: Key) -> None:
        """After a load measured more than its estimate: evict idle models until the budget holds again."""
        victims, _ = self._evictable(loaded)
        for victim in victims:
            if self.used_bytes() <= self.budget_bytes:
                return
            log.info("evicting model %s version %d (the last load cost more than estimated)", victim.name,
                     victim.version)
            await self._unload_slot((victim.name, victim.version), evicted=True)
        if self.used_bytes() > self.budget_bytes:
            log.warning("loaded models hold %d MB, over the budget of %d MB, until some are idle",
                        self.used_bytes() // 2**20, self.budget_bytes // 2**20)

    def _memory_changed(self) -> None:
        waiters, self._memory_waiters = self._memory_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _evictable(self, exclude: Key) -> tuple[list[LoadedModel], float | None]:
        """Models that may be evicted now (LRU first), and when the next busy-but-idle one becomes evictable."""
        now, idle_s = time.monotonic(), self.settings.eviction_idle_s
        ready, soonest = [], None
        for m in self.loaded:
            if m.in_flight or (m.batcher is not None and m.batcher.pending) or (m.name, m.version) == exclude:
                continue
            if now - m.last_used >= idle_s:
                ready.append(m)
            else:
                t = m.last_used + idle_s
                soonest = t if soonest is None else min(soonest, t)
        return sorted(ready, key=lambda m: m.last_used), soonest

    async def _make_room(self, need: int, key: Key, deadline: float | None) -> None:
        """Make `need` bytes fit in the budget: evict idle models only when that makes it fit; else wait."""
        if need > self.budget_bytes:
            raise ModelUnavailable(
                f"model '{key[0]}' version {key[1]} needs ~{need // 2**20} MB, more than the whole memory budget "
                f"of {self.budget_bytes // 2**20} MB; raise ML_SERVICE_MEMORY_BUDGET_MB",
                retry_after_s=RETRY_AFTER_S)
        loop = asyncio.get_running_loop()
        while True:
            free = self.budget_bytes - self.used_bytes()
            if need <= free:
                return
            victims, soonest = self._evictable(key)
            if free + sum(m.memory_bytes for m in victims) >= need:
                for victim in victims:
                    log.info("evicting model %s version %d (least recently used, idle)", victim.name, victim.version)
                    if await self._unload_slot((victim.name, victim.version), evicted=True):
                        free += victim.memory_bytes
                    if need <= free:
                        return
                continue
            now = time.monotonic()
            left = (deadline - now) if deadline is not None else 0.0
            if left <= 0:
                raise ModelUnavailable(
                    f"not enough memory budget to load model '{key[0]}' now (needs ~{need // 2**20} MB, "
                    f"{self.used_bytes() // 2**20} of {self.budget_bytes // 2**20} MB held by models in use); "
                    "retry later or raise ML_SERVICE_MEMORY_BUDGET_MB", retry_after_s=RETRY_AFTER_S)
            wait = min(left, 0.5 if soonest is None else max(0.01, soonest - now))
            waiter: asyncio.Future[None] = loop.create_future()
            self._memory_waiters.append(waiter)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, wait)

    # -- unloading ---------------------------------------------------------------------------------
    async def unload(self, name: str, version: int | None = None) -> list[int]:
        """Unload one version, or every loaded version of a model, after its requests finish."""
        try:
            name = self.repository.canonical_name(name)
        except ModelNotFound:
            if not any(n == name for n, _ in self._slots):  # a model gone from disk can still be unloaded
                raise
        versions = [version] if version is not None else [v for (n, v) in list(self._slots) if n == name]
        return [v for v in versions if await self._unload_slot((name, v))]

    async def _unload_slot(self, key: Key, evicted: bool = False) -> bool:
        slot = self._slots.get(key)
        if slot is None:
            return False
        if slot.model is None and slot.state != "loading":
            if slot.state == "failed":  # unloading forgets a failed load
                slot.state, slot.error = "unloaded", None
            return False
        async with slot.lock:  # a load in progress finishes first, then is unloaded
            model = slot.model
            if model is None:
                return False
            if evicted and (model.in_flight or (model.batcher is not None and model.batcher.pending)):
                return False  # a request came in since it was chosen
            # new requests wait for the lock and load it afresh; requests holding it finish first
            slot.model, slot.state = None, "unloading"
            drain_until = time.monotonic() + self.settings.request_timeout_s
            while model.in_flight and time.monotonic() < drain_until:
                await asyncio.sleep(0.01)
            if model.batcher is not None:
                await asyncio.to_thread(model.batcher.stop)
            model.runtime.unload()
            slot.state, slot.error = "unloaded", None
            if evicted:
                slot.evictions += 1
        await asyncio.to_thread(trim_heap)
        self._memory_changed()
        log.info("model %s version %d unloaded%s", key[0], key[1], " (evicted)" if evicted else "")
        return True

    async def close(self) -> None:
        """Unload everything (shutdown)."""
        for key, slot in list(self._slots.items()):
            if slot.model is not None:
                with contextlib.suppress(Exception):
                    await self._unload_slot(key)


def _describe(exc: BaseException) -> str:
    """A short reason for a failed load, safe to show (type and first line, no paths)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _PATH_RE.sub(lambda m: os.path.basename(m.group(0)), text)
    return f"{type(exc).__name__}: {text}"[:300]
