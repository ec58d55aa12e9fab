"""A classifier version declared as a head on an embedding model shares that model's batcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.build.common import linear_head_model
from ml_service.errors import ModelUnavailable
from ml_service.manifest import Manifest
from ml_service.service import InferenceService
from tests.conftest import build_model_dir, build_tokenizer, make_settings
from tests.integration.helpers import TEXT_INPUTS, embedding_onnx

DIM = 6
LABELS = ["low", "mid", "high"]


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    enc = build_model_dir(tmp_path, "encoder", {
        "task": "embedding", "file": "model.onnx", "inputs": TEXT_INPUTS,
        "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": [-1, -1, DIM]}],
        "preprocessing": {"tokenizer": "tokenizer.json", "max_tokens": 16},
        "batching": {"max_batch_size": 16, "max_queue_delay_ms": 20.0},
    })
    vocab = build_tokenizer(enc / "1" / "tokenizer.json")
    table = rng.normal(size=(len(vocab), DIM)).astype(np.float32)
    table[0] = 0.0
    embedding_onnx(enc / "1" / "model.onnx", table)
    w = rng.normal(size=(len(LABELS), DIM)).astype(np.float32)
    b = rng.normal(size=len(LABELS)).astype(np.float32)
    head = build_model_dir(tmp_path, "rating", {
        "task": "text-classification", "file": "head.onnx", "encoder": "encoder", "labels": "labels.txt",
        "preprocessing": {"tokenizer": "tokenizer.json"},
    }, labels=LABELS)
    linear_head_model(head / "1" / "head.onnx", w, b, DIM)
    return {"root": tmp_path, "vocab": vocab, "table": table, "w": w, "b": b}


def _expected(repo: dict[str, Any], text: str) -> tuple[np.ndarray, np.ndarray]:
    ids = [repo["vocab"]["[CLS]"], *(repo["vocab"].get(t, 1) for t in text.lower().split()), repo["vocab"]["[SEP]"]]
    emb = repo["table"][ids].mean(axis=0)
    emb /= np.linalg.norm(emb)
    logits = emb @ repo["w"].T + repo["b"]
    p = np.exp(logits - logits.max())
    return emb, p / p.sum()


def test_head_runs_on_the_encoders_batches(repo: dict[str, Any]) -> None:
    async def run() -> None:
        service = InferenceService(make_settings(repo["root"]))
        service.repository.scan()
        try:
            texts = ["the cat sat", "a dog", "the weather today is good"]
            # embedding and classification requests at once: they share the encoder's batches
            (emb_res, _), (cls_res, opts) = await asyncio.gather(
                service.infer_seed("encoder", {"texts": texts}),
                service.infer_seed("rating", {"texts": texts, "top_k": 2}))
            head = await service.model("rating")
            encoder = await service.model("encoder")
            assert head.batcher is encoder.batcher and head.encoder is encoder and encoder.dependents == 1
            assert encoder.batcher.stats.items == 6 and encoder.batcher.stats.batches <= 2
            for text, e, c in zip(texts, emb_res.items, cls_res.items, strict=True):
                want_emb, want_probs = _expected(repo, text)
                np.testing.assert_allclose(e.outputs["embedding"], want_emb, atol=1e-5)
                np.testing.assert_allclose(c.outputs["probabilities"], want_probs, atol=1e-5)
            entry = head.task.format_seed(cls_res.items[0], opts)
            assert entry["label"] == LABELS[int(np.argmax(_expected(repo, texts[0])[1]))]
            assert len(entry["top_k"]) == 2
            # the encoder cannot be evicted while a head depends on it; unloading it takes the head along
            assert head.memory_bytes < encoder.memory_bytes * 10
            await service.registry.unload("encoder")
            assert service.registry.state("rating", 1)[0] == "unloaded"
            assert service.registry.state("encoder", 1)[0] == "unloaded"
            res, _ = await service.infer_seed("rating", {"text": "the cat"})  # reloads both
            np.testing.assert_allclose(res.items[0].outputs["probabilities"], _expected(repo, "the cat")[1],
                                       atol=1e-5)
        finally:
            await service.stop()

    asyncio.run(run())


def test_encoder_with_a_head_is_not_evicted(repo: dict[str, Any]) -> None:
    import shutil

    shutil.copytree(repo["root"] / "encoder", repo["root"] / "other")  # a second embedding model

    async def run() -> None:
        # room for three tiny models (~16 MB estimated each), not four
        service = InferenceService(make_settings(repo["root"], memory_budget_mb=45))
        service.repository.scan()
        try:
            await service.infer_seed("rating", {"text": "the cat"})  # loads the encoder, then the head
            await service.infer_seed("other", {"text": "the cat"})  # needs one eviction
            # the encoder is the least recently used, but the head depends on it: the head goes instead
            assert service.registry.state("encoder", 1)[0] == "ready"
            assert service.registry.state("rating", 1)[0] == "unloaded"
            assert service.registry.state("other", 1)[0] == "ready"
        finally:
            await service.stop()

    asyncio.run(run())


def test_a_failing_head_fails_only_its_own_items(repo: dict[str, Any]) -> None:
    (repo["root"] / "rating" / "1" / "head.onnx").write_bytes(b"not onnx")  # the head cannot load

    async def run() -> None:
        service = InferenceService(make_settings(repo["root"]))
        service.repository.scan()
        try:
            with pytest.raises(ModelUnavailable, match="failed to load"):
                await service.infer_seed("rating", {"text": "the cat"})
            res, _ = await service.infer_seed("encoder", {"text": "the cat"})  # the encoder still answers
            np.testing.assert_allclose(res.items[0].outputs["embedding"], _expected(repo, "the cat")[0], atol=1e-5)
        finally:
            await service.stop()

    asyncio.run(run())


def test_only_text_classifiers_can_be_heads() -> None:
    with pytest.raises(ValueError, match="heads"):
        Manifest.model_validate({"task": "embedding", "encoder": "x", "preprocessing": {"tokenizer": "t.json"}})
    m = Manifest.model_validate({"task": "text-classification", "labels": "l.txt",
                                 "preprocessing": {"tokenizer": "t.json"},
                                 "versions": {"2": {"file": "head.onnx", "encoder": "enc", "encoder_version": 2}}})
    assert m.for_version(1).encoder is None and m.for_version(1).file == "model.onnx"
    v2 = m.for_version(2)
    assert (v2.encoder, v2.file, v2.encoder_version) == ("enc", "head.onnx", 2)
