"""Fixtures for the deployment tests: the repository, free ports, and a real Docker engine for the docker tests
(started with `dockerd --bridge=none --iptables=false` when none runs, stopped afterwards)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "backend"))  # the backend's settings (`app.core.config`) for the environment checks
sys.path.insert(0, str(Path(__file__).parent))
from dockerutil import REPORT, build, sh  # noqa: E402 (after the path above)

BASE_IMAGE = "ml-service-base:bookworm"
IMAGE, IMAGE_BACKEND = "ml-service:0.1.0", "ml-service-backend:0.1.0"  # the tags docker-compose.yml names
TOKEN = "tok-docker-test-5b1f"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_cli() -> str:
    """Debian's client when both are there (it matches Debian's engine); else whatever `docker` is on PATH."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def _engine_answers(docker: str) -> bool:
    return subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


def installed(binary: str) -> str | None:
    """The path of a program (root's sbin included, where Debian puts daemons)."""
    return shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}",) if Path(p).exists()), None)


def apt_install(package: str, binary: str) -> str | None:
    """Debian's `package` installed when `binary` is missing (root with apt-get only); the reason it could not
    be, else None."""
    if installed(binary):
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"no {binary}, and no root apt-get to install Debian's {package}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "install", "-y", "-qq", package], ["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", package]):
        done = subprocess.run(cmd, capture_output=True, env=env, timeout=900).returncode == 0
        if done and cmd[1] == "install":
            return None
    return f"apt-get install {package} failed"


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The docker CLI, talking to a running engine: the machine's, or one started here for the session."""
    problem = apt_install("docker.io", "dockerd")
    if problem:
        pytest.skip(f"Docker cannot be had here: {problem}")
    cli = docker_cli()
    if _engine_answers(cli):
        yield cli
        return
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["dockerd", "--bridge=none", "--iptables=false"], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not _engine_answers(cli):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            # an engine that cannot run here (no overlay/cgroups in a sandbox) is a machine's limit, not our fault
            pytest.skip(f"dockerd could not start on this machine; its log ends:\n{log.read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield cli
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="session")
def base_image(docker: str) -> str:
    start = time.monotonic()
    sh([str(REPO / "deploy" / "docker" / "base-image.sh"), BASE_IMAGE], env={"DOCKER": docker})
    REPORT["base image (mmdebstrap + import, or cached)"] = {"s": round(time.monotonic() - start, 1)}
    return BASE_IMAGE


@pytest.fixture(scope="session")
def images(docker: str, base_image: str) -> dict[str, str]:
    """The CPU image and the backend's, built offline from the host's wheelhouses."""
    sh([str(REPO / "deploy" / "docker" / "wheelhouse.sh"), "cpu", "backend"])
    build(docker, IMAGE, REPO / "ml-service", BASE_IMAGE=base_image, WHEELHOUSE="wheelhouse")
    build(docker, IMAGE_BACKEND, REPO / "backend", BASE_IMAGE=base_image, WHEELHOUSE="wheelhouse")
    return {"ml-service": IMAGE, "backend": IMAGE_BACKEND}


@pytest.fixture(scope="session")
def real_models() -> Path:
    """The real model repository (`make models`; MODEL_CACHE_DIR or <repo>/models)."""
    root = Path(os.environ.get("MODEL_CACHE_DIR", REPO / "models"))
    if not (root / "text-embedding" / "model.toml").exists():
        pytest.fail(f"no models in {root}: run `make models` first (`make test-docker` does)")
    return root


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the docker tests measured (image sizes, build and start times): docs/deploy.md quotes these."""
    from dockerutil import REPORT

    if REPORT:
        terminalreporter.section("deployment measurements")
        for key, value in REPORT.items():
            terminalreporter.write_line(f"{key}: {value}")
