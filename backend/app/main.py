"""The backend app: `uvicorn app.main:app --port 8000` (from `backend/`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from app.api import errors
from app.api.routes import api_router
from app.core.config import Settings
from app.core.logging import configure
from app.db import Database
from app.services.ai import AIService
from app.services.fallback import FallbackChain
from app.services.features import Features
from app.services.ml_client import MLServiceClient
from app.services.recommend import load_catalog
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its parts (the database, one pooled client per source) live as long as its lifespan."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        await db.migrate()
        ml = MLServiceClient(settings, MLServiceClient.make_http(settings))
        ai = AIService(settings)
        vertex = VertexClient(settings)
        app.state.settings, app.state.db = settings, db
        app.state.features = Features(settings, db, ml, vertex, ai, FallbackChain(settings, ai, vertex),
                                      load_catalog())
        log.info("backend ready: ml-service at %s, order %s (vertex %s, openai %s), database %s",
                 settings.ml_service_url, settings.fallback_order, "on" if vertex.configured else "off",
                 "on" if ai.configured else "off", settings.database_url.split("://")[0])
        try:
            yield
        finally:
            await ml.http.aclose()
            await vertex.close()
            await ai.close()
            await db.close()

    app = FastAPI(title="household backend", version="0.1.0", lifespan=lifespan)
    app.include_router(api_router)
    errors.install(app)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """200 while the process runs (ml-service's own health is its business)."""
        return {"status": "ok"}

    return app


def _app() -> FastAPI:
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return create_app(settings)


app = _app()
