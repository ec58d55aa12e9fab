"""e2e: the real ml-service (real models) and the real backend, each `uvicorn` on an ephemeral port, and the fake
managed API; started and stopped by these fixtures."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from ml_service_testing.process import spawn, stop, wait_ready

BACKEND = Path(__file__).resolve().parents[2]
REPO = BACKEND.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proc:
    """A server process of the e2e tests (ml-service or the backend)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, ready_url: str, log: Path) -> None:
        self.args, self.env, self.cwd, self.ready_url, self.log = args, env, cwd, ready_url, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> Proc:
        self.proc = spawn(self.args, self.log, env={**os.environ, **self.env}, cwd=self.cwd)
        try:
            wait_ready(self.proc, self.ready_url, self.log, timeout)
        except RuntimeError:
            stop(self.proc)
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            stop(self.proc, grace=30, sig=sig)


    @property
    def url(self) -> str:
        return self.ready_url.rsplit("/", 1)[0]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serving(proc: Proc, timeout: float = 60) -> Iterator[httpx.Client]:
    """The process started, and a client to it; stopped on the way out."""
    proc.start()
    try:
        with httpx.Client(base_url=proc.url, timeout=timeout) as client:
            yield client
    finally:
        proc.stop()


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A port that takes connections and never answers (what a hung peer looks like from outside)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield int(s.getsockname()[1])


def service_account_key(path: Path, token_uri: str) -> Path:
    """A real service-account key file (a fresh RSA key) whose token endpoint is the stand-in's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({"type": "service_account", "project_id": "household", "private_key_id": "k1",
                                "private_key": pem, "client_email": "backend@household.iam.gserviceaccount.com",
                                "client_id": "1", "token_uri": token_uri}))
    return path


@pytest.fixture(scope="session")
def real_models() -> Path:
    from ml_service.modelbuild import build_all, missing_models

    root = Path(os.environ.get("MODEL_CACHE_DIR", REPO / "models"))
    if missing_models(root):
        build_all(root)
    return root


def ml_service_proc(models: Path, port: int, tmp: Path) -> Proc:
    return Proc([str(BIN / "ml-service"), "serve", "--port", str(port)],
                {"MODEL_CACHE_DIR": str(models), "ML_SERVICE_PRELOAD": "*", "ML_SERVICE_SECRET": "ml-secret"},
                REPO, f"http://127.0.0.1:{port}/health/ready", tmp / f"ml-service-{port}.log")


def backend_proc(ml_port: int, tmp: Path, **env: str) -> Proc:
    port = free_port()
    full = {"ML_SERVICE_URL": f"http://127.0.0.1:{ml_port}", "ML_SERVICE_SECRET": "ml-secret",
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / f'household-{port}.db'}", "OPENAI_API_KEY": "",
            "BREAKER_COOLDOWN_S": "2", "ML_SERVICE_TIMEOUT_S": "3", **env}
    return Proc([str(BIN / "uvicorn"), "app.main:app", "--port", str(port)], full, BACKEND,
                f"http://127.0.0.1:{port}/health", tmp / f"backend-{port}.log")


@pytest.fixture(scope="session")
def ml_service(real_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc = ml_service_proc(real_models, port, tmp_path_factory.mktemp("ml")).start()
    yield port
    proc.stop()


@pytest.fixture
def backend(ml_service: int, tmp_path: Path) -> Iterator[httpx.Client]:
    proc = backend_proc(ml_service, tmp_path).start()
    with httpx.Client(base_url=proc.ready_url.rsplit("/", 1)[0], timeout=60) as client:
        yield client
    proc.stop()
