"""Loading one model version: its runtime and task, the warm-up that proves it works (and checks its labels), and
what it costs in memory. The registry (registry.py) decides when; this is how.

A version's cost is measured the first time its files load: alone (the process's RSS growth is then its own) and
with a full-size batch on every compute worker (the peak). The figures are kept in the repository's load profiles
(`.load-profiles.json`), so later loads of the same files under the same settings, a restart's preloads above all,
run side by side with a one-item warm-up that still proves the files work and checks their labels. The
libraries' one-time costs are paid before any of this (`prime`), so no model's figures carry them."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ml_service.batching import Batcher, ShedPolicy
from ml_service.dataplane import ModelSpec
from ml_service.errors import ManifestError
from ml_service.manifest import Batching, Manifest
from ml_service.memory import peak_rss_bytes, reset_peak_rss, rss_bytes, trim_heap
from ml_service.profiles import LoadProfile, LoadProfiles, profile_setup
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.runtime.base import Runtime, RuntimeOptions, create_runtime, runtime_class
from ml_service.settings import Settings
from ml_service.tasks import TASKS, Classifier, ModelTask, PostStep, create_task, model_spec
from ml_service.tasks.base import LabelsMismatch

log = logging.getLogger(__name__)
_PATH_RE = re.compile(r"[^\s:'\"/]*(?:/[^\s:'\"/]+)+")


class _LoadGate:
    """Measured loads run alone, so the RSS growth is the model's own; profiled loads run side by side, never
    beside a measured one; once a measured load waits, new profiled ones wait behind it (it is not starved)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._waiting_alone = 0

    @contextlib.contextmanager
    def alone(self) -> Iterator[None]:
        with self._cond:
            self._waiting_alone += 1
            self._cond.wait_for(lambda: not self._alone and self._shared == 0)
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()


_GATE = _LoadGate()


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
    profiled: bool = False  # the memory figures come from the load profile, not from this load

    @property
    def is_head(self) -> bool:
        return self.post is not None

    @property
    def busy(self) -> bool:
        return bool(self.in_flight or (self.batcher is not None and self.batcher.pending))


def load_version(entry: ModelEntry, mv: ModelVersion, settings: Settings, options: RuntimeOptions,
                 estimate: int, profiles: LoadProfiles | None = None) -> LoadedModel:
    """Load one version in this thread: its runtime, its task, a warm-up (which also checks the labels against
    the outputs), and what it costs. Unless `profiles` has these files' cost, the warm-up is a full-size batch on
    every compute worker, run alone, measuring resident (RSS growth once the warm-up's working memory is given
    back) and peak (every worker computing a full batch, from the process's peak RSS); the budget counts the
    larger of the peak and the estimate, and the figures go into `profiles`. Raises LoadFailure."""
    manifest = mv.manifest
    assert manifest is not None
    head = bool(manifest.encoder)
    path = entry.file(mv, manifest.file)
    if not path.is_file():
        raise LoadFailure("model file missing")
    runtime = create_runtime(path, manifest, options)
    key, setup, profile = _profile_of(entry, mv, settings, options, profiles)
    with _GATE.shared() if profile is not None else _GATE.alone():
        if profile is None:
            prime([manifest], options)  # a no-op when start-up did it
        before, peak_known = (rss_bytes(), reset_peak_rss()) if profile is None else (0, False)
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
            try:
                if profile is not None:
                    task.validate(runtime, full=False)
                else:  # every worker runs a full batch at once: the runtime's arena grows to its working size
                    with ThreadPoolExecutor(workers) as pool:
                        list(pool.map(lambda _: task.validate(runtime), range(workers)))
            except LabelsMismatch as exc:
                raise LoadFailure(f"labels do not match the model's outputs ({exc})") from exc
            except Exception as exc:
                raise LoadFailure("the model failed its warm-up run") from exc
        except BaseException:
            runtime.unload()
            raise
        if profile is None:
            peak = peak_rss_bytes() - before if peak_known else 0  # every worker computing a full batch at once
        trim_heap()  # what reading the file took and freed goes back to the OS
        if profile is None:
            resident = max(rss_bytes() - before, 1)
    if profile is not None and profile.device != runtime.device:  # `auto` found another device than measured
        log.warning("model %s: its load profile was measured on %s, it loaded on %s; counting its estimate until "
                    "it is measured again", key, profile.device, runtime.device)
        memory, resident, profile = max(profile.memory_bytes, estimate), profile.resident_bytes, None
        if profiles is not None:
            profiles.forget(key, setup)
    elif profile is not None:
        memory, resident = profile.memory_bytes, profile.resident_bytes
    else:
        # the estimate stays a floor: a load measured while other models compute can read low
        memory = max(resident, peak, 1 if head else estimate)
        if profiles is not None:
            profiles.put(key, mv.fingerprint, setup, LoadProfile(memory, resident, runtime.device))
    spec = model_spec(entry, mv)
    if head:
        assert isinstance(task, Classifier)
        return LoadedModel(entry.name, mv.number, mv, runtime, task, spec, None, memory,
                           post=task.post_step(runtime), resident_bytes=resident, profiled=profile is not None)
    batcher = Batcher(f"{entry.name}:{mv.number}", task, runtime, manifest.batching, workers=workers,
                      release_idle_s=settings.release_idle_s, shedding=shed_policy(settings, manifest.batching))
    return LoadedModel(entry.name, mv.number, mv, runtime, task, spec, batcher, memory, resident_bytes=resident,
                       profiled=profile is not None)


_PRIMED: set[str] = set()
_PRIME_LOCK = threading.Lock()


def prime(manifests: Iterable[Manifest], options: RuntimeOptions) -> None:
    """Pay the one-time costs of the libraries these manifests use (runtime, tokenizer), once per process: at
    start, and before a load is measured. A measured load is then its model's own cost, whichever loads first
    (the first ONNX model measured here carried ~30 MB of the library's), and its profile holds in a process where
    it loads second. A library that fails here is left to the load, which reports it."""
    with _PRIME_LOCK:
        for manifest in manifests:
            hooks: dict[str, Callable[[], None]] = {
                f"runtime {manifest.runtime}": functools.partial(_prime_runtime, manifest.runtime, options),
                f"task {manifest.task}": TASKS[manifest.task].prime}
            for key, hook in hooks.items():
                if key in _PRIMED:
                    continue
                _PRIMED.add(key)
                try:
                    hook()
                except Exception as exc:
                    log.warning("could not prime %s (%s); its first load counts its one-time costs", key,
                                type(exc).__name__)
        trim_heap()


def _prime_runtime(name: str, options: RuntimeOptions) -> None:
    runtime_class(name).prime(options)


def _profile_of(entry: ModelEntry, mv: ModelVersion, settings: Settings, options: RuntimeOptions,
                profiles: LoadProfiles | None) -> tuple[str, str, LoadProfile | None]:
    """The profile key and set-up of these files under these settings, and the profile kept for them, if any."""
    manifest = mv.manifest
    assert manifest is not None
    key, setup = f"{entry.name}:{mv.number}", profile_setup(runtime_class(manifest.runtime), settings, options)
    return key, setup, profiles.get(key, mv.fingerprint, setup) if profiles is not None else None


def profiled_cost(entry: ModelEntry, mv: ModelVersion, settings: Settings, options: RuntimeOptions,
                  profiles: LoadProfiles) -> int | None:
    """What the load profile says these files cost under these settings (the budget figure), before loading them;
    None when they have not been measured."""
    try:
        profile = _profile_of(entry, mv, settings, options, profiles)[2]
    except ManifestError:  # an unknown runtime: the load itself reports it
        return None
    return profile.memory_bytes if profile is not None else None


def shed_policy(settings: Settings, batching: Batching) -> ShedPolicy:
    """A version's queue-delay bound: its model.toml's target wait, else the server's."""
    target = batching.target_wait_ms if batching.target_wait_ms is not None else settings.target_wait_ms
    return ShedPolicy(target / 1000, settings.shed_interval_ms / 1000)


def describe_failure(exc: BaseException) -> str:
    """A short reason for a failed load, safe to show (type and first line, no paths)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    text = _PATH_RE.sub(lambda m: os.path.basename(m.group(0)), text)
    return f"{type(exc).__name__}: {text}"[:300]


__all__ = ["LoadFailure", "LoadedModel", "describe_failure", "load_version", "prime", "profiled_cost", "shed_policy"]
