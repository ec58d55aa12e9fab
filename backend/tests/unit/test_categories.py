"""The household's categories (the fixed ones and those it added) and the labelled examples its users' categories
make: the real app in process on a real SQLite file, ml-service played by the training stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.categories import CATEGORIES
from app.crud import examples
from app.main import create_app
from tests.fake_train import FakeTrainer


@pytest.fixture(scope="module")
def ml() -> Iterator[FakeTrainer]:
    with FakeTrainer() as server:
        yield server


@pytest.fixture
def client(settings_for: Any, ml: FakeTrainer) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(ml_service_url=ml.url)), raise_server_exceptions=False) as c:
        yield c


def stored(c: TestClient, household: str = "home") -> list[tuple[int | None, str, str, str | None, str | None]]:
    """The household's examples: (task id, text, label, model category, model source)."""
    async def read() -> Any:
        async with c.app.state.db.sessions() as s:  # type: ignore[attr-defined]
            return [(e.task_id, e.text, e.label, e.model_category, e.model_source)
                    for e in await examples.of_household(s, household)]

    return c.portal.call(read)  # type: ignore[union-attr]


def test_the_fixed_categories_and_the_households_own(client: TestClient) -> None:
    assert client.get("/api/categories").json() == [{"name": c, "added": False} for c in CATEGORIES]
    r = client.post("/api/categories", json={"name": "  House  Plants "})
    assert r.status_code == 201 and r.json() == {"name": "house plants", "added": True}
    assert client.post("/api/categories", json={"name": "plants"}).status_code == 201
    assert client.post("/api/categories", json={"name": "Kräuter_2"}).json()["name"] == "kräuter_2"
    assert client.get("/api/categories").json()[-3:] == [{"name": "house plants", "added": True},
                                                         {"name": "plants", "added": True},
                                                         {"name": "kräuter_2", "added": True}]
    task = client.post("/api/tasks", json={"title": "Repot the monstera", "category": "Plants"})
    assert task.status_code == 201 and task.json()["category"] == "plants"
    assert [t["title"] for t in client.get("/api/tasks", params={"category": "plants"}).json()] == \
        ["Repot the monstera"]


@pytest.mark.parametrize(("name", "status", "says"), [
    ("plants", 409, "has a category 'plants' already"),
    ("Kitchen", 409, "has a category 'kitchen' already"),
    ("   ", 422, "name: must not be blank"),
    ("", 422, "name: must not be blank"),
    ("p", 422, "a category is 2-40 letters"),
    ("plants!", 422, "a category is 2-40 letters"),
    ("2cats", 422, "a category is 2-40 letters"),
    ("cats-", 422, "a category is 2-40 letters"),
    ("x" * 41, 422, "name: String should have at most 40 characters"),
    (None, 422, "name: Input should be a valid string"),
])
def test_a_category_that_cannot_be_added_is_a_clear_4xx(client: TestClient, name: Any, status: int,
                                                         says: str) -> None:
    assert client.post("/api/categories", json={"name": "plants"}).status_code == 201
    r = client.post("/api/categories", json={"name": name})
    assert r.status_code == status and says in r.json()["error"]["message"], r.text
    assert len(client.get("/api/categories").json()) == len(CATEGORIES) + 1


def test_a_category_the_household_does_not_have_is_still_a_422(client: TestClient) -> None:
    r = client.post("/api/tasks", json={"title": "Repot the monstera", "category": "plants"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert r.json()["error"]["message"].startswith("category: Input should be 'kitchen'")
    assert "POST /api/categories" in r.json()["error"]["message"]
    assert client.post("/api/tasks", json={"title": "Repot", "category": "  "}).status_code == 422
    assert client.get("/api/tasks", params={"category": "plants"}).status_code == 422
    assert client.post("/api/categories", json={"name": "plants"}).status_code == 201
    task = client.post("/api/tasks", json={"title": "Repot", "category": "plants"}).json()
    r = client.patch(f"/api/tasks/{task['id']}", json={"category": "cacti"})
    assert r.status_code == 422 and "or one the household added ('plants')" in r.json()["error"]["message"]
    assert client.get(f"/api/tasks/{task['id']}").json()["category"] == "plants"


def test_the_users_categories_are_kept_as_examples_beside_the_models(client: TestClient) -> None:
    """Set at creation (no model asked), or a model's answer changed by the user; a later correction replaces the
    example, keeping what the model had said; the text is the title only (notes are not what categorize sees)."""
    mine = client.post("/api/tasks", json={"title": "Sort the mail", "category": "bills", "notes": "IBAN inside"})
    kettle = client.post("/api/tasks", json={"title": "Descale the kettle"}).json()
    assert (kettle["category"], kettle["category_source"]) == ("kitchen", "ml-service")
    assert stored(client) == [(mine.json()["id"], "Sort the mail", "bills", None, None)]  # a model's: none
    assert client.patch(f"/api/tasks/{kettle['id']}", json={"category": "cleaning"}).json()["category_source"] == \
        "user"
    assert stored(client)[1] == (kettle["id"], "Descale the kettle", "cleaning", "kitchen", "ml-service")
    assert client.post("/api/categories", json={"name": "descaling"}).status_code == 201
    client.patch(f"/api/tasks/{kettle['id']}", json={"category": "descaling", "title": "Descale the kettle now"})
    assert stored(client)[1] == (kettle["id"], "Descale the kettle now", "descaling", "kitchen", "ml-service")
    client.patch(f"/api/tasks/{kettle['id']}", json={"title": "Descale the big kettle", "done": True})
    assert stored(client)[1][1:3] == ("Descale the big kettle", "descaling")  # the same label, the text as it is
    client.patch(f"/api/tasks/{kettle['id']}", json={"done": False})
    assert len(stored(client)) == 2
    listed = client.get("/api/ml/examples").json()
    assert [(e["task_id"], e["text"], e["label"], e["model_category"], e["model_source"]) for e in listed] == \
        stored(client) and all(e["updated_at"] for e in listed)


def test_taking_a_category_away_forgets_the_example_and_deleting_a_task_keeps_it(client: TestClient) -> None:
    a = client.post("/api/tasks", json={"title": "Feed the fish", "category": "pets"}).json()
    b = client.post("/api/tasks", json={"title": "Pay the rent", "category": "bills"}).json()
    assert client.patch(f"/api/tasks/{a['id']}", json={"category": None}).json()["category_source"] is None
    assert [e[0] for e in stored(client)] == [b["id"]]
    assert client.delete(f"/api/tasks/{b['id']}").status_code == 204
    assert stored(client) == [(None, "Pay the rent", "bills", None, None)]  # what the user taught stays
    c = client.post("/api/tasks", json={"title": "Walk the dog", "category": "pets"}).json()  # may reuse the id
    assert stored(client)[-1] == (c["id"], "Walk the dog", "pets", None, None) and len(stored(client)) == 2


def test_examples_are_kept_per_household(settings_for: Any, ml: FakeTrainer) -> None:
    with TestClient(create_app(settings_for(ml_service_url=ml.url, household_id="flat-2"))) as c:
        assert c.post("/api/categories", json={"name": "plants"}).status_code == 201
        c.post("/api/tasks", json={"title": "Water the ferns", "category": "plants"})
        assert stored(c, "flat-2") == [(1, "Water the ferns", "plants", None, None)] and stored(c) == []
    with TestClient(create_app(settings_for(ml_service_url=ml.url))) as c:  # the same database, household "home"
        assert all(not x["added"] for x in c.get("/api/categories").json())
        assert c.post("/api/tasks", json={"title": "Repot", "category": "plants"}).status_code == 422
