"""A classifier version declared as a head on an embedding model shares that model's batcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ml_service.api.reports import Reports
from ml_service.codecs import native
from ml_service.core import Core
from ml_service.errors import ModelFailed, ModelUnavailable
from ml_service.manifest import Manifest
from ml_service.modelbuild.common import linear_head_model
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


def _core(root: Path, **settings: Any) -> Core:
    core = Core.build(make_settings(root, **settings))
    core.repository.scan()
    return core


async def _infer(core: Core, model: str, data: dict[str, Any]) -> tuple[Any, int]:
    """The service's own API in process: resolve, decode with its codec, run on the data plane."""
    resolved = await core.service.resolve(model)
    request, top_k = native.decode(native.request(model, data), resolved.spec)
    return await core.service.infer(request, resolved), top_k


def _loaded(core: Core, name: str) -> Any:
    entry = core.repository.get(name)
    return core.registry.loaded_model((entry.name, entry.candidates[-1]))


def test_head_runs_on_the_encoders_batches(repo: dict[str, Any]) -> None:
    async def run() -> None:
        service = _core(repo["root"])
        try:
            texts = ["the cat sat", "a dog", "the weather today is good"]
            # embedding and classification requests at once: they share the encoder's batches
            (emb_res, _), (cls_res, top_k) = await asyncio.gather(
                _infer(service, "encoder", {"texts": texts}), _infer(service, "rating", {"texts": texts, "top_k": 2}))
            head, encoder = _loaded(service, "rating"), _loaded(service, "encoder")
            reports = Reports(service.repository, service.registry, service.rollout)
            assert head.batcher is None and head.post is not None
            assert reports.encoder_of(service.repository.get("rating"), 1) == "encoder:1"
            assert encoder.batcher is not None
            assert encoder.batcher.stats.items == 6 and encoder.batcher.stats.batches <= 2
            for text, e, c in zip(texts, emb_res.items, cls_res.items, strict=True):
                want_emb, want_probs = _expected(repo, text)
                np.testing.assert_allclose(e.outputs["embedding"], want_emb, atol=1e-5)
                np.testing.assert_allclose(c.outputs["probabilities"], want_probs, atol=1e-5)
            entry = native.encode(cls_res, top_k)["outputs"][0]
            assert entry["label"] == LABELS[int(np.argmax(_expected(repo, texts[0])[1]))]
            assert len(entry["top_k"]) == 2
            assert head.memory_bytes < encoder.memory_bytes
            # the encoder unloads on its own; the head stays loaded but is not ready without it ...
            assert await service.registry.unload("encoder") == [1]
            assert service.registry.state("encoder", 1)[0] == "unloaded"
            assert service.registry.state("rating", 1)[0] == "ready"  # its own state; not ready as a whole:
            assert not reports.version_ready("rating")
            res, _ = await _infer(service, "rating", {"text": "the cat"})  # ... and loads it back on its next request
            np.testing.assert_allclose(res.items[0].outputs["probabilities"], _expected(repo, "the cat")[1],
                                       atol=1e-5)
            assert reports.version_ready("rating")
        finally:
            await service.stop()

    asyncio.run(run())


def test_an_idle_encoder_can_be_evicted_and_its_head_brings_it_back(repo: dict[str, Any]) -> None:
    import shutil

    shutil.copytree(repo["root"] / "encoder", repo["root"] / "other")  # a second embedding model

    async def run() -> None:
        # room for two tiny encoders (~16 MB estimated each) beside the head, not three
        service = _core(repo["root"], memory_budget_mb=40, eviction_idle_s=0)
        try:
            await _infer(service, "rating", {"text": "the cat"})  # loads the head, then the encoder
            await _infer(service, "other", {"text": "the cat"})
            await _infer(service, "rating", {"text": "the cat"})
            assert service.registry.state("encoder", 1)[0] == "ready"
            assert service.registry.state("other", 1)[0] == "ready"
        finally:
            await service.stop()

    asyncio.run(run())


def test_a_failing_head_fails_only_its_own_items(repo: dict[str, Any]) -> None:
    (repo["root"] / "rating" / "1" / "head.onnx").write_bytes(b"not onnx")  # the head cannot load

    async def run() -> None:
        service = _core(repo["root"])
        try:
            with pytest.raises(ModelFailed, match="no working version: v1: model file unreadable"):
                await _infer(service, "rating", {"text": "the cat"})
            res, _ = await _infer(service, "encoder", {"text": "the cat"})  # the encoder still answers
            np.testing.assert_allclose(res.items[0].outputs["embedding"], _expected(repo, "the cat")[0], atol=1e-5)
        finally:
            await service.stop()

    asyncio.run(run())


def test_a_head_loading_while_its_encoder_unloads_never_holds_a_stopped_encoder(repo: dict[str, Any]) -> None:
    """Issue 9: load the head and unload the encoder at once, many times, with requests going on: every request
    is answered, and the head ends up ready whenever its encoder is."""

    async def run() -> None:
        service = _core(repo["root"])
        stop = asyncio.Event()
        failures: list[BaseException] = []

        async def client() -> None:
            while not stop.is_set():
                try:
                    res, _ = await _infer(service, "rating", {"text": "the cat"})
                    assert res.items[0].outputs["probabilities"].shape == (3,)
                except ModelUnavailable as exc:  # an unload in progress may refuse a request; never for good
                    assert "retry" in exc.message
                except BaseException as exc:
                    failures.append(exc)
                    return

        try:
            clients = [asyncio.create_task(client()) for _ in range(8)]
            for _ in range(30):
                await asyncio.gather(service.registry.unload("rating"), service.registry.unload("encoder"))
                await asyncio.gather(service.rollout.load_model("rating"), service.registry.unload("encoder"),
                                     _infer(service, "encoder", {"text": "a dog"}), return_exceptions=True)
            stop.set()
            await asyncio.gather(*clients)
            assert failures == []
            res, _ = await _infer(service, "rating", {"text": "the cat"})  # never stuck on a stopped encoder
            np.testing.assert_allclose(res.items[0].outputs["probabilities"], _expected(repo, "the cat")[1],
                                       atol=1e-5)
            assert service.registry.state("rating", 1)[0] == "ready"
        finally:
            stop.set()
            await service.stop()

    asyncio.run(run())


def test_a_head_follows_its_encoders_live_default_not_a_broken_newer_version(repo: dict[str, Any]) -> None:
    """Issue 19.1: publish a broken encoder version, then load the head: it runs on the live encoder and answers
    (before, the head chose its encoder by "the highest served version", a second rule, and took the broken one)."""
    import shutil

    enc_dir = repo["root"] / "encoder"

    async def run() -> None:
        service = _core(repo["root"])
        try:
            await service.rollout.preload(["encoder"])
            shutil.copytree(enc_dir / "1", enc_dir / ".incoming")
            (enc_dir / ".incoming" / "model.onnx").write_bytes(b"truncated")
            (enc_dir / ".incoming").rename(enc_dir / "2")
            report = await service.rollout.reload()
            assert "encoder:2" in report["failed"]
            name, versions = await service.rollout.load_model("rating")
            assert (name, versions) == ("rating", [1])
            res, _ = await _infer(service, "rating", {"text": "the cat"})
            np.testing.assert_allclose(res.items[0].outputs["probabilities"], _expected(repo, "the cat")[1],
                                       atol=1e-5)
            assert Reports(service.repository, service.registry, service.rollout).encoder_of(
                service.repository.get("rating"), 1) == "encoder:1"
            shutil.copytree(enc_dir / "1", enc_dir / ".incoming")  # a working encoder v3: the head follows it
            (enc_dir / ".incoming").rename(enc_dir / "3")
            assert (await service.rollout.reload())["switched"] == {"encoder": [1, 3]}
            resolved = await service.service.resolve("rating")
            assert resolved.target.encoder is not None and resolved.target.encoder[1].number == 3
            res, _ = await _infer(service, "rating", {"text": "the cat"})
            np.testing.assert_allclose(res.items[0].outputs["probabilities"], _expected(repo, "the cat")[1],
                                       atol=1e-5)
        finally:
            await service.stop()

    asyncio.run(run())


def test_a_head_pinning_its_encoder_version_keeps_it(repo: dict[str, Any]) -> None:
    import shutil

    enc_dir = repo["root"] / "encoder"
    shutil.copytree(enc_dir / "1", enc_dir / "2")
    toml = repo["root"] / "rating" / "model.toml"
    toml.write_text(toml.read_text().replace('encoder = "encoder"', 'encoder = "encoder"\nencoder_version = 1'))

    async def run() -> None:
        service = _core(repo["root"])
        try:
            resolved = await service.service.resolve("rating")
            assert resolved.target.encoder is not None and resolved.target.encoder[1].number == 1
            assert (await service.service.resolve("encoder")).target.mv.number == 2  # its own default: latest
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
