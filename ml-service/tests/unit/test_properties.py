"""Property tests (hypothesis) of what parses client bytes: the V2 binary and JSON tensor parsers, JSON -> array,
and the image decoder. Whatever arrives, the answer is a value or a 4xx error, never another exception."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ml_service import tensors
from ml_service.codecs import v2
from ml_service.errors import MLServiceError
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry, ModelVersion
from ml_service.tasks import create_task, model_spec

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), database=None)


def _entry(manifest: dict[str, Any], labels: list[str] | None = None) -> ModelEntry:
    m = Manifest.model_validate(manifest)
    path = Path("/nonexistent/m")
    mv = ModelVersion(1, path / "1", labels=tuple(labels or ()), manifest=m)
    return ModelEntry(name="m", path=path, manifest=m, versions={1: mv})


TENSOR = _entry({"task": "tensor", "inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]},
                                              {"name": "s", "dtype": "string", "shape": [-1]}],
                 "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 1]}],
                 "limits": {"max_tensor_elements": 10_000}})
TEXT = _entry({"task": "embedding", "preprocessing": {"tokenizer": "tokenizer.json"}})
IMAGE = _entry({"task": "image-classification", "labels": "labels.txt",
                "limits": {"max_items": 4, "max_image_pixels": 1_000_000, "max_request_pixels": 2_000_000}},
               ["a", "b"])
SPECS = [model_spec(e, e.versions[1]) for e in (TENSOR, TEXT, IMAGE)]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=6), inner, max_size=5),
    max_leaves=30)
dims = st.lists(st.one_of(st.integers(min_value=0, max_value=6), st.sampled_from([2**31, 2**62, 10**18])),
                max_size=5)


def _only_client_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except MLServiceError as exc:
        assert 400 <= exc.status_code < 500, exc
        return None


@SETTINGS
@given(body=st.binary(max_size=400), header=st.one_of(st.none(), st.integers(-5, 500).map(str), st.text(max_size=4)),
       spec=st.sampled_from(SPECS))
def test_v2_random_bytes(body: bytes, header: str | None, spec: Any) -> None:
    _only_client_errors(v2.parse_infer_request, body, header, spec.signature)


@SETTINGS
@given(name=st.sampled_from(["x", "s", "text", "image", "pixel_values", "nope"]),
       datatype=st.sampled_from([*tensors.V2_DTYPES, "STRING"]), shape=dims, data=json_values,
       blob=st.binary(max_size=200), binary=st.booleans(), spec=st.sampled_from(SPECS))
def test_v2_tensors_of_any_shape_and_data(name: str, datatype: str, shape: list[int], data: Any, blob: bytes,
                                           binary: bool, spec: Any) -> None:
    tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
    if binary:
        tensor["parameters"] = {"binary_data_size": len(blob)}
    else:
        tensor["data"] = data
    head = json.dumps({"inputs": [tensor]}).encode()  # stdlib: it also writes integers over 64 bits
    body, header = (head + blob, str(len(head))) if binary else (head, None)
    req = _only_client_errors(v2.parse_infer_request, body, header, spec.signature)
    if req is not None:
        request = _only_client_errors(v2.decode, req, spec)
        if request is not None:
            assert len(request.items) <= max(1, np.prod(shape) if shape else 1)


@SETTINGS
@given(data=json_values, datatype=st.sampled_from([d for d in tensors.V2_DTYPES if d != "BYTES"]))
def test_json_to_array(data: Any, datatype: str) -> None:
    arr = _only_client_errors(tensors.to_array, data, datatype, None, "x")
    if arr is not None:
        assert arr.dtype == tensors.V2_DTYPES[datatype]


@SETTINGS
@given(buf=st.binary(max_size=64), count=st.integers(0, 8))
def test_bytes_elements(buf: bytes, count: int) -> None:
    out = _only_client_errors(tensors.split_bytes_elements, memoryview(buf), count, "x")
    if out is not None:
        assert len(out) == count and sum(len(b) + 4 for b in out) == len(buf)


def _png(width: int, height: int, payload: bytes = b"") -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(payload)) + chunk(b"IEND", b""))


def _real_images() -> list[bytes]:
    from PIL import Image

    out = []
    for fmt in ("PNG", "JPEG", "WEBP"):
        buf = io.BytesIO()
        Image.new("RGB", (40, 30), (10, 200, 30)).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


IMAGES = _real_images()


@SETTINGS
@given(raw=st.one_of(
    st.binary(max_size=300),
    st.tuples(st.sampled_from(IMAGES), st.integers(0, 400)).map(lambda p: p[0][:p[1]]),  # truncated files
    st.tuples(st.sampled_from(IMAGES), st.integers(0, 300), st.binary(min_size=1, max_size=8)).map(
        lambda p: p[0][:p[1]] + p[2] + p[0][p[1] + len(p[2]):]),  # corrupted bytes
    st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1), st.binary(max_size=40)).map(
        lambda p: _png(*p)),  # huge declared dimensions
))
def test_the_image_decoder(raw: bytes) -> None:
    task = create_task(IMAGE, IMAGE.versions[1], IMAGE.manifest)  # type: ignore[arg-type]
    (out,) = task.preprocess([raw])
    if isinstance(out, Exception):
        assert isinstance(out, MLServiceError) and out.status_code in (413, 422), out
    else:
        assert out.features.shape == (3, 224, 224) and np.isfinite(out.features).all()
