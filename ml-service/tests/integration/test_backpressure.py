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
