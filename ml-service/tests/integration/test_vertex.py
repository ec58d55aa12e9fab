"""Vertex AI custom-container mode in process, over the tiny models: routes, the predict codec against /inference,
errors in Google's shape, limits and auth."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from .helpers import EMBED_MAX_ITEMS, wait_ready

BASE = "/v1/endpoints/123/deployedModels/456"
VERTEX = {"aip_mode": "PREDICTION", "aip_endpoint_id": "123", "aip_deployed_model_id": "456"}


@contextlib.contextmanager
def vertex_client(app_client: Any, root: Any, model: str, **extra: Any) -> Iterator[TestClient]:
    with app_client(root, **VERTEX, vertex_model=model, **extra) as c:
        wait_ready(c)
        yield c


def google_error(r: Any, status: int, name: str, reason: str | None = None) -> str:
    """Google's error shape: {"error": {"code": <status>, "message", "status", "details": [ErrorInfo]}}; invalid
    input is 400 INVALID_ARGUMENT as in Google APIs (422 and 413 elsewhere; their SDKs raise BadRequest), the
    reason says which."""
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"code", "message", "status", "details"}
    assert err["code"] == status and err["status"] == name and err["message"]
    if reason:
        assert err["details"][0]["reason"] == reason
    return str(err["message"])


def test_health_and_both_default_predict_routes(onnx_repo, app_client) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-classifier") as c:
        r = c.get(BASE)
        assert r.status_code == 200 and r.json() == {"ready": True, "model": "text-classifier"}
        body = {"instances": ["good great", {"text": "bad awful"}], "parameters": {"top_k": 2.0}}
        a, b = c.post(BASE, json=body), c.post(BASE + ":predict", json=body)
        assert a.status_code == b.status_code == 200 and a.json() == b.json()
        assert a.headers["x-model"] == "text-classifier"
        preds = a.json()["predictions"]
        assert len(preds) == 2 and all(len(p["top_k"]) == 2 for p in preds)
        native = c.post("/inference", json={"model_type": "text-classifier",
                                            "data": {"texts": ["good great", "bad awful"], "top_k": 2}}).json()
        assert preds == native["outputs"]


def test_one_endpoint_serves_every_model_through_parameters_model(onnx_repo, app_client) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-classifier") as c:
        r = c.post(BASE + ":predict", json={"instances": ["hello"], "parameters": {"model": "bert"}})  # an alias
        assert r.status_code == 200 and r.headers["x-model"] == "text-embedding"
        assert "embedding" in r.json()["predictions"][0]
        google_error(c.post(BASE + ":predict", json={"instances": ["x"], "parameters": {"model": "nope"}}), 404,
                     "NOT_FOUND", "model_not_found")
        google_error(c.post(BASE + ":predict", json={"instances": ["x"], "parameters": {"model": 3}}), 400,
                     "INVALID_ARGUMENT")


def test_embeddings_equal_inference(onnx_repo, app_client) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-embedding") as c:
        texts = ["hello world", "a b c"]
        preds = c.post(BASE + ":predict", json={"instances": texts}).json()["predictions"]
        native = c.post("/inference", json={"model_type": "text-embedding", "data": {"texts": texts}}).json()
        assert [p["embedding"] for p in preds] == [o["embedding"] for o in native["outputs"]]


def test_images_both_ways_and_tensors(onnx_repo, app_client, make_image) -> None:
    b64 = base64.b64encode(make_image(color=(0, 0, 255))).decode()
    with vertex_client(app_client, onnx_repo.root, "image-classifier") as c:
        r = c.post(BASE + ":predict", json={"instances": [{"image": {"b64": b64}}, {"b64": b64}]})
        assert r.status_code == 200, r.text
        a, b = r.json()["predictions"]
        assert a == b and a["label"] == "blue"
        google_error(c.post(BASE + ":predict", json={"instances": [{"image": b64}]}), 400, "INVALID_ARGUMENT")
    with vertex_client(app_client, onnx_repo.root, "tensor-math") as c:
        r = c.post(BASE + ":predict", json={"instances": [{"a": [1, 2, 3, 4], "b": [1, 1, 1, 1]}]})
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == [{"sum": [2, 3, 4, 5], "prod": [1, 2, 3, 4]}]
        google_error(c.post(BASE + ":predict", json={"instances": [{"a": [1, 2, 3, 4]}]}), 400, "INVALID_ARGUMENT")


@pytest.mark.parametrize(("body", "status", "name", "says"), [
    (b"not json", 400, "INVALID_ARGUMENT", "not valid JSON"),
    (b'{"inputs": ["x"]}', 400, "INVALID_ARGUMENT", "instances"),
    (b'{"instances": []}', 400, "INVALID_ARGUMENT", "non-empty"),
    (b'{"instances": ["x"], "parameters": [1]}', 400, "INVALID_ARGUMENT", "parameters"),
    (b'{"instances": ["x"], "parameters": {"topk": 2}}', 400, "INVALID_ARGUMENT", "unknown field `topk`"),
    (b'{"instances": ["x"], "parameters": {"top_k": 2.5}}', 400, "INVALID_ARGUMENT", "top_k"),
    (b'{"instances": ["x"], "parameters": {"top_k": true}}', 400, "INVALID_ARGUMENT", "top_k"),
    (b'{"instances": ["x"], "parameters": {"top_k": 4}}', 400, "INVALID_ARGUMENT", "from 1 to 3"),
    (b'{"instances": [{"text": "x", "y": 1}]}', 400, "INVALID_ARGUMENT", "instances[0]"),
    (b'{"instances": [7]}', 400, "INVALID_ARGUMENT", "instances[0]"),
])
def test_bad_requests_get_google_errors(onnx_repo, app_client, body, status, name, says) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-classifier") as c:
        r = c.post(BASE + ":predict", content=body, headers={"content-type": "application/json"})
        assert says in google_error(r, status, name)


def test_limits_methods_and_unknown_paths(onnx_repo, app_client) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-embedding") as c:
        r = c.post(BASE + ":predict", json={"instances": ["a"] * (EMBED_MAX_ITEMS + 1)})
        assert "at most" in google_error(r, 400, "INVALID_ARGUMENT", "payload_too_large")
        assert c.post(BASE + ":predict", json={"instances": ["a"] * EMBED_MAX_ITEMS}).status_code == 200
        google_error(c.get(BASE + ":predict"), 405, "UNIMPLEMENTED")
        google_error(c.get("/v1/endpoints/123/deployedModels/999"), 404, "NOT_FOUND")


def test_body_limit_is_vertex_s_by_default_and_checked_at_the_boundary(onnx_repo) -> None:
    from ml_service.app import create_app
    from ml_service.settings import VERTEX_MAX_BODY_BYTES, Settings

    settings = Settings(model_cache_dir=onnx_repo.root, device="cpu", intra_op_threads=1, **VERTEX,
                        vertex_model="text-embedding")
    assert settings.max_body_bytes == VERTEX_MAX_BODY_BYTES == 1_572_864  # 1.5 MB, Vertex's shared endpoints
    with TestClient(create_app(settings)) as c:
        wait_ready(c)
        body = b'{"instances": ["hello"]}'
        at_limit = body[:-1] + b" " * (VERTEX_MAX_BODY_BYTES - len(body)) + b"}"  # JSON allows the padding
        assert len(at_limit) == VERTEX_MAX_BODY_BYTES
        r = c.post(BASE + ":predict", content=at_limit, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        r = c.post(BASE + ":predict", content=b" " + at_limit, headers={"content-type": "application/json"})
        google_error(r, 400, "INVALID_ARGUMENT", "payload_too_large")


def test_custom_routes_win_over_ours_and_need_no_token(onnx_repo, app_client) -> None:
    with vertex_client(app_client, onnx_repo.root, "text-classifier", aip_health_route="/health",
                       aip_predict_route="/predict", secret="s3cret") as c:
        assert c.get("/health").json() == {"ready": True, "model": "text-classifier"}
        assert c.post("/predict", json={"instances": ["good"]}).status_code == 200  # Vertex sends no token
        assert c.post(BASE + ":predict", json={"instances": ["good"]}).status_code == 404
        body = {"model_type": "text-classifier", "data": {"text": "good"}}
        assert c.post("/inference", json=body).status_code == 401  # our own API still wants the token
        assert c.post("/inference", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_health_is_503_until_the_served_model_loads(onnx_repo, app_client) -> None:
    with app_client(onnx_repo.root, **VERTEX, vertex_model="flaky") as c:  # its runtime fails to load
        deadline = time.monotonic() + 30
        # the repository's invalid `broken` makes /health degraded from the start: wait for the preload itself
        while "flaky" not in (c.get("/health").json().get("preload_errors") or {}) and time.monotonic() < deadline:
            time.sleep(0.02)
        health = c.get("/health").json()
        assert health["status"] == "degraded" and "flaky" in health["preload_errors"]
        r = c.get(BASE)
        google_error(r, 503, "UNAVAILABLE", "model_unavailable")
        assert r.headers["retry-after"]
    with app_client(onnx_repo.root, **VERTEX, vertex_model="no-such-model") as c:
        google_error(c.get(BASE), 503, "UNAVAILABLE")
        google_error(c.post(BASE + ":predict", json={"instances": ["x"]}), 404, "NOT_FOUND", "model_not_found")


def test_outside_vertex_mode_there_are_no_vertex_routes(client) -> None:
    assert client.get(BASE).status_code == 404
    assert client.post(BASE + ":predict", json={"instances": ["x"]}).status_code == 404


def test_paths_near_vertex_s_routes_answer_in_google_s_shape(onnx_repo, app_client):
    with vertex_client(app_client, onnx_repo.root, "text-embedding") as c:
        google_error(c.get(BASE + "/nope"), 404, "NOT_FOUND", "not_found")
        google_error(c.get(BASE + ":predict"), 405, "UNIMPLEMENTED", "method_not_allowed")
        assert c.get("/v1/nope").json()["error"]["type"] == "invalid_request_error"  # OpenAI's, not Vertex's
