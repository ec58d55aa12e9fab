"""ml-service dies mid-run: the backend keeps answering from the managed API (a local server playing OpenAI,
reached through the official client), fast once the breaker opens, sending no personal data; when ml-service
comes back, traffic returns to it after the cool-down."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import backend_proc, free_port, ml_service_proc
from tests.fake_openai import FakeOpenAI

PII = ["Emma Smith", "Lukas", "+44 20 7946 0958", "DE89 3704 0044 0532 0130 00", "emma.smith@example.com",
       "221B Baker Street", "4111 1111 1111 1111"]
TEXTS = ["Call Emma on +44 20 7946 0958 about the boiler", "Lukas pays the rent to DE89 3704 0044 0532 0130 00",
         "Email emma.smith@example.com the plumber's quote for the shower", "Lukas: mow the lawn at 221B Baker Street",
         "Pay the car insurance with card 4111 1111 1111 1111"]


def test_fallback_privacy_and_recovery(real_models: Path, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    port = free_port()
    ml = ml_service_proc(real_models, port, tmp_path).start()
    backend = backend_proc(port, tmp_path, OPENAI_API_KEY="sk-fake-key", OPENAI_BASE_URL=fake_openai.base_url,
                           BREAKER_FAILURES="2").start()
    try:
        with httpx.Client(base_url=backend.ready_url.rsplit("/", 1)[0], timeout=30) as c:
            for name in ("Emma Smith", "Lukas"):
                assert c.post("/api/household/members", json={"name": name}).status_code == 201
            for title in ("Walk the dog", "Pay the water bill", "Clean the oven"):
                assert c.post("/api/tasks", json={"title": title}).json()["category_source"] == "ml-service"
            assert c.post("/api/ml/categorize", json={"text": TEXTS[0]}).json()["source"] == "ml-service"
            assert c.post("/api/ml/recommend", json={"limit": 3}).json()["source"] == "ml-service"
            assert fake_openai.requests == []  # what ml-service can answer never goes out

            answers: list[tuple[float, int, str, float]] = []
            stop = threading.Event()

            def traffic() -> None:
                with httpx.Client(base_url=c.base_url, timeout=30) as t:
                    i = 0
                    while not stop.is_set():
                        start = time.monotonic()
                        r = t.post("/api/ml/categorize", json={"text": TEXTS[i % len(TEXTS)]})
                        answers.append((start, r.status_code, r.json().get("source", ""), time.monotonic() - start))
                        i += 1

            worker = threading.Thread(target=traffic)
            worker.start()
            time.sleep(1.0)
            killed = time.monotonic()
            ml.stop(signal.SIGKILL)  # mid-run, no goodbye
            time.sleep(3.0)
            stop.set()
            worker.join(30)
            assert answers and {status for _, status, _, _ in answers} == {200}  # every request answered
            assert {src for _, _, src, _ in answers} == {"ml-service", "openai"}
            late = [a for a in answers if a[0] > killed + 1.0]
            assert late and all(src == "openai" for _, _, src, _ in late)
            assert max(lat for _, _, _, lat in late) < 0.5  # the open circuit costs no waiting on ml-service

            assert c.post("/api/ml/intent", json={"text": "Emma wants a timer for 10 minutes"}).json()["source"] \
                == "openai"
            sim = c.post("/api/ml/similar", json={"text": "Lukas walks the puppy", "limit": 2}).json()
            assert sim["source"] == "openai" and len(sim["results"]) == 2
            rec = c.post("/api/ml/recommend", json={"limit": 3}).json()  # every task embedded, the catalog too
            assert rec["source"] == "stored" and len(rec["recommendations"]) == 3
            task = c.post("/api/tasks", json={"title": "Mow the lawn before Emma's party"}).json()
            assert (task["category"], task["category_source"]) == ("garden", "openai")
            rec = c.post("/api/ml/recommend", json={"limit": 3}).json()  # a task without its embedding
            assert rec["source"] == "openai" and len(rec["recommendations"]) == 3
            image = c.post("/api/ml/classify-image", files={"file": ("p.png", b"\x89PNG...", "image/png")})
            assert image.status_code == 503 and "never sent" in image.json()["error"]["message"]

            sent = fake_openai.sent_text()
            assert fake_openai.requests and all(p not in sent for p in PII), [p for p in PII if p in sent]
            assert "[PERSON_1]" in sent and "[PHONE_1]" in sent and "[IBAN_1]" in sent and "[EMAIL_1]" in sent
            assert all(r["headers"]["authorization"] == "Bearer sk-fake-key" for r in fake_openai.requests)

            ml.start()  # back on the same port
            time.sleep(2.5)  # the breaker's cool-down
            sources = [c.post("/api/ml/categorize", json={"text": "Mow the lawn"}).json()["source"] for _ in range(3)]
            assert sources[-1] == "ml-service", sources
    finally:
        backend.stop()
        ml.stop()
