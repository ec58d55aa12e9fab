"""The real `ml-service serve` with the real models, over real HTTP: the seed API."""

from __future__ import annotations

import base64
import concurrent.futures as cf

import numpy as np
import pytest

from ml_service.modelbuild.checks import photo_bytes
from tests.e2e.conftest import Server


def post(server: Server, body: dict, **kw: object):  # type: ignore[no-untyped-def]
    with server.client() as c:
        return c.post("/inference", json=body, **kw)  # type: ignore[arg-type]


def test_health_lists_every_real_model(server: Server) -> None:
    with server.client() as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["ready"] is True
        assert set(h["models"]) == {"text-embedding", "intent-classifier", "task-category", "item-classifier"}
        assert all(m["state"] == "ready" for m in h["models"].values())  # preloaded with ML_SERVICE_PRELOAD=*
        assert c.get("/health/live").status_code == 200
        assert c.get("/health/ready").json() == {"ready": True}
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
    emb = models["text-embedding"]
    assert emb["versions"] == ["1", "2"] and emb["served_versions"] == ["1", "2"]
    assert emb["default_version"] == "2" and set(emb["aliases"]) == {"bert", "embedding"}
    assert emb["memory_mb"] > 10 and emb["card"]["source"]
    assert models["item-classifier"]["aliases"] == ["cnn", "image"]


def test_bert_alias_embeds_with_default_int8_version(server: Server) -> None:
    r = post(server, {"model_type": "bert", "data": {"text": "Clean the gutters"}})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "text-embedding" and body["version"] == "2"
    assert set(body["timings_ms"]) == {"queue", "inference", "total"}
    vec = np.array(body["outputs"][0]["embedding"])
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4


def test_pinned_fp32_version_and_similarity(server: Server) -> None:
    texts = ["Vacuum the living room", "Hoover the lounge carpet", "Renew the car insurance"]
    r = post(server, {"model_type": "text-embedding", "version": "1", "data": {"texts": texts}})
    assert r.status_code == 200 and r.json()["version"] == "1"
    e = np.array([o["embedding"] for o in r.json()["outputs"]])
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2


def test_classifiers_over_http(server: Server) -> None:
    r = post(server, {"model_type": "intent", "data": {"texts": ["set a timer for 5 minutes"], "top_k": 3}})
    out = r.json()["outputs"][0]
    assert out["label"] == "timer" and len(out["top_k"]) == 3 and out["top_k"][0]["label"] == "timer"
    assert out["score"] == out["top_k"][0]["score"] and out["top_k"][0]["score"] >= out["top_k"][1]["score"]
    r = post(server, {"model_type": "task-category", "data": {"text": "Mow the lawn and trim the hedge"}})
    assert r.json()["outputs"][0]["label"] == "garden"
    r = post(server, {"model_type": "recommendation", "data": {"text": "Pay the council tax"}})
    assert r.json()["outputs"][0]["label"] == "bills"


def test_cnn_alias_on_real_photos(server: Server) -> None:
    photos = photo_bytes()
    images = [base64.b64encode(photos[n]).decode() for n in ("coffee", "rocket")]
    r = post(server, {"model_type": "cnn", "data": {"images": images, "top_k": 1}})
    assert r.status_code == 200, r.text
    assert [o["label"] for o in r.json()["outputs"]] == ["espresso", "missile"]


def test_long_text_is_truncated_and_says_so(server: Server) -> None:
    r = post(server, {"model_type": "bert", "data": {"text": "tidy the shed " * 300}})
    out = r.json()["outputs"][0]
    assert out["truncated"] is True and out["tokens"] == 256


def test_concurrent_requests_match_single_answers(server: Server) -> None:
    texts = [f"Task number {i}: water the plants in room {i % 7}" for i in range(48)]
    single = {t: np.array(post(server, {"model_type": "bert", "version": "1", "data": {"text": t}})
                          .json()["outputs"][0]["embedding"]) for t in texts[:4]}
    with cf.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: post(server, {"model_type": "bert", "version": "1", "data": {"text": t}}),
                                texts))
    assert all(r.status_code == 200 for r in results)
    for t, r in zip(texts, results, strict=True):
        if t in single:  # batched with others, same answer as alone
            assert np.allclose(np.array(r.json()["outputs"][0]["embedding"]), single[t], atol=1e-5)


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"model_type": "nope", "data": {"text": "x"}}, 404, "model_not_found"),
    ({"model_type": "bert", "version": "9", "data": {"text": "x"}}, 404, "version_not_found"),
    ({"model_type": "bert", "data": {"texts": []}}, 422, "invalid_input"),
    ({"model_type": "bert", "data": {"text": 5}}, 422, "invalid_input"),
    ({"model_type": "bert"}, 422, "invalid_input"),
    ({"data": {"text": "x"}}, 422, "invalid_input"),
    ({"model_type": "cnn", "data": {"image": "not base64!!"}}, 422, "invalid_input"),
    ({"model_type": "cnn", "data": {"image": base64.b64encode(b"plain text, not an image").decode()}}, 422,
     "invalid_input"),
    ({"model_type": "intent", "data": {"text": "x", "top_k": 0}}, 422, "invalid_input"),
    ({"model_type": "intent", "data": {"text": "x", "top_k": 158}}, 422, "invalid_input"),
    ({"model_type": "bert", "data": {"texts": ["x"] * 257}}, 413, "payload_too_large"),
])
def test_bad_input_gets_a_clear_4xx(server: Server, body: dict, status: int, code: str) -> None:
    r = post(server, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and "Traceback" not in err["message"]


def test_body_limit_and_non_json(server: Server) -> None:
    with server.client() as c:
        r = c.post("/inference", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
        big = b'{"model_type": "bert", "data": {"text": "' + b"a" * (8 * 1024 * 1024) + b'"}}'
        r = c.post("/inference", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
        assert c.get("/health/live").status_code == 200  # still serving


def test_auth_on_when_secret_set(secured_server: Server) -> None:
    body = {"model_type": "task", "data": {"text": "Feed the cat"}}
    with secured_server.client() as c:
        assert c.get("/health").status_code == 200  # probes stay open
        r = c.post("/inference", json=body)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert c.post("/inference", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        for key in ("key-one", "key-two"):
            r = c.post("/inference", json=body, headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200 and r.json()["outputs"][0]["label"] == "pets"


def test_lazy_load_then_unload(secured_server: Server) -> None:
    auth = {"Authorization": "Bearer key-one"}
    with secured_server.client(headers=auth) as c:
        c.post("/models/item-classifier/unload")
        state = {m["name"]: m["state"] for m in c.get("/models").json()["models"]}
        assert state["item-classifier"] == "unloaded"
        r = c.post("/inference", json={"model_type": "cnn", "data": {"image": base64.b64encode(
            photo_bytes()["coffee"]).decode()}})
        assert r.status_code == 200
        state = {m["name"]: m["state"] for m in c.get("/models").json()["models"]}
        assert state["item-classifier"] == "ready"
        assert c.post("/models/item-classifier/unload").json()["unloaded_versions"] == ["1"]
        assert c.post("/models/text-embedding/load?version=1").json()["loaded_versions"] == ["1"]
