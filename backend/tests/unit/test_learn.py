"""The app's loop: `POST /api/ml/learn` sends the household's examples to ml-service's train operation (played by
a stand-in speaking its contract on an ephemeral port), waits for the job and answers its report; rollback; one
learn at a time; ml-service unreachable or refusing; learning in the background after N corrections."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.fake_train import FakeTrainer


@pytest.fixture
def ml() -> Iterator[FakeTrainer]:
    with FakeTrainer() as server:
        yield server


def app_for(settings_for: Any, ml: FakeTrainer | None, **kw: Any) -> TestClient:
    url = ml.url if ml is not None else "http://127.0.0.1:9"
    return TestClient(create_app(settings_for(ml_service_url=url, ml_service_secret="ml-secret", **kw)),
                      raise_server_exceptions=False)


def teach(c: TestClient) -> None:
    """The household re-files the kettle and adds `plants` with examples."""
    kettle = c.post("/api/tasks", json={"title": "Descale the kettle"}).json()
    assert kettle["category"] == "kitchen"
    c.patch(f"/api/tasks/{kettle['id']}", json={"category": "cleaning"})
    assert c.post("/api/categories", json={"name": "plants"}).status_code == 201
    for title in ("Water the plants", "Repot the monstera", "Feed the orchids"):
        assert c.post("/api/tasks", json={"title": title, "category": "plants"}).status_code == 201


def wait_for(done: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.02)


def categorize(c: TestClient, text: str) -> tuple[str, str | None]:
    out = c.post("/api/ml/categorize", json={"text": text}).json()
    return out["category"], out["version"]


def test_learn_sends_the_examples_and_the_new_version_answers_until_rolled_back(settings_for: Any,
                                                                                 ml: FakeTrainer) -> None:
    with app_for(settings_for, ml) as c:
        teach(c)
        assert categorize(c, "Water the plants") == ("garden", "2")
        r = c.post("/api/ml/learn")
        assert r.status_code == 200, r.text
        out = r.json()
        assert (out["state"], out["published"], out["version"], out["live"], out["examples"]) == \
            ("succeeded", True, "3", True, 4)
        assert out["job_id"] == "job-1" and out["error"] is None
        assert out["report"]["decision"] == "published" and out["report"]["new_labels"] == ["cleaning", "plants"]
        sent = ml.trained[0]
        assert sent == {"examples": [{"text": "Descale the kettle", "label": "cleaning"},
                                     {"text": "Water the plants", "label": "plants"},
                                     {"text": "Repot the monstera", "label": "plants"},
                                     {"text": "Feed the orchids", "label": "plants"}],
                        "include_base": True, "holdout": 0.2, "seed": 0, "force": False}
        train = next(x for x in ml.requests if x.get("path") == "/models/task-category/train")
        assert train["headers"]["authorization"] == "Bearer ml-secret"
        assert categorize(c, "Water the plants") == ("plants", "3")  # a label the household added: valid
        assert categorize(c, "Descale the kettle") == ("cleaning", "3")
        r = c.post("/api/ml/rollback")
        assert r.status_code == 200 and r.json() == {"model": "task-category", "default_version": "2",
                                                     "rolled_back": "3"}
        assert categorize(c, "Water the plants") == ("garden", "2")  # the old answers are back
        again = c.post("/api/ml/rollback")
        assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_roll_back"


def test_a_label_neither_fixed_nor_added_is_still_an_invalid_answer(settings_for: Any, ml: FakeTrainer) -> None:
    ml.mode = "alien"
    with app_for(settings_for, ml) as c:
        r = c.post("/api/ml/categorize", json={"text": "Water the plants"})
        assert r.status_code == 503 and "outside the ones asked for" in r.json()["error"]["message"]
        task = c.post("/api/tasks", json={"title": "Water the plants"}).json()
        assert task["category"] is None  # stored without one


@pytest.mark.parametrize(("mode", "published", "state", "error"), [
    ("not_better", False, "succeeded", None), ("fail", False, "failed", "the examples hold one label only")])
def test_a_version_that_is_not_better_or_a_failed_job_is_answered_as_such(
        settings_for: Any, ml: FakeTrainer, mode: str, published: bool, state: str, error: str | None) -> None:
    with app_for(settings_for, ml) as c:
        teach(c)
        ml.mode = mode
        out = c.post("/api/ml/learn", json={"force": False}).json()
        assert (out["state"], out["published"], out["live"], out["error"]) == (state, published, published, error)
        assert categorize(c, "Water the plants") == ("garden", "2")


def test_one_learn_at_a_time(settings_for: Any, ml: FakeTrainer) -> None:
    ml.mode = "slow"
    with app_for(settings_for, ml) as c:
        teach(c)
        first: list[httpx.Response] = []
        runner = threading.Thread(target=lambda: first.append(c.post("/api/ml/learn")))
        runner.start()
        wait_for(lambda: bool(ml.trained))
        second = c.post("/api/ml/learn")
        assert second.status_code == 409 and second.json()["error"]["code"] == "learn_in_progress"
        assert categorize(c, "Water the plants") == ("garden", "2")  # categorize answers meanwhile
        ml.finish()
        runner.join(10)
        assert first[0].status_code == 200 and first[0].json()["version"] == "3"
        assert len(ml.trained) == 1


def test_past_learn_timeout_the_job_is_answered_202_and_can_be_followed(settings_for: Any,
                                                                         ml: FakeTrainer) -> None:
    ml.mode = "slow"
    with app_for(settings_for, ml, learn_timeout_s=0.5) as c:
        teach(c)
        r = c.post("/api/ml/learn")
        assert r.status_code == 202 and r.json()["state"] == "running" and not r.json()["published"]
        ml.finish()
        time.sleep(0.4)
        done = c.get(f"/api/ml/learn/{r.json()['job_id']}").json()
        assert (done["state"], done["published"], done["version"]) == ("succeeded", True, "3")
        assert c.get("/api/ml/learn/job-99").status_code == 404
        assert c.get("/api/ml/learn/..%2F").status_code in (404, 422)


@pytest.mark.parametrize(("mode", "status", "code"), [
    ("busy", 409, "training_in_progress"), ("reject", 422, "invalid_input"), ("no_route", 503, "learn_unavailable")])
def test_what_ml_service_refuses_is_a_clear_4xx_or_503(settings_for: Any, ml: FakeTrainer, mode: str, status: int,
                                                       code: str) -> None:
    with app_for(settings_for, ml) as c:
        teach(c)
        ml.mode = mode
        r = c.post("/api/ml/learn")
        assert r.status_code == status and r.json()["error"]["code"] == code, r.text
        if mode != "no_route":
            assert c.post("/api/ml/learn").status_code == status  # the lock was let go
        assert categorize(c, "Water the plants") == ("garden", "2")  # its circuit is closed: ml-service is up


def test_nothing_to_learn_and_no_ml_service(settings_for: Any) -> None:
    with app_for(settings_for, None) as c:
        r = c.post("/api/ml/learn")
        assert r.status_code == 409 and r.json()["error"]["code"] == "no_examples"
        c.post("/api/tasks", json={"title": "Water the plants", "category": "garden"})
        for path in ("/api/ml/learn", "/api/ml/rollback"):
            r = c.post(path)
            assert r.status_code == 503 and r.headers["retry-after"] == "5", r.text
            assert r.json()["error"]["code"] == "ml_service_unavailable" and "ml-secret" not in r.text
        assert c.post("/api/ml/learn", json={"force": "maybe"}).status_code == 422


def test_every_n_corrections_learn_in_the_background(settings_for: Any, ml: FakeTrainer) -> None:
    ml.mode = "slow"
    with app_for(settings_for, ml, learn_after_corrections=2) as c:
        a = c.post("/api/tasks", json={"title": "Descale the kettle"}).json()  # a model's: no correction
        c.patch(f"/api/tasks/{a['id']}", json={"category": "cleaning"})
        c.patch(f"/api/tasks/{a['id']}", json={"category": "cleaning"})  # the same label again: not new
        assert not ml.trained
        start = time.monotonic()
        r = c.post("/api/tasks", json={"title": "Water the plants", "category": "garden"})  # the second
        assert r.status_code == 201 and time.monotonic() - start < 1.0  # never waits for the learn
        wait_for(lambda: bool(ml.trained))
        assert len(ml.trained[0]["examples"]) == 2
        assert c.post("/api/ml/learn").status_code == 409  # the background learn holds the lock
        ml.finish()
        wait_for(lambda: not c.app.state.learner.running)  # type: ignore[attr-defined]
        assert categorize(c, "Water the plants") == ("garden", "3")


def test_a_background_learn_that_fails_is_logged_once_without_secrets(settings_for: Any,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    with app_for(settings_for, None, learn_after_corrections=1) as c, caplog.at_level(logging.WARNING):
        assert c.post("/api/tasks", json={"title": "Water the plants", "category": "garden"}).status_code == 201
        wait_for(lambda: any("background learn" in r.getMessage() for r in caplog.records))
    lines = [r for r in caplog.records if "background learn" in r.getMessage()]
    assert len(lines) == 1 and "ml_service_unavailable" in lines[0].getMessage() and lines[0].exc_info is None
    assert "ml-secret" not in caplog.text


def test_the_client_takes_the_contract_with_extra_fields_and_numbers_for_versions(settings_for: Any) -> None:
    """What ml-service may add (fields, a state of its own, numbers for versions) does not break the client; the
    examples go to ml-service only (the managed APIs cannot be trained)."""
    import asyncio

    from app.services.egress import POLICY
    from app.services.ml_client import MLServiceClient

    assert set(POLICY["learn"]) == {"ml-service"} and POLICY["learn"]["ml-service"] == {"title"}
    answers = {"/models/jobs/j1": {"job_id": "j1", "model": "task-category", "state": "cancelled", "version": 3,
                                   "published": False, "live": False, "report": None, "error": None, "eta_s": 4},
               "/models/task-category/rollback": {"model": "task-category", "default_version": 2, "rolled_back": 3,
                                                  "held_back": ["3"]}}
    settings = settings_for(ml_service_url="http://ml.test")
    client = MLServiceClient(settings, MLServiceClient.make_http(settings, httpx.MockTransport(
        lambda request: httpx.Response(200, json=answers[request.url.path]))))
    job = asyncio.run(client.job("j1"))
    assert (job.state, job.version, job.finished) == ("cancelled", "3", True)
    back = asyncio.run(client.rollback("task-category"))
    assert (back.default_version, back.rolled_back) == ("2", 3)
