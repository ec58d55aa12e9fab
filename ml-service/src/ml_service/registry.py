"""Loaded models: lazy loading (once, however many ask), LRU eviction under a memory budget,
failed-load reporting, explicit load and unload."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ml_service.batching import Batcher, Head
from ml_service.errors import ModelNotFound, ModelUnavailable
from ml_service.repository import ModelEntry, ModelRepository, ModelVersion
from ml_service.runtime.base import Runtime, RuntimeOptions, create_runtime
from ml_service.settings import Settings
from ml_service.tasks import Task, create_task

log = logging.getLogger(__name__)

_PATH_RE = re.compile(r"[^\s:'\"/]*(?:/[^\s:'\"/]+)+")
State = Literal["unloaded", "loading", "ready", "failed"]
_LOAD_LOCK = threading.Lock()  # loads run one at a time so the RSS delta is this model's


def rss_bytes() -> int:
    """Resident memory of this process (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def estimate_bytes(version: ModelVersion) -> int:
    """Memory a model will take before it is loaded: its files, plus room for the runtime's buffers."""
    return int(version.size_bytes * 1.3) + 16 * 1024 * 1024


@dataclass
class LoadedModel:
    """A model version that is loaded: its runtime, task and batcher."""

    name: str
    version: int
    entry: ModelEntry
    runtime: Runtime
    task: Task
    batcher: Batcher
    memory_bytes: int
    encoder: LoadedModel | None = None  # the model whose batcher this head shares
    head: Head | None = None
    dependents: int = 0  # heads loaded on this model's batcher
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0


@dataclass
class _Slot:
    state: State = "unloaded"
    error: str | None = None
    model: LoadedModel | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ModelRegistry:
    """What is loaded now, and the policy for loading and evicting."""

    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        self.repository = repository
        self.settings = settings
        self.budget_bytes = settings.memory_budget_mb * 1024 * 1024
        self.options = RuntimeOptions(threads=settings.threads, device=settings.device,
                                      spinning=settings.ort_spinning)
        self._slots: dict[tuple[str, int], _Slot] = {}
        self._reserved: dict[tuple[str, int], int] = {}  # estimated bytes of loads in progress

    def slot(self, name: str, version: int) -> _Slot:
        return self._slots.setdefault((name, version), _Slot())

    def state(self, name: str, version: int) -> tuple[State, str | None, LoadedModel | None]:
        s = self._slots.get((name, version))
        return (s.state, s.error, s.model) if s else ("unloaded", None, None)

    @property
    def loaded(self) -> list[LoadedModel]:
        return [s.model for s in self._slots.values() if s.model is not None]

    def used_bytes(self) -> int:
        """Bytes held by loaded models plus the estimates of loads in progress."""
        return sum(m.memory_bytes for m in self.loaded) + sum(self._reserved.values())

    async def get(self, name_or_alias: str, version: str | int | None = None) -> LoadedModel:
        """The loaded model for a request, loading it first if needed."""
        entry = self.repository.get(name_or_alias)
        mv = entry.version(version)
        slot = self.slot(entry.name, mv.number)
        if slot.model is not None:
            slot.model.last_used = time.monotonic()
            return slot.model
        return await self.load(entry.name, mv.number)

    @contextlib.asynccontextmanager
    async def use(self, name_or_alias: str, version: str | int | None = None) -> AsyncIterator[LoadedModel]:
        """Hold a model for one request: it cannot be evicted while held."""
        model = await self.get(name_or_alias, version)
        model.in_flight += 1
        try:
            yield model
        finally:
            model.in_flight -= 1
            model.last_used = time.monotonic()
            if model.encoder is not None:  # a head's requests use its encoder too
                model.encoder.last_used = model.last_used

    async def load(self, name: str, version: int | None = None, *, retry_failed: bool = False) -> LoadedModel:
        """Load a version once, however many callers ask at the same time."""
        entry = self.repository.get(name)
        mv = entry.version(version)
        slot = self.slot(entry.name, mv.number)
        async with slot.lock:
            if slot.model is not None:
                return slot.model
            if slot.state == "failed" and not retry_failed:
                raise ModelUnavailable(f"model '{entry.name}' version {mv.number} failed to load: {slot.error}")
            need = estimate_bytes(mv)
            key = (entry.name, mv.number)
            await self._make_room(need, exclude=key)
            slot.state, slot.error = "loading", None
            log.info("loading model %s version %d", entry.name, mv.number)
            self._reserved[key] = need  # so concurrent loads of other models cannot overshoot the budget
            encoder = None
            try:
                encoder = await self._load_encoder(entry, mv)
                if encoder is not None:  # held from now on, so it cannot be evicted while the head loads
                    encoder.dependents += 1
                model = await asyncio.to_thread(self._load_sync, entry, mv, need, encoder)
            except Exception as exc:
                if encoder is not None:
                    encoder.dependents -= 1
                slot.state, slot.error = "failed", _describe(exc)
                log.error("model %s version %d failed to load: %s", entry.name, mv.number, slot.error)
                raise ModelUnavailable(
                    f"model '{entry.name}' version {mv.number} failed to load: {slot.error}"
                ) from None
            finally:
                self._reserved.pop(key, None)
            if model.encoder is None:
                model.batcher.start()
            slot.model, slot.state = model, "ready"
            log.info("model %s version %d ready (%.0f MB)", entry.name, mv.number, model.memory_bytes / 2**20)
            return model

    async def _load_encoder(self, entry: ModelEntry, mv: ModelVersion) -> LoadedModel | None:
        """For a head, the encoder model it runs on (loaded first)."""
        assert entry.manifest is not None
        manifest = entry.manifest.for_version(mv.number)
        if not manifest.encoder:
            return None
        enc_entry = self.repository.get(manifest.encoder)
        if enc_entry.manifest is None or enc_entry.manifest.task != "embedding" or enc_entry.manifest.encoder:
            raise RuntimeError(f"encoder {manifest.encoder!r} is not an embedding model")
        if enc_entry.name == entry.name:
            raise RuntimeError("a model cannot be its own encoder")
        return await self.load(enc_entry.name, enc_entry.version(manifest.encoder_version).number)

    def _load_sync(self, entry: ModelEntry, mv: ModelVersion, estimate: int,
                   encoder: LoadedModel | None = None) -> LoadedModel:
        assert entry.manifest is not None
        manifest = entry.manifest.for_version(mv.number)
        with _LOAD_LOCK:
            before = rss_bytes()
            runtime = create_runtime(entry.file(mv, manifest.file), manifest, self.options)
            runtime.load()
            task = create_task(entry, mv, manifest)
            task.load()
            _check_labels(entry, runtime)
            if encoder is None:
                _warm_up(entry, task, runtime)
            measured = rss_bytes() - before
        name = f"{entry.name}:{mv.number}"
        if encoder is not None:
            head = _make_head(task, runtime)
            return LoadedModel(entry.name, mv.number, entry, runtime, task, encoder.batcher,
                               max(measured, estimate), encoder=encoder, head=head)
        workers = self.settings.workers(on_gpu=runtime.device == "cuda")
        batcher = Batcher(name, task, runtime, manifest.batching, workers=workers)
        return LoadedModel(entry.name, mv.number, entry, runtime, task, batcher, max(measured, estimate))

    async def _make_room(self, need: int, exclude: tuple[str, int]) -> None:
        """Evict least-recently-used idle models until `need` more bytes fit in the budget."""
        while self.used_bytes() + need > self.budget_bytes:
            idle = [m for m in self.loaded if m.in_flight == 0 and m.batcher.pending == 0 and m.dependents == 0
                    and (m.name, m.version) != exclude]
            if not idle:
                raise ModelUnavailable(
                    f"not enough memory budget to load this model (needs ~{need // 2**20} MB, "
                    f"{self.used_bytes() // 2**20} of {self.budget_bytes // 2**20} MB in use by busy models); "
                    "retry later or raise ML_SERVICE_MEMORY_BUDGET_MB"
                )
            victim = min(idle, key=lambda m: m.last_used)
            log.info("evicting model %s version %d (least recently used)", victim.name, victim.version)
            await self._unload_slot(victim.name, victim.version)

    async def unload(self, name: str, version: int | None = None) -> list[int]:
        """Unload one version, or every loaded version of a model; returns the versions unloaded."""
        try:
            name = self.repository.canonical_name(name)
        except ModelNotFound:
            if not any(n == name for n, _ in self._slots):  # a model gone from disk can still be unloaded
                raise
        versions = [version] if version is not None else [v for (n, v) in self._slots if n == name]
        done = []
        for v in versions:
            if await self._unload_slot(name, v):
                done.append(v)
        return done

    async def _unload_slot(self, name: str, version: int) -> bool:
        slot = self._slots.get((name, version))
        model = slot.model if slot else None
        if slot is None or model is None:
            if slot is not None and slot.state == "failed":  # unloading forgets a failed load
                slot.state, slot.error = "unloaded", None
            return False
        for head in [m for m in self.loaded if m.encoder is model]:  # heads on this encoder go first
            await self._unload_slot(head.name, head.version)
        slot.model, slot.state, slot.error = None, "unloaded", None
        if model.encoder is None:
            await asyncio.to_thread(model.batcher.stop)
        else:
            model.encoder.dependents -= 1
        model.runtime.unload()
        return True

    async def close(self) -> None:
        """Unload everything (shutdown)."""
        for (name, v), slot in list(self._slots.items()):
            if slot.model is not None:
                with contextlib.suppress(Exception):
                    await self._unload_slot(name, v)


def _make_head(task: Task, runtime: Runtime) -> Head:
    """A head: the encoder's embedding rows through this model's head graph and its postprocessing."""

    def head(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if not runtime.loaded:
            raise ModelUnavailable(f"model '{task.entry.name}' was unloaded; retry")
        feeds = {"embedding": np.stack([r["embedding"] for r in rows])}
        return task.postprocess(runtime.predict(feeds), feeds, [])

    return head


def _warm_up(entry: ModelEntry, task: Task, runtime: Runtime) -> None:
    """One inference at load time; checks that a classifier's outputs match its labels file."""
    items = task.warmup_items()
    if not items:
        return
    prepared = [p for p in task.preprocess(items) if not isinstance(p, Exception)]
    feeds = task.collate(prepared)
    rows = task.postprocess(runtime.predict(feeds), feeds, prepared)
    probs = rows[0].get("probabilities")
    if entry.labels and probs is not None and probs.shape[-1] != len(entry.labels):
        raise RuntimeError(f"the model has {probs.shape[-1]} classes but the labels file has {len(entry.labels)}")


def _check_labels(entry: ModelEntry, runtime: Runtime) -> None:
    if not entry.labels:
        return
    for spec in runtime.outputs:
        if spec.shape and spec.shape[-1] > 0 and len(spec.shape) == 2 and spec.shape[-1] != len(entry.labels):
            raise RuntimeError(
                f"output '{spec.name}' has {spec.shape[-1]} classes but the labels file has {len(entry.labels)}"
            )


def _describe(exc: BaseException) -> str:
    """A short reason for a failed load, safe to show (type and first line, no paths)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _PATH_RE.sub(lambda m: os.path.basename(m.group(0)), text)
    return f"{type(exc).__name__}: {text}"[:300]
