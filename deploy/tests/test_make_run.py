"""Issue 22: `make run` as a new user runs it: both servers come up, and Ctrl-C stops both with no error and an
exit status of 0 or 130 (it printed "Segmentation fault" and exited 143: its trap's `kill 0` re-ran the trap)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import REPO, free_port

MODELS = Path(os.environ.get("MODEL_CACHE_DIR", REPO / "models"))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listeners(port: int) -> list[int]:
    """Pids listening on a loopback port (from /proc), to check the servers are gone, not only silent."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                sockets = {os.readlink(fd).removeprefix("socket:[").rstrip("]") for fd in (proc / "fd").iterdir()}
            except OSError:
                continue
            if sockets & inodes:
                pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not (MODELS / "text-embedding" / "model.toml").exists(), reason="the real models are not built")
def test_ctrl_c_on_make_run_stops_both_servers_cleanly(tmp_path: Path) -> None:
    port, backend = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'household.db'}"}
    # `-o .venv/.installed`: the venv is the one running this test; a pyproject newer than its stamp must not
    # make this test reinstall it
    make = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed", "run", f"PORT={port}",
                             f"BACKEND_PORT={backend}",
                             f"MODEL_CACHE_DIR={MODELS}"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)  # its own group, as in a terminal
    try:
        deadline = time.monotonic() + 180
        while not (_answers(f"http://127.0.0.1:{port}/health/ready") and _answers(f"http://127.0.0.1:{backend}/health")):
            assert make.poll() is None, make.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, "make run never answered"
            time.sleep(0.5)
        servers = _listeners(port) + _listeners(backend)
        assert len(servers) == 2, servers
        os.killpg(make.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
        out, _ = make.communicate(timeout=60)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    text = out.decode(errors="replace")
    assert make.returncode in (0, 130, -signal.SIGINT), (make.returncode, text[-3000:])
    for bad in ("fault", "Traceback", "Error", "***", "Terminated", "Killed"):
        assert bad not in text, text[-3000:]
    assert "Finished server process" in text  # each shut down the graceful way
    time.sleep(0.5)
    assert not [pid for pid in servers if _alive(pid)]
    assert _listeners(port) == [] and _listeners(backend) == []
