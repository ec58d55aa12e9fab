"""The backend app: `uvicorn app.main:app --port 8000` (from `backend/`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api import household, ml, tasks
from app.api.deps import APIError
from app.config import Settings
from app.core.logging import configure
from app.db import Database
from app.services.ai import AIService
from app.services.container import Services
from app.services.ml_client import MLServiceClient, MLServiceRejected
from app.services.recommend import load_catalog
from app.services.router import HybridRouter, NoSource
from app.services.vertex import VertexClient

log = logging.getLogger(__name__)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; its services (one pooled client to ml-service, the database) live as long as its lifespan."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        await db.migrate()
        http = MLServiceClient.make_http(settings)
        ai = AIService(settings)
        vertex = VertexClient(settings)
        app.state.services = Services(settings, db, MLServiceClient(settings, http), ai,
                                      HybridRouter(settings, ai, vertex), load_catalog(), vertex)
        log.info("backend ready: ml-service at %s, order %s (vertex %s, openai %s), database %s",
                 settings.ml_service_url, settings.fallback_order, "on" if vertex.configured else "off",
                 "on" if ai.configured else "off", settings.database_url.split("://")[0])
        try:
            yield
        finally:
            await http.aclose()
            await vertex.close()
            await ai.close()
            await db.close()

    app = FastAPI(title="household backend", version="0.1.0", lifespan=lifespan)
    app.include_router(tasks.router)
    app.include_router(household.router)
    app.include_router(ml.router)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """200 while the process runs (ml-service's own health is its business)."""
        return {"status": "ok"}

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(NoSource)
    async def _no_source(request: Request, exc: NoSource) -> JSONResponse:
        return _error(503, "no_ml_source", f"no source could answer: {exc}", {"Retry-After": "5"})

    @app.exception_handler(MLServiceRejected)
    async def _rejected(request: Request, exc: MLServiceRejected) -> JSONResponse:
        status = exc.status if exc.status in (400, 404, 413, 422) else 422
        return _error(status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, "invalid_input", f"{where or 'body'}: {first.get('msg', 'invalid')}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", "internal error; see the backend's log")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))

    return app


def _app() -> FastAPI:
    settings = Settings()
    configure(settings.log_level, settings.log_format)
    return create_app(settings)


app = _app()
