"""DATABASE_URL as users write it, a database that is busy or down answered as a JSON 503, bad input as a JSON
4xx: the real app in process (its lifespan, engine and migrations) through Starlette's TestClient."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.core.config import Settings, async_database_url
from app.main import create_app


@pytest.mark.parametrize(("url", "driver"), [
    ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ("sqlite:////var/lib/app/x.db", "sqlite+aiosqlite:////var/lib/app/x.db"),
    ("sqlite://", "sqlite+aiosqlite://"),
    ("sqlite:///:memory:", "sqlite+aiosqlite:///:memory:"),
    ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
])
def test_the_usual_forms_run_on_the_async_driver(url: str, driver: str) -> None:
    assert async_database_url(url) == driver


@pytest.mark.parametrize("url", ["postgresql://app:pw@db:5432/household", "postgres://app:pw@db/household",
                                 "postgresql+psycopg2://app:pw@db/household"])
def test_postgresql_runs_on_asyncpg_or_says_how_to_get_it(url: str) -> None:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match=r"driver asyncpg is not installed: pip install 'ml-service-backend"):
            async_database_url(url)
    else:
        assert async_database_url(url).startswith("postgresql+asyncpg://app:pw@db")


@pytest.mark.parametrize("url", ["household.db", "mysql://x/y", "", "sqlite:/x.db"])
def test_anything_else_says_what_is_accepted(url: str) -> None:
    with pytest.raises(ValidationError, match=r"DATABASE_URL must be sqlite:///path/to/file.db, sqlite://"):
        Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]


def test_sqlite_in_memory_gets_its_tables(settings_for: Any) -> None:
    with TestClient(create_app(settings_for(database_url="sqlite://"))) as c:
        assert c.post("/api/tasks", json={"title": "Mow the lawn", "category": "garden"}).status_code == 201
        assert c.post("/api/household/members", json={"name": "Emma"}).status_code == 201
        assert [t["title"] for t in c.get("/api/tasks").json()] == ["Mow the lawn"]


def test_no_free_connection_is_a_503(settings_for: Any) -> None:
    """Every pooled connection is taken (here by the test itself): a request waits DATABASE_POOL_TIMEOUT_S and is
    answered 503 with a JSON body, never a 500."""
    app = create_app(settings_for(database_pool_size=2, database_pool_timeout_s=0.3))
    with TestClient(app) as c:
        engine = app.state.db.engine

        async def take() -> Any:
            return [await engine.connect() for _ in range(2)]

        async def give_back(held: Any) -> None:
            await asyncio.gather(*(h.close() for h in held))

        held = c.portal.call(take)
        r = c.get("/api/tasks")
        c.portal.call(give_back, held)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "database_busy"
        assert c.get("/api/tasks").status_code == 200  # and all is well once one is free


@pytest.mark.parametrize(("method", "path", "body", "says"), [
    ("PATCH", "/api/tasks/1", {"title": None}, "title may be changed but not removed"),
    ("PATCH", "/api/tasks/1", {"done": None}, "done may be changed but not removed"),
    ("PATCH", "/api/tasks/1", {"title": "   "}, "title: must not be blank"),
    ("PATCH", "/api/tasks/1", {"category": "spaceship"}, "category: Input should be 'kitchen'"),
    ("GET", "/api/tasks/99999999999999999999", None, "task_id: Input should be less than or equal to"),
    ("PATCH", "/api/tasks/99999999999999999999", {"done": True}, "task_id: Input should be less than or equal to"),
    ("DELETE", "/api/tasks/-1", None, "task_id: Input should be greater than or equal to 1"),
    ("DELETE", "/api/household/members/99999999999999999999", None, "member_id: Input should be less than"),
    ("POST", "/api/tasks", {"title": "   "}, "title: must not be blank"),
    ("POST", "/api/tasks", {"title": "Mow", "category": "spaceship"}, "category: Input should be"),
    ("POST", "/api/tasks", {"title": "Mow", "assignee": "x"}, "assignee: a name needs at least 2 letters"),
    ("POST", "/api/tasks", {"title": "Mow\x00"}, "title: must not contain NUL"),
    ("POST", "/api/household/members", {"name": "   "}, "name: must not be blank"),
    ("POST", "/api/household/members", {"name": "a"}, "name: a name needs at least 2 letters"),
    ("POST", "/api/household/members", {"name": "7 9"}, "name: a name needs at least 2 letters"),
    ("POST", "/api/ml/categorize", {"text": " \n "}, "text: must not be blank"),
    ("GET", "/api/tasks?category=spaceship", None, "category: Input should be"),
])
def test_bad_input_is_a_clear_4xx(settings_for: Any, method: str, path: str, body: Any, says: str) -> None:
    with TestClient(create_app(settings_for(database_url="sqlite://")), raise_server_exceptions=False) as c:
        assert c.post("/api/tasks", json={"title": "Mow the lawn", "category": "garden"}).status_code == 201
        r = c.request(method, path, json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input", r.text
        assert says in r.json()["error"]["message"], r.json()
        assert c.get("/api/tasks/1").json()["title"] == "Mow the lawn"  # nothing changed


def test_what_is_blank_is_left_out_and_names_are_trimmed(settings_for: Any) -> None:
    with TestClient(create_app(settings_for(database_url="sqlite://"))) as c:
        task = c.post("/api/tasks", json={"title": "  Mow   the lawn ", "category": "garden", "notes": "  ",
                                          "room": " ", "assignee": "  Anne  Marie "}).json()
        assert (task["title"], task["notes"], task["room"], task["assignee"]) == ("Mow the lawn", None, None,
                                                                                  "Anne Marie")
        assert c.post("/api/household/members", json={"name": "  Jo "}).json()["name"] == "Jo"
        assert c.patch(f"/api/tasks/{task['id']}", json={"notes": None, "category": None}).status_code == 200
