"""Load shedding over HTTP (issue 23), in process with the fake runtime: a request its model cannot finish by its
deadline is refused at once, before its payload is decoded; a standing queue sheds with its own code; both are 503
+ Retry-After, counted by reason, and the expected wait shows on /stats and /metrics."""

from __future__ import annotations

import statistics
import threading
import time

from .helpers import assert_error, wait_ready
from .test_observability import scrape, value

ROW = {"x": [[1, 2, 3, 4]]}


def _post(client, model: str, rows: int, **headers: str):  # type: ignore[no-untyped-def]
    return client.post("/inference", json={"model_type": model, "data": {"inputs": {"x": [[1, 2, 3, 4]] * rows}}},
                       headers=headers)


def test_a_request_that_cannot_finish_by_its_deadline_is_refused_at_once(tmp_path, make_model, fake_manifest,
                                                                        app_client):
    # at most 10 items/s: a batch of at most 2 rows takes >= 200 ms
    make_model(tmp_path, "slow", {**fake_manifest(delay_ms=200), "batching": {"max_batch_size": 2}})
    with app_client(tmp_path, preload="slow") as client:
        wait_ready(client)
        assert _post(client, "slow", 1, **{"X-Request-Timeout-Ms": "300"}).status_code == 200  # cold: admitted
        before = scrape(client)
        occupier: dict = {}
        t = threading.Thread(target=lambda: occupier.update(r=_post(client, "slow", 8)))
        t.start()
        time.sleep(0.1)
        t0 = time.perf_counter()
        r = _post(client, "slow", 1, **{"X-Request-Timeout-Ms": "300"})
        took = time.perf_counter() - t0
        err = assert_error(r, 503, "deadline_unreachable")
        assert int(r.headers["retry-after"]) >= 1 and "s left" in err["message"]
        assert took < 0.15, took  # at once, not when the 300 ms ran out
        # V2 decides on the declared shape: this payload would be a 422 (3 values for [1, 4]); it is never read
        r = client.post("/v2/models/slow/infer", headers={"X-Request-Timeout-Ms": "300"}, json={"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]})
        assert r.status_code == 503 and "cannot answer in time" in r.json()["error"], r.text
        assert int(r.headers["retry-after"]) >= 1
        stats = next(m for m in client.get("/stats").json()["models"] if m["model"] == "slow")
        assert stats["expected_wait_ms"] > 300 and 0 < stats["service_rate_per_s"] <= 10.5
        assert stats["overloaded"] is False and stats["target_wait_ms"] == 1000
        mid = scrape(client)
        assert value(mid, "ml_service_expected_wait_seconds", model="slow", version="1") > 0.3
        assert _post(client, "slow", 1).status_code == 200  # the server's 30 s: time enough behind the eight
        t.join(30)
        assert occupier["r"].status_code == 200
        after = scrape(client)
    assert value(after, "ml_service_rejections_total", reason="expected_wait") - \
        value(before, "ml_service_rejections_total", reason="expected_wait") == 2
    assert value(after, "ml_service_items_total", model="slow", version="1") - \
        value(before, "ml_service_items_total", model="slow", version="1") == 9  # the refused never ran


def _closed_loop(client, model: str, rows: int, clients: int, seconds: float) -> list[tuple[int, float, str]]:  # type: ignore[no-untyped-def]
    """`clients` threads posting `rows`-row requests back to back; (status, seconds, Retry-After) per answer."""
    out: list[tuple[int, float, str]] = []
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < end:
            t0 = time.perf_counter()
            r = _post(client, model, rows)
            with lock:
                out.append((r.status_code, time.perf_counter() - t0,
                            r.json()["error"]["code"] if r.status_code != 200 else ""))
                if r.status_code == 503:
                    assert r.headers["retry-after"] == "1"
    threads = [threading.Thread(target=run) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return out


def test_a_standing_queue_sheds_with_its_own_code_unless_the_model_turns_the_bound_off(
        tmp_path, make_model, fake_manifest, app_client):
    # at most 200 items/s each; six clients with 16 rows keep ~0.5 s of work queued on each model
    for name, target in (("bounded", 200), ("unbounded", 0)):
        make_model(tmp_path, name, {**fake_manifest(delay_ms=20),
                                    "batching": {"max_batch_size": 4, "target_wait_ms": target}})
    with app_client(tmp_path, preload="bounded,unbounded", shed_interval_ms=50) as client:
        wait_ready(client)
        before = scrape(client)
        results: dict[str, list[tuple[int, float, str]]] = {}
        loads = [threading.Thread(target=lambda n=n: results.update({n: _closed_loop(client, n, 16, 6, 2.5)}))
                 for n in ("bounded", "unbounded")]
        for th in loads:
            th.start()
        for th in loads:
            th.join(90)
        rows = {m["model"]: m for m in client.get("/stats").json()["models"]}
        after = scrape(client)
    bounded, unbounded = results["bounded"], results["unbounded"]
    assert {(s, c) for s, _, c in bounded} == {(200, ""), (503, "overloaded")}
    assert {s for s, _, _ in unbounded} == {200}  # target 0: queued to the deadline, as before
    shed = sum(1 for s, _, _ in bounded if s == 503)
    assert value(after, "ml_service_rejections_total", reason="queue_delay") - \
        value(before, "ml_service_rejections_total", reason="queue_delay") == shed
    fast = statistics.median(t for s, t, _ in bounded if s == 200)
    slow = statistics.median(t for s, t, _ in unbounded)
    assert fast < slow, (fast, slow)  # what the bounded model accepts waits less than the queue behind it
    assert statistics.median(t for s, t, _ in bounded if s == 503) < fast  # and its refusals come at once
    assert rows["bounded"]["target_wait_ms"] == 200 and rows["unbounded"]["target_wait_ms"] == 0
    assert value(after, "ml_service_overloaded", model="unbounded", version="1") == 0
