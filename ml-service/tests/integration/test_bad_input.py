"""Bad input at the boundaries: always a 4xx (or the model's 503) with {"error": {"code", "message"}}."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from .helpers import EMBED_MAX_ITEMS, FAIL_REASON, FAIL_SHOWN, IMAGE_MAX_BYTES, MAX_BODY_BYTES, assert_error

GOOD_TENSOR = {"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]}


def _post(client, body):
    return client.post("/inference", json=body)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- unknown models and versions -> 404 --------------------------------------------------------------
def test_unknown_model(client):
    err = assert_error(_post(client, {"model_type": "gpt-9", "data": {"text": "a"}}), 404, "model_not_found")
    assert "gpt-9" in err["message"]
    assert "text-embedding" in err["message"]  # says what exists


@pytest.mark.parametrize("version", [9, "9", "abc", 3, "0", -1])
def test_unknown_or_unserved_version(client, version):
    # version 3 exists on disk but lacks its model file, so it is not served
    r = _post(client, {"model_type": "bert", "data": {"text": "a"}, "version": version})
    assert_error(r, 404, "version_not_found")


@pytest.mark.parametrize("version", [True, 1.5, [1], {"v": 1}])
def test_version_of_the_wrong_type(client, version):
    assert_error(_post(client, {"model_type": "bert", "data": {"text": "a"}, "version": version}), 422,
                 "invalid_input")


def test_version_of_a_latest_policy_model(client):
    assert client.post("/inference", json={"model_type": "sentiment", "data": {"text": "a"},
                                           "version": "1"}).status_code == 200
    assert_error(_post(client, {"model_type": "sentiment", "data": {"text": "a"}, "version": 2}), 404)


# -- the body itself ----------------------------------------------------------------------------------
@pytest.mark.parametrize("body", [b"not json", b"{", b'{"model_type": "bert",}', b"\xff\xfe", b"", b"   "])
def test_body_that_is_not_json(client, body):
    r = client.post("/inference", content=body, headers={"content-type": "application/json"})
    assert_error(r, 400, "bad_request")


@pytest.mark.parametrize("body", [[], [{"model_type": "bert"}], "bert", 1, None, True])
def test_body_that_is_not_an_object(client, body):
    r = client.post("/inference", content=json.dumps(body), headers={"content-type": "application/json"})
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize("body", [
    {"data": {"text": "a"}},
    {"model_type": "", "data": {"text": "a"}},
    {"model_type": 5, "data": {"text": "a"}},
    {"model_type": None, "data": {"text": "a"}},
    {"model_type": ["bert"], "data": {"text": "a"}},
    {"model_type": "bert"},
    {"model_type": "bert", "data": None},
    {"model_type": "bert", "data": ["a"]},
    {"model_type": "bert", "data": "a"},
])
def test_missing_or_wrong_top_level_fields(client, body):
    assert_error(_post(client, body), 422, "invalid_input")


# -- text ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("data", [
    {},
    {"image": "abc"},
    {"text": 5},
    {"text": None},
    {"text": ["a"]},
    {"text": {"t": "a"}},
    {"texts": "a"},
    {"texts": []},
    {"texts": [1, 2]},
    {"texts": ["a", None]},
    {"texts": [["a"]]},
    {"texts": {"0": "a"}},
    {"text": "a", "texts": ["b"]},
])
def test_bad_text_data(client, data):
    assert_error(_post(client, {"model_type": "bert", "data": data}), 422, "invalid_input")


def test_text_over_max_chars(client):
    r = _post(client, {"model_type": "bert", "data": {"text": "a" * 2001}})
    assert_error(r, 413, "payload_too_large")
    assert _post(client, {"model_type": "bert", "data": {"text": "a" * 2000}}).status_code == 200


@pytest.mark.parametrize("top_k", [0, -1, 4, 100, "2", "", 1.5, 2.0, True, False, None, [1], {"k": 1}])
def test_bad_top_k(client, top_k):
    r = _post(client, {"model_type": "sentiment", "data": {"text": "good", "top_k": top_k}})
    err = assert_error(r, 422, "invalid_input")
    assert "top_k" in err["message"]


@pytest.mark.parametrize("top_k", [0, 4, "1", True])
def test_bad_top_k_for_images(client, make_image, top_k):
    image = _b64(make_image("PNG", (8, 8)))
    assert_error(_post(client, {"model_type": "cnn", "data": {"image": image, "top_k": top_k}}), 422)


# -- images ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("image", [
    "%%% not base64 %%%",
    "abc",
    "data:image/png;base64,!!!!",
    _b64(b"these bytes are not an image at all"),
    _b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),  # a PNG signature and nothing readable after it
    "",
    5,
    None,
    ["QUJD"],
])
def test_bad_images(client, image):
    assert_error(_post(client, {"model_type": "cnn", "data": {"image": image}}), 422, "invalid_input")


def test_one_bad_image_among_good_ones(client, make_image):
    good = _b64(make_image("PNG", (8, 8)))
    r = _post(client, {"model_type": "cnn", "data": {"images": [good, "not-an-image", good]}})
    assert_error(r, 422, "invalid_input")
    assert _post(client, {"model_type": "cnn", "data": {"images": [good, good]}}).status_code == 200  # unharmed


@pytest.mark.parametrize("data", [{"images": []}, {"images": "QUJD"}, {"images": [1]}, {"text": "a"}])
def test_bad_image_lists(client, data):
    assert_error(_post(client, {"model_type": "cnn", "data": data}), 422, "invalid_input")


def test_image_limits(onnx_repo, app_client, make_image):
    """Pixel and byte limits (needs a larger body limit than the default test client)."""
    with app_client(onnx_repo.root, max_body_bytes=200_000) as client:
        too_many_pixels = _b64(make_image("PNG", (1001, 1000)))
        err = assert_error(_post(client, {"model_type": "cnn", "data": {"image": too_many_pixels}}), 413,
                           "payload_too_large")
        assert "1001x1000" in err["message"]
        noisy = np.random.default_rng(0).integers(0, 256, size=64 * 64 * 3, dtype=np.uint8).tobytes()
        buf = io.BytesIO()
        Image.frombytes("RGB", (64, 64), noisy).save(buf, format="PNG")
        assert len(buf.getvalue()) > IMAGE_MAX_BYTES
        assert_error(_post(client, {"model_type": "cnn", "data": {"image": _b64(buf.getvalue())}}), 413,
                     "payload_too_large")


# -- tensors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("inputs", [
    {"a": [[1, 2, 3]], "b": [[1, 2, 3]]},  # wrong inner dimension
    {"a": [1, 2, 3, 4], "b": [1, 2, 3, 4]},  # no batch dimension
    {"a": [[[1, 2, 3, 4]]], "b": [[[1, 2, 3, 4]]]},  # one dimension too many
    {"a": 1, "b": 2},
    {"a": [[1, 2, 3, 4]], "b": [[1, 2, 3, 4], [5, 6, 7, 8]]},  # batch sizes differ
    {"a": [[1, 2, 3, 4], [1, 2]], "b": [[1, 2, 3, 4], [1, 2, 3, 4]]},  # ragged
    {"a": [["w", "x", "y", "z"]], "b": [[1, 2, 3, 4]]},  # strings
    {"a": [["1", "2", "3", "4"]], "b": [[1, 2, 3, 4]]},  # numbers in strings
    {"a": [[1, None, 3, 4]], "b": [[1, 2, 3, 4]]},  # null
    {"a": [[True, False, True, True]], "b": [[1, 2, 3, 4]]},  # booleans
    {"a": [[1, 2, 3, {"x": 4}]], "b": [[1, 2, 3, 4]]},
    {"a": [[1, 2, 3, 4]]},  # missing b
    {"a": [[1, 2, 3, 4]], "b": [[1, 2, 3, 4]], "c": [[1, 2, 3, 4]]},  # unknown c
    {"a": [], "b": []},
])
def test_bad_tensors(client, inputs):
    assert_error(_post(client, {"model_type": "tensor-math", "data": {"inputs": inputs}}), 422, "invalid_input")


@pytest.mark.parametrize("data", [{}, {"inputs": [[1, 2, 3, 4]]}, {"inputs": "a"}, {"inputs": None}])
def test_tensor_inputs_must_be_an_object(client, data):
    assert_error(_post(client, {"model_type": "tensor-math", "data": data}), 422, "invalid_input")


# -- size limits ---------------------------------------------------------------------------------------------
def _padded_body(size: int) -> bytes:
    body = json.dumps({"model_type": "tensor-math", "data": {"inputs": GOOD_TENSOR}}).encode()
    assert len(body) <= size
    return body + b" " * (size - len(body))


def test_body_exactly_at_the_limit_passes(client):
    body = _padded_body(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    r = client.post("/inference", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_body_one_byte_over_the_limit(client):
    body = _padded_body(MAX_BODY_BYTES + 1)
    r = client.post("/inference", content=body, headers={"content-type": "application/json"})
    err = assert_error(r, 413, "payload_too_large")
    assert str(MAX_BODY_BYTES) in err["message"]


def test_streamed_body_over_the_limit(client):
    """Without a Content-Length the limit is enforced while reading."""
    body = _padded_body(MAX_BODY_BYTES + 1)
    chunks = [body[i:i + 1000] for i in range(0, len(body), 1000)]
    r = client.post("/inference", content=iter(chunks), headers={"content-type": "application/json"})
    assert_error(r, 413, "payload_too_large")
    ok = _padded_body(MAX_BODY_BYTES)
    r = client.post("/inference", content=iter([ok[:2000], ok[2000:]]), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_more_items_than_max_items(client):
    r = _post(client, {"model_type": "bert", "data": {"texts": ["cat"] * (EMBED_MAX_ITEMS + 1)}})
    err = assert_error(r, 413, "payload_too_large")
    assert str(EMBED_MAX_ITEMS) in err["message"]
    assert _post(client, {"model_type": "bert", "data": {"texts": ["cat"] * EMBED_MAX_ITEMS}}).status_code == 200


def test_more_tensor_rows_than_max_items(client):
    rows = [[1, 2, 3, 4]] * 9  # max_items is 8
    assert_error(_post(client, {"model_type": "tensor-math", "data": {"inputs": {"a": rows, "b": rows}}}), 413)
    rows = rows[:8]
    assert _post(client, {"model_type": "tensor-math", "data": {"inputs": {"a": rows, "b": rows}}}).status_code == 200


# -- models that cannot serve -----------------------------------------------------------------------------
def test_a_model_that_fails_to_load(client):
    for _ in range(2):  # the first request tries to load it, later ones get the recorded reason
        err = assert_error(_post(client, {"model_type": "flaky", "data": {"inputs": {"x": [[1, 2, 3, 4]]}}}), 503,
                           "model_failed")
        assert FAIL_SHOWN in err["message"] and FAIL_REASON not in err["message"]
    # the others still serve
    assert _post(client, {"model_type": "tensor-math", "data": {"inputs": GOOD_TENSOR}}).status_code == 200


def test_an_invalid_model(client):
    err = assert_error(_post(client, {"model_type": "broken", "data": {"text": "a"}}), 503, "model_unavailable")
    assert "invalid" in err["message"]
    assert "task" in err["message"]


# -- routing ------------------------------------------------------------------------------------------------
def test_unknown_path_and_wrong_method(client):
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/inference"), 405, "method_not_allowed")


@pytest.mark.parametrize(("method", "path", "status", "shape"), [
    ("GET", "/v2/nope", 404, "v2"), ("GET", "/v2/models/x/nope", 404, "v2"), ("GET", "/v2/models/x/infer", 405, "v2"),
    ("GET", "/v1/nope", 404, "openai"), ("GET", "/v1/embeddings", 405, "openai"),
    ("PUT", "/v1/models/x", 405, "openai"),
    ("GET", "/models/x/nope", 404, "native"), ("GET", "/", 404, "native"), ("DELETE", "/stats", 405, "native"),
])
def test_errors_off_the_route_table_come_in_the_nearest_protocol_s_shape(client, method, path, status, shape):
    """The route knows its protocol; a path no route has gets the shape of the routes sharing most of its start."""
    r = client.request(method, path)
    assert r.status_code == status and r.headers["content-type"] == "application/json", r.text
    error = r.json()["error"]
    if shape == "v2":
        assert isinstance(error, str) and error
    elif shape == "openai":
        assert error["type"] == "invalid_request_error" and error["code"] in ("not_found", "method_not_allowed")
    else:
        assert error["code"] in ("not_found", "method_not_allowed") and set(error) == {"code", "message"}
    if status == 405:
        assert r.headers["allow"]


def test_random_garbage_is_never_a_server_error(client):
    """A deterministic sweep of odd values in every field: a 2xx or a 4xx with the error shape, never 5xx."""
    import random

    rng = random.Random(20240607)
    scalars = [None, True, False, 0, -1, 1, 2**63, -(2**70), 1.5, float("1e308"), "", "a", "QUJD", "%%", "🙂" * 3,
               "data:,", "9" * 50]

    def value(depth=0):
        roll = rng.random()
        if depth > 2 or roll < 0.5:
            return rng.choice(scalars)
        if roll < 0.8:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {rng.choice(["a", "b", "x", "text", "inputs", ""]): value(depth + 1) for _ in range(rng.randint(0, 3))}

    keys = ["text", "texts", "image", "images", "inputs", "top_k", "extra"]
    for _ in range(150):
        data = {k: value() for k in rng.sample(keys, rng.randint(0, 3))}
        body = {"model_type": rng.choice(["bert", "sentiment", "cnn", "tensor-math"]), "data": data}
        if rng.random() < 0.2:
            body["version"] = value()
        r = client.post("/inference", content=json.dumps(body), headers={"content-type": "application/json"})
        assert r.status_code < 500, (body, r.status_code, r.text)
        if r.status_code >= 400:
            assert_error(r, r.status_code)
