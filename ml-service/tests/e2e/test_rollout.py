"""Model updates without a restart (issue 13), on the real server with the real models: a new version goes live
while a client sends requests without pause, an old one is removed, a corrupt one never replaces a working one."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.conftest import start_server, stop_server

EXE = str(Path(sys.executable).with_name("ml-service"))


def _repo(real_models: Path, tmp: Path) -> Path:
    """A repository of our own: task-category copied (it changes), its encoder linked."""
    root = tmp / "models"
    root.mkdir()
    (root / "text-embedding").symlink_to(real_models / "text-embedding")
    shutil.copytree(real_models / "task-category", root / "task-category")
    return root


def _versions(server, root: Path) -> dict[str, str]:  # type: ignore[no-untyped-def]
    with server.client() as c:
        m = next(m for m in c.get("/models").json()["models"] if m["name"] == "task-category")
    errors = {f"error {v['version']}": v["error"] for v in m["version_details"] if v["error"]}
    return {v["version"]: v["state"] for v in m["version_details"]} | {"default": m["default_version"]} | errors


def test_versions_go_live_and_leave_without_a_failed_request(real_models: Path, tmp_path: Path) -> None:
    root = _repo(real_models, tmp_path)
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_REPOSITORY_POLL_S": "1"})
    answers: list[tuple[float, int, str, float]] = []
    stop = threading.Event()

    def client() -> None:
        with server.client() as c:
            while not stop.is_set():
                t = time.monotonic()
                r = c.post("/inference", json={"model_type": "task", "data": {"text": "Mow the lawn"}})
                version = r.json().get("version", "") if r.status_code == 200 else ""
                answers.append((t, r.status_code, version, time.monotonic() - t))

    worker = threading.Thread(target=client)
    worker.start()
    try:
        time.sleep(1.0)
        published = time.monotonic()
        r = subprocess.run([EXE, "models", "add", "task-category", str(root / "task-category" / "1"), "--version",
                            "3", "--model-dir", str(root)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while not any(v == "3" for _, _, v, _ in answers[-5:]):  # picked up by the re-read, loaded, live
            assert time.monotonic() < deadline, "version 3 never went live"
            time.sleep(0.2)
        live = time.monotonic()
        shutil.rmtree(root / "task-category" / "2")  # the old default leaves the disk
        time.sleep(3.0)
        assert _versions(server, root).get("2") is None
        # a corrupt version: never replaces the working one
        bad = tmp_path / "bad"
        shutil.copytree(root / "task-category" / "1", bad)
        (bad / "model.onnx").write_bytes(b"this is not an ONNX model")
        r = subprocess.run([EXE, "models", "add", "task-category", str(bad), "--model-dir", str(root)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "version 4" in r.stdout, r.stdout + r.stderr
        r = subprocess.run([EXE, "models", "reload", "--url", server.url], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "model file unreadable or corrupt" in r.stdout, r.stdout
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(60)
        state = _versions(server, root)
        stop_server(server)
    statuses = [s for _, s, _, _ in answers]
    assert len(answers) > 50 and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}
    versions = [v for _, _, v, _ in answers]
    switch = versions.index("3")
    assert set(versions[:switch]) == {"2"} and set(versions[switch:]) == {"3"}  # one switch, never back
    during = [lat for t, _, _, lat in answers if published <= t <= live + 1.0]
    print(f"\nswitch: {len(during)} requests while version 3 loaded; p99 "
          f"{statistics.quantiles(during, n=100)[98] * 1000:.0f} ms, max {max(during) * 1000:.0f} ms; "
          f"overall p50 {statistics.median(lat for *_, lat in answers) * 1000:.1f} ms")
    assert state["default"] == "3" and state["3"] == "ready" and state["4"] == "failed", state
    assert state["error 4"] == "model file unreadable or corrupt"  # /models says why
    assert "did not go live (version 3 keeps serving)" in server.log.read_text()
