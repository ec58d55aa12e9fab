"""The backend when its sources misbehave (issue 18, #17-#21), on real servers: the backend under uvicorn; ml-service
real, or a stand-in where ml-service must misbehave; the managed APIs played by their stand-ins. Every request is
answered by the next source or with a JSON 503 within its budget, never a 4xx for our own configuration, never a
500; tasks are always stored."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import backend_proc, black_hole, free_port, service_account_key, serving
from tests.fake_ml import FakeMLService
from tests.fake_openai import FakeOpenAI
from tests.fake_vertex import FakeVertex

VERTEX = {"VERTEX_PROJECT": "household", "VERTEX_LOCATION": "europe-west4", "VERTEX_ENDPOINT_ID": "77"}


def timed(client: httpx.Client, method: str, path: str, **kw: object) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = client.request(method, path, **kw)  # type: ignore[arg-type]
    return r, time.monotonic() - start


def test_a_hanging_managed_api_never_takes_the_database_pool(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#17: 20 categorize requests wait on a hung OpenAI while ml-service is down; the pool has 2 connections:
    listing the tasks (no ML at all) still answers at once, and the 20 end as JSON 503s, none a 500."""
    fake_openai.mode = "hang"
    proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                        ML_FALLBACK_ORDER="ml-service,openai", ML_REQUEST_BUDGET_S="6", DATABASE_POOL_SIZE="2",
                        DATABASE_POOL_TIMEOUT_S="1")
    with serving(proc) as c:
        assert c.post("/api/tasks", json={"title": "Mow the lawn", "category": "garden"}).status_code == 201
        answers: list[httpx.Response] = []

        def categorize() -> None:
            with httpx.Client(base_url=proc.url, timeout=60) as t:
                answers.append(t.post("/api/ml/categorize", json={"text": "Pay the water bill"}))

        threads = [threading.Thread(target=categorize) for _ in range(20)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 5
        while len(fake_openai.requests) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(fake_openai.requests) == 20  # all 20 are waiting on OpenAI at once
        r, took = timed(c, "GET", "/api/tasks")
        assert r.status_code == 200 and len(r.json()) == 1 and took < 1.0, (r.status_code, took)
        r, took = timed(c, "POST", "/api/tasks", json={"title": "Feed the cat", "category": "pets"})
        assert r.status_code == 201 and took < 1.0
        for t in threads:
            t.join(30)
    assert [a.status_code for a in answers] == [503] * 20
    assert {a.json()["error"]["code"] for a in answers} == {"no_ml_source"}


@pytest.mark.parametrize("mode", ["html", "empty", "no_outputs"])
def test_a_garbage_answer_is_the_next_source_s_turn(tmp_path: Path, fake_openai: FakeOpenAI, mode: str) -> None:
    """#18: ml-service answering 200 with a web page, `{}` or no outputs is its failure: OpenAI answers every
    feature, ml-service's breaker opens (it is asked no more), and with OpenAI answering `{}` too the answer is a
    JSON 503 while a new task is still stored (without a category)."""
    with FakeMLService(mode) as ml:
        proc = backend_proc(ml.port, tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            ML_FALLBACK_ORDER="ml-service,openai", BREAKER_FAILURES="3", BREAKER_COOLDOWN_S="60")
        with serving(proc) as c:
            task = c.post("/api/tasks", json={"title": "Walk the dog"})
            assert task.status_code == 201 and task.json()["category_source"] == "openai", task.text
            assert c.post("/api/ml/categorize", json={"text": "Mow the lawn"}).json()["source"] == "openai"
            assert c.post("/api/ml/intent", json={"text": "set a timer"}).json()["source"] == "openai"
            sim = c.post("/api/ml/similar", json={"text": "walk the puppy"})
            assert sim.status_code == 200 and sim.json()["source"] == "openai", sim.text
            rec = c.post("/api/ml/recommend", json={"limit": 3})
            assert rec.status_code == 200 and rec.json()["source"] == "openai", rec.text
            asked = len(ml.requests)
            assert 3 <= asked <= 4  # the breaker opened after 3 garbage answers (4: one more for the embedding)
            fake_openai.mode = "garbage"
            r = c.post("/api/ml/categorize", json={"text": "Mow the lawn"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "no_ml_source", r.text
            kept = c.post("/api/tasks", json={"title": "Clean the oven"})
            assert kept.status_code == 201 and kept.json()["category"] is None, kept.text
            assert [t["title"] for t in c.get("/api/tasks").json()] == ["Walk the dog", "Clean the oven"]
            assert len(ml.requests) == asked
        assert "Traceback" not in proc.log_text()


def test_vertex_s_garbage_is_vertex_s_failure(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#18: a Vertex endpoint answering `{"predictions": [{"foo": 1}]}` is skipped for OpenAI."""
    with FakeVertex() as vertex:
        vertex.mode = "garbage"
        proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            ML_FALLBACK_ORDER="vertex,openai", VERTEX_API_ENDPOINT=vertex.url, **VERTEX)
        with serving(proc) as c:
            assert c.post("/api/tasks", json={"title": "Walk the dog"}).json()["category_source"] == "openai"
            for path, body in (("categorize", {"text": "Mow the lawn"}), ("intent", {"text": "set a timer"}),
                               ("similar", {"text": "walk the puppy"}), ("recommend", {})):
                r = c.post(f"/api/ml/{path}", json=body)
                assert r.status_code == 200 and r.json()["source"] == "openai", (path, r.text)
            assert vertex.requests


def test_refused_credentials_are_a_configuration_failure_not_the_user_s(ml_service: int, tmp_path: Path,
                                                                       fake_openai: FakeOpenAI) -> None:
    """#19: the real ml-service refuses a wrong token (401): every feature falls back (never a 4xx to the user,
    never `[]` from similar), and the log says so loudly once, without the token. A managed API refusing its key
    is a 503, not a 4xx."""
    with FakeVertex() as vertex:
        vertex.mode = "unauthorized"
        proc = backend_proc(ml_service, tmp_path, ML_SERVICE_SECRET="wrong-token-4711", OPENAI_API_KEY="sk-test-9",
                            OPENAI_BASE_URL=fake_openai.base_url, VERTEX_API_ENDPOINT=vertex.url, **VERTEX)
        with serving(proc) as c:
            assert c.post("/api/tasks", json={"title": "Walk the dog"}).json()["category_source"] == "openai"
            for path, body in (("categorize", {"text": "Mow the lawn"}), ("intent", {"text": "set a timer"}),
                               ("similar", {"text": "walk the puppy"}), ("recommend", {})):
                r = c.post(f"/api/ml/{path}", json=body)
                assert r.status_code == 200 and r.json()["source"] == "openai", (path, r.text)
            sim = c.post("/api/ml/similar", json={"text": "walk the puppy"}).json()
            assert sim["results"] and sim["results"][0]["title"] == "Walk the dog"
            image = c.post("/api/ml/classify-image", files={"file": ("p.png", b"\x89PNG...", "image/png")})
            assert image.status_code == 503 and image.json()["error"]["code"] == "no_ml_source"
            fake_openai.mode = "unauthorized"
            r = c.post("/api/ml/categorize", json={"text": "Mow the lawn"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "no_ml_source"
        log = proc.log_text()
    lines = [line for line in log.splitlines() if "CONFIGURATION" in line]
    assert sum("ml-service refused our credentials (401)" in line for line in lines) == 1, lines
    assert sum("Vertex refused our credentials (401)" in line for line in lines) == 1, lines
    assert sum("OpenAI refused our credentials (401)" in line for line in lines) == 1, lines
    assert "wrong-token-4711" not in log and "sk-test-9" not in log


def test_vertex_without_credentials_is_off_from_the_start(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#20: Vertex named for Google's own endpoint with no credentials anywhere (and a metadata server that never
    answers): found out once at start, one log line, and requests never wait for it."""
    with black_hole() as metadata:
        proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            GOOGLE_APPLICATION_CREDENTIALS="", CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
                            HOME=str(tmp_path), GCE_METADATA_HOST=f"127.0.0.1:{metadata}",
                            GCE_METADATA_IP=f"127.0.0.1:{metadata}", GCE_METADATA_TIMEOUT="1", **VERTEX)
        with serving(proc) as c:
            took = []
            for _ in range(4):
                r, t = timed(c, "POST", "/api/ml/categorize", json={"text": "Mow the lawn"})
                assert r.status_code == 200 and r.json()["source"] == "openai"
                took.append(t)
            assert max(took) < 1.0, took
        log = proc.log_text()
    assert log.count("Vertex AI is off: no Google credentials") == 1


def test_credentials_that_cannot_be_refreshed_open_vertex_s_breaker(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#20: a service-account key whose token exchange fails is a failure of Vertex: after BREAKER_FAILURES of
    them Vertex is not asked again until the cool-down (the token endpoint is not hit on every request)."""
    with FakeVertex() as vertex:
        vertex.token_mode = "fail"
        key = service_account_key(tmp_path / "sa.json", vertex.url + "/token")
        proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            VERTEX_API_ENDPOINT=vertex.url, GOOGLE_APPLICATION_CREDENTIALS=str(key),
                            BREAKER_FAILURES="2", BREAKER_COOLDOWN_S="60", **VERTEX)
        with serving(proc) as c:
            for _ in range(6):
                r = c.post("/api/ml/categorize", json={"text": "Mow the lawn"})
                assert r.status_code == 200 and r.json()["source"] == "openai"
        assert vertex.tokens == 2 and not vertex.requests


def test_a_hung_openai_costs_its_timeout_once(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#21: OPENAI_TIMEOUT_S bounds the whole call (it was tried twice: 40.6 s for a 20 s setting)."""
    fake_openai.mode = "hang"
    proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                        OPENAI_TIMEOUT_S="2", ML_REQUEST_BUDGET_S="30")
    with serving(proc) as c:
        r, took = timed(c, "POST", "/api/ml/categorize", json={"text": "Mow the lawn"})
    assert r.status_code == 503 and 1.9 < took < 3.2, (r.status_code, took)  # 2 x 2 s + a backoff before
    assert len(fake_openai.requests) == 1


def test_one_budget_for_the_whole_request(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#21: ml-service hung and OpenAI hung: the request ends at ML_REQUEST_BUDGET_S, however long each source's
    own timeout; creating a task with ml-service hung costs one timeout, not one per call (10 s for two)."""
    fake_openai.mode = "hang"
    with FakeMLService("hang") as ml:
        proc = backend_proc(ml.port, tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            ML_SERVICE_TIMEOUT_S="1.5", OPENAI_TIMEOUT_S="20", ML_REQUEST_BUDGET_S="3")
        with serving(proc) as c:
            r, took = timed(c, "POST", "/api/ml/categorize", json={"text": "Mow the lawn"})
            assert r.status_code == 503 and 2.9 < took < 4.0, (r.status_code, took)
            fake_openai.mode = "ok"
            r, took = timed(c, "POST", "/api/tasks", json={"title": "Walk the dog"})
            assert r.status_code == 201 and took < 2.6, took  # ml-service's 1.5 s, then OpenAI (3 s+ before)
            r, took = timed(c, "POST", "/api/tasks", json={"title": "Feed the cat", "category": "pets"})
            assert r.status_code == 201 and took < 0.8, took  # the embedding is not waited for


def test_ml_service_is_told_the_time_left(ml_service: int, tmp_path: Path) -> None:
    """#21: every call to ml-service carries X-Request-Timeout-Ms, what is left of its budget."""
    with FakeMLService(upstream=f"http://127.0.0.1:{ml_service}") as proxy:
        proc = backend_proc(proxy.port, tmp_path, ML_SERVICE_TIMEOUT_S="3")
        with serving(proc) as c:
            assert c.post("/api/ml/categorize", json={"text": "Mow the lawn"}).json()["source"] == "ml-service"
            assert c.post("/api/tasks", json={"title": "Walk the dog"}).status_code == 201
            assert c.post("/api/ml/similar", json={"text": "walk the puppy"}).json()["source"] == "ml-service"
    sent = [int(r["headers"]["x-request-timeout-ms"]) for r in proxy.requests]
    assert sent and all(0 < ms <= 3000 for ms in sent), sent


def test_a_model_that_failed_on_ml_service_falls_back_at_once_without_tripping_its_circuit(
        real_models: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """#16 on both sides: the real ml-service with a broken task-category answers 503 `model_failed` without
    Retry-After; the backend falls back to the next source at once (no retries), and ml-service's circuit stays
    closed, so its working models keep answering."""
    import shutil

    from tests.e2e.conftest import ml_service_proc

    root = tmp_path / "models"
    root.mkdir()
    for name in ("text-embedding", "intent-classifier"):
        (root / name).symlink_to(real_models / name)
    shutil.copytree(real_models / "task-category", root / "task-category")
    for version in ("1", "2"):
        for f in (root / "task-category" / version).glob("*.onnx"):
            f.write_bytes(b"truncated")
    port = free_port()
    ml = ml_service_proc(root, port, tmp_path)
    ml.env["ML_SERVICE_PRELOAD"] = "text-embedding,intent-classifier"
    ml.start()
    try:
        proc = backend_proc(port, tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            ML_FALLBACK_ORDER="ml-service,openai")
        with serving(proc) as c:
            for _ in range(8):  # more than the breaker's threshold
                r, took = timed(c, "POST", "/api/ml/categorize", json={"text": "Mow the lawn"})
                assert r.status_code == 200 and r.json()["source"] == "openai", r.text
                assert took < 2.0
            r = c.post("/api/ml/intent", json={"text": "set a timer for ten minutes"})
            assert r.status_code == 200 and r.json()["source"] == "ml-service", r.text
        log = proc.log_text()
        assert log.count("falling back without retrying") == 1  # said once, not per request
    finally:
        ml.stop()
    assert ml.log_text().count("model task-category version 2 failed to load") == 1  # tried once, not per request


def test_ml_service_shedding_load_falls_back_at_once_without_tripping_its_circuit(
        real_models: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    """Issue 23 on both sides: the real ml-service, kept busy by a client of its own (~2 s of work queued on
    text-embedding, whose batcher task-category shares), refuses the backend's categorize at once (503
    `deadline_unreachable`: more is queued than the second the backend has left); the backend answers from the next
    source at once, without retrying, and ml-service's circuit stays closed: once the load stops, it answers again."""
    from tests.e2e.conftest import ml_service_proc

    port = free_port()
    ml = ml_service_proc(real_models, port, tmp_path)
    ml.env.update(ML_SERVICE_PRELOAD="text-embedding,task-category",
                  ML_SERVICE_TARGET_WAIT_MS="0")  # only deadlines bound the queue: the load stays queued
    ml.start()
    stop = threading.Event()
    auth = {"Authorization": "Bearer ml-secret"}
    url = f"http://127.0.0.1:{port}"

    def load() -> None:
        texts = [f"sweep the garden path number {i} before the rain" for i in range(256)]
        with httpx.Client(base_url=url, headers=auth, timeout=60) as h:
            while not stop.is_set():
                assert h.post("/inference", json={"model_type": "text-embedding", "data": {"texts": texts}}
                              ).status_code == 200

    def expected_wait_ms() -> float:
        rows = httpx.get(f"{url}/stats", headers=auth).json()["models"]
        return next(r["expected_wait_ms"] or 0.0 for r in rows if r["model"] == "text-embedding")

    threads = [threading.Thread(target=load) for _ in range(6)]
    try:
        proc = backend_proc(port, tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                            ML_FALLBACK_ORDER="ml-service,openai", ML_SERVICE_TIMEOUT_S="1")
        with serving(proc) as c:
            r = c.post("/api/ml/categorize", json={"text": "Mow the lawn"})  # the encoder's rate gets measured
            assert r.status_code == 200 and r.json()["source"] == "ml-service", r.text
            for t in threads:
                t.start()
            deadline = time.monotonic() + 30
            while expected_wait_ms() < 1500 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert expected_wait_ms() >= 1500
            for _ in range(8):  # more than the breaker's threshold
                r, took = timed(c, "POST", "/api/ml/categorize", json={"text": "Mow the lawn"})
                assert r.status_code == 200 and r.json()["source"] == "openai", r.text
                assert took < 0.6, took  # at once: not after ml-service's 1 s (the time it took before)
            stop.set()
            for t in threads:
                t.join(60)
            r = c.post("/api/ml/categorize", json={"text": "Mow the lawn"})
            assert r.status_code == 200 and r.json()["source"] == "ml-service", r.text  # the circuit stayed closed
        log = proc.log_text()
        assert log.count("shedding load") == 1 and "deadline_unreachable" in log  # said once, not per request
    finally:
        stop.set()
        ml.stop()
