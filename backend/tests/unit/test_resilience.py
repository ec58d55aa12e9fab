"""Retries, backoff and the circuit breaker of the ML client, against httpx.MockTransport."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from app.services import resilience
from app.services.ml_client import MLServiceClient, MLServiceRejected, MLServiceShedding, MLServiceUnavailable
from app.services.resilience import CircuitBreaker, CircuitOpen, RetryPolicy, call_with_retries, request_budget

OK = {"model": "text-embedding", "version": "2", "outputs": [{"embedding": [0.1, 0.2]}], "timings_ms": {}}


class Script:
    """A transport answering a scripted list of responses (or exceptions), recording each request."""

    def __init__(self, *steps: Any) -> None:
        self.steps = list(steps)
        self.calls = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        step = self.steps.pop(0) if self.steps else self.steps_default
        if isinstance(step, Exception):
            raise step
        status, body, headers = step
        return httpx.Response(status, json=body, headers=headers)

    steps_default: Any = (200, OK, {})


def client(settings_for: Any, script: Script, breaker: CircuitBreaker | None = None,
           retries: int = 2) -> MLServiceClient:
    settings = settings_for(ml_service_secret="tok")
    http = MLServiceClient.make_http(settings, transport=httpx.MockTransport(script))
    return MLServiceClient(settings, http, breaker or CircuitBreaker(3, 10.0), RetryPolicy(retries, 0.01, 0.05))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_retries_503_and_429_honouring_retry_after(settings_for: Any, monkeypatch: Any) -> None:
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    script = Script((503, {"error": {}}, {"Retry-After": "0.2"}), (429, {"error": {}}, {"Retry-After": "0.1"}),
                    (200, OK, {}))
    out = run(client(settings_for, script).embed(["a"]))
    assert out == [[0.1, 0.2]] and script.calls == 3
    assert waits == [0.2, 0.1]


def test_connection_errors_are_retried_then_unavailable(settings_for: Any) -> None:
    script = Script(*[httpx.ConnectError("refused")] * 5)
    with pytest.raises(MLServiceUnavailable, match="cannot reach"):
        run(client(settings_for, script).embed(["a"]))
    assert script.calls == 3  # the first try and two retries


def test_a_connection_dropped_mid_answer_is_retried(settings_for: Any) -> None:
    script = Script(httpx.ReadError("connection reset"), httpx.RemoteProtocolError("closed"), (200, OK, {}))
    assert run(client(settings_for, script).embed(["a"])) == [[0.1, 0.2]] and script.calls == 3


def test_a_proxy_s_502_and_504_are_retried(settings_for: Any) -> None:
    """nginx in front of replicas answers 502/504 when the replica it picked dies mid-request: try again."""
    script = Script((502, {"error": {}}, {}), (504, {"error": {}}, {}), (200, OK, {}))
    assert run(client(settings_for, script).embed(["a"])) == [[0.1, 0.2]] and script.calls == 3


def test_a_500_is_not_retried(settings_for: Any) -> None:
    script = Script((500, {"error": {}}, {}), (200, OK, {}))
    with pytest.raises(MLServiceUnavailable, match="answered 500"):
        run(client(settings_for, script).embed(["a"]))
    assert script.calls == 1


def test_other_4xx_are_not_retried_and_say_why(settings_for: Any) -> None:
    script = Script((422, {"error": {"code": "invalid_input", "message": "data.text must be a string"}}, {}))
    with pytest.raises(MLServiceRejected) as info:
        run(client(settings_for, script).inference("bert", {"text": 1}))
    assert script.calls == 1 and info.value.status == 422 and "must be a string" in info.value.message


def test_a_retry_after_beyond_the_budget_is_not_waited_for(settings_for: Any) -> None:
    script = Script((503, {"error": {}}, {"Retry-After": "30"}), (200, OK, {}))
    with pytest.raises(MLServiceUnavailable):
        run(client(settings_for, script).embed(["a"]))
    assert script.calls == 1  # 30 s is past the 2 s budget: fail at once (and let the fallback answer)


@pytest.mark.parametrize("code", ["deadline_unreachable", "overloaded"])
def test_ml_service_shedding_load_is_the_next_source_s_turn_at_once(settings_for: Any, code: str) -> None:
    """Issue 23: ml-service refusing at once because it cannot answer within what we said is left (or its queue
    stands over its target) is not retried within the budget, even with a Retry-After that would fit, and does not
    count against its circuit: it is up and answers what it accepts in time."""
    shed = (503, {"error": {"code": code, "message": "model 'text-embedding:2' cannot answer in time"}},
            {"Retry-After": "1"})
    script = Script(*[shed] * 6, (200, OK, {}))
    breaker = CircuitBreaker(3, 10.0)
    c = client(settings_for, script, breaker)
    for _ in range(6):  # twice the breaker's threshold
        t0 = time.monotonic()
        with pytest.raises(MLServiceShedding, match="cannot answer in time"):
            run(c.embed(["a"]))
        assert time.monotonic() - t0 < 0.5  # no wait for the Retry-After
    assert script.calls == 6 and breaker.state == "closed"  # one call each; the circuit stays closed
    assert run(c.embed(["a"])) == [[0.1, 0.2]]


def test_a_full_queue_is_still_retried_after_its_retry_after(settings_for: Any, monkeypatch: Any) -> None:
    """queue_full says "room soon": unlike shedding, it is worth one more try within the budget."""
    waits: list[float] = []

    async def fake_sleep(s: float) -> None:
        waits.append(s)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    script = Script((503, {"error": {"code": "queue_full", "message": "full"}}, {"Retry-After": "0.3"}), (200, OK, {}))
    assert run(client(settings_for, script).embed(["a"])) == [[0.1, 0.2]]
    assert script.calls == 2 and waits == [0.3]


def test_the_breaker_opens_fails_fast_and_probes_after_the_cooldown(settings_for: Any) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=3, cooldown_s=10.0, clock=lambda: now[0])
    script = Script(*[(500, {"error": {}}, {})] * 3)
    c = client(settings_for, script, breaker, retries=0)
    for _ in range(3):
        with pytest.raises(MLServiceUnavailable):
            run(c.embed(["a"]))
    assert breaker.state == "open" and script.calls == 3
    with pytest.raises(MLServiceUnavailable, match="circuit is open"):
        run(c.embed(["a"]))
    assert script.calls == 3  # not even tried: no latency while ml-service is down
    now[0] = 11.0
    assert breaker.state == "half-open"
    assert run(c.embed(["a"])) == [[0.1, 0.2]]  # the probe succeeds: closed again
    assert breaker.state == "closed" and script.calls == 4


def test_a_failed_probe_opens_the_circuit_again(settings_for: Any) -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=lambda: now[0])
    script = Script(httpx.ConnectError("down"), httpx.ConnectError("still down"))
    c = client(settings_for, script, breaker, retries=0)
    with pytest.raises(MLServiceUnavailable):
        run(c.embed(["a"]))
    now[0] = 6.0
    with pytest.raises(MLServiceUnavailable):
        run(c.embed(["a"]))
    assert breaker.state == "open" and breaker.opened_at == 6.0


def test_client_errors_do_not_open_the_circuit(settings_for: Any) -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=5.0)
    script = Script(*[(422, {"error": {"code": "invalid_input", "message": "x"}}, {})] * 3)
    c = client(settings_for, script, breaker)
    for _ in range(3):
        with pytest.raises(MLServiceRejected):
            run(c.inference("bert", {}))
    assert breaker.state == "closed"


def test_the_token_and_the_body_are_sent(settings_for: Any) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"outputs": [{"label": "garden", "score": 0.9, "top_k": []}]})

    settings = settings_for(ml_service_secret="tok")
    c = MLServiceClient(settings, MLServiceClient.make_http(settings, transport=httpx.MockTransport(handler)))
    out = run(c.classify_text("task-category", ["Mow the lawn"], top_k=2))
    assert out[0].label == "garden"
    assert seen[0].headers["authorization"] == "Bearer tok" and seen[0].url.path == "/inference"
    assert b'"top_k":2' in seen[0].content.replace(b" ", b"")


def test_the_budget_bounds_every_attempt_not_only_the_waits(settings_for: Any) -> None:
    """A refused connection, then an attempt that hangs: the call ends at its 0.5 s budget (each attempt used to
    get the whole budget again)."""
    async def handler(request: httpx.Request) -> httpx.Response:
        if handler.calls == 0:  # type: ignore[attr-defined]
            handler.calls += 1  # type: ignore[attr-defined]
            raise httpx.ConnectError("refused")
        await asyncio.sleep(30)
        return httpx.Response(200, json=OK)

    handler.calls = 0  # type: ignore[attr-defined]
    settings = settings_for(ml_service_timeout_s=0.5)
    c = MLServiceClient(settings, MLServiceClient.make_http(settings, transport=httpx.MockTransport(handler)),
                        CircuitBreaker(3, 10.0), RetryPolicy(2, 0.01, 0.05))
    start = time.monotonic()
    with pytest.raises(MLServiceUnavailable, match=r"did not answer within 0\.5 s"):
        run(c.embed(["a"]))
    assert time.monotonic() - start < 0.7 and c.breaker.failures == 1


def test_ml_service_is_told_the_time_left(settings_for: Any) -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(int(request.headers["x-request-timeout-ms"]))
        return httpx.Response(503, json={"error": {}}, headers={"Retry-After": "0.2"}) if len(seen) == 1 else \
            httpx.Response(200, json=OK)

    settings = settings_for(ml_service_timeout_s=2.0)
    c = MLServiceClient(settings, MLServiceClient.make_http(settings, transport=httpx.MockTransport(handler)))
    run(c.embed(["a"]))
    assert 1900 <= seen[0] <= 2000 and seen[1] <= seen[0] - 200  # the retry is told what is left after the wait


def test_the_request_budget_cuts_a_call_short_without_blaming_the_source(settings_for: Any) -> None:
    """A source that gets only the end of a request's budget (the sources before it used the rest) is not blamed
    for running out of it; one that had the request's whole budget is."""
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=OK)

    async def late() -> None:
        with request_budget(1.0):
            await asyncio.sleep(0.8)  # what an earlier source took
            await c.embed(["a"])

    async def first() -> None:
        with request_budget(0.3):
            await c.embed(["a"])

    settings = settings_for(ml_service_timeout_s=5.0)
    c = MLServiceClient(settings, MLServiceClient.make_http(settings, transport=httpx.MockTransport(handler)))
    with pytest.raises(MLServiceUnavailable, match="in what was left of the request's budget"):
        run(late())
    assert c.breaker.failures == 0
    start = time.monotonic()
    with pytest.raises(MLServiceUnavailable, match=r"did not answer within 0\.3 s"):
        run(first())
    assert time.monotonic() - start < 0.5 and c.breaker.failures == 1

    async def spent() -> None:
        with request_budget(0.0):
            await c.embed(["a"])

    with pytest.raises(MLServiceUnavailable, match="no time left"):
        run(spent())


def test_a_cancelled_half_open_probe_lets_the_next_call_probe() -> None:
    """The probe's caller went away (cancelled): the breaker must not stay open for good."""
    now = [0.0]
    breaker = CircuitBreaker(failures=1, cooldown_s=5.0, clock=lambda: now[0], name="ml-service")
    breaker.failure()
    now[0] = 6.0

    async def hang(left: float) -> str:
        await asyncio.sleep(30)
        return "late"

    async def ok(left: float) -> str:
        return "answered"

    async def main() -> str:
        probe = asyncio.ensure_future(call_with_retries(hang, RetryPolicy(0), breaker, 10.0))
        await asyncio.sleep(0.05)
        with pytest.raises(CircuitOpen):  # one probe at a time
            await call_with_retries(ok, RetryPolicy(0), breaker, 10.0)
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe
        return await call_with_retries(ok, RetryPolicy(0), breaker, 10.0)

    assert run(main()) == "answered" and breaker.state == "closed"


def test_the_breaker_names_its_source(settings_for: Any) -> None:
    script = Script(*[(500, {"error": {}}, {})] * 3)
    c = client(settings_for, script, CircuitBreaker(failures=1, cooldown_s=60), retries=0)
    with pytest.raises(MLServiceUnavailable):
        run(c.embed(["a"]))
    with pytest.raises(MLServiceUnavailable, match="ml-service's circuit is open"):
        run(c.embed(["a"]))


@pytest.mark.parametrize(("answer", "says"), [
    (httpx.Response(200, text="<html>Welcome to nginx!</html>"), "not what was asked for"),
    (httpx.Response(200, json={}), r"outputs: Field required"),
    (httpx.Response(200, json={"outputs": []}), "0 outputs for 1 inputs"),
    (httpx.Response(200, json={"outputs": [{"embedding": []}]}), "outputs.0.embedding"),
    (httpx.Response(200, content=b'{"outputs": [{"embedding": [NaN]}]}'), "not what was asked for"),
])
def test_a_garbage_answer_is_ml_service_s_failure(settings_for: Any, answer: httpx.Response, says: str) -> None:
    breaker = CircuitBreaker(failures=2, cooldown_s=60)
    settings = settings_for()
    c = MLServiceClient(settings, MLServiceClient.make_http(settings, transport=httpx.MockTransport(lambda r: answer)),
                        breaker)
    with pytest.raises(MLServiceUnavailable, match=says):
        run(c.embed(["a"]))
    assert breaker.failures == 1  # counted, not retried


def test_a_label_outside_the_ones_asked_for_is_garbage(settings_for: Any) -> None:
    script = Script((200, {"outputs": [{"label": "spaceship", "score": 0.9, "top_k": []}]}, {}))
    with pytest.raises(MLServiceUnavailable, match="label outside"):
        run(client(settings_for, script).classify_text("task-category", ["x"], labels=("garden",)))


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_fall_back_and_are_logged_once(settings_for: Any, status: int,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    resilience._alarms.clear()
    script = Script(*[(status, {"error": {"code": "unauthorized", "message": "bad token"}}, {})] * 3)
    c = client(settings_for, script, CircuitBreaker(failures=5, cooldown_s=60))
    for _ in range(3):
        with pytest.raises(MLServiceUnavailable, match=f"refused our credentials \\({status}\\)"):
            run(c.embed(["a"]))
    alarms = [r for r in caplog.records if "CONFIGURATION" in r.getMessage()]
    assert len(alarms) == 1 and alarms[0].levelname == "ERROR" and "ML_SERVICE_SECRET" in alarms[0].getMessage()
    assert "tok" not in alarms[0].getMessage().replace("token", "")
    assert c.breaker.failures == 3 and script.calls == 3  # counted, never retried
