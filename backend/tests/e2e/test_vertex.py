"""The backend's Vertex AI provider: ml-service is unreachable from the backend, Vertex is next in the order. The
Vertex endpoint is a stand-in for Vertex's front end forwarding to a real ml-service started with Vertex's AIP_*
variables; the backend authenticates with a service-account key through google-auth (the stand-in plays Google's
token endpoint). Nothing personal reaches Vertex."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from ml_service_testing.vertex_front import VertexFront

from tests.e2e.conftest import BIN, REPO, Proc, backend_proc, free_port, service_account_key

ROUTE = "/v1/endpoints/77/deployedModels/5"
PII = ["Emma Smith", "Lukas", "+44 20 7946 0958", "DE89 3704 0044 0532 0130 00", "emma.smith@example.com"]


def vertex_container(models: Path, tmp: Path) -> Proc:
    port = free_port()
    env = {"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": str(port), "AIP_HEALTH_ROUTE": ROUTE,
           "AIP_PREDICT_ROUTE": ROUTE + ":predict", "AIP_STORAGE_URI": str(models),
           "ML_SERVICE_VERTEX_MODEL": "task-category", "ML_SERVICE_PRELOAD": "*", "ML_SERVICE_SECRET": "",
           "ML_SERVICE_HOST": "127.0.0.1", "ML_SERVICE_REPOSITORY_POLL_S": "0"}
    return Proc([str(BIN / "ml-service"), "serve"], env, REPO, f"http://127.0.0.1:{port}{ROUTE}",
                tmp / f"vertex-{port}.log")


def test_vertex_answers_when_ml_service_is_unreachable(real_models: Path, tmp_path: Path) -> None:
    container = vertex_container(real_models, tmp_path).start()
    front = VertexFront(container.ready_url.removesuffix(ROUTE), ROUTE + ":predict", require_token=True).start()
    key = service_account_key(tmp_path / "sa.json", front.url + "/token")
    dead = free_port()  # nothing listens there: ml-service is unreachable from the backend
    backend = backend_proc(dead, tmp_path, ML_FALLBACK_ORDER="ml-service,vertex,openai", VERTEX_PROJECT="household",
                           VERTEX_LOCATION="europe-west4", VERTEX_ENDPOINT_ID="77", VERTEX_API_ENDPOINT=front.url,
                           GOOGLE_APPLICATION_CREDENTIALS=str(key), NO_GCE_CHECK="True").start()
    try:
        with httpx.Client(base_url=backend.ready_url.rsplit("/", 1)[0], timeout=60) as c:
            for name in ("Emma Smith", "Lukas"):
                assert c.post("/api/household/members", json={"name": name}).status_code == 201
            for title in ("Walk the dog", "Pay the water bill", "Clean the oven"):
                task = c.post("/api/tasks", json={"title": title}).json()
                assert task["category_source"] == "vertex", task
            r = c.post("/api/ml/categorize", json={"text": "Lukas pays the rent to DE89 3704 0044 0532 0130 00"})
            assert r.status_code == 200 and r.json()["source"] == "vertex" and r.json()["category"] == "bills"
            r = c.post("/api/ml/intent", json={"text": "Emma Smith wants a timer for 10 minutes, +44 20 7946 0958"})
            assert r.json()["source"] == "vertex" and r.json()["intent"]
            sim = c.post("/api/ml/similar", json={"text": "email emma.smith@example.com about the puppy's walk",
                                                  "limit": 2}).json()
            assert sim["source"] == "vertex" and sim["results"][0]["title"] == "Walk the dog"
            rec = c.post("/api/ml/recommend", json={"limit": 3}).json()
            assert rec["source"] == "vertex" and len(rec["recommendations"]) == 3
            image = c.post("/api/ml/classify-image", files={"file": ("p.png", b"\x89PNG...", "image/png")})
            assert image.status_code == 503 and "never sent" in image.json()["error"]["message"]

        predictions = [r for r in front.requests if r.method == "POST" and r.path.endswith(":predict")]
        assert predictions and front.tokens
        sent = json.dumps([r.body for r in predictions], ensure_ascii=False)
        assert all(p not in sent for p in PII), [p for p in PII if p in sent]
        assert "[PERSON_1]" in sent and "[IBAN_1]" in sent and "[EMAIL_1]" in sent and "[PHONE_1]" in sent
        assert all(r.headers["Authorization"] == "Bearer ya29.test-1" for r in predictions)  # one token, reused
        assert {r.body["parameters"]["model"] for r in predictions} == {"task-category", "intent-classifier",
                                                                         "text-embedding"}
    finally:
        backend.stop()
        front.stop()
        container.stop()
