"""HTTP plumbing every route shares: the request as handlers see it, replies, the one body reader, and the one
error renderer (told the protocol by the route, whose codec declares the error shape)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson
from starlette.types import Message, Receive

from ml_service.codecs.common import Protocol
from ml_service.errors import ClientDisconnected, InvalidInput, MLServiceError, PayloadTooLarge
from ml_service.observe import LogThrottle, RequestContext, Telemetry
from ml_service.settings import Settings

if TYPE_CHECKING:
    from ml_service.api.reports import Reports
    from ml_service.rollout import Rollout
    from ml_service.service import InferenceService
    from ml_service.training.jobs import TrainingJobs
    from ml_service.vertex import Deployment

log = logging.getLogger("ml_service.api")
_throttled = LogThrottle(log)
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY
JSON = b"application/json"


@dataclass
class Reply:
    """A complete response."""

    body: bytes
    status: int = 200
    media_type: bytes = JSON
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """Serialized with orjson; numpy arrays go out without per-float Python work."""
    return Reply(orjson.dumps(content, option=_JSON_OPTS), status, JSON, headers or {})


def error_reply(protocol: Protocol, exc: MLServiceError) -> Reply:
    """The one place an error becomes a response: the protocol's shape, the error's status and headers."""
    if exc.status_code >= 500:  # a flood of 503s must not flood the log
        _throttled.warning(exc.code, "request failed: %d %s: %s", exc.status_code, exc.code, exc.message)
    status = protocol.http_status(exc.status_code)
    return json_reply(protocol.error_body(status, exc.code, exc.message), status, exc.headers)


def internal_error_reply(protocol: Protocol) -> Reply:
    """A 500 that says nothing of the cause (the log has it)."""
    return json_reply(protocol.error_body(500, "internal_error", "internal error; see the service log"), 500)


@dataclass(frozen=True, slots=True)
class Parts:
    """What route handlers reach: the data plane, the rollout (loads, reloads, rollbacks, readiness), the read-only
    reports, the training jobs, and in Vertex mode the deployment."""

    service: InferenceService
    rollout: Rollout
    reports: Reports
    vertex: Deployment | None = None
    training: TrainingJobs | None = None


@dataclass(slots=True)
class Call:
    """One request as a route handler sees it: path parameters, query, headers, the body (already read, within
    the limit), its context, and the parts it may use."""

    params: dict[str, str]
    query_string: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    ctx: RequestContext
    parts: Parts
    settings: Settings
    telemetry: Telemetry | None = None

    @property
    def service(self) -> InferenceService:
        return self.parts.service

    @property
    def rollout(self) -> Rollout:
        return self.parts.rollout

    @property
    def reports(self) -> Reports:
        return self.parts.reports

    @property
    def training(self) -> TrainingJobs:
        assert self.parts.training is not None, "the app builds the training jobs"
        return self.parts.training

    def header(self, name: bytes) -> str | None:
        """A request header by its lower-case name."""
        return next((v.decode("latin-1") for k, v in self.headers if k == name), None)

    def query(self, name: str) -> str | None:
        values = parse_qs(self.query_string.decode("latin-1")).get(name)
        return values[-1] if values else None

    def version_query(self) -> int | None:
        """`?version=N` (a positive integer) or None."""
        value = self.query("version")
        if value is None:
            return None
        if not value.isdigit() or int(value) < 1:
            raise InvalidInput(f"version must be a positive integer, got {value!r}")
        return int(value)


def too_large(limit: int, setting: str = "max_body_bytes") -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {limit} bytes (ML_SERVICE_{setting.upper()})")


async def read_body(headers: list[tuple[bytes, bytes]], receive: Receive, limit: int,
                    setting: str = "max_body_bytes") -> bytes:
    """The whole body, refused with 413 when its Content-Length or its bytes go over `limit`."""
    for k, v in headers:
        if k == b"content-length":
            digits = v.lstrip(b"0")  # compared by length first: int() refuses more than 4,300 digits
            if v.isdigit() and (len(digits) > len(str(limit)) or int(digits or b"0") > limit):
                raise too_large(limit, setting)
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large(limit, setting)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
