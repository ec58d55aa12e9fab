"""Small helpers over the docker CLI for the deployment tests (no Docker SDK: the CLI is what users run)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
#: what the tests measured (image sizes, build and start times), printed at the end of the run
REPORT: dict[str, Any] = {}


def sh(cmd: list[str], timeout: float = 900, env: dict[str, str] | None = None, cwd: Path = REPO) -> str:
    """Run a command; its stdout, or the test fails with the end of what it printed."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, **(env or {})})
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return done.stdout


def build(docker: str, tag: str, context: Path, dockerfile: Path | None = None, **args: str) -> None:
    """`docker build --network host` with build args; records the build time and the image's size."""
    cmd = [docker, "build", "--network", "host", "-q", "-t", tag]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    if dockerfile is not None:
        cmd += ["-f", str(dockerfile)]
    start = time.monotonic()
    sh([*cmd, str(context)], timeout=1800, env={"DOCKER_BUILDKIT": "0"})
    size = int(sh([docker, "image", "inspect", "-f", "{{.Size}}", tag]).strip())
    REPORT[tag] = {"build_s": round(time.monotonic() - start, 1), "size_mb": round(size / 1e6)}


class Container:
    """One `docker run -d --network host` container, removed when the test ends."""

    def __init__(self, docker: str, name: str, image: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.docker, self.name = docker, name
        cmd = [docker, "run", "-d", "--name", name, "--network", "host"]
        for k, v in (env or {}).items():
            cmd += ["-e", f"{k}={v}"]
        subprocess.run([docker, "rm", "-f", name], capture_output=True)
        self.started = time.monotonic()
        sh([*cmd, *args, image])

    def logs(self) -> str:
        done = subprocess.run([self.docker, "logs", self.name], capture_output=True, text=True, timeout=60)
        return done.stdout + done.stderr

    def inspect(self, fmt: str) -> str:
        return sh([self.docker, "inspect", "-f", fmt, self.name]).strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def wait_http(self, url: str, timeout: float = 180) -> float:
        """Seconds from `docker run` until `url` answers 200; fails with the container's log if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            if not self.running():
                break
            time.sleep(0.25)
        raise AssertionError(f"{url} never answered 200; the container's log:\n{self.logs()[-4000:]}")

    def remove(self) -> None:
        subprocess.run([self.docker, "rm", "-f", self.name], capture_output=True, timeout=120)
