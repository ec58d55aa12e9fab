"""Overload on the real server and the real model (issue 23): a burst beyond what can be answered within the
clients' deadline is answered at once with 503 + Retry-After, and what is accepted is answered within its deadline."""

from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

from .conftest import start_server, stop_server

TEXTS = [f"put the winter coats number {i} in the attic before the move" for i in range(16)]  # one batch


def test_a_burst_is_refused_at_once_with_retry_after_and_what_is_accepted_meets_its_deadline(
        real_models: Path, tmp_path: Path) -> None:
    server = start_server(real_models, tmp_path, {"ML_SERVICE_PRELOAD": "text-embedding",
                                                         "ML_SERVICE_LOG_FORMAT": "json"})
    answers: list[tuple[int, float, str, str | None]] = []  # status, seconds, error code, Retry-After
    lock = threading.Lock()
    try:
        with server.client() as c:
            assert c.post("/inference", json={"model_type": "bert", "data": {"texts": TEXTS}}).status_code == 200
        end = time.monotonic() + 4.0

        def client() -> None:  # 24 clients, 16 sentences each, 500 ms to answer: several times what can be done
            with server.client() as h:
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    r = h.post("/inference", json={"model_type": "bert", "data": {"texts": TEXTS}},
                               headers={"X-Request-Timeout-Ms": "500"})
                    took = time.perf_counter() - t0
                    code = r.json()["error"]["code"] if r.status_code != 200 else ""
                    with lock:
                        answers.append((r.status_code, took, code, r.headers.get("retry-after")))
                    if r.status_code == 503:
                        time.sleep(0.05)  # a client that honoured nothing would spin; this one waits a little

        threads = [threading.Thread(target=client) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        with server.client() as c:  # and after the burst, the model answers as before
            assert c.post("/inference", json={"model_type": "bert", "data": {"texts": TEXTS}}).status_code == 200
            metrics = c.get("/metrics").text
    finally:
        stop_server(server)
    refused = [a for a in answers if a[0] == 503]
    accepted = [a for a in answers if a[0] == 200]
    late = [a for a in answers if a[0] == 504]
    assert {a[0] for a in answers} <= {200, 503, 504} and accepted and refused, {(a[0], a[2]) for a in answers}
    assert {a[2] for a in refused} <= {"deadline_unreachable", "overloaded"}
    assert all(a[3] is not None and int(a[3]) >= 1 for a in refused)
    # The server's own time per request (its request log) is what it promises. The clients' clocks also count 24
    # threads of their own fighting the server for 2 cores (over a second seen on CI), so from them only: no hang.
    served = [json.loads(line) for line in server.log.read_text().splitlines() if '"total_ms"' in line]
    inference = [r for r in served if r["route"] == "inference"]
    refused_ms = sorted(r["total_ms"] for r in inference if r["status"] == 503)
    answered_ms = sorted(r["total_ms"] for r in inference if r["status"] in (200, 504))
    assert (len(refused_ms), len(answered_ms)) == (len(refused), len(accepted) + len(late) + 2)  # + before, after
    assert statistics.median(refused_ms) < 25, refused_ms  # refused at once: milliseconds
    assert refused_ms[int(len(refused_ms) * 0.9)] < 100, refused_ms[-20:]
    # by the 500 ms the client gave, plus the event loop's lag (up to 53 ms seen here with both cores busy elsewhere)
    assert answered_ms[-1] < 800, answered_ms[-10:]
    assert max(a[1] for a in answers) < 5
    # a 504 remains possible when the model slows down faster than its measured rate follows; admitted work
    # mostly finishes in time (queued to the deadline, as before, most of this burst was 504s)
    assert len(late) < len(accepted), (len(late), len(accepted))
    assert 'ml_service_rejections_total{reason="expected_wait"}' in metrics or \
        'ml_service_rejections_total{reason="queue_delay"}' in metrics
