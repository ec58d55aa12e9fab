"""Backend test fixtures: settings that ignore the environment, a temporary database, the fake managed API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.core.config import Settings
from tests.fake_openai import FakeOpenAI


def make_settings(tmp: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"ml_service_url": "http://127.0.0.1:9", "ml_service_secret": None,
                              "openai_api_key": None, "openai_base_url": None, "database_url":
                              f"sqlite+aiosqlite:///{tmp / 'household.db'}", "ml_service_timeout_s": 2.0,
                              "breaker_cooldown_s": 1.0}
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings_for(tmp_path: Path) -> Any:
    return lambda **kw: make_settings(tmp_path, **kw)


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    """A local server speaking OpenAI's chat completions, recording what it receives."""
    server = FakeOpenAI()
    server.start()
    yield server
    server.stop()
