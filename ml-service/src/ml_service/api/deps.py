"""Request plumbing shared by the routes: auth, body limits, JSON in and out."""

from __future__ import annotations

import hmac
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service.api.errors import error_response
from ml_service.errors import PayloadTooLarge, Unauthorized
from ml_service.protocols import parse_json
from ml_service.service import InferenceService
from ml_service.settings import Settings

_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY


def get_service(request: Request) -> InferenceService:
    service: InferenceService = request.app.state.service
    return service


def key_matches(token: str, keys: list[str]) -> bool:
    """Constant-time comparison against every configured key (no early exit)."""
    ok = False
    tb = token.encode()
    for key in keys:
        ok |= hmac.compare_digest(tb, key.encode())
    return ok


def check_bearer(header: str, keys: list[str]) -> None:
    """Raise Unauthorized unless `header` is `Bearer <one of keys>` (no keys: auth is off)."""
    if not keys:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or not key_matches(token.strip(), keys):
        raise Unauthorized()


async def require_auth(request: Request) -> None:
    """Bearer-token auth, on whenever ML_SERVICE_SECRET is set."""
    settings: Settings = request.app.state.settings
    check_bearer(request.headers.get("authorization", ""), settings.api_keys)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes (ML_SERVICE_MAX_BODY_BYTES)")


async def read_body(request: Request) -> bytes:
    """The body, refusing more than ML_SERVICE_MAX_BODY_BYTES while streaming it."""
    limit: int = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request) -> Any:
    """Parse the body as JSON (orjson), with a 400 that says why when it is not."""
    return parse_json(await read_body(request))


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """Serialize with orjson; numpy arrays go out without per-float Python work."""
    return Response(orjson.dumps(content, option=_JSON_OPTS), status_code=status_code,
                    media_type="application/json", headers=headers)


class BodyLimitMiddleware:
    """Answers 413 before reading a body whose Content-Length is over the limit."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length":
                    try:
                        too_big = int(value) > self.max_body_bytes
                    except ValueError:
                        too_big = False
                    if too_big:
                        resp = error_response(scope["path"], 413, "payload_too_large",
                                              f"request body is larger than {self.max_body_bytes} bytes "
                                              "(ML_SERVICE_MAX_BODY_BYTES)")
                        await resp(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
