"""Open Inference Protocol (KServe V2) end to end: the real server, the real models and the real
`tritonclient[http]` client (binary tensor data by default, and JSON with binary_data=False)."""

from __future__ import annotations

import base64
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import orjson
import pytest

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

pytestmark = pytest.mark.real_models

TEXTS = ["wash the dishes after dinner", "buy milk, eggs and bread", "book a vet appointment for the cat",
         "fix the leaking kitchen tap", "what's the weather like tomorrow?"]


@pytest.fixture(scope="module")
def triton(server: Server) -> Iterator[Any]:
    client = httpclient.InferenceServerClient(server.url.removeprefix("http://"), network_timeout=120.0,
                                              connection_timeout=30.0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture(scope="module")
def photo() -> bytes:
    """A real photo (scikit-image's coffee cup) as PNG, or a synthetic one where that is not installed."""
    try:
        import skimage

        return (Path(skimage.__file__).parent / "data" / "coffee.png").read_bytes()
    except (ImportError, OSError):
        import io

        from PIL import Image

        yy, xx = np.mgrid[0:300, 0:400]
        rgb = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue()


def seed(http: httpx.Client, model: str, data: dict[str, Any], version: str | None = None) -> list[dict[str, Any]]:
    """The seed API's outputs for the same inputs (the reference every protocol must match)."""
    body: dict[str, Any] = {"model_type": model, "data": data}
    if version:
        body["version"] = version
    r = http.post("/inference", json=body)
    assert r.status_code == 200, r.text
    outputs: list[dict[str, Any]] = r.json()["outputs"]
    return outputs


def bytes_input(name: str, values: list[bytes], binary: bool) -> Any:
    inp = httpclient.InferInput(name, [len(values)], "BYTES")
    inp.set_data_from_numpy(np.array(values, dtype=np.object_), binary_data=binary)
    return inp


def sorted_scores(outputs: list[dict[str, Any]]) -> np.ndarray:
    return np.array([sorted((e["score"] for e in o["top_k"]), reverse=True) for o in outputs], dtype=np.float32)


def assert_error(r: httpx.Response, status: int | None = None) -> str:
    """A 4xx in the V2 error shape: {"error": "..."}; returns the message."""
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    message: str = body["error"]
    return message


# -- health and metadata -------------------------------------------------------------------------

def test_server_health_and_metadata(triton: Any, http: httpx.Client) -> None:
    assert triton.is_server_live()
    assert triton.is_server_ready()
    meta = triton.get_server_metadata()
    assert meta["name"] == "ml-service" and meta["version"]
    assert {"binary_tensor_data", "model_repository"} <= set(meta["extensions"])
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}


def test_model_metadata(triton: Any) -> None:
    emb = triton.get_model_metadata("text-embedding")
    assert emb["name"] == "text-embedding" and emb["versions"] == ["1", "2"]
    assert emb["platform"] == "onnxruntime_onnx"
    assert emb["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert emb["outputs"] == [{"name": "embedding", "datatype": "FP32", "shape": [-1, 384]}]
    assert triton.get_model_metadata("bert", "1") == emb  # alias and version
    intent = triton.get_model_metadata("intent-classifier")
    assert intent["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 157]},
                                 {"name": "label", "datatype": "BYTES", "shape": [-1]}]
    cnn = triton.get_model_metadata("cnn")
    assert cnn["name"] == "item-classifier"
    assert cnn["inputs"] == [{"name": "image", "datatype": "BYTES", "shape": [-1]},
                             {"name": "pixel_values", "datatype": "FP32", "shape": [-1, 3, 224, 224]}]
    assert cnn["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 1000]}


def test_model_ready(triton: Any, http: httpx.Client) -> None:
    assert triton.is_model_ready("text-embedding")
    http.post("/models/text-embedding/unload?version=1")
    assert not triton.is_model_ready("text-embedding", "1")  # served, but a request on it would load it first
    seed(http, "bert", {"text": "Buy milk"}, version="1")
    assert triton.is_model_ready("text-embedding", "1")
    assert triton.is_model_ready("cnn")
    assert not triton.is_model_ready("no-such-model")


# -- inference -----------------------------------------------------------------------------------

@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("version", ["", "1"], ids=["default", "v1"])
def test_infer_embedding_matches_inference(triton: Any, http: httpx.Client, binary: bool, version: str) -> None:
    result = triton.infer("text-embedding", [bytes_input("text", [t.encode() for t in TEXTS], binary)],
                          model_version=version,
                          outputs=[httpclient.InferRequestedOutput("embedding", binary_data=binary)])
    emb = result.as_numpy("embedding")
    assert emb.shape == (len(TEXTS), 384) and emb.dtype == np.float32
    assert result.get_response()["model_version"] == (version or "2")
    ref = np.array([o["embedding"] for o in seed(http, "text-embedding", {"texts": TEXTS}, version or None)])
    np.testing.assert_allclose(emb, ref, atol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_classifier_matches_inference(triton: Any, http: httpx.Client, binary: bool) -> None:
    inp = bytes_input("text", [t.encode() for t in TEXTS], binary)
    if binary:  # the client's default: no outputs named, every output in binary
        result = triton.infer("intent-classifier", [inp])
    else:
        result = triton.infer("intent-classifier", [inp], outputs=[
            httpclient.InferRequestedOutput("probabilities", binary_data=False),
            httpclient.InferRequestedOutput("label", binary_data=False)])
    probs, labels = result.as_numpy("probabilities"), result.as_numpy("label")
    assert probs.shape == (len(TEXTS), 157) and labels.shape == (len(TEXTS),)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    ref = seed(http, "intent-classifier", {"texts": TEXTS, "top_k": 157})
    decoded = [x.decode() if isinstance(x, bytes) else x for x in labels.tolist()]
    assert decoded == [o["label"] for o in ref]
    np.testing.assert_allclose(-np.sort(-probs, axis=1), sorted_scores(ref), atol=1e-5)


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json-base64"])
def test_infer_cnn_image_matches_inference(triton: Any, http: httpx.Client, photo: bytes, binary: bool) -> None:
    # binary: the encoded image bytes as they are; JSON: BYTES elements are strings, so base64
    value = photo if binary else base64.b64encode(photo)
    result = triton.infer("cnn", [bytes_input("image", [value], binary)], outputs=[
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary)])
    probs = result.as_numpy("probabilities")
    assert probs.shape == (1, 1000)
    ref = seed(http, "cnn", {"image": base64.b64encode(photo).decode(), "top_k": 1000})
    label = result.as_numpy("label")[0]
    assert (label.decode() if isinstance(label, bytes) else label) == ref[0]["label"]
    np.testing.assert_allclose(-np.sort(-probs, axis=1), sorted_scores(ref), atol=1e-5)


def test_infer_cnn_pixel_values_matches_inference(triton: Any, http: httpx.Client, photo: bytes,
                                                  real_models: Path) -> None:
    from ml_service.repository import ModelRepository
    from ml_service.tasks import create_task

    repo = ModelRepository(real_models)
    repo.scan()
    entry = repo.get("cnn")
    assert entry.manifest is not None
    mv = entry.versions[entry.candidates[-1]]
    task = create_task(entry, mv, mv.manifest)
    (prepared,) = task.preprocess([photo])  # the server's own preprocessing, run here
    pixels = np.stack([prepared.features, prepared.features]).astype(np.float32)
    inp = httpclient.InferInput("pixel_values", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)  # binary by default
    probs = triton.infer("item-classifier", [inp]).as_numpy("probabilities")
    ref = seed(http, "cnn", {"image": base64.b64encode(photo).decode(), "top_k": 1000})
    np.testing.assert_allclose(-np.sort(-probs, axis=1), np.repeat(sorted_scores(ref), 2, axis=0), atol=1e-5)


def test_output_selection_and_request_id(triton: Any, http: httpx.Client) -> None:
    result = triton.infer("task-category", [bytes_input("text", [b"water the tomatoes"], True)],
                          request_id="req-7",
                          outputs=[httpclient.InferRequestedOutput("label", binary_data=False)])
    response = result.get_response()
    assert response["id"] == "req-7" and response["model_name"] == "task-category"
    assert [o["name"] for o in response["outputs"]] == ["label"]
    (ref,) = seed(http, "task-category", {"text": "water the tomatoes"})
    assert result.as_numpy("label").tolist() == [ref["label"]]
    assert result.as_numpy("probabilities") is None


def test_plain_json_request_nested_data(http: httpx.Client) -> None:
    body = {"id": "j1", "inputs": [{"name": "text", "shape": [2, 1], "datatype": "BYTES",
                                    "data": [["buy milk"], ["pay the electricity bill"]]}],
            "outputs": [{"name": "label"}]}
    r = http.post("/v2/models/task-category/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    ref = [o["label"] for o in seed(http, "task-category", {"texts": ["buy milk", "pay the electricity bill"]})]
    assert r.json() == {"model_name": "task-category", "model_version": "2", "id": "j1",
                        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [2], "data": ref}]}


# -- model repository extension ------------------------------------------------------------------

def test_load_and_unload_through_the_client(triton: Any) -> None:
    triton.unload_model("task-category")
    assert not triton.is_model_ready("task-category")
    index = {(m["name"], m.get("version")): m for m in triton.get_model_repository_index()}
    assert index[("task-category", "1")]["state"] == "UNAVAILABLE"
    assert index[("text-embedding", "2")]["state"] == "READY"
    triton.load_model("task-category")
    assert triton.is_model_ready("task-category")
    ready = triton.get_model_repository_index(query_params=None)
    assert any(m["name"] == "task-category" and m["state"] == "READY" for m in ready)
    with pytest.raises(InferenceServerException) as info:
        triton.load_model("no-such-model")
    assert info.value.status() == "404"


def test_repository_index_ready_filter(http: httpx.Client) -> None:
    r = http.post("/v2/repository/index", json={"ready": True})
    assert r.status_code == 200
    assert r.json() and all(m["state"] == "READY" for m in r.json())
    assert_error(http.post("/v2/repository/index", json={"ready": "yes"}))
    assert_error(http.post("/v2/repository/models/task-category/load",
                           json={"parameters": {"config": "{}"}}), 400)


# -- bad input -----------------------------------------------------------------------------------

def test_errors_through_the_client(triton: Any) -> None:
    wrong = httpclient.InferInput("text", [1], "FP32")
    wrong.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        triton.infer("text-embedding", [wrong])
    assert info.value.status() == "422" and "expects BYTES" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        triton.infer("no-such-model", [bytes_input("text", [b"a"], True)])
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        triton.infer("text-embedding", [bytes_input("text", [b"a"], True)], model_version="9")
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException) as info:
        triton.get_model_metadata("text-embedding", "abc")
    assert info.value.status() == "404"


def _binary_request(doc: dict[str, Any], blob: bytes, header_extra: int = 0) -> tuple[bytes, dict[str, str]]:
    head = orjson.dumps(doc)
    return head + blob, {"Inference-Header-Content-Length": str(len(head) + header_extra),
                         "Content-Type": "application/octet-stream"}


def _text(n: int, shape: list[int] | None = None, datatype: str = "BYTES") -> dict[str, Any]:
    return {"inputs": [{"name": "text", "shape": shape or [n], "datatype": datatype, "data": ["a"] * n}]}


@pytest.mark.parametrize(("path", "doc", "status", "message"), [
    ("/v2/models/bert/infer", _text(1, datatype="FP32"), 422, "expects BYTES"),
    ("/v2/models/bert/infer", _text(2, shape=[3]), 422, "needs 3"),
    ("/v2/models/bert/infer", {"inputs": []}, 422, "non-empty"),
    ("/v2/models/bert/infer", _text(0), 422, "must not be empty"),
    ("/v2/models/bert/infer", _text(2049), 413, "at most 256"),
    ("/v2/models/bert/infer", {"inputs": [{"name": "txt", "shape": [1], "datatype": "BYTES", "data": ["a"]}]},
     422, "unknown input"),
    ("/v2/models/cnn/infer", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                          "data": ["not base64!"]}]}, 422, "base64"),
    ("/v2/models/cnn/infer", {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES",
                                          "data": [base64.b64encode(b"not an image").decode()]}]}, 422, "image"),
    ("/v2/models/no-such-model/infer", _text(1), 404, "unknown model"),
    ("/v2/models/bert/versions/9/infer", _text(1), 404, "version"),
    ("/v2/models/bert/versions/abc/infer", _text(1), 404, "version"),
])
def test_bad_json_requests(http: httpx.Client, path: str, doc: dict[str, Any], status: int, message: str) -> None:
    assert message in assert_error(http.post(path, json=doc), status)


def test_bad_binary_requests(http: httpx.Client) -> None:
    pixels = np.zeros((1, 3, 224, 224), dtype=np.float32).tobytes()
    doc = {"inputs": [{"name": "pixel_values", "shape": [1, 3, 224, 224], "datatype": "FP32",
                       "parameters": {"binary_data_size": len(pixels)}}]}
    url = "/v2/models/cnn/infer"
    body, headers = _binary_request(doc, pixels, header_extra=len(pixels) + 1)  # header larger than the body
    assert "Inference-Header-Content-Length" in assert_error(http.post(url, content=body, headers=headers), 400)
    body, headers = _binary_request(doc, pixels[:1000])  # binary_data_size larger than the body
    assert "runs past the end" in assert_error(http.post(url, content=body, headers=headers), 400)
    short = {"inputs": [{**doc["inputs"][0], "parameters": {"binary_data_size": 1000}}]}
    body, headers = _binary_request(short, pixels[:1000])  # shape and data length disagree
    assert "needs 602112" in assert_error(http.post(url, content=body, headers=headers), 422)
    text = struct.pack("<I", 50) + b"short"  # a BYTES element longer than its data
    doc = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                       "parameters": {"binary_data_size": len(text)}}]}
    body, headers = _binary_request(doc, text)
    assert "declares 50 bytes" in assert_error(http.post("/v2/models/bert/infer", content=body, headers=headers))
    assert_error(http.post(url, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_error(http.post(url, content=orjson.dumps(doc), headers={"Content-Encoding": "gzip"}), 400)


def test_huge_declared_shape_is_refused_at_once(http: httpx.Client) -> None:
    t0 = time.perf_counter()
    huge = {"inputs": [{"name": "pixel_values", "shape": [10**9, 3, 224, 224], "datatype": "FP32",
                        "parameters": {"binary_data_size": 16}}]}
    body, headers = _binary_request(huge, b"\0" * 16)
    assert "at most" in assert_error(http.post("/v2/models/cnn/infer", content=body, headers=headers), 413)
    assert "at most" in assert_error(http.post("/v2/models/bert/infer", json=_text(1, shape=[2**62])), 413)
    assert time.perf_counter() - t0 < 5


def test_unknown_routes_and_models_keep_the_v2_shape(http: httpx.Client) -> None:
    assert_error(http.get("/v2/models/no-such-model"), 404)
    assert_error(http.get("/v2/models/no-such-model/ready"), 404)
    assert_error(http.get("/v2/models/text-embedding/versions/7"), 404)
    assert_error(http.get("/v2/nothing-here"), 404)


# -- auth ----------------------------------------------------------------------------------------

def test_auth_applies_to_v2(secured_server: Server) -> None:
    client = httpclient.InferenceServerClient(secured_server.url.removeprefix("http://"), network_timeout=120.0)
    try:
        assert client.is_server_live() and client.is_server_ready()  # health stays open
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("text-embedding")
        assert info.value.status() == "401"
        with pytest.raises(InferenceServerException) as info:
            client.get_model_metadata("text-embedding", headers={"Authorization": "Bearer wrong"})
        assert info.value.status() == "401"
        auth = {"Authorization": "Bearer key-two"}
        assert client.get_model_metadata("text-embedding", headers=auth)["name"] == "text-embedding"
        result = client.infer("text-embedding", [bytes_input("text", [b"pay the water bill"], True)], headers=auth)
        assert result.as_numpy("embedding").shape == (1, 384)
        assert client.is_model_ready("text-embedding", headers={"Authorization": "Bearer key-one"})
    finally:
        client.close()
    with secured_server.client() as http:
        assert_error(http.get("/v2"), 401)
        assert_error(http.post("/v2/repository/index"), 401)
        assert http.get("/v2/health/live").status_code == 200
