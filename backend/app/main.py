"""The backend app: `uvicorn app.main:app --port 8000` (from `backend/`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from pydantic import ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api import errors
from app.api.routes import api_router
from app.core.config import Settings
from app.core.logging import configure
from app.db import Database
from app.services.ai import AIService
from app.services.egress import Egress
from app.services.fallback import FallbackChain
from app.services.features import Features
from app.services.learn import Learner
from app.services.ml_client import MLServiceClient
from app.services.recommend import load_catalog
from app.services.resilience import request_budget
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)


class RequestBudget:
    """Every request's calls out share one deadline, ML_REQUEST_BUDGET_S from its start (pure ASGI, so the
    deadline is seen by the route's code)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with request_budget(self.seconds):
            await self.app(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its parts (the database, one client per source) live as long as its lifespan."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url, settings.database_pool_size, settings.database_pool_timeout_s)
        await db.migrate()
        ml = MLServiceClient(settings, MLServiceClient.make_http(settings))
        ai = AIService(settings)
        vertex = VertexClient(settings)
        await vertex.start()
        features = Features(settings, db, ml, vertex, ai, FallbackChain(settings, ai, vertex), load_catalog())
        learner = Learner(settings, db, ml)
        app.state.settings, app.state.db, app.state.features, app.state.learner = settings, db, features, learner
        app.state.egress = Egress(settings.sanitize_cache_size)
        log.info("backend ready: ml-service at %s, order %s (vertex %s, openai %s), database %s",
                 settings.ml_service_url, settings.fallback_order, "on" if vertex.configured else "off",
                 "on" if ai.configured else "off", settings.database_url.split("://")[0])
        try:
            yield
        finally:
            await learner.close()
            await features.close()
            await ml.http.aclose()
            await vertex.close()
            await ai.close()
            await db.close()

    app = FastAPI(title="household backend", version="0.1.0", lifespan=lifespan)
    app.include_router(api_router)
    errors.install(app)
    app.add_middleware(RequestBudget, seconds=settings.ml_request_budget_s)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """200 while the process runs (ml-service's own health is its business)."""
        return {"status": "ok"}

    return app


def _settings() -> Settings:
    """The settings, or one line saying what is wrong and exit (no traceback for a mistyped variable)."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():  # never the value itself: it may hold a password
            name, message = ".".join(str(p) for p in e["loc"]).upper(), str(e["msg"]).removeprefix("Value error, ")
            problems.append(message if message.startswith(name) else f"{name}: {message}")
        raise SystemExit(f"backend: invalid settings: {'; '.join(problems)}") from None


def _app() -> FastAPI:
    settings = _settings()
    configure(settings.log_level, settings.log_format)
    return create_app(settings)


app = _app()
