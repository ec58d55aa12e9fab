"""The fast path: the hot inference routes served straight from ASGI.

FastAPI's routing, dependency solving and middleware cost more CPU per request than the route's own
work (measured: ~75% of the event loop's time at 500 requests/s), and at the target rate the event
loop is the bottleneck. These POST routes are answered here with the same handlers, the same auth,
the same body limit and the same error JSON as the FastAPI routes that document them; every other
request passes through to FastAPI.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ml_service.api.deps import key_matches
from ml_service.api.errors import error_body
from ml_service.api.openai import create_embeddings
from ml_service.api.seed import seed_inference
from ml_service.errors import BadRequest, MLServiceError, PayloadTooLarge, Unauthorized
from ml_service.service import InferenceService
from ml_service.settings import Settings

log = logging.getLogger(__name__)
Handler = Callable[[Any], Awaitable[dict[str, Any]]]
_JSON = [(b"content-type", b"application/json")]


class FastRoutes:
    """ASGI middleware answering `POST /inference`, `/v1/embeddings` and `/embeddings` directly."""

    def __init__(self, app: ASGIApp, service: InferenceService, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.keys = settings.api_keys
        self.limit = settings.max_body_bytes

        async def openai(body: Any) -> dict[str, Any]:
            return await create_embeddings(service, settings, body)

        async def seed(body: Any) -> dict[str, Any]:
            return await seed_inference(service, body)

        self.handlers: dict[str, Handler] = {"/inference": seed, "/v1/embeddings": openai, "/embeddings": openai}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.handlers.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        headers: dict[str, str] = {}
        try:
            self._auth(scope)
            body = await self._body(scope, receive)
            if not body:
                raise BadRequest("request body is empty; send a JSON object")
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from None
            out = orjson.dumps(await handler(data), option=orjson.OPT_SERIALIZE_NUMPY)
            status = 200
        except MLServiceError as exc:
            if exc.status_code >= 500:
                log.warning("POST %s -> %d %s: %s", path, exc.status_code, exc.code, exc.message)
            status, headers = exc.status_code, exc.headers
            out = orjson.dumps(error_body(path, exc.status_code, exc.code, exc.message))
        except Exception:
            log.exception("unhandled error on POST %s", path)
            status = 500
            out = orjson.dumps(error_body(path, 500, "internal_error", "internal error; see the service log"))
        raw_headers = [*_JSON, (b"content-length", str(len(out)).encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": out})

    def _auth(self, scope: Scope) -> None:
        if not self.keys:
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token or not key_matches(token.strip(), self.keys):
            raise Unauthorized()

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        too_big = PayloadTooLarge(f"request body is larger than {self.limit} bytes (ML_SERVICE_MAX_BODY_BYTES)")
        for k, v in scope["headers"]:
            if k == b"content-length" and v.isdigit() and int(v) > self.limit:
                raise too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise BadRequest("client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
