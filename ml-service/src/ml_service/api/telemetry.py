"""Routes to watch the service: Prometheus `/metrics`, `/stats` (sliding windows), and the `/dashboard` page."""

from __future__ import annotations

from functools import cache
from importlib import resources

from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Route
from ml_service.codecs.native import PROTOCOL
from ml_service.observe.metrics import CONTENT_TYPE


async def metrics(call: Call) -> Reply:
    """Prometheus text format: request, batch, load, memory, process and GPU metrics (all `ml_service_*`)."""
    assert call.telemetry is not None
    return Reply(call.telemetry.metrics.exposition(), media_type=CONTENT_TYPE.encode())


async def stats(call: Call) -> Reply:
    """Per model version: p50/p95/p99 latency, request and error rate over the last 1 and 5 minutes, mean batch
    size, queue depth, memory."""
    assert call.telemetry is not None
    return json_reply(call.telemetry.stats.report())


@cache
def _page() -> bytes:
    return resources.files("ml_service").joinpath("dashboard/index.html").read_bytes()


async def dashboard(call: Call) -> Reply:
    """The live dashboard: a static page (nothing from the internet) that reads /stats and /models."""
    return Reply(_page(), media_type=b"text/html; charset=utf-8",
                 headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self'; "
                          "script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"})


ROUTES = [
    Route("GET", "/metrics", metrics, PROTOCOL, "metrics", produces="text/plain", errors=(401,), tag="observability"),
    Route("GET", "/stats", stats, PROTOCOL, "stats", response="StatsReport", errors=(401,), tag="observability"),
    Route("GET", "/dashboard", dashboard, PROTOCOL, "dashboard", auth=False, produces="text/html",
          tag="observability"),
]
