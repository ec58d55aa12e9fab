"""The OpenAI and the service's own codecs without a server: the OpenAI request, dimensions and base64 helpers,
native envelopes and answers."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson
import pytest

from ml_service.codecs import embeddings, native, v2
from ml_service.dataplane import InferenceResult, ItemResult
from ml_service.errors import BadRequest, InvalidInput, MLServiceError, PayloadTooLarge

from .codec_models import (
    CLS,
    EMB,
    IMG,
    TENSOR,
    native_body,
    spec_of,
    task_for,
)

# -- OpenAI --------------------------------------------------------------------------------------

def test_embeddings_request_parsing() -> None:
    req = embeddings.parse_request(orjson.dumps({"model": "bert", "input": "hi"}), 2048)
    assert req.texts == ["hi"] and req.format == "float" and req.dims is None
    req = embeddings.parse_request(orjson.dumps(
        {"model": "bert", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 8.0, "user": "u"}), 2048)
    assert req.format == "base64" and req.dims == 8 and isinstance(req.dimensions, int)


@pytest.mark.parametrize(("body", "error"), [
    ({"input": "a"}, r"^model is required \(a model name or alias"),
    ({"model": "m", "input": []}, r"input: expected `array` of length >= 1 \(a string or a non-empty list"),
    ({"model": "m", "input": ["a"] * 2049}, "2049 items"),
    ({"model": "m", "input": [[1, 2, 3]]}, r"input\[0\]: expected `str`, got `array` .*token ids are not supported"),
    ({"model": "m", "input": ["a", 3]}, r"input\[1\]: expected `str`, got `int` \(a string or a non-empty list"),
    ({"model": "m"}, "^input is required"),
    ({"model": "m", "input": "a", "encoding_format": "hex"}, "encoding_format"),
    ({"model": "m", "input": "a", "dimensions": 0}, "dimensions"),
    ({"model": "m", "input": "a", "dimensions": True}, "dimensions"),
    ({"model": "m", "input": "a", "dimensions": 2.5}, "dimensions must be a positive integer, got 2.5"),
    (["not", "an", "object"], "request body: expected `object`, got `array`"),
])
def test_bad_embeddings_requests_are_400(body: Any, error: str) -> None:
    with pytest.raises(BadRequest, match=error) as info:
        embeddings.parse_request(orjson.dumps(body), 2048)
    assert info.value.status_code == 400


def test_dimensions_truncate_then_renormalize() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 16)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    out = embeddings.truncate_embeddings(emb, 4)
    assert out.shape == (3, 4) and out.flags.c_contiguous
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-6)
    assert np.allclose(out, emb[:, :4] / np.linalg.norm(emb[:, :4], axis=1, keepdims=True))
    assert embeddings.truncate_embeddings(emb, None) is emb
    assert np.array_equal(embeddings.truncate_embeddings(emb, 4, normalize=False), emb[:, :4])
    with pytest.raises(BadRequest, match="17"):
        embeddings.truncate_embeddings(emb, 17)


def test_embedding_objects_base64_is_little_endian_float32() -> None:
    emb = np.array([[0.5, -1.25, 3.0]], dtype=np.float32)
    (b64,) = embeddings.embedding_objects(emb, "base64")
    assert np.array_equal(np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4"), emb[0])
    (flt,) = embeddings.embedding_objects(emb, "float")
    assert orjson.loads(orjson.dumps(flt, option=orjson.OPT_SERIALIZE_NUMPY)) == {
        "object": "embedding", "index": 0, "embedding": [0.5, -1.25, 3.0]}


def test_errors_are_client_errors() -> None:
    for exc in (BadRequest("x"), InvalidInput("x"), PayloadTooLarge("x")):
        assert isinstance(exc, MLServiceError) and 400 <= exc.status_code < 500


# -- the service's own API ---------------------------------------------------------------------------

def test_native_requests_name_their_items() -> None:
    req = native_body({"model_type": "m", "data": {"texts": ["a", "b"], "top_k": 2}, "version": 1})
    request, top_k = native.decode(req, spec_of(CLS))
    assert list(request.items) == ["a", "b"] and top_k == 2 and request.label(1) == "data.texts[1]"
    single, _ = native.decode(native_body({"model_type": "m", "data": {"text": "a"}}), spec_of(CLS))
    assert single.label(0) == "data.text" and native.decode(
        native_body({"model_type": "m", "data": {"text": "a"}}), spec_of(CLS))[1] == 3
    image, k = native.decode(native_body({"model_type": "m", "data": {"images": ["aGk="]}}), spec_of(IMG))
    assert list(image.items) == ["aGk="] and k == 2


@pytest.mark.parametrize(("doc", "error"), [
    ([], "request body: expected `object`, got `array`"),
    ({"data": {}}, r"^model_type is required \(a model name or alias"),
    ({"model_type": "", "data": {}}, r"^model_type: expected `str` of length >= 1 \(a model name or alias"),
    ({"model_type": "m", "data": []}, r"^data: expected `object`, got `array` \(One of `text`/`texts`"),
    ({"model_type": "m", "data": {}, "version": True}, r"^version: expected `int \| str \| null`, got `bool`"),
])
def test_bad_native_envelopes(doc: Any, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        native_body(doc)


@pytest.mark.parametrize(("data", "error"), [
    ({"text": "a", "texts": ["b"]}, "not both"),
    ({"texts": "a"}, "data.texts: expected `array`, got `str`"),
    ({"images": ["x"]}, "must contain 'text' or 'texts'"),
    ({"text": "a", "top_k": 4}, "top_k must be an integer from 1 to 3"),
    ({"text": "a", "top_k": True}, "top_k"),
])
def test_bad_native_data(data: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        native.decode(native_body({"model_type": "m", "data": data}), spec_of(CLS))


def test_native_tensor_inputs_become_rows_lazily() -> None:
    req = native_body({"model_type": "m", "data": {"inputs": {"x": [[1, 2, 3, 4]] * 3,
                                                                         "flag": [True, False, True]}}})
    request, _ = native.decode(req, spec_of(TENSOR))
    assert len(request.items) == 3 and request.items[1]["flag"].item() is False
    task = task_for(TENSOR)
    for i, row in enumerate(request.items):
        task.check_item(row, request.label(i))
    with pytest.raises(InvalidInput, match="unknown input"):
        native.decode(native_body({"model_type": "m", "data": {"inputs": {"z": [1]}}}), spec_of(TENSOR))
    with pytest.raises(PayloadTooLarge, match="limit is 1000"):
        native.decode(native_body({"model_type": "m", "data": {"inputs": {"x": [[1.0] * 4] * 300,
                                                                                   "flag": [True] * 300}}}),
                      spec_of(TENSOR))


def test_native_answers_by_kind() -> None:
    probs = np.array([0.2, 0.5, 0.3], dtype=np.float32)
    result = InferenceResult(spec_of(CLS), [ItemResult({"probabilities": probs}, {"tokens": 4, "truncated": True})],
                             {"queue": 1.0, "inference": 2.0, "total": 3.0})
    out = native.encode(result, 2)
    assert out["version"] == "1" and out["timings_ms"]["total"] == 3.0
    assert out["outputs"] == [{"label": "b", "score": pytest.approx(0.5), "tokens": 4, "truncated": True,
                               "top_k": [{"label": "b", "score": pytest.approx(0.5)},
                                         {"label": "c", "score": pytest.approx(0.3)}]}]
    emb = InferenceResult(spec_of(EMB), [ItemResult({"embedding": probs}, {"tokens": 2, "truncated": False})])
    assert native.encode(emb, 0)["outputs"][0].keys() == {"embedding", "tokens"}


def test_embeddings_decode_needs_an_embedding_model() -> None:
    req = embeddings.parse_request(orjson.dumps({"model": "m", "input": ["a"] * 300, "dimensions": 16}), 2048)
    request = embeddings.decode(req, spec_of(EMB), 2048)
    assert request.max_items == 2048 and request.label(3) == "input[3]"
    with pytest.raises(BadRequest, match="text-classification model"):
        embeddings.decode(req, spec_of(CLS), 2048)
    with pytest.raises(BadRequest, match="'dimensions' is 400"):
        embeddings.decode(embeddings.parse_request(orjson.dumps({"model": "m", "input": "a", "dimensions": 400}), 2048),
                          spec_of(EMB), 2048)


def test_the_envelope_says_how_many_items_before_the_payload_is_read() -> None:
    """Issue 23: admission decides on the count the envelope declares (native, V2), before `data` is decoded."""
    assert native.count(native.request("m", {"texts": ["a", "b", "c"]})) == 3
    assert native.count(native.request("m", {"text": "a"})) == 1
    assert native.count(native.request("m", {"images": ["x", "y"]})) == 2
    assert native.count(native.request("m", {"inputs": {"x": [[1, 2], [3, 4]], "y": [[5, 6], [7, 8]]}})) == 2
    assert native.count(native.request("m", {"inputs": {"x": 7}})) == 1
    assert native.count(native.request("m", {})) == 1
    head = orjson.dumps({"inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP32", "data": [1, 2]}]})
    assert v2.parse_envelope(head, None).items == 5  # the wrong element count is only found by `tensors`
    scalar = orjson.dumps({"inputs": [{"name": "x", "shape": [], "datatype": "FP32", "data": [1]}]})
    assert v2.parse_envelope(scalar, None).items == 1
