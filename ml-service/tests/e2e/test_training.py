"""Teaching the classifier (issue 21 part 2) on the real server with the real models: a household re-files a task
and adds a category; the new head is trained on the shared encoder, compared, published and goes live while a
client categorizes without pause; rollback brings the old answers back at once, survives a reload, and a newer
publication ends it. Plus the refusals at their boundaries and the offline CLI."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_server, stop_server

EXE = str(Path(sys.executable).with_name("ml-service"))
DATA = Path(__file__).resolve().parents[2] / "data" / "task_category.csv"
TOKEN = "train-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLANTS = ["Water the houseplants", "Repot the monstera", "Mist the orchids", "Fertilize the fiddle leaf fig",
          "Prune the basil on the windowsill", "Dust the leaves of the rubber plant", "Move the cactus into the sun",
          "Check the succulents for root rot", "Propagate the pothos cuttings", "Water the ferns in the bathroom",
          "Buy potting soil for the peace lily", "Turn the pots so the plants grow evenly"]
UNSEEN_PLANTS = ["Water the spider plant", "Repot the aloe vera", "Feed the houseplants with liquid fertilizer",
                 "Check if the peace lily needs water"]


def make_repo(real_models: Path, tmp: Path) -> Path:
    """task-category copied with the dataset it was built from beside it (as `make models` writes it), its encoder
    linked."""
    root = tmp / "models"
    root.mkdir()
    (root / "text-embedding").symlink_to(real_models / "text-embedding")
    shutil.copytree(real_models / "task-category", root / "task-category",
                    ignore=shutil.ignore_patterns("examples.csv", "rollback.json"))
    shutil.copyfile(DATA, root / "task-category" / "examples.csv")
    return root


def lesson() -> list[dict[str, str]]:
    return [{"text": t, "label": "plants"} for t in PLANTS] + [{"text": "  DESCALE the kettle ", "label": "cleaning"}]


def categorize(c: httpx.Client, texts: list[str]) -> tuple[str, list[str]]:
    r = c.post("/inference", json={"model_type": "task", "data": {"texts": texts}}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["version"], [o["label"] for o in r.json()["outputs"]]


def default(c: httpx.Client) -> tuple[str, list[str]]:
    m = next(m for m in c.get("/models", headers=AUTH).json()["models"] if m["name"] == "task-category")
    return m["default_version"], m["rolled_back"]


def wait_job(c: httpx.Client, job_id: str, timeout: float = 120) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/models/jobs/{job_id}", headers=AUTH).json()
        if job["state"] in ("succeeded", "failed"):
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.3)


@pytest.fixture(scope="module")
def served(real_models: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("train")
    root = make_repo(real_models, tmp)
    server = start_server(root, tmp, {"ML_SERVICE_PRELOAD": "task-category", "ML_SERVICE_SECRET": TOKEN,
                                      "ML_SERVICE_REPOSITORY_POLL_S": "0", "ML_SERVICE_TRAIN_MAX_EXAMPLES": "20",
                                      "ML_SERVICE_TRAIN_MAX_BODY_BYTES": "4096"},
                          ready="/health/live")
    with server.client() as c:  # ready needs the token here: wait for the preload through /models
        deadline = time.monotonic() + 60
        while default(c)[0] is None or c.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    yield server, root
    stop_server(server)


def test_refusals_at_their_boundaries(served) -> None:  # type: ignore[no-untyped-def]
    server, _ = served
    ok = {"text": "Water the tomatoes", "label": "garden"}
    cases = [
        ({"examples": [ok]}, {}, 401, "unauthorized"),
        ({"examples": []}, AUTH, 422, "invalid_input"),
        ({"examples": [ok, {"text": "  ", "label": "garden"}]}, AUTH, 422, "examples[1].text is blank"),
        ({"examples": [ok, {"text": "x", "label": " "}]}, AUTH, 422, "examples[1].label is blank"),
        ({"examples": [{"text": "x", "label": "a" * 65}]}, AUTH, 422, "limit is 64"),
        ({"examples": [ok] * 21}, AUTH, 413, "limit is 20"),
        ({"examples": [ok], "holdout": 0}, AUTH, 422, "holdout"),
        ({"examples": [ok], "holdout": 0.51}, AUTH, 422, "holdout"),
        ({"examples": [ok, {"text": "y", "label": "a" * 64}], "include_base": False, "holdout": 0.5, "seed": "1"},
         AUTH, 422, "seed"),
        ({"examples": [ok], "include_base": False}, AUTH, 422, "at least 2"),
    ]
    with server.client() as c:
        for body, headers, status, says in cases:
            r = c.post("/models/task-category/train", json=body, headers=headers)
            assert r.status_code == status and says in r.text, (body, r.status_code, r.text)
            assert set(r.json()) == {"error"}
        r = c.post("/models/task-category/train", json={"examples": [ok] * 20, "include_base": False}, headers=AUTH)
        assert r.status_code == 422 and "at least 2" in r.text  # 20 examples pass the count (the limit is 20)
        for size, status in ((4096, 422), (4097, 413)):  # the body limit is ML_SERVICE_TRAIN_MAX_BODY_BYTES=4096
            head = b'{"examples": [], "pad": "'
            body = head + b"w" * (size - len(head) - 2) + b'"}'
            r = c.post("/models/task-category/train", content=body,
                       headers={**AUTH, "content-type": "application/json"})
            assert len(body) == size and r.status_code == status, (size, r.text)
        assert "ML_SERVICE_TRAIN_MAX_BODY_BYTES" in r.text
        assert c.post("/models/text-embedding/train", json={"examples": [ok]}, headers=AUTH).json()["error"][
            "code"] == "not_trainable"
        assert c.post("/models/nope/train", json={"examples": [ok]}, headers=AUTH).status_code == 404
        assert c.get("/models/jobs/nope", headers=AUTH).status_code == 404
        assert c.post("/models/task-category/train", content=b"{", headers=AUTH).status_code == 400
        assert default(c) == ("2", [])  # nothing started
    lesson_file = server.log.parent / "bad-lesson.csv"
    lesson_file.write_text("text,label\nRepot the monstera," + "p" * 65 + "\n")
    r = subprocess.run([EXE, "models", "train", "task", "--examples", str(lesson_file), "--url", server.url, "--token",
                        TOKEN], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "422" in r.stderr and "limit is 64" in r.stderr, r.stdout + r.stderr


def test_teach_a_category_then_roll_back(served) -> None:  # type: ignore[no-untyped-def]
    server, root = served
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def client() -> None:
        with server.client() as c:
            while not stop.is_set():
                r = c.post("/inference", json={"model_type": "task", "data": {"text": "Mow the lawn"}}, headers=AUTH)
                answers.append((r.status_code, r.json().get("version", "") if r.status_code == 200 else r.text))
                time.sleep(0.01)

    worker = threading.Thread(target=client)
    worker.start()
    try:
        with server.client() as c:
            assert categorize(c, ["descale the kettle"]) == ("2", ["kitchen"])
            r = c.post("/models/task-category/train", json={"examples": lesson()}, headers=AUTH)
            assert r.status_code == 202, r.text
            assert r.json()["state"] == "queued" and r.json()["model"] == "task-category"
            again = c.post("/models/task-category/train", json={"examples": lesson()}, headers=AUTH)
            assert again.status_code == 409 and again.json()["error"]["code"] == "training_in_progress"
            job = wait_job(c, r.json()["job_id"])
            report = job["report"]
            print(json.dumps({k: v for k, v in report.items() if k not in ("new", "served")}))
            print("new", report["new"]["accuracy"], "served", report["served"]["accuracy"],
                  report["served"]["macro_f1"])
            assert job["state"] == "succeeded" and job["error"] is None, job
            assert job["published"] and job["live"] and job["version"] == "3", job
            assert report["decision"] == "published" and report["new_labels"] == ["plants"]
            assert report["labels"][-1] == "plants" and report["n_test"] == 242 and report["compared"] == 240
            assert report["base"]["examples"] == 960 and report["base"]["relabelled"] == 1
            assert report["served"]["version"] == "2" and set(report["served"]["per_label"]) >= {"kitchen", "car"}
            old = report["new_on_served_labels"]["accuracy"]
            assert old >= report["served"]["accuracy"] - 0.01 and 0.9 <= report["agreement"] <= 1  # within a point
            assert default(c) == ("3", [])  # live now, not at the next poll (ML_SERVICE_REPOSITORY_POLL_S=0)
            version, labels = categorize(c, [*UNSEEN_PLANTS, "descale the kettle", "Pay the water bill"])
            assert version == "3" and labels[-2:] == ["cleaning", "bills"], labels
            assert labels[:4].count("plants") >= 3, labels
            card = next(v for m in c.get("/models", headers=AUTH).json()["models"] if m["name"] == "task-category"
                        for v in m["version_details"] if v["version"] == "3")["card"]
            assert card["report"]["decision"] == "published" and "held-out accuracy" in card["accuracy"]
            assert (root / "task-category" / "3" / "examples.csv").read_text().count("\n") == 973

            r = c.post("/models/task-category/rollback", headers=AUTH)  # the old answers back, at once
            assert r.status_code == 200 and r.json() == {"model": "task-category", "default_version": "2",
                                                         "rolled_back": "3"}
            assert categorize(c, ["descale the kettle"]) == ("2", ["kitchen"])
            assert c.post("/models/reload", headers=AUTH).status_code == 200
            assert default(c) == ("2", ["3"])  # survives a re-read of the repository
            pinned = c.post("/inference", json={"model_type": "task", "version": 3, "data": {"text": "Mist the fern"}},
                            headers=AUTH)
            assert pinned.status_code == 200 and pinned.json()["version"] == "3"  # still pinnable under `all`
        time.sleep(0.3)
        r = subprocess.run([EXE, "models", "rollback", "task-category", "--url", server.url, "--token", TOKEN],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and json.loads(r.stdout)["default_version"] == "1", r.stdout + r.stderr
        r = subprocess.run([EXE, "models", "rollback", "task-category", "--url", server.url, "--token", TOKEN],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 1 and "no_previous_version" in r.stderr, r.stdout + r.stderr
        r = subprocess.run([EXE, "models", "add", "task-category", str(root / "task-category" / "1"), "--model-dir",
                            str(root)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "version 4" in r.stdout, r.stdout + r.stderr
        with server.client() as c:
            assert c.post("/models/task-category/load", headers=AUTH).status_code == 200
            assert default(c) == ("4", [])  # a newer version ends the rollback
            assert not (root / "task-category" / "rollback.json").exists()
    finally:
        stop.set()
        worker.join(60)
    failures = [a for a in answers if a[0] != 200]
    assert not failures, failures[:5]
    versions = [v for _, v in answers]
    switches = [(a, b) for a, b in itertools.pairwise(versions) if a != b]
    assert switches[0] == ("2", "3"), switches  # learning: one switch; then the rollbacks and the new version
    assert [b for _, b in switches] == ["3", "2", "1", "4"][:len(switches)], switches


def test_offline_cli_trains_on_the_repositorys_own_encoder_and_publishes(real_models: Path, tmp_path: Path) -> None:
    root = make_repo(real_models, tmp_path)
    gardening = ["Mow the lawn", "Rake the leaves", "Weed the flower beds", "Trim the hedge", "Plant the tulip bulbs",
                 "Clean the gutters of leaves"]
    examples = tmp_path / "lesson.jsonl"
    examples.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for lab, texts in
                                (("plants", PLANTS[:6]), ("garden", gardening)) for t in texts))
    r = subprocess.run([EXE, "models", "train", "task", "--examples", str(examples), "--model-dir", str(root),
                        "--no-base", "--holdout", "0.2", "--seed", "3", "--force"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)
    report = out["report"]
    assert out["published"] and out["version"] == "3" and report["decision"] in ("published", "forced")
    assert report["labels"] == ["garden", "plants"] and report["n_test"] == 2 and report["compared"] == 1
    assert len(report["dropped_labels"]) == 11  # only these examples: the served labels without any are gone
    assert report["base"]["note"] == "not asked for" and report["seed"] == 3
    mdir = root / "task-category"
    assert (mdir / "3" / "labels.txt").read_text() == "garden\nplants\n"
    assert {p.name for p in (mdir / "3").iterdir()} == {"head.onnx", "labels.txt", "tokenizer.json", "examples.csv",
                                                        "card.json", "version.toml"}
    assert '[versions.3]\nfile = "head.onnx"\nencoder = "text-embedding"\nencoder_version = 2\n' in \
        (mdir / "model.toml").read_text()
    r = subprocess.run([EXE, "predict", "task", "--version", "3", "--text", "Repot the aloe vera", "--model-dir",
                        str(root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["outputs"][0]["label"] == "plants", r.stdout + r.stderr
    # the trained version alone, published to another repository (`models add`), brings its table and answers there
    (tmp_path / "other").mkdir()
    other = make_repo(real_models, tmp_path / "other")
    r = subprocess.run([EXE, "models", "add", "task-category", str(mdir / "3"), "--model-dir", str(other)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "version 3" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([EXE, "predict", "task", "--version", "3", "--text", "Repot the aloe vera", "--model-dir",
                        str(other)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["outputs"][0]["label"] == "plants", r.stdout + r.stderr
    r = subprocess.run([EXE, "models", "rollback", "task", "--model-dir", str(root)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout) == {"model": "task-category", "default_version": "2",
                                                          "rolled_back": "3"}, r.stdout + r.stderr
    r = subprocess.run([EXE, "models", "train", "task", "--examples", str(tmp_path / "none.csv"), "--model-dir",
                        str(root)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_the_numpy_head_matches_sklearn_on_a_real_split(real_models: Path) -> None:
    import csv

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ml_service.modelbuild.checks import embed_with_onnx
    from ml_service.training.linear import balanced_weights, fit_logistic, predict_proba

    rows = list(csv.DictReader(DATA.open(encoding="utf-8")))
    seen: dict[tuple[str, str], int] = {}
    picked = []
    for r in rows:  # the dataset's own split, 20 train and 10 test texts per label
        n = seen.get((r["label"], r["split"]), 0)
        if n < (20 if r["split"] == "train" else 10):
            seen[(r["label"], r["split"])] = n + 1
            picked.append(r)
    enc = real_models / "text-embedding" / "2"
    x = embed_with_onnx(enc / "model.onnx", enc / "tokenizer.json", [r["text"] for r in picked])
    names = sorted({r["label"] for r in picked})
    y = np.array([names.index(r["label"]) for r in picked])
    train = np.array([r["split"] == "train" for r in picked])
    w, b = fit_logistic(x[train], y[train], len(names), weights=balanced_weights(y[train], len(names)))
    ours = predict_proba(x[~train], w, b)
    ref = LogisticRegression(C=10.0, max_iter=5000, tol=1e-8, class_weight="balanced").fit(x[train], y[train])
    theirs = ref.predict_proba(x[~train])
    print("max abs diff", float(np.abs(ours - theirs).max()), "accuracy", float((ours.argmax(1) == y[~train]).mean()))
    assert (ours.argmax(1) == theirs.argmax(1)).all()
    assert np.abs(ours - theirs).max() < 1e-3
