"""create_app(settings): wiring, lifespan and routers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from ml_service import __version__
from ml_service.api import openai, seed, v2
from ml_service.api.deps import BodyLimitMiddleware
from ml_service.api.errors import install_error_handlers
from ml_service.api.fast import FastRoutes
from ml_service.service import InferenceService
from ml_service.settings import Settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, service: InferenceService | None = None) -> FastAPI:
    """The ASGI app. Preloading runs in the background: live at once, ready when it is done."""
    settings = settings or Settings()
    service = service or InferenceService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.repository.scan()
        task = asyncio.create_task(service.start())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await service.stop()

    app = FastAPI(title="ml-service", version=__version__, lifespan=lifespan,
                  docs_url="/docs", redoc_url=None)
    app.state.settings = settings
    app.state.service = service
    install_error_handlers(app)
    app.include_router(seed.health_router)
    app.include_router(seed.router)
    app.include_router(v2.health_router)
    app.include_router(v2.router)
    app.include_router(openai.router)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(FastRoutes, service=service, settings=settings)  # outermost: skips the rest
    return app
