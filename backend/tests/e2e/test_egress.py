"""What leaves the house, per endpoint and source (issue 18, #2 and the assignee of #3), on the real backend with
each source alone in the order and recording what it receives: ml-service (the real one, behind a recording
proxy) gets what its models need, notes included; Vertex's and OpenAI's stand-ins get the request's text and the
tasks' titles only, sanitized, never a note, a member's or an assignee's name, or a photo."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import backend_proc, free_port, serving
from tests.fake_ml import FakeMLService
from tests.fake_openai import FakeOpenAI
from tests.fake_vertex import FakeVertex

NOTES = ["alarm code 4711", "Dr. Wolff", "key under the blue pot"]  # in notes only: must never leave
NAMES = ["Emma", "Maximilian"]  # a member, and an assignee who is not one
TASKS = [{"title": "Maximilian walks the dog", "notes": "vet: Dr. Wolff on Fridays", "assignee": "Maximilian"},
         {"title": "Check the alarm", "notes": "alarm code 4711"},
         {"title": "Water the plants", "notes": "key under the blue pot", "assignee": "Emma"}]


def use_every_feature(c: httpx.Client) -> None:
    assert c.post("/api/household/members", json={"name": "Emma"}).status_code == 201
    for task in TASKS:
        assert c.post("/api/tasks", json=task).status_code == 201
    for path, body in (("categorize", {"text": "Emma pays the water bill"}), ("intent", {"text": "set a timer"}),
                       ("similar", {"text": "walk the puppy", "limit": 2}), ("recommend", {"limit": 3})):
        r = c.post(f"/api/ml/{path}", json=body)
        assert r.status_code == 200, (path, r.text)
    c.post("/api/ml/classify-image", files={"file": ("p.png", b"\x89PNG not really", "image/png")})


def test_ml_service_gets_what_its_models_need(ml_service: int, tmp_path: Path) -> None:
    proxy = FakeMLService(upstream=f"http://127.0.0.1:{ml_service}")
    with proxy, serving(backend_proc(proxy.port, tmp_path, ML_FALLBACK_ORDER="ml-service")) as c:
        use_every_feature(c)
    embedded = proxy.texts("text-embedding")
    assert "Maximilian walks the dog. vet: Dr. Wolff on Fridays" in embedded  # notes stay in the house, embedded
    assert "Emma pays the water bill" in proxy.texts("task-category")
    assert all(". " not in t for t in proxy.texts("task-category"))  # a title is categorized without its notes
    assert any(r["body"]["model_type"] == "item-classifier" for r in proxy.requests)  # the photo, in the house


@pytest.mark.parametrize("source", ["vertex", "openai"])
def test_a_managed_source_gets_sanitized_titles_and_the_request_only(tmp_path: Path, source: str) -> None:
    with FakeVertex() as vertex, FakeOpenAI() as openai:
        env = {"ML_FALLBACK_ORDER": source, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": openai.base_url,
               "VERTEX_PROJECT": "household", "VERTEX_LOCATION": "europe-west4", "VERTEX_ENDPOINT_ID": "77",
               "VERTEX_API_ENDPOINT": vertex.url}
        with serving(backend_proc(free_port(), tmp_path, **env)) as c:
            use_every_feature(c)
            sim = c.post("/api/ml/similar", json={"text": "walk the puppy", "limit": 1}).json()
            assert sim["source"] == source and sim["results"]
        recorder = vertex if source == "vertex" else openai
        other = openai if source == "vertex" else vertex
        sent = recorder.sent_text()
        texts = vertex.instances() if source == "vertex" else openai.prompts()
    assert texts and not other.requests
    assert not [s for s in NOTES + NAMES if s in sent], [s for s in NOTES + NAMES if s in sent]
    assert any("walks the dog" in t for t in texts) and any("Check the alarm" in t for t in texts)
    assert "PNG" not in sent  # the photo never left
    if source == "vertex":
        assert {r["body"]["parameters"]["model"] for r in vertex.requests} == {"task-category", "intent-classifier",
                                                                              "text-embedding"}
