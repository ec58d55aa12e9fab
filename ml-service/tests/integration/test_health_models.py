"""Health, readiness, GET /models and explicit load/unload over HTTP."""

from __future__ import annotations

import pytest

from .helpers import FAIL_REASON, FAIL_SHOWN, assert_error, wait_ready

GOOD_TENSOR = {"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]}


def _models(client) -> dict[str, dict]:
    r = client.get("/models")
    assert r.status_code == 200, r.text
    return {m["name"]: m for m in r.json()["models"]}


# -- health ---------------------------------------------------------------------------------------------
def test_live_and_ready(client):
    r = client.get("/health/live")
    assert (r.status_code, r.json()) == (200, {"status": "alive"})
    r = client.get("/health/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})


def test_health_ok_then_degraded_when_a_model_fails(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "good", fake_manifest())
    make_model(tmp_path, "flaky", fake_manifest(fail_load=FAIL_REASON))
    with app_client(tmp_path) as client:
        wait_ready(client)
        r = client.get("/health")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "ready": True,
                            "models": {"flaky": {"state": "unloaded"}, "good": {"state": "unloaded"}}}
        assert client.post("/inference", json={"model_type": "flaky", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}
                                               }).status_code == 503
        r = client.get("/health")
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "degraded"
        assert body["models"]["flaky"]["state"] == "failed"
        assert FAIL_SHOWN in body["models"]["flaky"]["error"] and FAIL_REASON not in body["models"]["flaky"]["error"]
        assert body["models"]["good"] == {"state": "unloaded"}
        assert client.post("/inference", json={"model_type": "good", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}
                                               }).json()["outputs"] == [{"output": [10.0]}]
        assert client.get("/health").json()["models"]["good"] == {"state": "ready"}


def test_health_reports_an_invalid_model(client):
    body = client.get("/health").json()
    assert body["status"] == "degraded"
    assert body["models"]["broken"]["state"] == "failed"
    assert "task" in body["models"]["broken"]["error"]
    assert body["models"]["text-embedding"] == {"state": "unloaded"}


def test_not_ready_while_a_slow_preload_runs(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "slow", fake_manifest(load_delay_ms=2000))
    make_model(tmp_path, "lazy", fake_manifest())
    with app_client(tmp_path, preload="slow") as client:
        r = client.get("/health/ready")
        assert (r.status_code, r.json()) == (503, {"ready": False})
        assert client.get("/health/live").status_code == 200  # alive all along
        health = client.get("/health").json()
        assert health["ready"] is False
        assert health["models"]["slow"]["state"] == "loading"
        wait_ready(client)
        models = _models(client)
        assert models["slow"]["state"] == "ready"
        assert models["lazy"]["state"] == "unloaded"  # not on the preload list
        assert client.get("/health").json()["ready"] is True


def _wait_preloaded(client, timeout=30.0):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.app.core.rollout.preloaded:
            return
        time.sleep(0.05)
    raise AssertionError("preloading never finished")


def test_preload_everything_with_one_failing(onnx_repo, app_client):
    with app_client(onnx_repo.root, preload="*") as client:
        _wait_preloaded(client)
        # a preloaded model that failed keeps the service unready, with the reason (issue 9)
        assert client.get("/health/ready").status_code == 503
        assert client.get("/v2/health/ready").status_code == 503
        health = client.get("/health").json()
        assert health["status"] == "degraded" and health["ready"] is False
        assert FAIL_SHOWN in health["preload_errors"]["flaky"] and FAIL_REASON not in health["preload_errors"]["flaky"]
        models = _models(client)
        for name in ("text-embedding", "text-classifier", "image-classifier", "tensor-math"):
            assert models[name]["state"] == "ready", models[name]
        # preload loads each model's default (highest served) version; other served versions load when pinned
        assert [v["state"] for v in models["text-embedding"]["version_details"]] == ["unloaded", "ready", "unloaded"]
        assert models["flaky"]["state"] == "failed"


@pytest.mark.parametrize("preload", ["text-embedding,cnn", "nope"])
def test_a_preload_that_cannot_happen_leaves_the_service_unready(tmp_path, app_client, preload):
    """Issue 9: an empty or missing MODEL_CACHE_DIR with a preload list is not ready, and says why."""
    for root in (tmp_path / "empty", tmp_path / "missing"):
        if root.name == "empty":
            root.mkdir()
        with app_client(root, preload=preload) as client:
            _wait_preloaded(client)
            assert client.get("/health/ready").status_code == 503
            assert client.get("/v2/health/ready").status_code == 503
            health = client.get("/health").json()
            assert health["status"] == "degraded" and health["models"] == {}
            first = preload.split(",")[0]
            assert "unknown model" in health["preload_errors"][first]


def test_a_failed_preload_recovers_with_an_explicit_load(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "m", fake_manifest(fail_load=FAIL_REASON))
    with app_client(tmp_path, preload="m") as client:
        _wait_preloaded(client)
        assert client.get("/health/ready").status_code == 503
        make_model(tmp_path, "m", fake_manifest())  # fixed on disk
        assert client.post("/models/m/load").status_code == 200
        assert client.get("/health/ready").status_code == 200
        assert client.get("/health").json()["status"] == "ok"


# -- GET /models ----------------------------------------------------------------------------------------
def test_models_lists_every_model(client):
    models = _models(client)
    assert sorted(models) == ["broken", "flaky", "image-classifier", "tensor-math", "text-classifier",
                              "text-embedding"]
    emb = models["text-embedding"]
    assert emb["valid"] is True
    assert emb["task"] == "embedding"
    assert emb["runtime"] == "onnx"
    assert emb["aliases"] == ["bert", "embedder"]
    assert emb["versions"] == ["1", "2", "3"]
    assert emb["served_versions"] == ["1", "2"]
    assert emb["default_version"] == "2"
    assert emb["state"] == "unloaded"  # nothing loads until asked
    assert emb["memory_mb"] == 0
    assert emb["error"] is None
    v3 = emb["version_details"][2]
    assert v3["served"] is False
    assert v3["error"] == "missing file(s): model.onnx"
    assert models["text-classifier"]["labels"] == 3
    assert models["image-classifier"]["aliases"] == ["cnn"]
    assert models["tensor-math"]["task"] == "tensor"
    assert models["flaky"]["runtime"] == "fake"
    broken = models["broken"]
    assert broken["valid"] is False
    assert broken["state"] == "failed"
    assert broken["task"] is None
    assert "task" in broken["error"]
    assert broken["served_versions"] == []


def test_models_shows_loaded_state_and_memory(client):
    assert client.post("/inference", json={"model_type": "bert", "data": {"text": "cat"}}).status_code == 200
    emb = _models(client)["text-embedding"]
    assert emb["state"] == "ready"
    assert emb["memory_mb"] > 0
    details = {v["version"]: v for v in emb["version_details"]}
    assert details["2"]["state"] == "ready"
    assert details["2"]["device"] == "cpu"
    assert details["2"]["batches"] >= 1
    assert details["1"]["state"] == "unloaded"
    assert details["1"]["memory_mb"] is None


def test_models_shows_a_failed_load(client):
    r = client.post("/inference", json={"model_type": "flaky", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}})
    assert r.status_code == 503 and r.json()["error"]["code"] == "model_failed" and "retry-after" not in r.headers
    flaky = _models(client)["flaky"]
    assert flaky["state"] == "failed"
    assert flaky["error"] == f"no version works: v1: {FAIL_SHOWN}"
    assert flaky["version_details"][0]["error"] == FAIL_SHOWN  # on its own row too


def test_models_reads_the_scanned_state_and_an_explicit_load_rescans(tmp_path, make_model, fake_manifest,
                                                                     app_client):
    make_model(tmp_path, "first", fake_manifest())
    with app_client(tmp_path) as client:
        wait_ready(client)
        assert sorted(_models(client)) == ["first"]
        make_model(tmp_path, "second", fake_manifest())
        assert sorted(_models(client)) == ["first"]  # GET /models does not touch the disk
        assert client.post("/models/second/load").status_code == 200  # an explicit load re-reads it
        assert sorted(_models(client)) == ["first", "second"]
        r = client.post("/inference", json={"model_type": "second", "data": {"inputs": {"x": [[1, 1, 1, 1]]}}})
        assert r.status_code == 200


# -- load / unload ----------------------------------------------------------------------------------------
def test_load_every_served_version_then_unload(client):
    r = client.post("/models/text-embedding/load")
    assert (r.status_code, r.json()) == (200, {"model": "text-embedding", "loaded_versions": ["1", "2"]})
    details = {v["version"]: v["state"] for v in _models(client)["text-embedding"]["version_details"]}
    assert details == {"1": "ready", "2": "ready", "3": "unloaded"}
    r = client.post("/models/text-embedding/unload")
    assert r.status_code == 200
    assert r.json()["model"] == "text-embedding"
    assert sorted(r.json()["unloaded_versions"]) == ["1", "2"]
    assert _models(client)["text-embedding"]["state"] == "unloaded"
    r = client.post("/models/text-embedding/unload")
    assert (r.status_code, r.json()) == (200, {"model": "text-embedding", "unloaded_versions": []})
    # and it loads again on demand
    assert client.post("/inference", json={"model_type": "bert", "data": {"text": "cat"}}).status_code == 200


def test_load_and_unload_one_version_by_alias(client):
    r = client.post("/models/bert/load?version=1")
    assert (r.status_code, r.json()) == (200, {"model": "text-embedding", "loaded_versions": ["1"]})
    details = {v["version"]: v["state"] for v in _models(client)["text-embedding"]["version_details"]}
    assert details == {"1": "ready", "2": "unloaded", "3": "unloaded"}
    client.post("/models/bert/load?version=2")
    r = client.post("/models/embedder/unload?version=1")
    assert (r.status_code, r.json()) == (200, {"model": "text-embedding", "unloaded_versions": ["1"]})
    details = {v["version"]: v["state"] for v in _models(client)["text-embedding"]["version_details"]}
    assert details == {"1": "unloaded", "2": "ready", "3": "unloaded"}


@pytest.mark.parametrize("action", ["load", "unload"])
def test_load_unload_errors(client, action):
    assert_error(client.post(f"/models/nope/{action}"), 404, "model_not_found")
    assert_error(client.post(f"/models/text-embedding/{action}?version=9"), 404, "version_not_found")
    assert_error(client.post(f"/models/text-embedding/{action}?version=3"), 404, "version_not_found")
    assert_error(client.post(f"/models/text-embedding/{action}?version=abc"), 422, "invalid_input")
    assert_error(client.get(f"/models/text-embedding/{action}"), 405)


def test_load_a_failing_model_answers_503_with_the_reason(client):
    for _ in range(2):  # an explicit load retries, and fails again
        err = assert_error(client.post("/models/flaky/load"), 503, "model_failed")
        assert FAIL_SHOWN in err["message"] and FAIL_REASON not in err["message"]
    err = assert_error(client.post("/models/broken/load"), 503, "model_unavailable")
    assert "invalid" in err["message"]


def test_explicit_load_retries_a_fixed_model(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "m", fake_manifest(fail_load=FAIL_REASON))
    with app_client(tmp_path) as client:
        wait_ready(client)
        body = {"model_type": "m", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}}
        assert_error(client.post("/inference", json=body), 503)
        make_model(tmp_path, "m", fake_manifest())  # fixed on disk
        assert_error(client.post("/inference", json=body), 503)  # not re-read yet: the same files, not retried
        assert client.get("/models").status_code == 200  # a listing reads nothing from disk
        r = client.post("/models/m/load")
        assert (r.status_code, r.json()) == (200, {"model": "m", "loaded_versions": ["1"]})
        assert client.post("/inference", json=body).json()["outputs"] == [{"output": [10.0]}]
        assert client.get("/health").json()["status"] == "ok"


def test_unload_while_idle_then_infer_again(client):
    assert client.post("/inference", json={"model_type": "tensor-math", "data": {"inputs": GOOD_TENSOR}}
                       ).status_code == 200
    assert client.post("/models/tensor-math/unload").json()["unloaded_versions"] == ["1"]
    r = client.post("/inference", json={"model_type": "tensor-math", "data": {"inputs": GOOD_TENSOR}})
    assert r.status_code == 200
    assert r.json()["outputs"][0]["sum"] == [2, 3, 4, 5]
