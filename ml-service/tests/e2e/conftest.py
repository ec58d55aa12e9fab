"""e2e fixtures: the real models (built once per session) and the real server on an ephemeral port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from ml_service_testing.process import spawn, stop, wait_ready

REPO = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The real model repository (MODEL_CACHE_DIR or <repo>/models), built if missing or stale."""
    from ml_service.modelbuild import build_all, missing_models

    root = Path(os.environ.get("MODEL_CACHE_DIR", REPO / "models"))
    if missing_models(root):
        build_all(root)
    assert not missing_models(root)
    return root


class Server:
    """A running `ml-service serve` process."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc, self.url, self.log = proc, url, log

    def client(self, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, **kw)  # type: ignore[arg-type]


def start_server(model_dir: Path, tmp: Path, env: dict[str, str] | None = None, timeout: float = 120,
                 port: int | None = None, ready: str = "/health/ready") -> Server:
    """Start the real server and wait until `ready` answers 200."""
    port = port or free_port()
    log = tmp / f"server-{port}.log"
    full_env = {**os.environ, "MODEL_CACHE_DIR": str(model_dir), "ML_SERVICE_PORT": str(port),
                "ML_SERVICE_HOST": "127.0.0.1", **(env or {})}
    exe = Path(sys.executable).with_name("ml-service")
    proc = spawn([str(exe), "serve"], log, env=full_env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, f"{url}{ready}", log, timeout)
    except RuntimeError:
        stop(proc)
        raise
    return Server(proc, url, log)


def stop_server(server: Server) -> None:
    stop(server.proc, grace=20)


@pytest.fixture(scope="session")
def server(real_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server with every real model preloaded (no auth)."""
    s = start_server(real_models, tmp_path_factory.mktemp("server"), {"ML_SERVICE_PRELOAD": "*"})
    yield s
    stop_server(s)


@pytest.fixture(scope="session")
def secured_server(real_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server with bearer auth on (keys 'key-one' and 'key-two'), lazy loading."""
    s = start_server(real_models, tmp_path_factory.mktemp("secured"), {"ML_SERVICE_SECRET": "key-one,key-two"})
    yield s
    stop_server(s)
