"""Prometheus metrics (`GET /metrics`), all named `ml_service_*`: histograms (not summaries) so replicas aggregate.

Counted as they happen: requests and request durations (`Metrics`, a request hook), batches, queue waits and
loads (`ModelMetrics`, the registry's events). Read at scrape time (`ModelStateCollector`): queue depth, in-flight
requests, model states and memory; the process's RSS and CPU, and the GPUs through NVML when one is visible.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ml_service.observe import RequestContext
from ml_service.registry import ModelEvents

if TYPE_CHECKING:
    from ml_service.admission import RateLimiter
    from ml_service.registry import ModelRegistry
    from ml_service.repository import ModelRepository
    from ml_service.rollout import Rollout

log = logging.getLogger(__name__)
PREFIX = "ml_service"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: seconds, 1 ms to 30 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
TOKEN_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
#: error codes counted as rejections, by the reason label; the first three are load shedding (batching/pressure.py)
REJECTIONS = {"deadline_unreachable": "expected_wait", "overloaded": "queue_delay", "queue_full": "queue_full",
              "deadline_exceeded": "deadline", "rate_limited": "rate_limited",
              "rate_limit_unavailable": "rate_limit_unavailable", "payload_too_large": "payload_too_large",
              "unauthorized": "unauthorized"}
STATES = ("unloaded", "loading", "ready", "failed", "unloading")


class _BatchMetrics:
    """One model version's batch histograms, with their label children bound once."""

    def __init__(self, m: ModelMetrics, name: str, version: str) -> None:
        self.size = m.batch_size.labels(name, version)
        self.padded = m.batch_tokens.labels(name, version)
        self.compute = m.batch_compute.labels(name, version)
        self.wait = m.queue_wait.labels(name, version)

    def batch(self, size: int, padded_tokens: int, compute_s: float, waits_s: list[float]) -> None:
        self.size.observe(size)
        self.padded.observe(padded_tokens)
        self.compute.observe(compute_s)
        for w in waits_s:
            self.wait.observe(w)


def new_registry() -> CollectorRegistry:
    """The Prometheus registry of one app (its own, so several apps in one process do not collide)."""
    return CollectorRegistry(auto_describe=True)


class ModelMetrics(ModelEvents):
    """The registry's events as metrics: loads, failed loads, and each model version's batches."""

    def __init__(self, r: CollectorRegistry) -> None:
        mv = ["model", "version"]
        self.queue_wait = Histogram(f"{PREFIX}_queue_wait_seconds", "Time an item waited before its batch ran", mv,
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.batch_compute = Histogram(f"{PREFIX}_batch_compute_seconds", "Time to compute one batch", mv,
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(f"{PREFIX}_batch_size", "Items in a batch", mv, buckets=SIZE_BUCKETS, registry=r)
        self.batch_tokens = Histogram(f"{PREFIX}_batch_padded_tokens", "Padded tokens in a batch (text models)", mv,
                                      buckets=TOKEN_BUCKETS, registry=r)
        self.load_seconds = Histogram(f"{PREFIX}_model_load_seconds", "Time to load a model version", mv,
                                      buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=r)
        self.load_failures = Counter(f"{PREFIX}_model_load_failures", "Failed loads", mv, registry=r)

    def loaded(self, name: str, version: int, seconds: float) -> None:
        self.load_seconds.labels(name, str(version)).observe(seconds)

    def load_failed(self, name: str, version: int) -> None:
        self.load_failures.labels(name, str(version)).inc()

    def batch_observer(self, name: str, version: int) -> _BatchMetrics:
        return _BatchMetrics(self, name, str(version))


class Metrics:
    """The request hook counting requests, and `GET /metrics`' exposition of the whole registry."""

    def __init__(self, r: CollectorRegistry, state: Collector, limiter: RateLimiter | None = None) -> None:
        self.registry = r
        self.requests = Counter(f"{PREFIX}_requests", "Requests answered, by protocol, status and model",
                                ["protocol", "status", "model", "version"], registry=r)
        self.duration = Histogram(f"{PREFIX}_request_duration_seconds", "Time from a request's arrival to its "
                                  "answer", ["protocol", "model", "version"], buckets=LATENCY_BUCKETS, registry=r)
        self.items = Counter(f"{PREFIX}_items", "Items (texts, images, rows) inferred", ["model", "version"],
                             registry=r)
        self.rejections = Counter(f"{PREFIX}_rejections", "Requests refused, by reason", ["reason"], registry=r)
        ProcessCollector(namespace=PREFIX, registry=r)
        r.register(state)
        r.register(GpuCollector())
        if limiter is not None:
            r.register(_LimiterCollector(limiter))
        self._children: dict[tuple[str, int, str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def on_end(self, ctx: RequestContext) -> None:
        key = (ctx.protocol, ctx.status, ctx.model or "", str(ctx.version or ""))
        children = self._children.get(key)
        if children is None:  # labels() costs a lock and a lookup: cache the children per label set
            with self._lock:
                children = (self.requests.labels(key[0], str(key[1]), key[2], key[3]),
                            self.duration.labels(key[0], key[2], key[3]))
                self._children[key] = children
        children[0].inc()
        children[1].observe(ctx.elapsed_s)
        if ctx.status == 200 and ctx.model is not None:
            self.items.labels(ctx.model, str(ctx.version)).inc(ctx.items)
        elif ctx.error in REJECTIONS:
            self.rejections.labels(REJECTIONS[ctx.error]).inc()

    def exposition(self) -> bytes:
        """The text format, for `GET /metrics`."""
        return generate_latest(self.registry)


class ModelStateCollector(Collector):
    """Read at scrape time: queue depth, in-flight requests, model states and memory, the budget, readiness."""

    def __init__(self, repository: ModelRepository, registry: ModelRegistry, rollout: Rollout) -> None:
        self.repository, self.registry, self.rollout = repository, registry, rollout

    def collect(self) -> Iterator[Metric]:
        lv = ["model", "version"]
        queue = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Items queued and not yet answered", labels=lv)
        wait = GaugeMetricFamily(f"{PREFIX}_expected_wait_seconds", "What the queued items need at the measured "
                                 "service rate (absent until a batch has run)", labels=lv)
        shedding = GaugeMetricFamily(f"{PREFIX}_overloaded", "1 while the queue stands over 2/3 of its target wait "
                                     "(longer waits are refused)", labels=lv)
        flight = GaugeMetricFamily(f"{PREFIX}_in_flight_requests", "Requests holding the model now", labels=lv)
        memory = GaugeMetricFamily(f"{PREFIX}_model_memory_bytes", "What the process grew by when a model loaded "
                                   "(resident, measured)", labels=lv)
        peak = GaugeMetricFamily(f"{PREFIX}_model_peak_memory_bytes", "What a model counts against the memory "
                                 "budget: its measured peak, every worker computing a full batch", labels=lv)
        state = GaugeMetricFamily(f"{PREFIX}_model_state", "1 for the state a model version is in", labels=[
            *lv, "state"])
        registry = self.registry
        for name, entry in sorted(self.repository.entries.items()):
            for v, mv in sorted(entry.versions.items()):
                current, _, loaded = registry.state(name, v, mv.fingerprint)
                labels = [name, str(v)]
                for s in STATES:
                    state.add_metric([*labels, s], 1.0 if s == current else 0.0)
                if loaded is not None:
                    memory.add_metric(labels, loaded.resident_bytes)
                    peak.add_metric(labels, loaded.memory_bytes)
                    flight.add_metric(labels, loaded.in_flight)
                    batcher = loaded.batcher
                    if batcher is not None:
                        queue.add_metric(labels, batcher.pending)
                        shedding.add_metric(labels, 1.0 if batcher.pressure.overloaded else 0.0)
                        expected = batcher.expected_wait()
                        if expected is not None:
                            wait.add_metric(labels, expected)
        yield from (queue, wait, shedding, flight, memory, peak, state)
        yield GaugeMetricFamily(f"{PREFIX}_memory_budget_bytes", "The memory budget for loaded models",
                                value=registry.budget_bytes)
        yield GaugeMetricFamily(f"{PREFIX}_memory_used_bytes", "Memory held by loaded models and loads in progress",
                                value=registry.used_bytes())
        yield GaugeMetricFamily(f"{PREFIX}_ready", "1 once every preloaded model is loaded",
                                value=1.0 if self.rollout.ready else 0.0)


class _LimiterCollector(Collector):
    """The rate limiter's store failures (Redis unreachable), when a rate limit is configured."""

    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(f"{PREFIX}_rate_limit_store_errors", "Rate-limit checks the store could not "
                                  "answer (admitted when failing open)", value=self.limiter.storage_errors)


class GpuCollector(Collector):
    """GPU utilization and memory per device through NVML; yields nothing (not zeros) without a GPU."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False

    def _init(self) -> Any:
        if not self._tried:
            self._tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                if pynvml.nvmlDeviceGetCount() > 0:
                    self._nvml = pynvml
            except Exception:  # no library, no driver, no device: no GPU metrics
                self._nvml = None
        return self._nvml

    def collect(self) -> Iterator[Metric]:
        nvml = self._init()
        if nvml is None:
            return
        util = GaugeMetricFamily(f"{PREFIX}_gpu_utilization_ratio", "GPU busy time over the last sample period",
                                 labels=["gpu"])
        used = GaugeMetricFamily(f"{PREFIX}_gpu_memory_used_bytes", "GPU memory in use", labels=["gpu"])
        total = GaugeMetricFamily(f"{PREFIX}_gpu_memory_total_bytes", "GPU memory in all", labels=["gpu"])
        try:
            for i in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(i)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                util.add_metric([str(i)], rates.gpu / 100.0)
                used.add_metric([str(i)], mem.used)
                total.add_metric([str(i)], mem.total)
        except Exception:
            log.debug("reading the GPUs through NVML failed", exc_info=True)
            return
        yield from (util, used, total)
