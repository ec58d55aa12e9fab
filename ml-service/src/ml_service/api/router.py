"""The one HTTP stack: a route table served straight from ASGI (FastAPI's routing and middleware cost more CPU
than the model at our rates) and documented from the same table in /openapi.json.

Every route goes through the same steps: match, context, auth, hooks, body (one reader, one limit), handler,
error rendering (in the route's protocol), send. Only `/docs` and `/openapi.json` pass to FastAPI; a path no route
matches is a 404 in the protocol of the routes nearest to it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from msgspec import Struct
from starlette.types import ASGIApp, Receive, Scope, Send

from ml_service.api.gate import Gate
from ml_service.api.http import Call, Parts, Reply, error_reply, internal_error_reply, read_body
from ml_service.codecs import native
from ml_service.codecs.common import Protocol
from ml_service.errors import ClientDisconnected, MethodNotAllowed, MLServiceError, PathNotFound
from ml_service.observe import Observers, RequestContext, Telemetry
from ml_service.observe.logs import closed_transport
from ml_service.settings import Settings

log = logging.getLogger("ml_service.api")
Handler = Callable[[Call], Awaitable[Reply]]
_PARAM = re.compile(r"\{(\w+)\}")
_SANE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_DOCS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


@dataclass(frozen=True)
class Query:
    """A documented query parameter."""

    name: str
    description: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Route:
    """One route: how it is served, and how it is documented."""

    method: str
    path: str  # "/v2/models/{model}/infer"
    handler: Handler
    protocol: Protocol  # its error shape, and its name in the request context
    name: str
    auth: bool = True
    body: type[Struct] | None = None  # the JSON request body, as its codec parses it
    body_required: bool = True
    binary_body: bool = False  # also takes application/octet-stream (V2 binary tensor data)
    response: str | None = None  # its answer's model in schemas.py, by name (imported only for /openapi.json)
    produces: str = "application/json"  # what a 200 is (for the docs)
    errors: tuple[int, ...] = ()
    query: tuple[Query, ...] = ()
    watch_disconnect: bool = False  # inference: a client that leaves cancels its work
    limited: bool = False  # inference: rate limits and the client's deadline header apply
    max_body: str = "max_body_bytes"  # the setting that limits its body
    status: int = 200  # what it answers when it succeeds (for the docs)
    tag: str = ""

    @property
    def params(self) -> list[str]:
        return _PARAM.findall(self.path)

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + _PARAM.sub(r"(?P<\1>[^/]+)", re.escape(self.path).replace(r"\{", "{")
                                                   .replace(r"\}", "}")) + "$")


async def _wait_disconnect(receive: Receive) -> bool:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return True


class Router:
    """ASGI app serving the route table; everything else goes to `fallback` (FastAPI)."""

    def __init__(self, routes: Sequence[Route], fallback: ASGIApp, parts: Parts, settings: Settings, gate: Gate,
                 observers: Observers, telemetry: Telemetry | None = None) -> None:
        self.routes = list(routes)
        self.telemetry = telemetry
        self._ids = itertools.count(1)
        self._id_prefix = secrets.token_hex(4)
        self.fallback = fallback
        self.parts = parts
        self.settings = settings
        self.observers = observers
        self.gate = gate
        self._static: dict[tuple[str, str], Route] = {}
        self._dynamic: list[tuple[re.Pattern[str], Route]] = []
        for r in self.routes:
            if r.params:
                self._dynamic.append((r.pattern(), r))
            else:
                self._static[(r.method, r.path)] = r
        self._segments = [(r.path.split("/")[1:], r.protocol) for r in self.routes]

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], list[Route]]:
        """The route for a request, its path parameters, and the routes of the path's other methods (for a 405)."""
        route = self._static.get((method, path))
        if route is not None:
            return route, {}, []
        allowed = [r for (m, p), r in self._static.items() if p == path]
        for pattern, r in self._dynamic:
            found = pattern.match(path)
            if found:
                if r.method == method:
                    return r, found.groupdict(), []
                allowed.append(r)
        return None, {}, allowed

    def nearest(self, path: str) -> Protocol:
        """The protocol of a path no route has: that of the route sharing the most leading segments with it
        (`/v2/nope` is V2's), else the service's own."""
        parts = path.split("/")[1:]
        best, shared = native.PROTOCOL, 0
        for segments, protocol in self._segments:
            n = 0
            for mine, theirs in zip(segments, parts, strict=False):
                if mine != theirs and not mine.startswith("{"):
                    break
                n += 1
            if n > shared:
                best, shared = protocol, n
        return best

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.fallback(scope, receive, send)
            return
        path = scope["path"]
        route, params, allowed = self.match(scope["method"], path)
        if route is None:
            if allowed:
                exc = MethodNotAllowed(f"method {scope['method']} is not allowed here",
                                       sorted({r.method for r in allowed}))
                await _send(send, error_reply(allowed[0].protocol, exc))
                return
            if path not in _DOCS:
                await _send(send, error_reply(self.nearest(path), PathNotFound(
                    "no route has this path; GET /openapi.json lists them")))
                return
            if self.gate.keys.enabled:  # the API's description needs the token too
                try:
                    self.gate.authenticate(RequestContext("native", "docs"), scope["headers"], required=True)
                except MLServiceError as exc:
                    await _send(send, error_reply(native.PROTOCOL, exc))
                    return
            await self.fallback(scope, receive, send)
            return
        await self._serve(route, params, scope, receive, send)

    def _request_id(self, headers: list[tuple[bytes, bytes]]) -> str:
        """The client's X-Request-ID when it is a sane token, else a new one (unique in this process)."""
        for k, v in headers:
            if k == b"x-request-id":
                if _SANE_ID.fullmatch(v):
                    return v.decode("ascii")
                break
        return f"{self._id_prefix}-{next(self._ids):x}"

    async def _serve(self, route: Route, params: dict[str, str], scope: Scope, receive: Receive,
                     send: Send) -> None:
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        ctx = RequestContext(route.protocol.name, route.name, request_id=self._request_id(headers))
        try:
            try:
                token = self.gate.authenticate(ctx, headers, required=route.auth)
                self.observers.start(ctx)
                if route.limited:
                    client = scope.get("client")
                    await self.gate.limit(ctx, headers, client[0] if client else None, token)
                    self.gate.deadline(ctx, headers)
                body = await read_body(headers, receive, getattr(self.settings, route.max_body), route.max_body) \
                    if route.method == "POST" else b""
                call = Call(params, scope["query_string"], headers, body, ctx, self.parts, self.settings,
                            self.telemetry)
                if route.watch_disconnect:
                    reply = await _cancel_on_disconnect(route.handler(call), receive)
                else:
                    reply = await route.handler(call)
            except MLServiceError as exc:
                ctx.error = exc.code
                reply = error_reply(route.protocol, exc)
            except ClientDisconnected:
                ctx.status, ctx.error = 499, "client_disconnected"
                return
            except Exception:
                log.exception("unhandled error on %s %s", route.method, scope["path"])
                ctx.error = "internal_error"
                reply = internal_error_reply(route.protocol)
            ctx.status = reply.status
            reply.headers["X-Request-ID"] = ctx.request_id
            if ctx.headers:
                reply.headers.update(ctx.headers)
            if not await _send(send, reply):
                ctx.status, ctx.error = 499, "client_disconnected"
        finally:
            self.observers.end(ctx)


async def _cancel_on_disconnect(work: Awaitable[Reply], receive: Receive) -> Reply:
    """Run the handler; if the client disconnects meanwhile, cancel it (its queued items are dropped
    uncomputed) and raise ClientDisconnected."""
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    watcher.add_done_callback(lambda w: task.cancel() if not w.cancelled() and w.exception() is None else None)
    try:
        return await work
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientDisconnected() from None
        raise
    finally:
        if not watcher.done():
            watcher.cancel()


async def _send(send: Send, reply: Reply) -> bool:
    """Send a reply; False when the client has already gone (its connection is closed)."""
    headers = [(b"content-type", reply.media_type), (b"content-length", str(len(reply.body)).encode())]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items()]
    try:
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})
    except (OSError, RuntimeError) as exc:  # e.g. "unable to perform operation on a closed transport"
        log.debug("the client left before its answer was sent: %s", exc)
        closed_transport.expected += 1
        return False
    return True


__all__ = ["Handler", "Query", "Route", "Router"]
