"""`ml-service models import` on real checkpoints made offline here from the packaged weights (issue 21 part 1):
a MiniLM with a trained classification head saved by Transformers, the packaged MiniLM as a sentence-transformers
directory, and the packaged EfficientNet-Lite0 weights as a safetensors state dict. Each is imported, served by
the real server and checked against its source framework."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.modelbuild.checks import SHORT_TEXTS, photo_bytes
from ml_service.modelbuild.import_detect import ImageOptions, ImportOptions, sha256
from ml_service.modelbuild.importer import ImportResult, import_model
from ml_service.modelbuild.sources import minilm_dir
from ml_service.modelbuild.text import TASK_LABELS, load_task_dataset
from tests.e2e.conftest import Server, start_server, stop_server

EXE = str(Path(sys.executable).with_name("ml-service"))
TEXTS = [*SHORT_TEXTS, "Descale the kettle", "Feed the cat", "Renew the car insurance"]
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def make_classifier(out: Path) -> Path:
    """MiniLM with a 12-way head fitted on the household-task training split, saved with save_pretrained as
    BertForSequenceClassification (the encoder stays as packaged; the head is a logistic regression on its pooled
    output)."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(
        str(minilm_dir()), num_labels=len(TASK_LABELS), id2label=dict(enumerate(TASK_LABELS)),
        label2id={lab: i for i, lab in enumerate(TASK_LABELS)}).eval()
    texts, labels, splits = load_task_dataset()
    train = [(t, lab) for t, lab, s in zip(texts, labels, splits, strict=True) if s == "train"][::3]
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    enc = tok([t for t, _ in train], padding=True, truncation=True, max_length=64, return_tensors="pt")
    with torch.no_grad():
        pooled = model.bert(**enc).pooler_output.numpy()
    clf = LogisticRegression(C=10.0, max_iter=3000).fit(pooled, [TASK_LABELS.index(lab) for _, lab in train])
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(clf.coef_.astype(np.float32)))
        model.classifier.bias.copy_(torch.from_numpy(clf.intercept_.astype(np.float32)))
    model.save_pretrained(str(out))
    for f in TOKENIZER_FILES:
        shutil.copyfile(minilm_dir() / f, out / f)
    return out


def make_state_dict(out: Path) -> tuple[Path, Path]:
    """The packaged EfficientNet-Lite0 weights as a safetensors state dict, and the ImageNet labels file."""
    from safetensors.torch import save_file

    from ml_service.modelbuild.image import imagenet_labels, load_reference

    weights = out / "effnet-lite0.safetensors"
    save_file({k: v.contiguous() for k, v in load_reference().state_dict().items()}, str(weights))
    labels = out / "imagenet.txt"
    labels.write_text("\n".join(imagenet_labels()) + "\n", encoding="utf-8")
    return weights, labels


EFFNET_PRE = ["--image-size", "224", "--resize", "256", "--interpolation", "bicubic", "--mean", "127,127,127",
              "--std", "128,128,128"]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The three real checkpoints imported into one repository (the classifier through the CLI)."""
    tmp = tmp_path_factory.mktemp("import")
    root = tmp / "models"
    t = time.perf_counter()
    cls_dir = make_classifier(tmp / "minilm-task-classifier")
    weights, labels = make_state_dict(tmp)
    made = time.perf_counter() - t
    r = subprocess.run([EXE, "models", "import", str(cls_dir), "--name", "my-tasks", "--model-dir", str(root)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    results: dict[str, ImportResult] = {
        "my-embedding": import_model(minilm_dir(), "my-embedding", root),
        "my-images": import_model(weights, "my-images", root, ImportOptions(
            arch="efficientnet-lite0", labels_file=labels,
            image=ImageOptions(224, 256, "bicubic", [127.0] * 3, [128.0] * 3))),
    }
    cards = {n: json.loads((root / n / "1" / "card.json").read_text()) for n in ("my-tasks", *results)}
    print(f"\nmade checkpoints in {made:.1f} s; import seconds: "
          + ", ".join(f"{n} {c['import_seconds']}" for n, c in cards.items()))
    for n, c in cards.items():
        print(n, json.dumps({"parity": c["parity"], "versions": c["versions"]}, default=str))
    return {"root": root, "cli": r.stdout, "cards": cards, "cls_dir": cls_dir, "weights": weights,
            "labels": labels, "tmp": tmp}


@pytest.fixture(scope="module")
def server(imported: dict[str, Any]) -> Iterator[Server]:
    s = start_server(imported["root"], imported["tmp"], {"ML_SERVICE_PRELOAD": "*",
                                                          "ML_SERVICE_REPOSITORY_POLL_S": "0"})
    yield s
    stop_server(s)


def infer(server: Server, model: str, data: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"model_type": model, "data": data} | ({"version": version} if version else {})
    with server.client() as c:
        r = c.post("/inference", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def probabilities(answer: dict[str, Any], labels: list[str]) -> np.ndarray:
    return np.array([[{t["label"]: t["score"] for t in o["top_k"]}[lab] for lab in labels]
                     for o in answer["outputs"]])


def test_classifier_checkpoint_serves_as_transformers_does(imported: dict[str, Any], server: Server) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    card = imported["cards"]["my-tasks"]
    assert card["architecture"] == "BertForSequenceClassification" and card["labels"] == TASK_LABELS
    assert card["parity"]["fp32_min_cosine"] >= 0.9999 and card["parity"]["fp32_top1_agreement"] == 1.0
    assert "published: my-tasks versions" in imported["cli"]
    model = AutoModelForSequenceClassification.from_pretrained(str(imported["cls_dir"])).eval()
    tok = AutoTokenizer.from_pretrained(str(imported["cls_dir"]))
    with torch.no_grad():
        ref = torch.softmax(model(**tok(TEXTS, padding=True, return_tensors="pt")).logits, -1).numpy()
    fp32 = infer(server, "my-tasks", {"texts": TEXTS, "top_k": 12}, version="1")
    assert np.abs(probabilities(fp32, TASK_LABELS) - ref).max() < 1e-4
    served = infer(server, "my-tasks", {"texts": TEXTS, "top_k": 12})
    assert served["version"] == str(card["default_version"])
    assert [o["label"] for o in served["outputs"]] == [TASK_LABELS[i] for i in ref.argmax(1)]
    assert [o["label"] for o in served["outputs"]][-3:] == ["kitchen", "pets", "car"]  # the head was trained


def test_sentence_transformers_directory_serves_its_embeddings(imported: dict[str, Any], server: Server) -> None:
    from sentence_transformers import SentenceTransformer

    card = imported["cards"]["my-embedding"]
    assert card["text"] == {"pooling": "mean", "normalize": True, "max_tokens": 256}
    assert card["parity"]["fp32_min_cosine"] >= 0.9999 and card["parity"]["int8_mean_cosine"] >= 0.99
    assert card["versions"]["2"]["precision"] == "int8" and card["default_version"] == 2
    assert card["parity"]["int8_batch_invariance_bit_identical"] == 1.0
    ref = SentenceTransformer(str(minilm_dir()), device="cpu").encode(TEXTS, normalize_embeddings=True)
    for version, bound in (("1", 0.9999), (None, 0.99)):
        got = np.array([o["embedding"] for o in infer(server, "my-embedding", {"texts": TEXTS}, version)["outputs"]])
        cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() >= bound, (version, cos.min())


def test_state_dict_image_classifier_serves_as_pytorch_does(imported: dict[str, Any], server: Server) -> None:
    import torch

    from ml_service.modelbuild.image import load_reference, preprocess_reference

    card = imported["cards"]["my-images"]
    assert card["weights_sha256"] == sha256(imported["weights"]) and card["architecture"] == "efficientnet-lite0"
    assert list(card["versions"]) == ["1"] and card["parity"]["fp32_top1_agreement"] == 1.0
    photos = photo_bytes()
    labels = imported["labels"].read_text().splitlines()
    with torch.no_grad():
        ref = load_reference()(torch.from_numpy(np.concatenate([preprocess_reference(b) for b in photos.values()])))
    images = [base64.b64encode(b).decode() for b in photos.values()]
    got = [o["label"] for o in infer(server, "my-images", {"images": images})["outputs"]]
    assert got == [labels[i] for i in ref.numpy().argmax(1)]
    assert got[0] == "espresso"


def test_card_and_models_listing(imported: dict[str, Any], server: Server) -> None:
    with server.client() as c:
        models = {m["name"]: m for m in c.get("/models").json()["models"]}
    for name, card in imported["cards"].items():
        shown = models[name]["card"]
        assert shown["weights_sha256"] == card["weights_sha256"] and shown["architecture"] == card["architecture"]
        assert "batch 16" in shown["latency"] and "MB" in shown["sizes"]
        for v in card["versions"].values():
            assert v["latency_ms"]["batch_1"] > 0 and v["latency_ms"]["batch_16"] > 0 and v["size_mb"] > 1


def test_onnx_file_becomes_the_next_version_and_goes_live(imported: dict[str, Any], server: Server) -> None:
    """An ONNX file with its task and labels is validated and published as is, as the model's next version; the
    running server picks it up as after `models add`."""
    root: Path = imported["root"]
    onnx_file = imported["tmp"] / "effnet.onnx"
    shutil.copyfile(root / "my-images" / "1" / "model.onnx", onnx_file)
    r = subprocess.run([EXE, "models", "import", str(onnx_file), "--name", "my-images", "--task",
                        "image-classification", "--labels", str(imported["labels"]), *EFFNET_PRE,
                        "--model-dir", str(root)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "published: my-images versions [2]" in r.stdout
    print(r.stdout.strip().splitlines()[-1])
    with server.client() as c:
        assert c.post("/models/reload").status_code == 200
    image = base64.b64encode(photo_bytes()["coffee"]).decode()
    answer = infer(server, "my-images", {"images": [image]})
    assert answer["version"] == "2" and answer["outputs"][0]["label"] == "espresso"
