"""A household of 10,000 tasks while ml-service is down (issue 18, #6), on the real backend: the OpenAI fallback's
prompt is bounded (FALLBACK_MAX_TASKS / FALLBACK_MAX_CHARS, the most relevant tasks first), sanitizing runs off the
event loop (so /health stays fast meanwhile) and its results are cached (the second call is cheaper)."""

from __future__ import annotations

import itertools
import sqlite3
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import backend_proc, free_port, serving
from tests.fake_openai import FakeOpenAI

VERBS = ["Clean", "Water", "Fix", "Buy", "Check", "Wash", "Sort", "Tidy"]
THINGS = ["the shelf", "the plants", "the tap", "new bulbs", "the boiler", "the car", "the mail", "the desk"]


def seed(db: Path, n: int) -> None:
    """`n` tasks written straight into the backend's database (what years of use leave), all done but the last
    50, which are the most recent."""
    titles = (f"{v} {t} for Emma, room {i}" for i, (v, t) in zip(range(n), itertools.cycle(itertools.product(
        VERBS, THINGS)), strict=False))
    with sqlite3.connect(db) as con:
        con.executemany("INSERT INTO tasks (title, done, created_at, updated_at) VALUES (?, ?, ?, ?)",
                        [(t, i < n - 50, f"2026-01-01 00:{i // 600:02d}:{i // 10 % 60:02d}",
                          f"2026-01-01 00:{i // 600:02d}:{i // 10 % 60:02d}") for i, t in enumerate(titles)])


def test_a_big_household_with_ml_service_down(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    proc = backend_proc(free_port(), tmp_path, OPENAI_API_KEY="sk-test", OPENAI_BASE_URL=fake_openai.base_url,
                        ML_FALLBACK_ORDER="ml-service,openai", FALLBACK_MAX_TASKS="200", FALLBACK_MAX_CHARS="16000",
                        ML_REQUEST_BUDGET_S="30")
    db = tmp_path / f"household-{proc.url.rsplit(':', 1)[1]}.db"
    with serving(proc) as c:
        assert c.post("/api/household/members", json={"name": "Emma"}).status_code == 201
        seed(db, 10_000)
        health: list[float] = []
        stop = threading.Event()

        def poll() -> None:
            with httpx.Client(base_url=proc.url, timeout=30) as h:
                while not stop.is_set():
                    start = time.monotonic()
                    assert h.get("/health").status_code == 200
                    health.append(time.monotonic() - start)
                    time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
        took = []
        try:
            for _ in range(2):
                start = time.monotonic()
                r = c.post("/api/ml/similar", json={"text": "clean the shelf", "limit": 5})
                took.append(time.monotonic() - start)
                assert r.status_code == 200 and r.json()["source"] == "openai", r.text
        finally:
            stop.set()
            poller.join(30)
    prompt = fake_openai.prompts()[0]
    listed = [line for line in prompt.splitlines()[2:] if line]
    assert len(listed) <= 200 and len(prompt) < 16_000 + 200, (len(listed), len(prompt))
    assert all("room 99" in line for line in listed[:50])  # the 50 not done (rooms 9950-9999) come first
    assert "Emma" not in prompt
    assert max(health) < 0.5 and len(health) > 5, (max(health), len(health))
    assert took[1] < took[0], took  # the titles are sanitized once
    print(f"\nsimilar over 10,000 tasks, ml-service down: {took[0]:.2f} s then {took[1]:.2f} s; prompt "
          f"{len(prompt)} chars, {len(listed)} tasks; /health max {max(health) * 1000:.0f} ms over {len(health)}")
