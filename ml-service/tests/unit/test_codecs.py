"""The protocol codecs without a server: V2 JSON and binary tensors (checked against tritonclient's own
encoder and decoder), the signatures tasks declare, the OpenAI request, dimensions and base64 helpers, and the
service's own API."""

from __future__ import annotations

import base64
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ml_service import tensors
from ml_service.codecs import embeddings, native, v2
from ml_service.dataplane import InferenceResult, ItemResult, ModelSpec
from ml_service.errors import BadRequest, InvalidInput, MLServiceError, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.tasks import create_task, model_spec

tritonclient_utils = pytest.importorskip("tritonclient.utils")
InferResult = pytest.importorskip("tritonclient.http").InferResult

IDS = [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}]


def entry_for(task: str, labels: list[str] | None = None, **manifest: Any) -> ModelEntry:
    """A valid in-memory model entry (nothing on disk is read)."""
    base: dict[str, Any] = {"task": task}
    if task in ("embedding", "text-classification"):
        base["preprocessing"] = {"tokenizer": "tokenizer.json"}
    if task in ("text-classification", "image-classification"):
        base["labels"] = "labels.txt"
    base.update(manifest)
    m = Manifest.model_validate(base)
    path = Path("/nonexistent/m")
    mv = ModelVersion(1, path / "1", labels=tuple(labels or ()), manifest=m)
    return ModelEntry(name="m", path=path, manifest=m, versions={1: mv})


def task_for(entry: ModelEntry) -> Any:
    assert entry.manifest is not None
    return create_task(entry, entry.versions[1], entry.manifest)


def spec_of(entry: ModelEntry) -> ModelSpec:
    return model_spec(entry, entry.versions[1])


def items_of(entry: ModelEntry, req: v2.InferRequest) -> list[Any]:
    """The items a V2 request decodes to, checked as the data plane checks them (count, then each item)."""
    request = v2.decode(req, spec_of(entry))
    task = task_for(entry)
    task.check_count(len(request.items), request.where)
    items = list(request.items)
    for i, item in enumerate(items):
        task.check_item(item, request.label(i))
    return items


def result_of(entry: ModelEntry, rows: list[dict[str, Any]]) -> InferenceResult:
    return InferenceResult(spec_of(entry), [ItemResult(r, {}) for r in rows])


EMB = entry_for("embedding", inputs=IDS, outputs=[{"name": "sentence_embedding", "dtype": "float32",
                                                    "shape": [-1, 384]}],
                postprocessing={"output": "sentence_embedding"})
CLS = entry_for("text-classification", labels=["a", "b", "c"])
IMG = entry_for("image-classification", labels=["x", "y"], limits={"max_items": 4})
TENSOR = entry_for("tensor", inputs=[{"name": "x", "dtype": "float32", "shape": [-1, 4]},
                                     {"name": "flag", "dtype": "bool", "shape": [-1]}],
                   outputs=[{"name": "y", "dtype": "int32", "shape": [-1, 2]}], limits={"max_tensor_elements": 1000})


def body_of(doc: dict[str, Any], *blobs: bytes) -> tuple[bytes, str | None]:
    head = orjson.dumps(doc)
    if not blobs:
        return head, None
    return head + b"".join(blobs), str(len(head))


def _native(doc: Any) -> native.InferenceBody:
    return native.parse_request(orjson.dumps(doc))


def parse(entry: ModelEntry, doc: dict[str, Any], *blobs: bytes) -> v2.InferRequest:
    body, header = body_of(doc, *blobs)
    return v2.parse_infer_request(body, header, spec_of(entry).signature)


# -- signatures ----------------------------------------------------------------------------------

def test_signatures_of_each_task() -> None:
    assert v2.model_metadata(spec_of(EMB), [1]) == {
        "name": "m", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "outputs": [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}],
    }
    sig = spec_of(CLS).signature
    assert [o.as_json() for o in sig.outputs] == [
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    img = spec_of(IMG).signature
    assert [i.as_json() for i in img.inputs] == [
        {"name": "image", "datatype": "BYTES", "shape": [-1]},
        {"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 224, 224]},
    ]
    assert {i.name: i.max_elements for i in img.inputs} == {"image": 4, "pixel_values": 4 * 3 * 224 * 224}
    assert [i.kind for i in img.inputs] == ["image", "pixels"]
    ten = spec_of(TENSOR).signature
    assert [i.as_json() for i in ten.inputs] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]},
                                                 {"name": "flag", "datatype": "BOOL", "shape": [-1]}]
    assert [o.as_json() for o in ten.outputs] == [{"name": "y", "datatype": "INT32", "shape": [-1, 2]}]


# -- request parsing -----------------------------------------------------------------------------

def test_json_text_input_nested_or_flat() -> None:
    flat = parse(EMB, {"id": "r1", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                               "data": ["a", "b"]}]})
    nested = parse(EMB, {"inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES", "data": [["a"], ["b"]]}]})
    assert flat.id == "r1" and nested.id is None
    assert flat.inputs[0].data.tolist() == ["a", "b"]
    assert items_of(EMB, flat) == ["a", "b"]
    assert items_of(EMB, nested) == ["a", "b"]


def test_binary_bytes_input_from_tritonclient_encoding() -> None:
    texts = np.array(["héllo".encode(), b"", b"x" * 300], dtype=np.object_)
    blob = tritonclient_utils.serialize_byte_tensor(texts).item()
    req = parse(EMB, {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES",
                                  "parameters": {"binary_data_size": len(blob)}}]}, blob)
    assert items_of(EMB, req) == ["héllo", "", "x" * 300]


def test_binary_numeric_inputs_are_read_in_place() -> None:
    x = np.arange(8, dtype="<f4").reshape(2, 4)
    flag = np.array([True, False])
    req = parse(TENSOR, {"inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": x.nbytes}},
        {"name": "flag", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
    ]}, x.tobytes(), flag.tobytes())
    assert np.array_equal(req.inputs[0].data, x) and req.inputs[0].data.dtype == np.float32
    assert req.inputs[1].data.tolist() == [True, False]
    rows = items_of(TENSOR, req)
    assert len(rows) == 2 and np.array_equal(rows[1]["x"], x[1])


def test_mixed_json_and_binary_inputs() -> None:
    flag = np.array([1, 0], dtype=np.uint8)
    req = parse(TENSOR, {"inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], [5, 6, 7, 8.5]]},
        {"name": "flag", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
    ]}, flag.tobytes())
    assert req.inputs[0].data.dtype == np.float32 and req.inputs[0].data[1, 3] == 8.5


@pytest.mark.parametrize(("doc", "error"), [
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, "expects BYTES"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "STRING", "data": ["a"]}]},
     r"inputs\[0\]\.datatype: invalid enum value 'STRING'"),
    ({"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a", "b"]}]}, "shape needs 3"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a", "b"]}]}, "more values"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [1]}]}, "must be strings"),
    ({"inputs": [{"name": "text", "shape": [-1], "datatype": "BYTES", "data": ["a"]}]}, "non-negative"),
    ({"inputs": [{"name": "nope", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, "unknown input"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}, "neither data"),
    ({"inputs": []}, "non-empty"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
      "outputs": [{"name": "logits"}]}, "unknown output"),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
      "outputs": [{"name": "embedding", "parameters": {"classification": 2}}]}, "classification"),
])
def test_bad_requests_are_invalid_input(doc: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        parse(EMB, doc)


@pytest.mark.parametrize(("data", "datatype", "error"), [
    ([1.5, 2], "INT64", "holds floats"),
    ([300], "UINT8", "outside the range"),
    (["1"], "FP32", "holds strings"),
    ([1, None], "FP32", "mixed"),
    ([[1, 2], [3]], "FP32", "rectangular|values"),
    ([1], "BOOL", "holds integers"),
])
def test_json_numbers_must_fit_the_datatype(data: list[Any], datatype: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        tensors.decode_json(data, datatype, (len(data),), "x")


def test_json_numbers_out_of_a_float_types_range_are_refused() -> None:
    with pytest.raises(InvalidInput, match="outside the range of FP16"):
        tensors.decode_json([1.0, 1e10], "FP16", (2,), "x")
    assert tensors.decode_json([1e10], "FP32", (1,), "x")[0] == np.float32(1e10)


def test_json_numbers_convert_without_loss() -> None:
    assert tensors.decode_json([1, 2.5], "FP16", (2,), "x").dtype == np.float16
    assert tensors.decode_json([[True], [False]], "BOOL", (2, 1), "x").tolist() == [[True], [False]]
    assert tensors.decode_json([2**64 - 1], "UINT64", (1,), "x")[0] == 2**64 - 1


def test_empty_batch_is_rejected_by_the_task() -> None:
    req = parse(EMB, {"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]})
    with pytest.raises(InvalidInput, match="must not be empty"):
        items_of(EMB, req)


def test_huge_declared_shape_is_refused_before_any_allocation() -> None:
    t0 = time.perf_counter()
    for doc in (
        {"inputs": [{"name": "text", "shape": [10**15], "datatype": "BYTES", "data": ["a"]}]},
        {"inputs": [{"name": "text", "shape": [2**40, 2**40], "datatype": "BYTES",
                     "parameters": {"binary_data_size": 4}}]},
    ):
        with pytest.raises(PayloadTooLarge, match="at most 256"):
            parse(EMB, doc, *([b"\0\0\0\0"] if "parameters" in doc["inputs"][0] else []))
    with pytest.raises(PayloadTooLarge):
        parse(IMG, {"inputs": [{"name": "pixel_values", "shape": [10**6, 3, 224, 224], "datatype": "FP32",
                                "data": [0.0]}]})
    with pytest.raises(PayloadTooLarge, match="257"):
        parse(EMB, {"inputs": [{"name": "text", "shape": [257], "datatype": "BYTES", "data": ["a"] * 257}]})
    assert time.perf_counter() - t0 < 1


def test_binary_framing_errors() -> None:
    good = np.arange(4, dtype="<f4").tobytes()
    doc = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}},
                      {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]}]}
    sig = spec_of(TENSOR).signature
    head = orjson.dumps(doc)
    with pytest.raises(BadRequest, match="Inference-Header-Content-Length is"):  # header larger than the body
        v2.parse_infer_request(head + good, str(len(head) + 100), sig)
    with pytest.raises(BadRequest, match="must be an integer"):
        v2.parse_infer_request(head + good, "ten", sig)
    with pytest.raises(BadRequest, match="runs past the end"):  # binary_data_size larger than the body
        v2.parse_infer_request(head + good[:8], str(len(head)), sig)
    with pytest.raises(BadRequest, match="no input claims"):
        v2.parse_infer_request(head + good + b"xx", str(len(head)), sig)
    with pytest.raises(BadRequest, match="no Inference-Header-Content-Length"):
        v2.parse_infer_request(head, None, sig)
    small = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                        {"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]}]}
    head = orjson.dumps(small)
    with pytest.raises(InvalidInput, match="needs 16"):  # shape and data length disagree
        v2.parse_infer_request(head + good[:8], str(len(head)), sig)


@pytest.mark.parametrize(("blob", "count"), [
    (b"\x05\0\0\0abc", 1),  # element longer than the data
    (b"\x01\0\0\0a\x01\0", 2),  # truncated length of the second element
    (b"\x01\0\0\0a\x01\0\0\0bEXTRA", 2),  # bytes after the last element
])
def test_malformed_bytes_elements(blob: bytes, count: int) -> None:
    with pytest.raises(InvalidInput, match="binary data of input 'text'"):
        tensors.split_bytes_elements(memoryview(blob), count, "text")


def test_invalid_utf8_text_is_invalid_input() -> None:
    blob = struct.pack("<I", 2) + b"\xff\xfe"
    req = parse(EMB, {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                  "parameters": {"binary_data_size": len(blob)}}]}, blob)
    with pytest.raises(InvalidInput, match="UTF-8"):
        items_of(EMB, req)


def test_image_inputs() -> None:
    pixels = np.zeros((2, 3, 224, 224), dtype="<f4")
    req = parse(IMG, {"inputs": [{"name": "pixel_values", "shape": [2, 3, 224, 224], "datatype": "FP32",
                                  "parameters": {"binary_data_size": pixels.nbytes}}]}, pixels.tobytes())
    rows = items_of(IMG, req)
    assert len(rows) == 2 and rows[0].shape == (3, 224, 224)
    req = parse(IMG, {"inputs": [{"name": "pixel_values", "shape": [1, 3, 100, 100], "datatype": "FP32",
                                  "data": [0.0] * 30000}]})
    with pytest.raises(InvalidInput, match=r"\[3, 224, 224\]"):
        items_of(IMG, req)
    req = parse(IMG, {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]}]})
    assert items_of(IMG, req) == ["aGVsbG8="]  # base64 in JSON; the task decodes it
    both = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["aGVsbG8="]},
                       {"name": "pixel_values", "shape": [1, 3, 224, 224], "datatype": "FP32",
                        "parameters": {"binary_data_size": pixels.nbytes // 2}}]}
    with pytest.raises(InvalidInput, match="exactly one"):
        items_of(IMG, parse(IMG, both, pixels.tobytes()[:pixels.nbytes // 2]))


# -- responses -----------------------------------------------------------------------------------

def _decode_with_tritonclient(head: dict[str, Any], blobs: list[bytes]) -> Any:
    if not blobs:
        return InferResult.from_response_body(orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY))
    body, n = v2.binary_body(head, blobs)
    return InferResult.from_response_body(body, header_length=n)


@pytest.mark.parametrize("binary", [True, False])
def test_responses_decode_with_tritonclient(binary: bool) -> None:
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    req = v2.InferRequest("abc", [], None, binary_output=binary)
    head, blobs = v2.encode(result_of(CLS, [{"probabilities": p} for p in probs]), req)
    assert head["model_version"] == "1" and head["id"] == "abc"
    assert bool(blobs) is binary
    result = _decode_with_tritonclient(head, blobs)
    assert np.array_equal(result.as_numpy("probabilities"), probs)
    labels = result.as_numpy("label").tolist()
    assert labels == ([b"b", b"a"] if binary else ["b", "a"])


def test_output_selection_and_per_output_binary_flag() -> None:
    probs = np.eye(3, dtype=np.float32)[:2]
    req = v2.InferRequest(None, [], [v2.OutputRequest("label", binary=True)])
    head, blobs = v2.encode(result_of(CLS, [{"probabilities": p} for p in probs]), req)
    assert [o["name"] for o in head["outputs"]] == ["label"] and "id" not in head
    assert blobs == [struct.pack("<I", 1) + b"a" + struct.pack("<I", 1) + b"b"]
    numeric = np.array([[1, 2], [3, 4]], dtype=np.int32)
    head, blobs = v2.encode(result_of(TENSOR, [{"y": row} for row in numeric]), v2.InferRequest(None, [], None))
    assert head["outputs"][0]["datatype"] == "INT32"
    assert orjson.loads(orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY))["outputs"][0]["data"] == [1, 2, 3, 4]


def test_non_contiguous_outputs_are_encoded() -> None:
    arr = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2]
    assert np.array_equal(np.frombuffer(tensors.encode_binary(arr), dtype="<f8").reshape(3, 2), arr)


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


# -- a `tensor` model through the app (in process, the in-package fake runtime) ------------------

def test_tensor_model_over_v2(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from ml_service.app import create_app
    from ml_service.settings import Settings

    mdir = tmp_path / "summer"
    (mdir / "1").mkdir(parents=True)
    (mdir / "1" / "model.fake").write_bytes(b"")
    (mdir / "model.toml").write_text(
        'task = "tensor"\nruntime = "fake"\nfile = "model.fake"\n'
        '[[inputs]]\nname = "x"\ndtype = "float32"\nshape = [-1, 4]\n'
        '[[outputs]]\nname = "output"\ndtype = "float32"\nshape = [-1, 1]\n', encoding="utf-8")
    settings = Settings(model_cache_dir=tmp_path, secret=None, preload="", device="cpu", intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        meta = client.get("/v2/models/summer").json()
        assert meta["platform"] == "fake"
        assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 1]}]
        r = client.post("/v2/models/summer/infer", json={"inputs": [
            {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}]})
        assert r.status_code == 200, r.text
        assert r.json()["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [2, 1], "data": [10.0, 26.0]}]
        x = np.arange(8, dtype="<f4").reshape(2, 4)
        head = orjson.dumps({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                                         "parameters": {"binary_data_size": x.nbytes}}],
                             "parameters": {"binary_data_output": True}})
        r = client.post("/v2/models/summer/infer", content=head + x.tobytes(),
                        headers={"Inference-Header-Content-Length": str(len(head))})
        assert r.status_code == 200, r.text
        n = int(r.headers["Inference-Header-Content-Length"])
        out = InferResult.from_response_body(r.content, header_length=n).as_numpy("output")
        assert out.tolist() == [[6.0], [22.0]]
        bad = client.post("/v2/models/summer/infer", json={"inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]})
        assert bad.status_code == 422 and "expected [-1, 4]" in bad.json()["error"]
        wrong = client.post("/v2/models/summer/infer", json={"inputs": [
            {"name": "x", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]})
        assert wrong.status_code == 422 and "expects FP32" in wrong.json()["error"]


# -- issue 9: a zero and a huge dimension ----------------------------------------------------------

@pytest.mark.parametrize(("entry", "name", "datatype", "shape"), [
    (EMB, "text", "BYTES", [0, 4611686018427387904]),
    (IMG, "pixel_values", "FP32", [0, 3, 2**62, 224]),
    (TENSOR, "x", "FP32", [0, 2**62]),
])
def test_a_zero_dimension_does_not_let_a_huge_one_through(entry: ModelEntry, name: str, datatype: str,
                                                          shape: list[int]) -> None:
    with pytest.raises(PayloadTooLarge, match="accepts at most"):
        parse(entry, {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": []}]})


# -- the service's own API ---------------------------------------------------------------------------

def test_native_requests_name_their_items() -> None:
    req = _native({"model_type": "m", "data": {"texts": ["a", "b"], "top_k": 2}, "version": 1})
    request, top_k = native.decode(req, spec_of(CLS))
    assert list(request.items) == ["a", "b"] and top_k == 2 and request.label(1) == "data.texts[1]"
    single, _ = native.decode(_native({"model_type": "m", "data": {"text": "a"}}), spec_of(CLS))
    assert single.label(0) == "data.text" and native.decode(
        _native({"model_type": "m", "data": {"text": "a"}}), spec_of(CLS))[1] == 3
    image, k = native.decode(_native({"model_type": "m", "data": {"images": ["aGk="]}}), spec_of(IMG))
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
        _native(doc)


@pytest.mark.parametrize(("data", "error"), [
    ({"text": "a", "texts": ["b"]}, "not both"),
    ({"texts": "a"}, "data.texts: expected `array`, got `str`"),
    ({"images": ["x"]}, "must contain 'text' or 'texts'"),
    ({"text": "a", "top_k": 4}, "top_k must be an integer from 1 to 3"),
    ({"text": "a", "top_k": True}, "top_k"),
])
def test_bad_native_data(data: dict[str, Any], error: str) -> None:
    with pytest.raises(InvalidInput, match=error):
        native.decode(_native({"model_type": "m", "data": data}), spec_of(CLS))


def test_native_tensor_inputs_become_rows_lazily() -> None:
    req = _native({"model_type": "m", "data": {"inputs": {"x": [[1, 2, 3, 4]] * 3,
                                                                         "flag": [True, False, True]}}})
    request, _ = native.decode(req, spec_of(TENSOR))
    assert len(request.items) == 3 and request.items[1]["flag"].item() is False
    task = task_for(TENSOR)
    for i, row in enumerate(request.items):
        task.check_item(row, request.label(i))
    with pytest.raises(InvalidInput, match="unknown input"):
        native.decode(_native({"model_type": "m", "data": {"inputs": {"z": [1]}}}), spec_of(TENSOR))
    with pytest.raises(PayloadTooLarge, match="limit is 1000"):
        native.decode(_native({"model_type": "m", "data": {"inputs": {"x": [[1.0] * 4] * 300,
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



def test_the_envelope_says_how_many_items_before_the_payload_is_read():
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
