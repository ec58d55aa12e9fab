"""Bearer auth: on when ML_SERVICE_SECRET is set (one or more comma-separated keys); health stays open."""

from __future__ import annotations

import pytest

from .helpers import assert_error, wait_ready

BODY = {"model_type": "tensor-math", "data": {"inputs": {"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]}}}


@pytest.fixture(scope="module")
def secured(onnx_repo, app_client):
    with app_client(onnx_repo.root, secret=" key-one , key-two ") as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "Bearer wrong"},
    {"Authorization": "Bearer key-one,key-two"},
    {"Authorization": "Bearer key-on"},
    {"Authorization": "Bearer key-one-and-more"},
    {"Authorization": "Basic key-one"},
    {"Authorization": "key-one"},
    {"X-API-Key": "key-one"},
])
def test_inference_needs_a_valid_token(secured, headers):
    r = secured.post("/inference", json=BODY, headers=headers)
    assert_error(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("token", ["key-one", "key-two"])
def test_either_key_works(secured, token):
    for scheme in ("Bearer", "bearer"):
        r = secured.post("/inference", json=BODY, headers={"Authorization": f"{scheme} {token}"})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["sum"] == [2, 3, 4, 5]


def test_model_admin_needs_a_token(secured):
    for method, path in (("GET", "/models"), ("POST", "/models/tensor-math/load"),
                         ("POST", "/models/tensor-math/unload"), ("POST", "/models/no-such-model/load")):
        assert_error(secured.request(method, path), 401, "unauthorized")  # no hint whether a model exists
        assert_error(secured.request(method, path, headers={"Authorization": "Bearer nope"}), 401)
    auth = {"Authorization": "Bearer key-two"}
    assert secured.get("/models", headers=auth).status_code == 200
    assert secured.post("/models/tensor-math/load", headers=auth).status_code == 200
    assert secured.post("/models/tensor-math/unload", headers=auth).status_code == 200
    assert_error(secured.post("/models/no-such-model/load", headers=auth), 404)


def test_auth_comes_before_body_parsing(secured):
    r = secured.post("/inference", content=b"not json", headers={"content-type": "application/json"})
    assert_error(r, 401)


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_health_endpoints_stay_open(secured, path):
    assert secured.get(path).status_code == 200
    assert secured.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 200


def test_no_secret_means_no_auth(client):
    assert client.post("/inference", json=BODY).status_code == 200
    assert client.post("/inference", json=BODY, headers={"Authorization": "Bearer anything"}).status_code == 200
