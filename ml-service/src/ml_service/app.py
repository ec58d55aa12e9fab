"""create_app(settings): every part built once, in dependency order, each given what it needs; and the lifespan.
The route table (api/) is served straight from ASGI by the Router; FastAPI behind it serves /docs, /openapi.json
(built from the same table) and the 404s."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_service import __version__
from ml_service.admission import KeyStore
from ml_service.api import embeddings, native, telemetry, v2, vertex
from ml_service.api.gate import Gate
from ml_service.api.http import Parts
from ml_service.api.openapi import build_openapi
from ml_service.api.reports import Reports
from ml_service.api.router import Route, Router
from ml_service.codecs.native import error_body
from ml_service.core import Core
from ml_service.observe import Observers, RequestHook, Telemetry
from ml_service.observe.logs import RequestLog
from ml_service.observe.metrics import Metrics, ModelMetrics, ModelStateCollector, new_registry
from ml_service.observe.stats import Stats
from ml_service.settings import Settings
from ml_service.vertex import Deployment, prepare_storage

log = logging.getLogger(__name__)
#: every route the service answers, in the order /openapi.json lists them
ROUTES: list[Route] = [*native.ROUTES, *v2.ROUTES, *embeddings.ROUTES, *telemetry.ROUTES]


def routes(settings: Settings) -> list[Route]:
    """The route table for these settings (`ML_SERVICE_METRICS_PUBLIC` opens /metrics to a scraper; Vertex mode
    adds Vertex's routes, which win over ours where Vertex names the same path)."""
    extra = vertex.routes(settings)
    taken = {(r.method, r.path) for r in extra}
    return [dataclasses.replace(r, auth=False) if r.name == "metrics" and settings.metrics_public else r
            for r in ROUTES if (r.method, r.path) not in taken] + extra


async def start(core: Core, deployment: Deployment | None) -> None:
    """Start-up: (Vertex mode) copy the repository from AIP_STORAGE_URI, then read it and preload."""
    errors: dict[str, str] = {}
    also: tuple[str, ...] = ()
    if deployment is not None:
        failed = await prepare_storage(core.settings)
        if failed:
            errors["AIP_STORAGE_URI"] = failed
        core.repository.scan()
        also = (deployment.choose(core.repository),)
    await core.start(also, errors)


def _docs_app(settings: Settings, core: Core, deployment: Deployment | None, keys: KeyStore,
              routes: list[Route]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keys.enabled:  # SIGHUP re-reads the secret file (only where the loop owns the signals)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keys.reload)
        started = asyncio.create_task(start(core, deployment))
        poll = (asyncio.create_task(_after(started, core.rollout.poll(settings.repository_poll_s)))
                if settings.repository_poll_s > 0 else None)
        try:
            yield
        finally:
            for t in (started, poll):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            await core.stop()

    app = FastAPI(title="ml-service", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    schema = build_openapi(routes, auth=bool(settings.api_keys))
    app.openapi = lambda: schema  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        shape = error_body  # only /docs and /openapi.json reach FastAPI: the Router answers every other path
        return Response(content=orjson.dumps(shape(exc.status_code, code, str(exc.detail))),
                        status_code=exc.status_code, media_type="application/json", headers=dict(exc.headers or {}))

    return app


async def _after(first: asyncio.Task[None], then: Coroutine[Any, Any, None]) -> None:
    """Run `then` once `first` has finished (the repository is polled only after the start-up load)."""
    try:
        with contextlib.suppress(Exception):
            await asyncio.shield(first)
    except asyncio.CancelledError:
        then.close()
        raise
    await then


class App(Router):
    """The ASGI application: the route table over the model house, with FastAPI behind it for the docs."""

    def __init__(self, settings: Settings, extra_hooks: tuple[RequestHook, ...] = ()) -> None:
        prometheus = new_registry()
        self.core = core = Core.build(settings, ModelMetrics(prometheus))
        deployment = Deployment(settings) if settings.vertex else None
        gate = Gate(settings)
        metrics = Metrics(prometheus, ModelStateCollector(core.repository, core.registry, core.rollout),
                          gate.limiter)
        stats = Stats(core.repository, core.registry, core.rollout)
        hooks: tuple[RequestHook, ...] = (metrics, stats, *((RequestLog(),) if settings.request_log else ()))
        table = routes(settings)
        parts = Parts(core.service, core.rollout, Reports(core.repository, core.registry, core.rollout), deployment)
        super().__init__(table, _docs_app(settings, core, deployment, gate.keys, table), parts, settings, gate,
                         Observers((*hooks, *extra_hooks)), Telemetry(metrics, stats))


def create_app(settings: Settings | None = None, observers: Observers | None = None) -> App:
    """The ASGI app. Preloading runs in the background: live at once, ready when it is done. `observers`: more
    request hooks, seen after the built-in ones (metrics, /stats, the request log)."""
    return App(settings or Settings(), observers.hooks if observers is not None else ())
