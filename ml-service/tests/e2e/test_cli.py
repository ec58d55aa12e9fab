"""The `ml-service` command on the real models: predict in process, list and validate the repository."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from ml_service.modelbuild.checks import photo_bytes

EXE = str(Path(sys.executable).with_name("ml-service"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def test_predict_text_embedding(real_models: Path) -> None:
    r = run("predict", "text-embedding", "--text", "Clean the gutters", "--model-dir", str(real_models))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["model"] == "text-embedding" and out["version"] == "2"
    vec = np.array(out["outputs"][0]["embedding"])
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4


def test_predict_classifier_and_image(real_models: Path, tmp_path: Path) -> None:
    r = run("predict", "task", "--text", "Mow the lawn", "--text", "Book the car service", "--top-k", "2",
            "--model-dir", str(real_models))
    assert r.returncode == 0, r.stderr
    assert [o["label"] for o in json.loads(r.stdout)["outputs"]] == ["garden", "car"]
    photo = tmp_path / "coffee.png"
    photo.write_bytes(photo_bytes()["coffee"])
    r = run("predict", "cnn", "--image", str(photo), "--model-dir", str(real_models))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["outputs"][0]["label"] == "espresso"


def test_predict_errors_are_clear(real_models: Path) -> None:
    r = run("predict", "nope", "--text", "x", "--model-dir", str(real_models))
    assert r.returncode == 1 and "model_not_found" in r.stdout + r.stderr
    r = run("predict", "bert", "--model-dir", str(real_models))
    assert r.returncode == 2


def test_models_list_and_validate(real_models: Path, tmp_path: Path) -> None:
    r = run("models", "list", "--model-dir", str(real_models))
    assert r.returncode == 0
    for name in ("text-embedding", "intent-classifier", "task-category", "item-classifier"):
        assert name[:8] in r.stdout
    r = run("models", "validate", str(real_models))
    assert r.returncode == 0 and r.stdout.count("ok") >= 4
    bad = tmp_path / "broken"
    (bad / "1").mkdir(parents=True)
    (bad / "model.toml").write_text('task = "embedding"\n')  # a text task without a tokenizer
    r = run("models", "validate", str(bad))
    assert r.returncode == 1 and "tokenizer" in r.stdout


def test_validate_loads_what_it_checks(real_models: Path, tmp_path: Path) -> None:
    """Issue 9: a text file named model.onnx and a labels file that does not match the outputs are caught by
    `models validate` as they are by the server, and so is an alias another model holds."""
    import shutil

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "text-embedding").symlink_to(real_models / "text-embedding")  # the heads' encoder
    shutil.copytree(real_models / "task-category", repo / "task-category")
    shutil.copytree(real_models / "task-category", repo / "not-onnx")
    (repo / "not-onnx" / "1" / "model.onnx").write_text("this is not a model\n")
    shutil.copytree(real_models / "task-category", repo / "wrong-labels")
    (repo / "wrong-labels" / "labels.txt").write_text("a\nb\nc\n")
    for name in ("not-onnx", "wrong-labels"):  # their own aliases, so only the intended problem shows
        toml = repo / name / "model.toml"
        toml.write_text(toml.read_text().replace('aliases = ["task", "categorizer", "recommendation"]',
                                                 f'aliases = ["{name}-alias"]'))
    r = run("models", "validate", str(repo))
    assert r.returncode == 1
    lines = {line.split()[1].rstrip(":"): line for line in r.stdout.splitlines() if len(line.split()) > 1}
    assert lines["task-category"].startswith("ok")
    assert "version 1 does not load" in lines["not-onnx"]
    assert "12 classes but the labels file has 3" in lines["wrong-labels"]
    assert run("models", "validate", str(repo / "task-category")).returncode == 0
    assert run("models", "validate", str(repo / "not-onnx")).returncode == 1
    shutil.copytree(real_models / "task-category", repo / "copycat")  # claims 'task' too, with a newer model.toml
    (repo / "copycat" / "model.toml").touch()
    r = run("models", "validate", str(repo / "copycat"))
    assert r.returncode == 1 and "alias 'task' is already claimed by model 'task-category'" in r.stdout


def test_stats_prints_the_servers_windows(server) -> None:  # type: ignore[no-untyped-def]
    with server.client() as c:
        for _ in range(5):
            assert c.post("/inference", json={"model_type": "bert", "data": {"text": "Buy milk"}}).status_code == 200
    r = subprocess.run([EXE, "stats", "--url", server.url], capture_output=True, text=True, timeout=60,
                       env={**__import__("os").environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if "text-embedding" in line and " 1m " in line)
    assert "ready" in row and " 2 " in row  # version 2
    r = subprocess.run([EXE, "stats", "--url", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "cannot reach" in r.stdout + r.stderr
