"""What may leave the house (the egress policy) and the household's redactor: sanitized off the event loop, cached
by text and names version, assignees counted as names."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from app.core.config import SOURCES
from app.services.egress import MANAGED, POLICY, Egress, allows, task_text
from app.services.sanitize import Sanitized


def test_notes_and_photos_never_leave_the_house() -> None:
    for endpoint, sources in POLICY.items():
        assert "ml-service" in sources, endpoint  # everything can be answered in the house
        for source in MANAGED:
            assert not allows(endpoint, source, "notes"), (endpoint, source)
            assert not allows(endpoint, source, "image"), (endpoint, source)
    assert set(POLICY["classify-image"]) == {"ml-service"}
    assert set(MANAGED) | {"ml-service"} == set(SOURCES)


def test_a_task_as_each_source_sees_it() -> None:
    assert task_text("similar", "ml-service", "Feed the cat", "vet: Dr. Wolff") == "Feed the cat. vet: Dr. Wolff"
    assert task_text("similar", "vertex", "Feed the cat", "vet: Dr. Wolff") == "Feed the cat"
    assert task_text("recommend", "openai", "Feed the cat", "vet: Dr. Wolff") == "Feed the cat"
    with pytest.raises(PermissionError):
        task_text("categorize", "openai", "Feed the cat", None)  # categorize sends the request's text only


def test_sanitizing_runs_off_the_event_loop_and_is_cached() -> None:
    egress = Egress(cache_size=100)
    redactor = egress.redactor(["Emma Smith", "Maximilian"])
    threads: set[str] = set()
    sanitize = redactor.sanitizer.sanitize

    def spy(text: str):  # type: ignore[no-untyped-def]
        threads.add(threading.current_thread().name)
        return sanitize(text)

    redactor.sanitizer.sanitize = spy  # type: ignore[method-assign]
    texts = [f"Maximilian walks the dog {i} times" for i in range(50)]

    async def main() -> tuple[float, float]:
        start = time.perf_counter()
        first = await redactor.clean(texts)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        again = await redactor.clean(texts)
        assert [s.text for s in first] == [s.text for s in again]
        return cold, time.perf_counter() - start

    cold, warm = asyncio.run(main())
    assert threading.main_thread().name not in threads  # never on the loop's thread
    assert warm < cold / 5
    out = asyncio.run(redactor.clean(["Maximilian walks the dog"]))[0]
    assert "Maximilian" not in out.text and out.mapping


def test_a_new_name_is_a_new_version() -> None:
    egress = Egress()
    before = egress.redactor(["Emma"])
    text = "Lukas takes the bins out"
    assert asyncio.run(before.clean([text]))[0].text == text
    after = egress.redactor(["Emma", "Lukas"])  # an assignee or member named Lukas came
    assert after.version != before.version
    assert "Lukas" not in asyncio.run(after.clean([text]))[0].text
    assert egress.redactor([" Lukas ", "Emma"]).version == after.version  # the same household


def test_restore_leaves_placeholders_that_stand_for_two_people() -> None:
    """Texts are sanitized one by one, so one placeholder may stand for two values in two pieces: those stay."""
    redactor = Egress().redactor(["Emma", "Lukas"])
    (piece,) = asyncio.run(redactor.clean(["Emma walks the dog"]))
    (emma,) = piece.mapping
    assert redactor.restore(f"like {emma}'s walks", [piece]) == "like Emma's walks"
    one, two = Sanitized("[P] cooks", {"[P]": "Emma"}), Sanitized("[P] bakes", {"[P]": "Lukas"})
    assert redactor.restore("ask [P]", [one, two]) == "ask [P]"
    assert redactor.restore("ask [P]", [one, one]) == "ask Emma"
