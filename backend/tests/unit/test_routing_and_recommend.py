"""Routing decisions between ml-service and the fallback, and recommend's ranking on a small fixed catalog."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import numpy as np
import pytest

from app.services.ai import AIError, AIService
from app.services.fallback import FallbackChain, NoSource
from app.services.ml_client import MLServiceRejected, MLServiceUnavailable
from app.services.recommend import CatalogItem, HouseholdTask, load_catalog, rank
from app.services.vertex import VertexClient, VertexError


def router(settings_for: Any, order: str = "ml-service,openai", key: str | None = "sk-test",
           vertex: bool = False) -> FallbackChain:
    named = {"vertex_project": "p", "vertex_location": "l", "vertex_endpoint_id": "1"} if vertex else {}
    settings = settings_for(fallback_order=order, openai_api_key=key, **named)
    return FallbackChain(settings, AIService(settings), VertexClient(settings))


def run(r: FallbackChain, ml: Any, managed: Any, vertex: Any = None) -> Any:
    calls = {k: v for k, v in {"ml-service": ml, "openai": managed, "vertex": vertex}.items() if v is not None}
    return asyncio.run(r.run(calls))


async def ok_ml() -> str:
    return "from ml"


async def ok_ai() -> str:
    return "from ai"


async def down() -> str:
    raise MLServiceUnavailable("circuit open")


async def ai_down() -> str:
    raise AIError("the managed API failed")


async def ok_vertex() -> str:
    return "from vertex"


async def vertex_down() -> str:
    raise VertexError("Vertex answered 503")


async def rejected() -> str:
    raise MLServiceRejected(422, "invalid_input", "bad")


def test_ml_service_first(settings_for: Any) -> None:
    assert run(router(settings_for), ok_ml, ok_ai) == ("from ml", "ml-service")


def test_fallback_when_ml_service_is_unavailable(settings_for: Any) -> None:
    assert run(router(settings_for), down, ok_ai) == ("from ai", "openai")


def test_a_rejected_request_never_goes_to_the_fallback(settings_for: Any) -> None:
    with pytest.raises(MLServiceRejected):
        run(router(settings_for), rejected, ok_ai)


def test_both_failing_says_why(settings_for: Any) -> None:
    with pytest.raises(NoSource, match=r"ml-service: circuit open; openai: the managed API failed"):
        run(router(settings_for), down, ai_down)
    with pytest.raises(NoSource, match="not configured"):
        run(router(settings_for, key=None), down, ok_ai)


def test_the_order_setting(settings_for: Any) -> None:
    assert run(router(settings_for, "openai"), ok_ml, ok_ai) == ("from ai", "openai")
    with pytest.raises(NoSource):
        run(router(settings_for, "ml-service"), down, ok_ai)
    assert run(router(settings_for, "openai,ml-service"), ok_ml, ai_down) == ("from ml", "ml-service")
    with pytest.raises(NoSource, match="no configured source"):
        run(router(settings_for, "openai"), ok_ml, None)  # a feature the fallback does not offer (images)


def test_vertex_in_the_order(settings_for: Any) -> None:
    order = "ml-service,vertex,openai"
    assert run(router(settings_for, order, vertex=True), down, ok_ai, ok_vertex) == ("from vertex", "vertex")
    assert run(router(settings_for, order, vertex=True), down, ok_ai, vertex_down) == ("from ai", "openai")
    assert run(router(settings_for, order), down, ok_ai, ok_vertex) == ("from ai", "openai")  # not configured
    assert run(router(settings_for, "vertex,ml-service", vertex=True), ok_ml, None, ok_vertex) == \
        ("from vertex", "vertex")
    with pytest.raises(NoSource, match=r"Vertex AI is not configured"):
        run(router(settings_for, "vertex"), ok_ml, ok_ai, ok_vertex)


def test_the_order_names_each_known_source_once(settings_for: Any) -> None:
    from pydantic import ValidationError

    assert router(settings_for, " vertex , openai ").order == ["vertex", "openai"]
    for bad in ("", "ml-service,ml-service", "gemini", "openai;vertex"):
        with pytest.raises(ValidationError, match="fallback order"):
            router(settings_for, bad)


def test_ml_fallback_order_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.core.config import Settings

    monkeypatch.setenv("ML_FALLBACK_ORDER", "ml-service,vertex,openai")
    assert Settings(_env_file=None).sources == ["ml-service", "vertex", "openai"]  # type: ignore[call-arg]
    monkeypatch.delenv("ML_FALLBACK_ORDER")
    monkeypatch.setenv("FALLBACK_ORDER", "openai")
    assert Settings(_env_file=None).sources == ["openai"]  # type: ignore[call-arg]


def _unit(*v: float) -> np.ndarray:
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


CATALOG = [CatalogItem("Walk the dog", "pets", 1), CatalogItem("Brush the dog", "pets", 7),
           CatalogItem("Mow the lawn", "garden", 7), CatalogItem("Pay the water bill", "bills", 90),
           CatalogItem("Descale the kettle", "kitchen", 60)]
# dimensions: pets, garden, bills, kitchen
EMB = np.stack([_unit(1, 0, 0, 0), _unit(0.6, 0.3, 0, 0.7), _unit(0, 1, 0, 0), _unit(0, 0, 1, 0), _unit(0, 0, 0, 1)])
NOW = dt.datetime(2026, 11, 29, tzinfo=dt.UTC)


def test_pets_first_for_a_pet_household_and_what_it_has_is_left_out() -> None:
    tasks = [HouseholdTask("Walk the dog every morning", "pets", _unit(1, 0, 0, 0.05), False, None),
             HouseholdTask("Feed the cat", "pets", _unit(0.95, 0, 0.05, 0), False, None)]
    out = rank(CATALOG, EMB, tasks, NOW, limit=3)
    titles = [r.title for r in out]
    assert "Walk the dog" not in titles  # the household has it and has not done it
    assert titles[0] == "Brush the dog" and out[0].category == "pets"
    assert "pets" in out[0].reason and out[0].score > out[1].score


def test_an_overdue_repeat_comes_first() -> None:
    done = NOW - dt.timedelta(days=200)
    tasks = [HouseholdTask("Pay the water bill", "bills", _unit(0, 0, 1, 0), True, done),
             HouseholdTask("Walk the dog", "pets", _unit(1, 0, 0, 0), False, None)]
    out = rank(CATALOG, EMB, tasks, NOW, limit=5)
    assert out[0].title == "Pay the water bill" and "last done 200 days ago; usually every 90 days" in out[0].reason
    recent = [HouseholdTask("Pay the water bill", "bills", _unit(0, 0, 1, 0), True, NOW - dt.timedelta(days=10))]
    assert "Pay the water bill" not in [r.title for r in rank(CATALOG, EMB, recent, NOW)]


def test_an_empty_household_gets_the_frequent_chores() -> None:
    out = rank(CATALOG, EMB, [], NOW, limit=2)
    assert [r.title for r in out] == ["Walk the dog", "Brush the dog"]


def test_the_shipped_catalog() -> None:
    catalog = load_catalog()
    assert len(catalog) >= 200 and len({c.title for c in catalog}) == len(catalog)
    assert {c.category for c in catalog} == {"kitchen", "bathroom", "laundry", "cleaning", "garden", "shopping",
                                             "bills", "maintenance", "pets", "kids", "health", "car"}
    assert all(c.every_days >= 1 for c in catalog)
