"""A stand-in for Vertex AI's endpoint front end (`aiplatform.googleapis.com`'s REST surface) that forwards
predictions to a container speaking Vertex's custom-container contract, as Vertex does.

    POST /v1/projects/{p}/locations/{l}/endpoints/{e}:predict  -> the container's AIP_PREDICT_ROUTE
    GET  /v1/projects/{p}/locations/{l}/endpoints/{e}           -> the endpoint resource
    POST /token   Google's OAuth 2.0 token endpoint for a service account's signed JWT (point a key file's
                  `token_uri` here); with `require_token`, predictions need a token it issued

The query string (the SDK adds `$alt=json;enum-encoding=int`) is ignored. Every request is recorded.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson

from ml_service_testing._http import Handler, Served

_ENDPOINT = re.compile(r"^/v1/(projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)(:predict)?$")


@dataclass
class Recorded:
    """One request the front end received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None


@dataclass
class VertexFront(Served):
    """The front end of one endpoint with one deployed model: `container` is the container's base URL and
    `predict_route` its AIP_PREDICT_ROUTE."""

    container: str
    predict_route: str
    deployed_model_id: str = "1"
    model: str = "projects/p/locations/l/models/ml-service"
    require_token: bool = False
    requests: list[Recorded] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, r: Recorded) -> None:
        with self._lock:
            self.requests.append(r)


class _FrontHandler(Handler):
    def do_GET(self) -> None:
        front: VertexFront = self.owner
        path = self.path.split("?", 1)[0]
        front.record(Recorded("GET", path, dict(self.headers.items())))
        found = _ENDPOINT.match(path)
        if not found or found.group(2):
            self.google_error(404, f"no such resource {path}", "NOT_FOUND")
            return
        name = found.group(1)
        self.send_json(200, {
            "name": name, "displayName": "ml-service", "createTime": "2026-11-29T12:00:00.000000Z",
            "updateTime": "2026-11-29T12:00:00.000000Z",
            "deployedModels": [{"id": front.deployed_model_id, "model": front.model, "displayName": "ml-service",
                                "createTime": "2026-11-29T12:00:00.000000Z"}],
            "trafficSplit": {front.deployed_model_id: 100},
        })

    def do_POST(self) -> None:
        front: VertexFront = self.owner
        path = self.path.split("?", 1)[0]
        raw = self.body()
        try:
            doc = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            doc = raw.decode("utf-8", "replace")
        front.record(Recorded("POST", path, dict(self.headers.items()), doc))
        if path == "/token":
            self._token(front, raw)
            return
        if front.require_token and self.headers.get("Authorization", "").removeprefix("Bearer ") not in front.tokens:
            self.google_error(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
            return
        found = _ENDPOINT.match(path)
        if not found or not found.group(2):
            self.google_error(404, f"no such method {path}", "NOT_FOUND")
            return
        try:
            r = httpx.post(front.container + front.predict_route, content=raw, timeout=60,
                           headers={"Content-Type": "application/json"})
        except httpx.HTTPError:
            self.google_error(503, "the deployed model did not answer", "UNAVAILABLE")
            return
        if r.status_code != 200:
            self.send(r.status_code, r.content, r.headers.get("content-type", "application/json"))
            return
        answer = r.json()
        answer.update({"deployedModelId": front.deployed_model_id, "model": front.model,
                       "modelDisplayName": "ml-service", "modelVersionId": "1"})
        self.send_json(200, answer)

    def _token(self, front: VertexFront, raw: bytes) -> None:
        form = parse_qs(raw.decode("ascii", "replace"))
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"] or not form.get("assertion"):
            self.send_json(400, {"error": "invalid_grant", "error_description": "a signed JWT assertion is needed"})
            return
        token = f"ya29.test-{len(front.tokens) + 1}"
        front.tokens.append(token)
        self.send_json(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})


VertexFront.handler = _FrontHandler

__all__ = ["Recorded", "VertexFront"]
