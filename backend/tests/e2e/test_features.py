"""The backend's ML features with the real ml-service and the real models."""

from __future__ import annotations

import httpx


def test_tasks_get_categories_and_the_ml_endpoints_answer(backend: httpx.Client) -> None:
    r = backend.post("/api/tasks", json={"title": "Mow the lawn"})
    assert r.status_code == 201, r.text
    task = r.json()
    assert (task["category"], task["category_source"]) == ("garden", "ml-service")
    mine = backend.post("/api/tasks", json={"title": "Sort the mail", "category": "bills"}).json()
    assert (mine["category"], mine["category_source"]) == ("bills", "user")
    cat = backend.post("/api/ml/categorize", json={"text": "mow the lawn"}).json()
    assert (cat["category"], cat["source"]) == ("garden", "ml-service") and 0.5 < cat["score"] <= 1
    intent = backend.post("/api/ml/intent", json={"text": "set a timer for 10 minutes"}).json()
    assert intent["intent"] == "timer" and intent["source"] == "ml-service" and 0 < intent["score"] <= 1
    assert backend.patch(f"/api/tasks/{task['id']}", json={"done": True}).json()["done_at"]
    assert len(backend.get("/api/tasks").json()) == 2
    assert backend.delete(f"/api/tasks/{mine['id']}").status_code == 204
    assert backend.get(f"/api/tasks/{mine['id']}").status_code == 404


def test_similar_and_recommend_for_a_pet_household(backend: httpx.Client) -> None:
    empty = backend.post("/api/ml/similar", json={"text": "anything", "limit": 3})  # no tasks yet
    assert empty.status_code == 200 and empty.json() == {"results": [], "source": "none"}  # nobody was asked
    for title in ("Walk the dog in the park", "Feed the cat", "Clean the litter box", "Buy dog food",
                  "Pay the electricity bill", "Vacuum the living room"):
        assert backend.post("/api/tasks", json={"title": title}).status_code == 201
    similar = backend.post("/api/ml/similar", json={"text": "take the puppy for a walk", "limit": 3}).json()
    assert similar["source"] == "ml-service"
    assert similar["results"][0]["title"] == "Walk the dog in the park"
    assert similar["results"][0]["score"] > similar["results"][-1]["score"]
    rec = backend.post("/api/ml/recommend", json={"limit": 5}).json()
    assert rec["source"] == "ml-service" and len(rec["recommendations"]) == 5
    top = rec["recommendations"][:3]
    assert all(r["category"] == "pets" for r in top), top  # pet-related suggestions first
    assert all(r["reason"] for r in rec["recommendations"])
    titles = {r["title"] for r in rec["recommendations"]}
    assert "Clean the litter box" not in titles and "Walk the dog" not in titles  # what it already has
    again = backend.post("/api/ml/recommend", json={"limit": 5}).json()  # all embedded: nothing to ask
    assert again["source"] == "stored" and again["recommendations"] == rec["recommendations"]


def test_a_coffee_photo_is_an_espresso_in_the_kitchen(backend: httpx.Client) -> None:
    from ml_service.modelbuild.checks import photo_bytes

    r = backend.post("/api/ml/classify-image", files={"file": ("coffee.png", photo_bytes()["coffee"], "image/png")})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["label"] == "espresso" and out["category"] == "kitchen" and out["source"] == "ml-service"
    assert backend.post("/api/ml/classify-image", files={"file": ("x.png", b"not an image", "image/png")}
                        ).status_code == 422
