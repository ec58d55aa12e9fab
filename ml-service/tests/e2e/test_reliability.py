"""Issue 9 on the real server and the real models: lifecycle races, the memory budget, clients that leave,
wrong answers, and log noise. Stress tests run for a bounded time."""

from __future__ import annotations

import concurrent.futures as cf
import socket
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Server, start_server, stop_server

TASKS = ["Clean the hob", "Mow the lawn", "Pay the water bill", "Walk the dog", "Fix the leaking tap"]


@pytest.fixture
def lazy_server(real_models: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real server with nothing preloaded and the default budget."""
    s = start_server(real_models, tmp_path)
    yield s
    stop_server(s)


def _post(c: httpx.Client, model: str, data: dict[str, Any]) -> httpx.Response:
    return c.post("/inference", json={"model_type": model, "data": data})


def _version(c: httpx.Client, model: str, version: str) -> dict[str, Any]:
    m = next(m for m in c.get("/models").json()["models"] if m["name"] == model)
    return next(v for v in m["version_details"] if v["version"] == version)


def test_a_head_and_its_encoder_under_load_and_unload_churn(lazy_server: Server) -> None:
    """The sequence from the issue, then 16 clients on the head while a loop loads and unloads it and its
    encoder: every request is answered 200, and readiness tells the truth afterwards."""
    with lazy_server.client() as c:
        assert _post(c, "task", {"text": "Mow the lawn"}).status_code == 200
        c.post("/models/task-category/unload")
        c.post("/models/intent-classifier/unload")
        with cf.ThreadPoolExecutor(3) as pool:
            done = [pool.submit(c.post, path) for path in (
                "/models/intent-classifier/load", "/models/task-category/load?version=2",
                "/models/text-embedding/unload?version=2")]
            assert all(f.result().status_code == 200 for f in done)
        r = _post(c, "task", {"text": "Mow the lawn"})
        assert r.status_code == 200 and r.json()["outputs"][0]["label"] == "garden"

    stop = threading.Event()
    statuses: list[int] = []

    def client(i: int) -> None:
        with lazy_server.client() as c:
            while not stop.is_set():
                statuses.append(_post(c, "task", {"text": TASKS[i % len(TASKS)]}).status_code)

    def churn() -> None:
        with lazy_server.client() as c:
            while not stop.is_set():
                for path in ("/models/task-category/unload", "/models/text-embedding/unload?version=2",
                             "/models/task-category/load?version=2", "/models/text-embedding/unload?version=2"):
                    assert c.post(path).status_code == 200

    with cf.ThreadPoolExecutor(18) as pool:
        futures = [pool.submit(client, i) for i in range(16)] + [pool.submit(churn)]
        time.sleep(8)
        stop.set()
        for f in futures:
            f.result()
    assert len(statuses) > 100 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    with lazy_server.client() as c:
        c.post("/models/text-embedding/unload?version=2")
        ready = c.get("/v2/models/task-category/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False  # its encoder is not loaded
        assert _post(c, "task", {"text": "Walk the dog"}).json()["outputs"][0]["label"] == "pets"
        assert c.get("/v2/models/task-category/ready").status_code == 200
        assert c.get("/health").json()["status"] == "ok"


def test_a_busy_model_delays_a_load_instead_of_failing_it(real_models: Path, tmp_path: Path) -> None:
    """Budget 200 MB (intent ~160 MB, text-embedding and its head ~60): while a 256-text intent request runs, a
    task request waits for memory (the intent model is evicted once idle) instead of failing; nothing fails."""
    server = start_server(real_models, tmp_path, {"ML_SERVICE_MEMORY_BUDGET_MB": "200"})
    try:
        texts = [f"set a timer for {i} minutes and remind me to call mom about the weekend" for i in range(256)]
        with server.client() as c, cf.ThreadPoolExecutor(1) as pool:
            big = pool.submit(_post, c, "intent", {"texts": texts})
            time.sleep(0.5)
            small = _post(c, "task", {"text": "Clean the bathroom sink"})
            assert big.result().status_code == 200
            assert small.status_code == 200, small.text
            assert _post(c, "intent", {"text": "set a timer"}).status_code == 200  # and back again
            health = c.get("/health").json()
            assert health["status"] == "ok", health
            assert _version(c, "intent-classifier", "1")["evictions"] >= 1
    finally:
        stop_server(server)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_the_budget_bounds_the_process_and_does_not_thrash(real_models: Path, tmp_path: Path) -> None:
    """8 clients rotating over the four models with a budget that holds about two of them: answers are 200 or a
    clean 503 with Retry-After, the process stays within its idle size + the budget (+ transient slack), and
    models are not evicted and reloaded in a loop."""
    from ml_service.modelbuild.checks import photo_bytes

    budget = 300
    server = start_server(real_models, tmp_path, {"ML_SERVICE_MEMORY_BUDGET_MB": str(budget),
                                                  "ML_SERVICE_REQUEST_TIMEOUT_S": "4"})
    import base64

    photo = base64.b64encode(photo_bytes()["coffee"]).decode()
    bodies = [("bert", {"text": "Buy milk"}), ("intent", {"text": "set a timer"}), ("task", {"text": "Mow the lawn"}),
              ("cnn", {"image": photo})]
    try:
        base_rss = _rss_mb(server.proc.pid)
        stop = threading.Event()
        statuses: list[int] = []
        bad: list[str] = []
        peak = [base_rss]

        def client(i: int) -> None:
            with server.client() as c:
                k = i
                while not stop.is_set():
                    model, data = bodies[k % len(bodies)]
                    r = _post(c, model, data)
                    statuses.append(r.status_code)
                    if r.status_code != 200 and not (r.status_code == 503 and r.headers.get("retry-after")):
                        bad.append(f"{r.status_code} {r.text[:200]}")
                    k += 1

        def sample() -> None:
            while not stop.wait(0.1):
                peak[0] = max(peak[0], _rss_mb(server.proc.pid))

        with cf.ThreadPoolExecutor(9) as pool:
            futures = [pool.submit(client, i) for i in range(8)] + [pool.submit(sample)]
            time.sleep(12)
            stop.set()
            for f in futures:
                f.result()
        assert bad == [] and statuses.count(200) > 50, {s: statuses.count(s) for s in set(statuses)}
        print(f"rss: idle {base_rss:.0f} MB, peak {peak[0]:.0f} MB; statuses {sorted(set(statuses))}")
        assert peak[0] <= base_rss + budget + 150, (base_rss, peak[0])
        with server.client() as c:
            evictions = sum(v["evictions"] for m in c.get("/models").json()["models"] for v in m["version_details"])
        assert evictions <= 12, evictions  # models evicted only once idle for 2 s: no load/evict loop
    finally:
        stop_server(server)


def test_work_for_clients_that_have_gone_is_dropped(lazy_server: Server) -> None:
    """Four 2,048-input embedding requests dropped by their client after 50 ms are not computed to the end."""
    texts = [f"item {i}: clean the kitchen, vacuum the hall and water the plants before the guests arrive"
             for i in range(2048)]
    with lazy_server.client() as c:
        assert _post(c, "bert", {"text": "warm"}).status_code == 200
        before = _version(c, "text-embedding", "2")["items"]

    def drop() -> None:
        with pytest.raises(httpx.TimeoutException), httpx.Client(base_url=lazy_server.url, timeout=0.05) as quick:
            quick.post("/v1/embeddings", json={"model": "text-embedding", "input": texts})

    with cf.ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(drop) for _ in range(4)]:
            f.result()
    with lazy_server.client() as c:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the dropped work drains (it is not computed)
            v = _version(c, "text-embedding", "2")
            time.sleep(0.3)
            if _version(c, "text-embedding", "2")["items"] == v["items"]:
                break
        v = _version(c, "text-embedding", "2")
        computed = v["items"] - before
        assert computed < 2048, computed  # not 8,192
        assert v["cancelled_items"] > 0
        assert _post(c, "bert", {"text": "still here"}).status_code == 200
    assert "Traceback" not in lazy_server.log.read_text()


def test_a_zero_dimension_with_a_huge_one_is_a_4xx(lazy_server: Server) -> None:
    with lazy_server.client() as c:
        for model, inp in (("text-embedding", {"name": "text", "shape": [0, 4611686018427387904], "datatype": "BYTES",
                                               "data": []}),
                           ("item-classifier", {"name": "pixel_values", "shape": [0, 3, 2**62, 224],
                                                "datatype": "FP32", "data": []})):
            r = c.post(f"/v2/models/{model}/infer", json={"inputs": [inp]})
            assert r.status_code == 413 and "at most" in r.json()["error"]
    assert "Traceback" not in lazy_server.log.read_text()


def test_an_empty_text_on_a_classifier_is_refused(lazy_server: Server) -> None:
    with lazy_server.client() as c:
        for text in ("", "   \n"):
            r = _post(c, "task", {"text": text})
            assert r.status_code == 422 and "empty" in r.json()["error"]["message"]
        assert _post(c, "bert", {"text": ""}).status_code == 200  # embedding "" is allowed, as OpenAI does


def _raw(port: int, payload: bytes, read: bool) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        if read:
            s.recv(65536)


def test_clients_that_vanish_leave_no_tracebacks(lazy_server: Server) -> None:
    """Pipelined requests from a client that closes at once, and a V2 body cut off mid-way: nothing but quiet."""
    port = int(lazy_server.url.rsplit(":", 1)[1])
    body = b'{"model_type": "bert", "data": {"text": "hello"}}'
    one = (b"POST /inference HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    for _ in range(20):
        _raw(port, one * 3, read=False)
        _raw(port, one * 2, read=True)
        _raw(port, b"POST /v2/models/text-embedding/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"inp",
             read=False)
    time.sleep(1)
    with lazy_server.client() as c:
        assert _post(c, "bert", {"text": "fine"}).status_code == 200
    log = lazy_server.log.read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


def test_answers_do_not_depend_on_batch_mates(server: Server) -> None:
    """The default text models give a text the same embedding and label alone, inside mixed batches, and under
    other clients' traffic (the dynamic int8 default used to flip "Clean the hob" between cleaning and kitchen)."""
    import numpy as np

    from tests.e2e.conftest import REPO

    others = (REPO / "bench" / "corpus.txt").read_text(encoding="utf-8").splitlines()[:200]
    texts = ["Clean the hob", *TASKS[1:], *others[:35]]
    rng = np.random.default_rng(3)

    def embed(c: httpx.Client, batch: list[str]) -> np.ndarray:
        r = _post(c, "bert", {"texts": batch})
        assert r.status_code == 200, r.text
        return np.array([o["embedding"] for o in r.json()["outputs"]], dtype=np.float32)

    def labels(c: httpx.Client, model: str, batch: list[str]) -> list[str]:
        return [o["label"] for o in _post(c, model, {"texts": batch}).json()["outputs"]]

    with server.client() as c:
        alone = np.concatenate([embed(c, [t]) for t in texts])
        alone_labels = {m: [labels(c, m, [t])[0] for t in texts] for m in ("task", "intent")}
        stop = threading.Event()

        def traffic() -> None:  # other clients, so the server forms batches from several requests
            with server.client() as other:
                k = 0
                while not stop.is_set():
                    _post(other, "bert", {"texts": others[k % 150: k % 150 + 1 + k % 7]})
                    k += 1

        with cf.ThreadPoolExecutor(4) as pool:
            bg = [pool.submit(traffic) for _ in range(4)]
            for _ in range(5):
                mates = list(rng.choice(others, size=24, replace=False))
                batch = texts + mates
                order = rng.permutation(len(batch))
                got = embed(c, [batch[i] for i in order])
                mixed = np.empty_like(got)
                mixed[order] = got
                mixed = mixed[:len(texts)]
                cos = (alone * mixed).sum(1) / np.linalg.norm(alone, axis=1) / np.linalg.norm(mixed, axis=1)
                assert cos.min() >= 0.9999, cos.min()
                for model, want in alone_labels.items():
                    got_labels = labels(c, model, [batch[i] for i in order])
                    unshuffled = [got_labels[j] for j in np.argsort(order)]
                    assert unshuffled[:len(texts)] == want, model
            single = [embed(c, ["Clean the hob"])[0] for _ in range(20)]
            stop.set()
            for f in bg:
                f.result()
    assert all(np.array_equal(s, single[0]) for s in single)
