"""The one place every request passes: hooks see each request once, whatever the protocol, with its model,
version, item count, status, timings and caller, and can refuse it before any work."""

from __future__ import annotations

import logging

import pytest
from starlette.testclient import TestClient

from ml_service.app import create_app
from ml_service.errors import MLServiceError
from ml_service.observe import LogThrottle, Observers, RequestContext

from .helpers import wait_ready


class Recorder:
    def __init__(self) -> None:
        self.started: list[RequestContext] = []
        self.ended: list[RequestContext] = []
        self.refuse: str | None = None

    def on_start(self, ctx: RequestContext) -> None:
        self.started.append(ctx)
        if self.refuse and ctx.route == self.refuse:
            exc = MLServiceError("slow down")
            exc.status_code, exc.code = 429, "rate_limited"
            raise exc

    def on_end(self, ctx: RequestContext) -> None:
        self.ended.append(ctx)


@pytest.fixture
def recorded(onnx_repo, settings_for):
    recorder = Recorder()
    app = create_app(settings_for(onnx_repo.root, secret="k1,k2"), observers=Observers((recorder,)))
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        recorder.started.clear()
        recorder.ended.clear()
        yield client, recorder


def test_every_protocol_passes_the_hooks_once(recorded):
    client, rec = recorded
    auth = {"Authorization": "Bearer k2"}
    assert client.post("/inference", headers=auth, json={"model_type": "bert", "version": 1,
                                                         "data": {"texts": ["a", "b"]}}).status_code == 200
    assert client.post("/v2/models/sentiment/infer", headers=auth, json={"inputs": [
        {"name": "text", "shape": [3], "datatype": "BYTES", "data": ["good", "bad", "fine"]}]}).status_code == 200
    assert client.post("/v1/embeddings", headers=auth, json={"model": "embedder", "input": "x"}).status_code == 200
    assert client.post("/inference", headers=auth, json={"model_type": "bert", "data": {}}).status_code == 422
    assert client.post("/inference", json={"model_type": "bert", "data": {"text": "a"}}).status_code == 401
    assert client.get("/health").status_code == 200
    assert len(rec.started) == 5 and len(rec.ended) == 6  # a refused login never starts; every request ends
    native, v2, openai, bad, unauthorized, health = (rec.ended[i] for i in (0, 1, 2, 3, 4, 5))
    assert (native.protocol, native.route, native.model, native.version, native.items, native.status) == (
        "native", "inference", "text-embedding", 1, 2, 200)
    assert native.caller == "key-2" and native.timings_ms and native.timings_ms["total"] > 0
    assert (v2.protocol, v2.model, v2.items, v2.status) == ("v2", "text-classifier", 3, 200)
    assert (openai.protocol, openai.model, openai.version, openai.items) == ("openai", "text-embedding", 2, 1)
    assert (bad.status, bad.error) == (422, "invalid_input")
    assert (unauthorized.status, unauthorized.error, unauthorized.caller) == (401, "unauthorized", None)
    assert (health.protocol, health.route, health.caller) == ("native", "health", None)
    assert all("k1" not in repr(c) and "k2" not in repr(c) for c in rec.ended)  # never the token itself


def test_a_hook_can_refuse_a_request_before_any_work(recorded):
    client, rec = recorded
    rec.refuse = "openai_embeddings"
    r = client.post("/v1/embeddings", headers={"Authorization": "Bearer k1"}, json={"model": "bert", "input": "x"})
    assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
    assert rec.ended[-1].model is None and rec.ended[-1].status == 429


def test_a_failing_hook_never_breaks_a_request(onnx_repo, settings_for, caplog):
    class Broken:
        def on_start(self, ctx: RequestContext) -> None:
            pass

        def on_end(self, ctx: RequestContext) -> None:
            raise RuntimeError("metrics backend down")

    app = create_app(settings_for(onnx_repo.root), observers=Observers((Broken(),)))
    with TestClient(app) as client, caplog.at_level(logging.ERROR):
        wait_ready(client)
        assert client.post("/inference", json={"model_type": "bert", "data": {"text": "a"}}).status_code == 200
    assert "request hook" in caplog.text


def test_the_log_throttle_counts_what_it_leaves_out(caplog):
    log = logging.getLogger("test.throttle")
    throttle = LogThrottle(log, interval_s=0.2)
    with caplog.at_level(logging.WARNING, logger="test.throttle"):
        for _ in range(50):
            throttle.warning("queue_full", "queue full")
        import time

        time.sleep(0.25)
        throttle.warning("queue_full", "queue full")
        throttle.warning("other", "another kind")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["queue full", "queue full (and 49 more like it in the last 0.2 s)", "another kind"]
