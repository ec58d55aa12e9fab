"""Servers the tests start for real: each in its own process group with its output in a log file, ready once a URL
answers 200, stopped with SIGTERM (what a deployment sends) and SIGKILL only after a grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `args` in a new process group, stdout and stderr appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 120,
               interval: float = 0.2) -> None:
    """Until `url` answers 200; RuntimeError with the end of the log if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"{url} not ready after {timeout} s:\n{_tail(log)}")


def stop(proc: subprocess.Popen[bytes], grace: float = 20, sig: int = signal.SIGTERM) -> None:
    """Signal the process group (SIGTERM: drain and exit), then SIGKILL it if it outlives `grace` seconds."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _tail(log: Path) -> str:
    try:
        return log.read_text(errors="replace")[-3000:]
    except OSError:
        return "(no log)"
