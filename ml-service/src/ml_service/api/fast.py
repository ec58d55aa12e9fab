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

from ml_service.api.deps import check_bearer, too_large
from ml_service.api.errors import error_body
from ml_service.api.openai import create_embeddings
from ml_service.api.seed import seed_inference
from ml_service.errors import BadRequest, MLServiceError
from ml_service.protocols import parse_json
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
            auth = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            check_bearer(auth.decode("latin-1"), self.keys)
            data = parse_json(await self._body(scope, receive))
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

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        too_big = too_large(self.limit)
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
