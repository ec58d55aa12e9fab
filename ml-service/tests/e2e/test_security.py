"""Issue 11 on the real server: token rotation without a restart, the secure default, one rate-limit budget for
two servers on one Redis, and a SIGTERM that drains."""

from __future__ import annotations

import concurrent.futures as cf
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import free_port, start_server, stop_server

EXE = str(Path(sys.executable).with_name("ml-service"))


def _embed(c: httpx.Client, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return c.post("/inference", headers=headers, json={"model_type": "bert", "data": {"text": "Buy milk"}}).status_code


def test_tokens_rotate_from_a_file_on_sighup(real_models: Path, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# one token a line\nold-token\n")
    server = start_server(real_models, tmp_path, {"ML_SERVICE_SECRET_FILE": str(tokens)})
    try:
        with server.client() as c:
            assert _embed(c, "old-token") == 200 and _embed(c, "new-token") == 401 and _embed(c) == 401
            tokens.write_text("old-token\nnew-token\n")  # rotation: both valid for a while
            os.kill(server.proc.pid, signal.SIGHUP)
            time.sleep(0.5)
            assert _embed(c, "new-token") == 200 and _embed(c, "old-token") == 200
            tokens.write_text("new-token\n")
            os.kill(server.proc.pid, signal.SIGHUP)
            time.sleep(0.5)
            assert _embed(c, "new-token") == 200 and _embed(c, "old-token") == 401
            assert c.get("/health/ready").status_code == 200  # probes stay open
        assert server.proc.poll() is None  # SIGHUP did not stop it
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert "new-token" not in log and "old-token" not in log and "bearer tokens reloaded" in log


def test_serving_a_public_address_needs_a_secret(real_models: Path) -> None:
    env = {**os.environ, "MODEL_CACHE_DIR": str(real_models)}
    env.pop("ML_SERVICE_SECRET", None)
    r = subprocess.run([EXE, "serve", "--host", "0.0.0.0", "--port", str(free_port())], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and "ML_SERVICE_SECRET" in r.stdout and "--insecure" in r.stdout
    port = free_port()
    proc = subprocess.Popen([EXE, "serve", "--host", "0.0.0.0", "--port", str(port), "--insecure"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise AssertionError("--insecure did not start")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_x_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path, make_model, fake_manifest) -> None:
    """The real server (uvicorn), requests from loopback that claim other addresses: with no trusted proxy they
    share the loopback peer's one budget; with ML_SERVICE_TRUSTED_PROXIES=127.0.0.1 each claimed address has its own."""
    make_model(tmp_path / "models", "sum", fake_manifest())
    body = {"model_type": "sum", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}}
    for trusted, expected in (("", [200] * 3 + [429] * 3), ("127.0.0.1", [200] * 6)):
        server = start_server(tmp_path / "models", tmp_path, {"ML_SERVICE_RATE_LIMIT": "3/minute",
                                                              "ML_SERVICE_TRUSTED_PROXIES": trusted,
                                                              "ML_SERVICE_PRELOAD": "sum"})
        try:
            with server.client() as c:
                codes = [c.post("/inference", json=body, headers={"X-Forwarded-For": f"203.0.113.{i}"}).status_code
                         for i in range(6)]
        finally:
            stop_server(server)
        assert codes == expected, (trusted, codes)


def test_aip_mode_must_say_yes_to_open_a_public_bind(tmp_path: Path) -> None:
    """Vertex mode allows a public bind without a secret, so only a clear yes turns it on; a value that is neither
    yes nor no stops the start with one line that says what is accepted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIP_", "ML_SERVICE_SECRET"))}
    env["MODEL_CACHE_DIR"] = str(tmp_path)
    args = [EXE, "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    r = subprocess.run(args, env={**env, "AIP_MODE": "0"}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "refusing to serve on 0.0.0.0 without a secret" in r.stdout
    r = subprocess.run(args, env={**env, "AIP_MODE": "perhaps"}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("invalid setting AIP_MODE: AIP_MODE='perhaps' is not understood"), r.stderr


def test_two_servers_share_one_budget_in_redis(real_models: Path, tmp_path: Path, redis_url: str) -> None:
    env = {"ML_SERVICE_RATE_LIMIT": "6/minute", "ML_SERVICE_REDIS_URL": redis_url, "ML_SERVICE_SECRET": "team-key",
           "ML_SERVICE_PRELOAD": "text-embedding"}
    one = start_server(real_models, tmp_path, env)
    two = start_server(real_models, tmp_path, env)
    try:
        with one.client() as a, two.client() as b:
            codes = [_embed(c, "team-key") for c in (a, b, a, b, a, b, a, b)]
            assert codes == [200] * 6 + [429] * 2, codes
            refused = a.post("/v1/embeddings", headers={"Authorization": "Bearer team-key"},
                             json={"model": "bert", "input": "x"})
            assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
            assert int(refused.headers["retry-after"]) >= 1 and refused.headers["x-ratelimit-remaining"] == "0"
    finally:
        stop_server(one)
        stop_server(two)


def test_sigterm_finishes_what_was_accepted(real_models: Path, tmp_path: Path) -> None:
    """SIGTERM under load: the server stops accepting, answers every request it had accepted, and exits 0."""
    server = start_server(real_models, tmp_path, {"ML_SERVICE_PRELOAD": "text-embedding",
                                                  "ML_SERVICE_SHUTDOWN_GRACE_S": "20",
                                                  "ML_SERVICE_TARGET_WAIT_MS": "0"})  # draining, not shedding
    texts = [f"clean the kitchen and vacuum the hall, item {i}" for i in range(200)]
    statuses: list[int] = []
    refused: list[str] = []
    sent = threading.Event()

    def client(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            while True:
                try:
                    r = c.post("/inference", json={"model_type": "bert", "data": {"texts": texts}})
                except httpx.HTTPError as exc:  # not accepted: the server had stopped listening
                    refused.append(type(exc).__name__)
                    return
                statuses.append(r.status_code)
                sent.set()
                if r.status_code != 200:
                    return

    with cf.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, i) for i in range(8)]
        assert sent.wait(60)
        time.sleep(0.5)
        answered_before = len(statuses)
        os.kill(server.proc.pid, signal.SIGTERM)
        code = server.proc.wait(60)
        for f in futures:
            f.result()
    assert code == 0, server.log.read_text()[-2000:]
    assert statuses and set(statuses) == {200}, statuses  # every answer a success: nothing cut off with an error
    assert len(statuses) > answered_before  # requests in flight at SIGTERM were finished, not dropped
    assert len(refused) == 8  # afterwards each client finds the door closed
