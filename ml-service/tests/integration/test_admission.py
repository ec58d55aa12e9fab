"""Auth on every route class, rate limits (memory and a real Redis) on every protocol, the client's deadline."""

from __future__ import annotations

import contextlib
import time

import pytest

from .helpers import wait_ready

ROW = {"x": [[1, 2, 3, 4]]}
AUTH = {"Authorization": "Bearer tok-1"}


def _infer(client, protocol: str, headers=None):  # type: ignore[no-untyped-def]
    if protocol == "native":
        return client.post("/inference", headers=headers, json={"model_type": "bert", "data": {"text": "a"}})
    if protocol == "v2":
        return client.post("/v2/models/text-embedding/infer", headers=headers, json={"inputs": [
            {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}]})
    return client.post("/v1/embeddings", headers=headers, json={"model": "bert", "input": "a"})


OPEN = ["/health/live", "/health/ready", "/v2/health/live", "/v2/health/ready", "/dashboard"]
PROTECTED_GET = ["/models", "/stats", "/metrics", "/openapi.json", "/docs", "/v2", "/v2/models/text-embedding",
                 "/v2/models/text-embedding/ready", "/v1/models", "/v1/models/text-embedding"]
PROTECTED_POST = ["/inference", "/v1/embeddings", "/embeddings", "/v2/models/text-embedding/infer",
                  "/models/text-embedding/load", "/models/text-embedding/unload", "/v2/repository/index",
                  "/v2/repository/models/text-embedding/load", "/v2/repository/models/text-embedding/unload"]


def test_auth_on_every_route_class(onnx_repo, app_client):
    with app_client(onnx_repo.root, secret="tok-1,tok-2") as client:
        wait_ready(client)
        for path in OPEN:
            assert client.get(path).status_code in (200, 503), path
        assert client.get("/health").json() == {"status": "degraded"}  # no details without a token
        details = client.get("/health", headers=AUTH).json()
        assert set(details) >= {"status", "ready", "models"}
        assert client.get("/health", headers={"Authorization": "Bearer wrong"}).json() == {"status": "degraded"}
        for method, paths in (("GET", PROTECTED_GET), ("POST", PROTECTED_POST)):
            for path in paths:
                for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dG9rLTE="},
                                {"Authorization": "Bearer"}):
                    r = client.request(method, path, headers=headers, json={})
                    assert r.status_code == 401, (method, path, headers, r.status_code)
                    assert r.headers["www-authenticate"] == "Bearer"
                    assert "error" in r.json()
                ok = client.request(method, path, headers={"Authorization": "Bearer tok-2"}, json={})
                assert ok.status_code != 401, (method, path)
        body = client.post("/v1/embeddings", json={"model": "bert", "input": "a"}).json()
        assert body["error"]["type"] == "authentication_error"  # each protocol's own error shape


def test_rate_limits_on_every_protocol_with_headers(onnx_repo, app_client):
    with app_client(onnx_repo.root, rate_limit="5/minute") as client:
        wait_ready(client)
        for protocol in ("native", "v2", "openai"):
            client.app.gate.limiter = type(client.app.gate.limiter)(client.app.settings)  # a fresh budget
            answers = [_infer(client, protocol) for _ in range(7)]
            assert [a.status_code for a in answers] == [200] * 5 + [429] * 2, protocol
            first, refused = answers[0], answers[5]
            assert first.headers["x-ratelimit-limit"] == "5" and first.headers["x-ratelimit-remaining"] == "4"
            assert refused.headers["x-ratelimit-remaining"] == "0" and int(refused.headers["retry-after"]) >= 1
            assert int(refused.headers["x-ratelimit-reset"]) > time.time()
            assert "rate limit" in str(refused.json()["error"])
        assert client.get("/health").status_code == 200  # probes and reads are not limited


def test_rate_limits_per_client(onnx_repo, app_client):
    with app_client(onnx_repo.root, rate_limit="3/minute", secret="tok-1,tok-2") as client:
        wait_ready(client)
        assert [_infer(client, "native", AUTH).status_code for _ in range(4)] == [200, 200, 200, 429]
        other = {"Authorization": "Bearer tok-2"}  # another key: its own budget
        assert _infer(client, "native", other).status_code == 200


def test_rate_limits_can_count_items(onnx_repo, app_client):
    with app_client(onnx_repo.root, rate_limit="6/minute", rate_limit_cost="items") as client:
        wait_ready(client)
        texts = {"model_type": "bert", "data": {"texts": ["a", "b", "c", "d"]}}
        assert client.post("/inference", json=texts).status_code == 200
        r = client.post("/inference", json=texts)  # 8 of 6: refused, and nothing spent
        assert r.status_code == 429 and r.headers["retry-after"]
        two = {"model_type": "bert", "data": {"texts": ["a", "b"]}}
        assert client.post("/inference", json=two).status_code == 200  # 6 of 6
        assert client.post("/inference", json={"model_type": "bert", "data": {"text": "a"}}).status_code == 429


def _texts(n: int) -> dict[str, object]:
    return {"model_type": "bert", "data": {"texts": ["a"] * n}}


def test_items_over_the_whole_budget_are_413_at_the_boundary(onnx_repo, app_client):
    """A request that no wait could admit is refused for what it is (413 with the limit), not with a 429 whose
    Retry-After a client would honour forever; nothing is spent."""
    with app_client(onnx_repo.root, rate_limit="3/minute;50/hour", rate_limit_cost="items") as client:
        wait_ready(client)  # the model takes 4 items a request: the rate limit is the tighter one
        over = client.post("/inference", json=_texts(4))
        assert over.status_code == 413 and "retry-after" not in over.headers
        error = over.json()["error"]
        assert error["code"] == "payload_too_large" and "at most 3 per minute" in error["message"]
        openai = client.post("/v1/embeddings", json={"model": "bert", "input": ["a"] * 4})
        assert openai.status_code == 413 and "at most 3" in openai.json()["error"]["message"]
        exact = client.post("/inference", json=_texts(3))  # the whole budget, nothing spent before
        assert exact.status_code == 200 and exact.headers["x-ratelimit-remaining"] == "0"
        assert client.post("/inference", json=_texts(1)).status_code == 429


def test_a_429_says_how_much_budget_is_left(onnx_repo, app_client):
    with app_client(onnx_repo.root, rate_limit="6/minute", rate_limit_cost="items") as client:
        wait_ready(client)
        assert client.post("/inference", json=_texts(4)).headers["x-ratelimit-remaining"] == "2"
        refused = client.post("/inference", json=_texts(3))
        assert refused.status_code == 429 and refused.headers["x-ratelimit-remaining"] == "2"
        assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-limit"] == "6"
        fits = client.post("/inference", json=_texts(2))
        assert fits.status_code == 200 and fits.headers["x-ratelimit-remaining"] == "0"


def test_failing_closed_when_redis_stops_is_its_own_503(onnx_repo, app_client, tmp_path):
    """A real redis-server, stopped while the service runs: fail closed answers 503 `rate_limit_unavailable` with
    Retry-After in every protocol's shape (the model is fine: not `model_unavailable`); fail open admits."""
    from ml_service_testing.redis import RedisUnavailable, redis_server

    for mode in ("closed", "open"):
        with contextlib.ExitStack() as redis:
            try:
                url = redis.enter_context(redis_server(tmp_path))
            except RedisUnavailable as e:
                pytest.skip(str(e))
            with app_client(onnx_repo.root, rate_limit="100/minute", redis_url=url, rate_limit_fail=mode) as client:
                wait_ready(client)
                assert _infer(client, "native").status_code == 200
                redis.close()  # redis-server stops
                answers = {p: _infer(client, p) for p in ("native", "v2", "openai")}
                if mode == "open":
                    assert {a.status_code for a in answers.values()} == {200}
                    continue
                for protocol, r in answers.items():
                    assert r.status_code == 503 and r.headers["retry-after"] == "1", (protocol, r.text)
                    assert "rate_limit_unavailable" in r.text or "rate-limit store" in r.text, protocol
                assert answers["native"].json()["error"]["code"] == "rate_limit_unavailable"
                assert answers["openai"].json()["error"]["code"] == "rate_limit_unavailable"
                assert "ml_service_rate_limit_store_errors_total 3.0" in client.get("/metrics").text


def test_a_shared_budget_in_redis_and_failing_open_or_closed(onnx_repo, app_client, redis_url):
    with app_client(onnx_repo.root, rate_limit="4/minute", redis_url=redis_url) as one, \
            app_client(onnx_repo.root, rate_limit="4/minute", redis_url=redis_url) as two:
        wait_ready(one)
        wait_ready(two)
        codes = [_infer(c, "native").status_code for c in (one, two, one, two, one, two)]
        assert codes == [200, 200, 200, 200, 429, 429]  # two apps, one budget
    for mode, expected in (("open", 200), ("closed", 503)):
        with app_client(onnx_repo.root, rate_limit="4/minute", redis_url="redis://127.0.0.1:9/0",
                        rate_limit_fail=mode) as client:
            wait_ready(client)
            r = _infer(client, "native")
            assert r.status_code == expected, (mode, r.text)
            assert expected == 200 or r.json()["error"]["code"] == "rate_limit_unavailable"
            assert "ml_service_rate_limit_store_errors_total 1.0" in client.get("/metrics").text


def test_the_clients_own_deadline(tmp_path, make_model, fake_manifest, app_client):
    make_model(tmp_path, "slow", fake_manifest(delay_ms=300))
    with app_client(tmp_path, preload="slow", request_timeout_s=5) as client:
        wait_ready(client)
        body = {"model_type": "slow", "data": {"inputs": ROW}}
        r = client.post("/inference", json=body, headers={"X-Request-Timeout-Ms": "50"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "deadline_exceeded"
        assert client.post("/inference", json=body, headers={"X-Request-Timeout-Ms": "999999"}).status_code == 200
        for bad in ("abc", "0", "-5", "1.5", "123456789", "9" * 400):  # at most 8 digits (grpc-timeout's rule)
            r = client.post("/inference", json=body, headers={"X-Request-Timeout-Ms": bad})
            assert r.status_code == 400 and "X-Request-Timeout-Ms" in r.json()["error"]["message"], bad
        assert client.post("/inference", json=body, headers={"X-Request-Timeout-Ms": "99999999"}).status_code == 200
        assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("value", ["10/minute", "20/second;600/minute", ""])
def test_rate_limit_settings_parse(value, settings_for, tmp_path):
    assert settings_for(tmp_path, rate_limit=value).rate_limit == value


def test_a_bad_rate_limit_setting_says_how_to_write_one(settings_for, tmp_path):
    with pytest.raises(ValueError, match="600/minute"):
        settings_for(tmp_path, rate_limit="lots")
