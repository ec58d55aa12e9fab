"""Loading one model version: its runtime and task, the warm-up that proves it works (and checks its labels), and
what it costs in memory. The registry (registry.py) decides when; this is how."""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ml_service.batching import Batcher, ShedPolicy
from ml_service.dataplane import ModelSpec
from ml_service.manifest import Batching
from ml_service.memory import peak_rss_bytes, reset_peak_rss, rss_bytes, trim_heap
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.runtime.base import Runtime, RuntimeOptions, create_runtime
from ml_service.settings import Settings
from ml_service.tasks import Classifier, ModelTask, PostStep, create_task, model_spec
from ml_service.tasks.base import LabelsMismatch

_PATH_RE = re.compile(r"[^\s:'\"/]*(?:/[^\s:'\"/]+)+")
_LOAD_LOCK = threading.Lock()  # loads run one at a time so the RSS growth is this model's


class LoadFailure(Exception):
    """Why a model did not load, as a fixed reason safe to show anyone; the details go to the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class LoadedModel:
    """A loaded model version: its runtime and task, the spec it answers with, and its batcher (or, for a head,
    the step it runs on its encoder's batches)."""

    name: str
    version: int
    mv: ModelVersion
    runtime: Runtime
    task: ModelTask
    spec: ModelSpec
    batcher: Batcher | None
    memory_bytes: int  # what it counts against the budget: its peak, every worker computing a full batch
    post: PostStep | None = None  # a head's step on its encoder's batches
    last_used: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    drained: asyncio.Future[None] | None = None  # set when the last request holding it is done (unloading)
    resident_bytes: int = 0  # what the process grew by when it loaded, once its warm-up's memory was given back

    @property
    def is_head(self) -> bool:
        return self.post is not None

    @property
    def busy(self) -> bool:
        return bool(self.in_flight or (self.batcher is not None and self.batcher.pending))


def load_version(entry: ModelEntry, mv: ModelVersion, settings: Settings, options: RuntimeOptions,
                 estimate: int) -> LoadedModel:
    """Load one version in this thread: its runtime, its task, a full-size warm-up batch on every compute worker
    (which also checks the labels against the outputs), and what it costs: resident (RSS growth once the
    warm-up's working memory is given back) and at its peak (every worker computing a full batch, from the
    process's peak RSS), the budget counting the larger of the peak and the estimate. Raises LoadFailure."""
    manifest = mv.manifest
    assert manifest is not None
    head = bool(manifest.encoder)
    path = entry.file(mv, manifest.file)
    if not path.is_file():
        raise LoadFailure("model file missing")
    with _LOAD_LOCK:
        trim_heap()
        before = rss_bytes()
        peak_known = reset_peak_rss()
        runtime = create_runtime(path, manifest, options)
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
            workers = 1 if head else settings.workers(on_gpu=runtime.device == "cuda")
            # every worker runs a full batch at once: the runtime's arena grows to its working size now
            try:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(lambda _: task.validate(runtime), range(workers)))
            except LabelsMismatch as exc:
                raise LoadFailure(f"labels do not match the model's outputs ({exc})") from exc
            except Exception as exc:
                raise LoadFailure("the model failed its warm-up run") from exc
        except BaseException:
            runtime.unload()
            raise
        peak = peak_rss_bytes() - before if peak_known else 0  # every worker computing a full batch at once
        trim_heap()
        resident = max(rss_bytes() - before, 1)
    # the estimate stays a floor: a load measured while other models compute can read low
    memory = max(resident, peak, 1 if head else estimate)
    spec = model_spec(entry, mv)
    if head:
        assert isinstance(task, Classifier)
        return LoadedModel(entry.name, mv.number, mv, runtime, task, spec, None, memory,
                           post=task.post_step(runtime), resident_bytes=resident)
    batcher = Batcher(f"{entry.name}:{mv.number}", task, runtime, manifest.batching, workers=workers,
                      release_idle_s=settings.release_idle_s, shedding=shed_policy(settings, manifest.batching))
    return LoadedModel(entry.name, mv.number, mv, runtime, task, spec, batcher, memory, resident_bytes=resident)


def shed_policy(settings: Settings, batching: Batching) -> ShedPolicy:
    """A version's queue-delay bound: its model.toml's target wait, else the server's."""
    target = batching.target_wait_ms if batching.target_wait_ms is not None else settings.target_wait_ms
    return ShedPolicy(target / 1000, settings.shed_interval_ms / 1000)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed load, safe to show (type and first line, no paths)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _PATH_RE.sub(lambda m: os.path.basename(m.group(0)), text)
    return f"{type(exc).__name__}: {text}"[:300]


__all__ = ["LoadFailure", "LoadedModel", "describe_failure", "load_version", "shed_policy"]
