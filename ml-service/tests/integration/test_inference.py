"""POST /inference over tiny real ONNX models: every task, aliases, versions, response shape."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from .helpers import EMBED_MAX_ITEMS, EMBED_MAX_TOKENS, IMAGE_LABELS, TEXT_LABELS


def _infer(client, model_type, data, **extra):
    r = client.post("/inference", json={"model_type": model_type, "data": data, **extra})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"model", "version", "outputs", "timings_ms"}
    assert set(body["timings_ms"]) == {"queue", "inference", "total"}
    assert all(isinstance(v, (int, float)) and v >= 0 for v in body["timings_ms"].values())
    assert isinstance(body["version"], str)
    return body


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- embedding ------------------------------------------------------------------------------------
def test_embedding_of_one_text(client, onnx_repo):
    body = _infer(client, "text-embedding", {"text": "the cat sat"})
    assert (body["model"], body["version"]) == ("text-embedding", "2")  # policy "all": the highest by default
    (out,) = body["outputs"]
    assert set(out) == {"embedding", "tokens"}
    assert out["tokens"] == 5
    np.testing.assert_allclose(out["embedding"], onnx_repo.expected_embedding("the cat sat", 2), rtol=1e-5,
                               atol=1e-6)
    assert np.linalg.norm(out["embedding"]) == pytest.approx(1.0, abs=1e-5)


def test_embedding_of_texts_in_order_and_independent_of_padding(client, onnx_repo):
    texts = ["dog", "the cat sat on", "a", "it is good"]
    body = _infer(client, "text-embedding", {"texts": texts})
    assert [o["tokens"] for o in body["outputs"]] == [3, 6, 3, 5]
    for text, out in zip(texts, body["outputs"], strict=True):
        # batched with longer texts, the masked mean still only sees this text's tokens
        np.testing.assert_allclose(out["embedding"], onnx_repo.expected_embedding(text, 2), rtol=1e-5, atol=1e-6)


def test_truncation_flag_for_a_text_longer_than_max_tokens(client, onnx_repo):
    exact = "the cat sat on"  # 4 words + [CLS] + [SEP] = max_tokens
    long = "the cat sat on the mat and it was a good day"
    body = _infer(client, "bert", {"texts": [exact, long]})
    first, second = body["outputs"]
    assert first["tokens"] == EMBED_MAX_TOKENS
    assert "truncated" not in first
    assert second["tokens"] == EMBED_MAX_TOKENS
    assert second["truncated"] is True
    np.testing.assert_allclose(second["embedding"], onnx_repo.expected_embedding(long, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("alias", ["bert", "embedder"])
def test_aliases(client, alias):
    body = _infer(client, alias, {"text": "hello"})
    assert body["model"] == "text-embedding"


@pytest.mark.parametrize(("version", "expected"), [(1, "1"), ("1", "1"), (2, "2"), ("2", "2")])
def test_version_pinning(client, onnx_repo, version, expected):
    body = _infer(client, "bert", {"text": "the dog"}, version=version)
    assert body["version"] == expected
    np.testing.assert_allclose(body["outputs"][0]["embedding"],
                               onnx_repo.expected_embedding("the dog", int(expected)), rtol=1e-5, atol=1e-6)


def test_versions_give_different_answers(client):
    v1 = _infer(client, "text-embedding", {"text": "cat"}, version=1)["outputs"][0]["embedding"]
    v2 = _infer(client, "text-embedding", {"text": "cat"}, version=2)["outputs"][0]["embedding"]
    assert not np.allclose(v1, v2)


def test_exactly_max_items(client):
    body = _infer(client, "text-embedding", {"texts": ["cat"] * EMBED_MAX_ITEMS})
    assert len(body["outputs"]) == EMBED_MAX_ITEMS


def test_many_concurrent_requests(client, onnx_repo):
    from concurrent.futures import ThreadPoolExecutor

    texts = ["the cat", "a dog sat", "good", "bad day", "it is okay", "the mat"]

    def one(i):
        text = texts[i % len(texts)]
        return text, _infer(client, "text-embedding", {"text": text})["outputs"][0]["embedding"]

    with ThreadPoolExecutor(6) as pool:
        for text, emb in pool.map(one, range(24)):
            np.testing.assert_allclose(emb, onnx_repo.expected_embedding(text, 2), rtol=1e-5, atol=1e-6)


# -- text classification ---------------------------------------------------------------------------
def test_text_classification(client, onnx_repo):
    texts = ["this movie is good", "a terrible day", "it is okay", "great great great"]
    body = _infer(client, "sentiment", {"texts": texts})
    assert body["model"] == "text-classifier"
    assert body["version"] == "1"
    assert [o["label"] for o in body["outputs"]] == ["positive", "negative", "neutral", "positive"]
    first = body["outputs"][0]
    assert set(first) == {"label", "score", "top_k", "tokens"}
    assert len(first["top_k"]) == len(TEXT_LABELS)  # default 5, capped at the label count
    assert sorted(t["label"] for t in first["top_k"]) == sorted(TEXT_LABELS)
    assert sum(t["score"] for t in first["top_k"]) == pytest.approx(1.0, abs=1e-5)


def test_text_classification_scores_match_the_model(client, onnx_repo):
    body = _infer(client, "text-classifier", {"text": "the weather is bad"})
    (out,) = body["outputs"]
    expected = onnx_repo.expected_text_probs("the weather is bad")
    assert out["score"] == pytest.approx(float(expected.max()), rel=1e-5)
    assert {t["label"]: t["score"] for t in out["top_k"]} == {
        label: pytest.approx(float(p), rel=1e-4, abs=1e-6) for label, p in zip(TEXT_LABELS, expected, strict=True)}


@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k(client, k):
    body = _infer(client, "text-classifier", {"text": "good", "top_k": k})
    top = body["outputs"][0]["top_k"]
    assert len(top) == k
    assert top[0]["label"] == body["outputs"][0]["label"] == "positive"
    assert [t["score"] for t in top] == sorted((t["score"] for t in top), reverse=True)


# -- image classification --------------------------------------------------------------------------
@pytest.mark.parametrize(("fmt", "kw"), [("PNG", {}), ("JPEG", {"quality": 90}), ("WEBP", {"lossless": True})])
def test_image_classification(client, make_image, fmt, kw):
    for color, label in zip([(250, 10, 10), (10, 250, 10), (10, 10, 250)], IMAGE_LABELS, strict=True):
        body = _infer(client, "image-classifier", {"image": _b64(make_image(fmt, (64, 48), color, **kw))})
        (out,) = body["outputs"]
        assert out["label"] == label
        assert set(out) == {"label", "score", "top_k"}
        assert out["score"] > 0.9


def test_images_in_order_with_top_k(client, make_image):
    images = [make_image("PNG", (300, 200), (0, 0, 255)), make_image("PNG", (20, 30), (255, 0, 0))]
    body = _infer(client, "cnn", {"images": [_b64(i) for i in images], "top_k": 2})
    assert body["model"] == "image-classifier"
    assert [o["label"] for o in body["outputs"]] == ["blue", "red"]
    assert [len(o["top_k"]) for o in body["outputs"]] == [2, 2]


def test_image_with_a_data_url_prefix(client, make_image):
    data = "data:image/png;base64," + _b64(make_image("PNG", (32, 32), (0, 255, 0)))
    assert _infer(client, "cnn", {"image": data})["outputs"][0]["label"] == "green"


# -- tensors ---------------------------------------------------------------------------------------
def test_tensor_inputs(client):
    a = [[1, 2, 3, 4], [0.5, 0.5, 0.5, 0.5]]
    b = [[10, 20, 30, 40], [2, 4, 6, 8]]
    body = _infer(client, "tensor-math", {"inputs": {"a": a, "b": b}})
    assert body["model"] == "tensor-math"
    sums = [o["sum"] for o in body["outputs"]]
    prods = [o["prod"] for o in body["outputs"]]
    np.testing.assert_allclose(sums, np.add(a, b))
    np.testing.assert_allclose(prods, np.multiply(a, b))
    assert set(body["outputs"][0]) == {"sum", "prod"}
