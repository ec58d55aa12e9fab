"""create_app(settings): wiring and lifespan. The route table (api/) is served straight from ASGI by the
Router; FastAPI behind it serves /docs, /openapi.json (built from the same table) and the 404s."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_service import __version__
from ml_service.api import embeddings, native, telemetry, v2, vertex
from ml_service.api.openapi import build_openapi
from ml_service.api.router import Route, Router
from ml_service.codecs.native import error_body
from ml_service.observe import Observers, RequestHook, Telemetry
from ml_service.observe.logs import RequestLog
from ml_service.observe.metrics import Metrics
from ml_service.observe.stats import Stats
from ml_service.service import InferenceService
from ml_service.settings import Settings

log = logging.getLogger(__name__)
#: every route the service answers, in the order /openapi.json lists them
ROUTES: list[Route] = [*native.ROUTES, *v2.ROUTES, *embeddings.ROUTES, *telemetry.ROUTES]


def _docs_app(settings: Settings, service: InferenceService, routes: list[Route]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.repository.scan()
        keys = getattr(app.state, "keys", None)
        if keys is not None:  # SIGHUP re-reads the secret file (only where the loop owns the signals)
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, keys.reload)
        task = asyncio.create_task(service.start())
        poll = (asyncio.create_task(_after(task, service.rollout.poll(settings.repository_poll_s)))
                if settings.repository_poll_s > 0 else None)
        try:
            yield
        finally:
            for t in (task, poll):
                if t is not None:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await t
            await service.stop()

    app = FastAPI(title="ml-service", version=__version__, lifespan=lifespan, docs_url="/docs", redoc_url=None)
    schema = build_openapi(routes, auth=bool(settings.api_keys))
    app.openapi = lambda: schema  # type: ignore[method-assign]

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        shape = error_body  # only /docs and /openapi.json reach FastAPI: the Router answers every other path
        return Response(content=_dumps(shape(exc.status_code, code, str(exc.detail))), status_code=exc.status_code,
                        media_type="application/json", headers=dict(exc.headers or {}))

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


def _dumps(content: Any) -> bytes:
    import orjson

    return orjson.dumps(content)


def routes(settings: Settings) -> list[Route]:
    """The route table for these settings (`ML_SERVICE_METRICS_PUBLIC` opens /metrics to a scraper; Vertex mode
    adds Vertex's routes, which win over ours where Vertex names the same path)."""
    extra = vertex.routes(settings)
    taken = {(r.method, r.path) for r in extra}
    return [dataclasses.replace(r, auth=False) if r.name == "metrics" and settings.metrics_public else r
            for r in ROUTES if (r.method, r.path) not in taken] + extra


class App(Router):
    """The ASGI application: the route table, with FastAPI behind it for the docs."""

    def __init__(self, settings: Settings, service: InferenceService, observers: Observers) -> None:
        table = routes(settings)
        self.docs = _docs_app(settings, service, table)
        metrics, stats = Metrics(service), Stats(service)
        service.registry.events = metrics
        hooks: tuple[RequestHook, ...] = (metrics, stats, *((RequestLog(),) if settings.request_log else ()))
        observers.hooks = (*hooks, *observers.hooks)
        super().__init__(table, self.docs, service, settings, observers, Telemetry(metrics, stats))
        self.docs.state.keys = self.gate.keys
        metrics.limiter = self.gate.limiter


def create_app(settings: Settings | None = None, service: InferenceService | None = None,
               observers: Observers | None = None) -> App:
    """The ASGI app. Preloading runs in the background: live at once, ready when it is done."""
    settings = settings or Settings()
    return App(settings, service or InferenceService(settings), observers or Observers())
