"""The one error shape of the API, `{"error": {"code", "message"}}`, and the handlers that give every failure it."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.services.fallback import NoSource
from app.services.learn import LearnError
from app.services.ml_client import MLServiceRejected
from app.services.resilience import SourceError

log = logging.getLogger(__name__)


class APIError(Exception):
    """An error with its status, code and a message safe to show."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Every failure as the one shape: ours, FastAPI's validation and routing errors, and anything unexpected."""

    @app.exception_handler(APIError)
    async def _api(request: Request, exc: APIError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(LearnError)
    async def _learn(request: Request, exc: LearnError) -> JSONResponse:
        return error(exc.status, exc.code, exc.message, {"Retry-After": "5"} if exc.status == 503 else None)

    @app.exception_handler(NoSource)
    @app.exception_handler(SourceError)
    async def _no_source(request: Request, exc: Exception) -> JSONResponse:
        return error(503, "no_ml_source", f"no source could answer: {exc}", {"Retry-After": "5"})

    @app.exception_handler(MLServiceRejected)
    async def _rejected(request: Request, exc: MLServiceRejected) -> JSONResponse:
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(PoolTimeout)
    async def _pool(request: Request, exc: PoolTimeout) -> JSONResponse:
        log.warning("no database connection free for %s %s", request.method, request.url.path)
        return error(503, "database_busy", "every database connection is in use; try again", {"Retry-After": "1"})

    @app.exception_handler(OperationalError)
    async def _database(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, type(exc.orig).__name__)
        return error(503, "database_unavailable", "the database cannot answer now; try again", {"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        return error(422, "invalid_input", f"{where or 'body'}: {message}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "internal_error", "internal error; see the backend's log")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "not_found" if exc.status_code == 404 else "http_error", str(exc.detail))
