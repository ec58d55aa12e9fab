"""Backpressure over HTTP: a full queue answers 503 + Retry-After at once; a slow answer is a 504."""

from __future__ import annotations

import threading
import time

from .helpers import assert_error, wait_ready

ROW = {"x": [[1, 2, 3, 4]]}


def test_full_queue_is_503_with_retry_after(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "slow", {**fake_manifest(delay_ms=1000), "batching": {"max_queue_size": 2}})
    with app_client(tmp_path, preload="slow") as client:
        wait_ready(client)
        first: dict = {}

        def occupy():
            rows = {"x": [[1, 1, 1, 1], [2, 2, 2, 2]]}  # fills the queue of two
            first["r"] = client.post("/inference", json={"model_type": "slow", "data": {"inputs": rows}})

        t = threading.Thread(target=occupy)
        t.start()
        time.sleep(0.3)
        r = client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}})
        err = assert_error(r, 503, "queue_full")
        assert r.headers["retry-after"] == "1"
        assert "retry" in err["message"]
        t.join(30)
        assert first["r"].status_code == 200, first["r"].text
        assert [o["output"] for o in first["r"].json()["outputs"]] == [[4.0], [8.0]]
        # and there is room again
        assert client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}}).status_code == 200


def test_a_request_over_its_timeout_is_504(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "slow", fake_manifest(delay_ms=800))
    with app_client(tmp_path, preload="slow", request_timeout_s=0.2) as client:
        wait_ready(client)
        r = client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}})
        assert_error(r, 504, "deadline_exceeded")


def test_a_flood_of_refusals_does_not_flood_the_log(tmp_path, make_model, fake_manifest, app_client, caplog,
                                                   monkeypatch):
    """Issue 9: every queue-full 503 used to log a WARNING; now the first does and the rest are counted."""
    import logging

    from ml_service.api import http
    from ml_service.observe import LogThrottle

    monkeypatch.setattr(http, "_throttled", LogThrottle(http.log))  # fresh: no line from an earlier test

    make_model(tmp_path, "slow", {**fake_manifest(delay_ms=500), "batching": {"max_queue_size": 1}})
    with app_client(tmp_path, preload="slow") as client:
        wait_ready(client)
        t = threading.Thread(target=client.post, args=("/inference",),
                             kwargs={"json": {"model_type": "slow", "data": {"inputs": ROW}}})
        t.start()
        time.sleep(0.2)
        with caplog.at_level(logging.WARNING, logger="ml_service.api"):
            codes = [client.post("/inference", json={"model_type": "slow", "data": {"inputs": ROW}}).status_code
                     for _ in range(40)]
        t.join(30)
    assert codes.count(503) == 40
    lines = [r for r in caplog.records if "queue_full" in r.getMessage()]
    assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]


def test_every_503_says_when_to_retry(tmp_path, make_model, fake_manifest, app_client):
    """Issue 9: over-budget and unloading models answer 503 with Retry-After, as a full queue does. Issue 18.16: a
    model that failed to load says so (`model_failed`) without Retry-After: only new files or a load retry it."""
    make_model(tmp_path, "broken", fake_manifest(fail_load="corrupted"))
    mdir = make_model(tmp_path, "big", fake_manifest())
    with open(mdir / "1" / "weights.bin", "wb") as f:
        f.truncate(50 * 1024 * 1024)
    with app_client(tmp_path, memory_budget_mb=20) as client:
        wait_ready(client)
        r = client.post("/inference", json={"model_type": "big", "data": {"inputs": ROW}})
        assert_error(r, 503, "model_unavailable")
        assert r.headers["retry-after"] == "1"
        for _ in range(2):  # tried once; the second request is refused without loading it again
            r = client.post("/inference", json={"model_type": "broken", "data": {"inputs": ROW}})
            assert_error(r, 503, "model_failed")
            assert "retry-after" not in r.headers


def test_a_model_call_that_hangs_is_a_504_and_the_service_stays_healthy(tmp_path, make_model, fake_manifest,
                                                                       app_client):
    """Issue 11: a hanging model call is answered by the deadline; other models and the service carry on."""
    make_model(tmp_path, "stuck", fake_manifest(delay_ms=3000))
    make_model(tmp_path, "fine", fake_manifest())
    with app_client(tmp_path, preload="stuck,fine", request_timeout_s=0.3) as client:
        wait_ready(client)
        r = client.post("/inference", json={"model_type": "stuck", "data": {"inputs": ROW}})
        assert_error(r, 504, "deadline_exceeded")
        assert client.post("/inference", json={"model_type": "fine", "data": {"inputs": ROW}}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/health/ready").status_code == 200
