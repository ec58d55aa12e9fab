"""create_app(settings): every part built once, in dependency order, each given what it needs; and the lifespan.
The route table (api/) is served straight from ASGI by the Router; FastAPI, built on first use, serves /docs and
/openapi.json (generated from the same table)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
from collections.abc import Coroutine
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service import __version__
from ml_service.admission import KeyStore
from ml_service.api import embeddings, native, telemetry, training, v2, vertex
from ml_service.api.gate import Gate
from ml_service.api.http import Parts
from ml_service.api.reports import Reports
from ml_service.api.router import Route, Router
from ml_service.codecs.native import error_body
from ml_service.core import Core
from ml_service.observe import Observers, RequestHook, Telemetry
from ml_service.observe.logs import RequestLog
from ml_service.observe.metrics import Metrics, ModelMetrics, ModelStateCollector, new_registry
from ml_service.observe.stats import Stats
from ml_service.settings import Settings
from ml_service.training.jobs import TrainingJobs
from ml_service.training.trainer import Trainer
from ml_service.vertex import Deployment, prepare_storage

log = logging.getLogger(__name__)
#: every route the service answers, in the order /openapi.json lists them
ROUTES: list[Route] = [*native.ROUTES, *training.ROUTES, *v2.ROUTES, *embeddings.ROUTES, *telemetry.ROUTES]


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


class Docs:
    """`/docs` and `/openapi.json`: FastAPI, imported and built on the first request for them (importing it is
    about 0.4 s of a cold start that nothing else needs). The Router answers every other path itself."""

    def __init__(self, settings: Settings, routes: list[Route]) -> None:
        self.settings, self.routes = settings, routes
        self._app: ASGIApp | None = None

    def _build(self) -> ASGIApp:
        from fastapi import FastAPI, Request
        from fastapi.responses import Response
        from starlette.exceptions import HTTPException

        from ml_service.api.openapi import build_openapi

        app = FastAPI(title="ml-service", version=__version__, docs_url="/docs", redoc_url=None)
        schema = build_openapi(self.routes, auth=bool(self.settings.api_keys))
        app.openapi = lambda: schema  # type: ignore[method-assign]

        @app.exception_handler(HTTPException)
        async def _http(request: Request, exc: HTTPException) -> Response:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            return Response(content=orjson.dumps(error_body(exc.status_code, code, str(exc.detail))),
                            status_code=exc.status_code, media_type="application/json",
                            headers=dict(exc.headers or {}))

        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            self._app = self._build()
        await self._app(scope, receive, send)


class Lifespan:
    """Start-up and shutdown: SIGHUP re-reads the secret file; start-up steps and preloading run in the background
    (live at once, ready when done); the repository is polled after them; shutdown unloads every model."""

    def __init__(self, settings: Settings, core: Core, deployment: Deployment | None, keys: KeyStore,
                 jobs: TrainingJobs) -> None:
        self.settings, self.core, self.deployment, self.keys, self.jobs = settings, core, deployment, keys, jobs
        self._tasks: list[asyncio.Task[None]] = []

    async def startup(self) -> None:
        if self.keys.enabled:  # only where the loop owns the signals
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.keys.reload)
        started = asyncio.create_task(start(self.core, self.deployment))
        self._tasks = [started]
        if self.settings.repository_poll_s > 0:
            self._tasks.append(asyncio.create_task(_after(started, self.core.rollout.poll(
                self.settings.repository_poll_s))))

    async def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.jobs.close()
        await self.core.stop()

    async def __call__(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": "start-up failed (see the log)"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


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
    """The ASGI application: the route table over the model house, its lifespan, and FastAPI for the docs."""

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
        jobs = TrainingJobs(Trainer(core))
        parts = Parts(core.service, core.rollout, Reports(core.repository, core.registry, core.rollout), deployment,
                      jobs)
        self.lifespan = Lifespan(settings, core, deployment, gate.keys, jobs)
        super().__init__(table, Docs(settings, table), parts, settings, gate, Observers((*hooks, *extra_hooks)),
                         Telemetry(metrics, stats))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, observers: Observers | None = None) -> App:
    """The ASGI app. Preloading runs in the background: live at once, ready when it is done. `observers`: more
    request hooks, seen after the built-in ones (metrics, /stats, the request log)."""
    return App(settings or Settings(), observers.hooks if observers is not None else ())
