"""Issue 18.7-12 and 18.16 on the real server with the real models: what goes wrong on disk while a client sends
requests without pause never takes traffic, never takes a working model out, and shows where it happened."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from tests.e2e.conftest import Server, start_server, stop_server

EXE = str(Path(sys.executable).with_name("ml-service"))
TASK = {"model_type": "task", "data": {"text": "Mow the lawn"}}


def _copy(real_models: Path, tmp: Path, *names: str) -> Path:
    """A repository of our own: the named models copied (they change), the others linked."""
    root = tmp / "models"
    root.mkdir()
    for model in ("text-embedding", "task-category"):
        if model in names:
            shutil.copytree(real_models / model, root / model)
        else:
            (root / model).symlink_to(real_models / model)
    return root


@contextmanager
def _traffic(server: Server, body: dict[str, Any]) -> Iterator[list[tuple[int, str, str]]]:
    """A client sending `body` without pause; yields its answers (status, version, label or error code)."""
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()

    def run() -> None:
        with server.client() as c:
            while not stop.is_set():
                r = c.post("/inference", json=body)
                doc = r.json()
                if r.status_code == 200:
                    answers.append((200, doc["version"], doc["outputs"][0].get("label", "")))
                else:
                    answers.append((r.status_code, "", doc["error"]["code"]))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        time.sleep(0.5)
        yield answers
        time.sleep(0.5)
    finally:
        stop.set()
        worker.join(60)


def _reload(server: Server) -> dict[str, Any]:
    with server.client() as c:
        r = c.post("/models/reload")
        assert r.status_code == 200, r.text
        report: dict[str, Any] = r.json()
        return report


def _model(server: Server, name: str) -> dict[str, Any]:
    with server.client() as c:
        return next(m for m in c.get("/models").json()["models"] if m["name"] == name)


def _add(root: Path, name: str, source: Path, version: int | None = None) -> None:
    args = [EXE, "models", "add", name, str(source), "--model-dir", str(root)]
    r = subprocess.run(args + (["--version", str(version)] if version else []), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


def test_a_truncated_version_never_goes_live_and_a_failed_one_never_replaces_a_removed_default(
        real_models: Path, tmp_path: Path) -> None:
    """18.7 (`latest`: a truncated ONNX published with `models add` became the default; 3,526 x 503 in 4 s) and
    18.7 (`all`: removing the live version made a failed one the default), 18.12 (one failed new version marked
    the serving model failed and /health degraded)."""
    root = _copy(real_models, tmp_path, "task-category")
    toml = root / "task-category" / "model.toml"
    toml.write_text(toml.read_text().replace('version_policy = "all"', 'version_policy = "latest"'))
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_REPOSITORY_POLL_S": "1"})
    try:
        bad = tmp_path / "bad"
        shutil.copytree(root / "task-category" / "1", bad)
        data = (bad / "model.onnx").read_bytes()
        (bad / "model.onnx").write_bytes(data[: len(data) // 3])  # truncated
        with _traffic(server, TASK) as answers:
            _add(root, "task-category", bad, 3)
            time.sleep(3.0)  # three re-reads: the same broken files are tried once
        assert server.log.read_text().count("task-category version 3 did not go live") == 1
        assert answers and {a[:2] for a in answers} == {(200, "2")}, {a for a in answers if a[0] != 200}
        model = _model(server, "task-category")
        rows = {v["version"]: v for v in model["version_details"]}
        assert model["state"] == "ready" and model["default_version"] == "2" and model["error"] is None
        assert rows["3"]["state"] == "failed" and rows["3"]["error"] == "model file unreadable or corrupt"
        with server.client() as c:
            assert c.get("/health").json()["status"] == "ok"  # the model serves: the failure is on its row
        # `all`: the default leaves the disk; the newest *working* version takes over, not the failed 3
        toml.write_text(toml.read_text().replace('version_policy = "latest"', 'version_policy = "all"'))
        _reload(server)
        with _traffic(server, TASK) as answers:
            shutil.rmtree(root / "task-category" / "2")
            time.sleep(3.0)
        assert {a[0] for a in answers} == {200} and answers[-1][1] == "1", {a for a in answers if a[0] != 200}
        assert _model(server, "task-category")["default_version"] == "1"
        with server.client() as c:
            r = c.post("/inference", json={**TASK, "version": "3"})
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_failed"
            assert "retry-after" not in r.headers  # only new files or an explicit load retry it (18.16)
            stats = c.get("/stats").json()["models"]
            assert ("task-category", "2") not in {(s["model"], s["version"]) for s in stats}  # left the disk
    finally:
        stop_server(server)


def test_a_syntax_error_in_model_toml_keeps_the_model_serving(real_models: Path, tmp_path: Path) -> None:
    """18.8: every version was unloaded (4,973 x 503)."""
    root = _copy(real_models, tmp_path, "task-category")
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_REPOSITORY_POLL_S": "1"})
    try:
        toml = root / "task-category" / "model.toml"
        with _traffic(server, TASK) as answers:
            toml.write_text(toml.read_text().replace("[batching]", "[batching\n"))
            time.sleep(3.0)
        assert answers and {a[0] for a in answers} == {200}
        model = _model(server, "task-category")
        assert model["state"] == "ready" and "not valid TOML" in model["manifest_error"]
        assert "serving with the last good model.toml" in server.log.read_text()
    finally:
        stop_server(server)


def test_labels_belong_to_a_version_and_a_change_is_checked_before_it_serves(real_models: Path,
                                                                              tmp_path: Path) -> None:
    """18.9: editing labels.txt relabeled the running version ("Mow the lawn" -> shopping 487 of 644 times) and a
    13th label was accepted."""
    root = _copy(real_models, tmp_path, "task-category")
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_REPOSITORY_POLL_S": "1"})
    labels = root / "task-category" / "labels.txt"
    original = labels.read_text().splitlines()
    try:
        with _traffic(server, TASK) as answers:
            labels.write_text("\n".join([*original, "garage"]) + "\n")  # a 13th label: refused, not served
            time.sleep(3.0)
        assert answers and {a[:3] for a in answers} == {(200, "2", "garden")}
        rows = {v["version"]: v for v in _model(server, "task-category")["version_details"]}
        assert rows["2"]["state"] == "ready" and "labels do not match the model's outputs" in rows["2"]["error"]
        assert "the previous files keep serving" in rows["2"]["error"]
        with _traffic(server, TASK) as answers:  # the same count in another order: checked, then switched to
            labels.write_text("\n".join(reversed(original)) + "\n")
            deadline = time.monotonic() + 30
            relabeled = list(reversed(original))[original.index("garden")]
            while not answers or answers[-1][2] != relabeled:
                assert time.monotonic() < deadline, "the new labels never went live"
                time.sleep(0.2)
        assert {a[0] for a in answers} == {200} and {a[2] for a in answers} <= {"garden", relabeled}
        model = _model(server, "task-category")
        assert model["state"] == "ready" and model["labels"] == 12
        assert {v["version"]: v["error"] for v in model["version_details"]}["2"] is None
    finally:
        stop_server(server)


def test_republishing_a_version_number_serves_its_new_weights(real_models: Path, tmp_path: Path) -> None:
    """18.10: republishing the same version kept the old weights, even after POST /models/reload."""
    root = _copy(real_models, tmp_path, "text-embedding")
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "text-embedding", "ML_SERVICE_REPOSITORY_POLL_S": "0"})
    body = {"model_type": "bert", "version": "1", "data": {"text": "Clean the gutters"}}

    def embedding(c: httpx.Client, version: str) -> np.ndarray:
        r = c.post("/inference", json={**body, "version": version})
        assert r.status_code == 200, r.text
        return np.array(r.json()["outputs"][0]["embedding"])

    try:
        with server.client() as c:
            fp32, int8 = embedding(c, "1"), embedding(c, "2")
            assert not np.array_equal(fp32, int8)
            shutil.rmtree(root / "text-embedding" / "1")
            _add(root, "text-embedding", root / "text-embedding" / "2", 1)  # version 1 again, with v2's weights
            assert _reload(server)["republished"] == ["text-embedding:1"]
            np.testing.assert_array_equal(embedding(c, "1"), int8)
    finally:
        stop_server(server)


def test_a_version_written_in_place_goes_live_once_its_files_are_complete(real_models: Path,
                                                                          tmp_path: Path) -> None:
    """18.11: a version copied in place slowly failed once and was never retried."""
    root = _copy(real_models, tmp_path, "task-category")
    server = start_server(root, tmp_path, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_REPOSITORY_POLL_S": "1"})
    try:
        src, dst = root / "task-category" / "1", root / "task-category" / "3"
        dst.mkdir()
        shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
        data = (src / "model.onnx").read_bytes()
        with _traffic(server, TASK) as answers:
            with open(dst / "model.onnx", "wb") as f:  # a slow copy: half now, the rest after two re-reads
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(2.5)
                f.write(data[len(data) // 2:])
            deadline = time.monotonic() + 30
            while not answers or answers[-1][1] != "3":
                assert time.monotonic() < deadline, "version 3 never went live"
                time.sleep(0.2)
        assert {a[0] for a in answers} == {200}
        assert "task-category version 3 did not go live" in server.log.read_text()  # it had failed once
    finally:
        stop_server(server)
