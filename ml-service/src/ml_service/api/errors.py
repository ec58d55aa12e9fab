"""One place that maps the error hierarchy (and framework errors) to each protocol's JSON shape."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ml_service.errors import MLServiceError

log = logging.getLogger(__name__)

_OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                 413: "invalid_request_error", 422: "invalid_request_error", 429: "rate_limit_error"}


def error_body(path: str, status: int, code: str, message: str) -> dict[str, Any]:
    """The error JSON for the protocol that `path` belongs to."""
    if path.startswith("/v2"):
        return {"error": message}
    if path.startswith(("/v1", "/embeddings")):
        return {"error": {"message": message, "type": _OPENAI_TYPES.get(status, "server_error"),
                          "param": None, "code": code}}
    return {"error": {"code": code, "message": message}}


def error_response(path: str, status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(error_body(path, status, code, message)), status_code=status,
                    media_type="application/json", headers=headers)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers; internal errors are logged and answered without details."""

    @app.exception_handler(MLServiceError)
    async def _service_error(request: Request, exc: MLServiceError) -> Response:
        if exc.status_code >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.url.path, exc.status_code, exc.code,
                        exc.message)
        return error_response(request.url.path, exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request.url.path, 422, "invalid_input", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request.url.path, exc.status_code, code, str(exc.detail),
                              dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request.url.path, 500, "internal_error", "internal error; see the service log")
