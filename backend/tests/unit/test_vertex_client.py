"""The Vertex provider's handling of what Vertex answers (scripted over httpx.MockTransport; the real front end
is played in tests/e2e/test_vertex.py), and the one place texts are sanitized before they leave."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from app.services.egress import Egress
from app.services.vertex import VertexClient, VertexError, VertexNotConfigured
from tests.unit.test_resilience import Script

NAMED = {"vertex_project": "household", "vertex_location": "europe-west4", "vertex_endpoint_id": "77",
         "vertex_api_endpoint": "http://vertex.test"}
LABEL = {"label": "bills", "score": 0.9, "top_k": [{"label": "bills", "score": 0.9}]}


def vertex(settings_for: Any, script: Script, **over: Any) -> VertexClient:
    settings = settings_for(**{**NAMED, **over})
    c = VertexClient(settings, httpx.AsyncClient(transport=httpx.MockTransport(script)))
    return c


def classify(c: VertexClient, texts: list[str], names: tuple[str, ...] = ()) -> Any:
    out = asyncio.run(c.classify_text("task-category", texts, Egress().redactor(names), top_k=1))
    return [o.model_dump() for o in out]


def test_texts_leave_sanitized_to_the_named_endpoint_with_the_model(settings_for: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"predictions": [LABEL], "deployedModelId": "5"})

    c = VertexClient(settings_for(**NAMED), httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    out = classify(c, ["Emma pays +44 20 7946 0958"], ("Emma",))
    assert out == [LABEL]
    assert str(seen[0].url) == "http://vertex.test/v1/projects/household/locations/europe-west4/endpoints/77:predict"
    body = json.loads(seen[0].content)
    assert body == {"instances": ["[PERSON_1] pays [PHONE_1]"], "parameters": {"model": "task-category", "top_k": 1}}
    assert "authorization" not in seen[0].headers


def test_google_s_own_endpoint_by_default(settings_for: Any) -> None:
    c = VertexClient(settings_for(**{**NAMED, "vertex_api_endpoint": None}))
    assert c.url.startswith("https://europe-west4-aiplatform.googleapis.com/v1/projects/household/")


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_a_transient_answer_is_retried_then_answered(settings_for: Any, status: int) -> None:
    """The same statuses as ml-service's client: Google's front end also answers 502/504 for a lost replica."""
    script = Script((status, {"error": {"status": "UNAVAILABLE"}}, {}), (200, {"predictions": [LABEL]}, {}))
    assert classify(vertex(settings_for, script), ["x"]) == [LABEL] and script.calls == 2


@pytest.mark.parametrize(("step", "says"), [
    ((400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "instances[0] ..."}}, {}),
     "refused the request: 400 INVALID_ARGUMENT"),
    ((500, {"error": {}}, {}), "answered 500"),
    ((200, {"predictions": [LABEL, LABEL]}, {}), "2 outputs for 1 inputs"),
    ((200, {"nothing": 1}, {}), r"not what was asked for \(predictions: Field required\)"),
    ((200, {"predictions": [{"foo": 1}]}, {}), r"not what was asked for \(predictions.0.label"),
    (httpx.ConnectError("refused"), "cannot reach Vertex"),
])
def test_what_vertex_cannot_answer_is_a_vertex_error(settings_for: Any, step: Any, says: str) -> None:
    with pytest.raises(VertexError, match=says):
        classify(vertex(settings_for, Script(step, step)), ["x"])


def test_not_configured_without_an_endpoint(settings_for: Any) -> None:
    c = vertex(settings_for, Script(), vertex_endpoint_id=None)
    assert not c.configured
    with pytest.raises(VertexNotConfigured):
        classify(c, ["x"])


def test_many_texts_go_in_chunks_in_order(settings_for: Any) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["instances"]
        return httpx.Response(200, json={"predictions": [{"embedding": [float(t)]} for t in texts]})

    c = VertexClient(settings_for(**NAMED), httpx.AsyncClient(transport=httpx.MockTransport(handler)))
    out = asyncio.run(c.embed([str(i) for i in range(70)], Egress().redactor([])))
    assert out == [[float(i)] for i in range(70)]
