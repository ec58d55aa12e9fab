"""The real models against the packages' own PyTorch / sklearn inference, through the served code path."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.codecs import native
from ml_service.core import Core
from ml_service.modelbuild.checks import (
    INTENT_TEXTS,
    PHOTOS,
    embedding_checks,
    intent_checks,
    lee_corpus,
    lee_pearson,
    long_texts,
    photo_bytes,
    reference_encoder,
)
from ml_service.settings import Settings


def served(model_dir: Path, model: str, data: dict[str, Any], version: str | None = None) -> list[Any]:
    """Raw per-item results from the in-process service (the same code the server runs)."""

    async def run() -> list[Any]:
        core = Core.build(Settings(model_cache_dir=model_dir))
        core.repository.scan()
        try:
            resolved = await core.service.resolve(model, version)
            request, _ = native.decode(native.request(model, data, version), resolved.spec)
            return (await core.service.infer(request, resolved)).items
        finally:
            await core.stop()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def embedding_report(real_models: Path) -> dict[str, Any]:
    return embedding_checks(real_models / "text-embedding")


def test_fp32_embeddings_match_sentence_transformers(embedding_report: dict[str, Any]) -> None:
    assert embedding_report["fp32_max_abs_diff_short"] < 1e-4
    assert embedding_report["fp32_max_abs_diff_long"] < 1e-4
    assert max(embedding_report["long_text_tokens"]) > 128  # the packaged tokenizer's baked-in limit


def test_int8_embeddings_hold_accuracy(embedding_report: dict[str, Any]) -> None:
    assert embedding_report["int8_mean_cosine"] >= 0.99


def test_lee_similarity_figure_matches_reference(embedding_report: dict[str, Any]) -> None:
    # sentence-transformers' own figure on the same data, measured the same way
    assert embedding_report["lee_pearson_fp32"] == pytest.approx(embedding_report["lee_pearson_reference"], abs=1e-3)
    assert embedding_report["lee_pearson_served"] == pytest.approx(embedding_report["lee_pearson_reference"], abs=0.02)
    assert embedding_report["lee_pearson_reference"] > 0.5


def test_served_path_matches_reference_for_long_text(real_models: Path) -> None:
    texts = ["Buy milk", *long_texts()]
    items = served(real_models, "text-embedding", {"texts": texts}, version="1")
    got = np.stack([i.outputs["embedding"] for i in items])
    ref = reference_encoder().encode(texts, convert_to_numpy=True, normalize_embeddings=True)
    assert np.abs(got - ref).max() < 1e-4
    assert [i.meta["truncated"] for i in items] == [False, False, False, True, False]


def test_served_lee_pearson(real_models: Path) -> None:
    docs, sims = lee_corpus()
    items = served(real_models, "bert", {"texts": docs})
    r = lee_pearson(np.stack([i.outputs["embedding"] for i in items]), sims)
    assert r > 0.6


def test_intent_head_matches_predict_proba(real_models: Path) -> None:
    report = intent_checks(real_models / "intent-classifier")
    assert report["max_abs_diff"] < 1e-4
    assert report["same_top1"] == report["n"] == len(INTENT_TEXTS)
    assert report["examples"]["set a timer for ten minutes"] == "timer"
    assert report["examples"]["add eggs to my shopping list"] == "shopping_list_update"


def test_every_intent_label_is_readable(real_models: Path) -> None:
    labels = (real_models / "intent-classifier" / "labels.txt").read_text().split()
    assert len(labels) == 157
    assert not [lab for lab in labels if lab.lstrip("-").isdigit()]
    assert {"smart_home", "timer", "shopping_list_update", "calendar", "connect_to_human"} <= set(labels)


def test_task_category_held_out_accuracy(real_models: Path) -> None:
    import json

    report = json.loads((real_models / "task-category" / ".build.json").read_text())["report"]
    assert report["n_test"] == 240
    assert report["accuracy"] >= 0.85
    assert report["max_abs_diff_to_sklearn"] < 1e-4
    items = served(real_models, "task-category", {"texts": ["Descale the kettle and wipe the hob",
                                                             "Renew the home insurance policy",
                                                             "Get the winter tyres fitted"]})
    labels = (real_models / "task-category" / "labels.txt").read_text().split()
    assert [labels[int(i.outputs["probabilities"].argmax())] for i in items] == ["kitchen", "bills", "car"]


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_cnn_matches_pytorch_on_real_photos(real_models: Path, photo: str) -> None:
    import torch

    from ml_service.modelbuild.image import load_reference, preprocess_reference

    data = photo_bytes()[photo]
    items = served(real_models, "cnn", {"image": base64.b64encode(data).decode()})
    probs = items[0].outputs["probabilities"]
    with torch.no_grad():
        logits = load_reference()(torch.from_numpy(preprocess_reference(data))).numpy()[0]
    ref = np.exp(logits - logits.max())
    ref /= ref.sum()
    assert int(probs.argmax()) == int(ref.argmax())
    assert np.abs(np.log(probs) - np.log(ref)).max() < 1e-3  # log-probs = logits up to a constant
    labels = (real_models / "item-classifier" / "labels.txt").read_text().splitlines()
    if PHOTOS[photo]:
        assert labels[int(probs.argmax())] in PHOTOS[photo]


def test_coffee_is_espresso(real_models: Path) -> None:
    items = served(real_models, "cnn", {"image": base64.b64encode(photo_bytes()["coffee"]).decode()})
    labels = (real_models / "item-classifier" / "labels.txt").read_text().splitlines()
    assert labels[int(items[0].outputs["probabilities"].argmax())] == "espresso"


def test_task_category_v2_is_the_head_on_shared_int8_embeddings(real_models: Path) -> None:
    import onnx
    from onnx import numpy_helper

    texts = ["Descale the kettle", "Walk the dog after dinner", "Sign the school trip form"]
    head = onnx.load(str(real_models / "task-category" / "2" / "head.onnx"))
    weights = {t.name: numpy_helper.to_array(t) for t in head.graph.initializer}
    emb = np.stack([i.outputs["embedding"] for i in served(real_models, "text-embedding", {"texts": texts}, "2")])
    logits = emb @ weights["head_weight_t"] + weights["head_bias"]
    want = np.exp(logits - logits.max(1, keepdims=True))
    want /= want.sum(1, keepdims=True)
    got = np.stack([i.outputs["probabilities"] for i in served(real_models, "task-category", {"texts": texts})])
    assert np.abs(got - want).max() < 1e-4  # int8 activations are quantized per batch: small differences
    labels = (real_models / "task-category" / "labels.txt").read_text().split()
    assert [labels[int(p.argmax())] for p in got] == ["kitchen", "pets", "kids"]


def test_every_model_file_is_readable_by_runtimes_a_release_behind(real_models: Path) -> None:
    """onnxruntime-gpu lags the CPU build: files in onnx's newest IR version (14) fail to load there. Everything the
    build writes stays at IR <= 10 (onnxruntime >= 1.20, the service's lowest) and opset <= 17."""
    import onnx

    files = sorted(real_models.glob("*/*/*.onnx"))
    assert len(files) >= 7
    for f in files:
        m = onnx.load(str(f), load_external_data=False)
        opset = max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        assert m.ir_version <= 10 and opset <= 17, (f, m.ir_version, opset)
