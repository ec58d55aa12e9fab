"""The V2 codec without a server: JSON and binary tensors (checked against tritonclient's own encoder and
decoder), the signatures tasks declare, and a `tensor` model through the app in process."""

from __future__ import annotations

import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ml_service import tensors
from ml_service.codecs import v2
from ml_service.errors import BadRequest, InvalidInput, PayloadTooLarge
from ml_service.repository import ModelEntry

from .codec_models import (
    CLS,
    EMB,
    IMG,
    TENSOR,
    items_of,
    parse,
    result_of,
    spec_of,
)

tritonclient_utils = pytest.importorskip("tritonclient.utils")
InferResult = pytest.importorskip("tritonclient.http").InferResult


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
