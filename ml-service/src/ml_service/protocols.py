"""Protocol logic that is not HTTP: Open Inference Protocol (KServe V2) tensors, JSON and binary, and
the OpenAI embeddings request, chunking and encodings.

Routes in `api/v2.py` and `api/openai.py` only translate HTTP; everything here works on bytes, dicts
and numpy arrays, and reaches the models only through `InferenceService`.
"""

from __future__ import annotations

import base64
import math
import os
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from ml_service.errors import BadRequest, InvalidInput, PayloadTooLarge
from ml_service.manifest import Manifest
from ml_service.repository import ModelEntry
from ml_service.service import InferenceService
from ml_service.tasks import ItemResult, Task
from ml_service.tasks.image import ImageClassificationTask
from ml_service.tasks.tensor import TensorTask
from ml_service.tasks.text import EmbeddingTask, TextClassificationTask, TextTask

# --------------------------------------------------------------------------------------------
# Open Inference Protocol (KServe V2)
# --------------------------------------------------------------------------------------------

#: V2 datatypes and their little-endian numpy dtypes (BYTES: Python objects, str or bytes).
V2_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
#: model.toml dtypes -> V2 datatypes.
MANIFEST_TO_V2: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64", "string": "BYTES",
}
_NUMPY_TO_V2: dict[str, str] = {dt.name: name for name, dt in V2_DTYPES.items() if name != "BYTES"}
#: The `platform` of model metadata, by manifest runtime.
PLATFORMS: dict[str, str] = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch", "fake": "fake"}
#: Extensions this server speaks (`GET /v2`).
EXTENSIONS = ["binary_tensor_data", "model_repository"]
_MAX_DIMS = 32  # numpy allows 64; no model of ours has more than 4
_LEN = struct.Struct("<I")
_TEXT_INPUT, _IMAGE_INPUT, _PIXELS_INPUT = "text", "image", "pixel_values"


@dataclass(frozen=True)
class TensorMeta:
    """One tensor of a model's V2 signature; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: list[int]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class ModelSignature:
    """A model's V2 inputs and outputs, and the most elements one request may declare per input."""

    inputs: list[TensorMeta]
    outputs: list[TensorMeta]
    max_elements: dict[str, int]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


def embedding_dim(manifest: Manifest) -> int:
    """The embedding width the manifest declares (last dim of the pooled output), -1 when unknown."""
    specs = {s.name: s for s in manifest.outputs}
    wanted = manifest.postprocessing.output
    spec = specs.get(wanted) if wanted else (manifest.outputs[0] if manifest.outputs else None)
    if spec is None or not spec.shape or spec.shape[-1] <= 0:
        return -1
    return spec.shape[-1]


def signature(entry: ModelEntry) -> ModelSignature:
    """The V2 tensors of a (valid) model, from its manifest and labels; loads nothing."""
    m = entry.manifest
    if m is None:
        raise InvalidInput(f"model '{entry.name}' is invalid: {entry.error}")
    lim = m.limits
    if m.task in ("embedding", "text-classification"):
        inputs = [TensorMeta(_TEXT_INPUT, "BYTES", [-1])]
        caps = {_TEXT_INPUT: lim.max_items}
    elif m.task == "image-classification":
        s = m.preprocessing.image_size
        inputs = [TensorMeta(_IMAGE_INPUT, "BYTES", [-1]), TensorMeta(_PIXELS_INPUT, "FP32", [-1, 3, s, s])]
        caps = {_IMAGE_INPUT: lim.max_items, _PIXELS_INPUT: min(lim.max_items * 3 * s * s, lim.max_tensor_elements)}
    else:
        inputs = [TensorMeta(t.name, MANIFEST_TO_V2[t.dtype], list(t.shape)) for t in m.inputs]
        caps = {t.name: lim.max_tensor_elements for t in m.inputs}
    if m.task == "embedding":
        outputs = [TensorMeta("embedding", "FP32", [-1, embedding_dim(m)])]
    elif m.task in ("text-classification", "image-classification"):
        n = len(entry.labels) if entry.labels else -1
        outputs = [TensorMeta("probabilities", "FP32", [-1, n]), TensorMeta("label", "BYTES", [-1])]
    else:
        outputs = [TensorMeta(t.name, MANIFEST_TO_V2[t.dtype], list(t.shape)) for t in m.outputs]
    return ModelSignature(inputs, outputs, caps)


def model_metadata(entry: ModelEntry) -> dict[str, Any]:
    """`GET /v2/models/{name}`: name, served versions, platform, inputs and outputs."""
    sig = signature(entry)
    assert entry.manifest is not None
    return {
        "name": entry.name,
        "versions": [str(v) for v in entry.served_versions],
        "platform": PLATFORMS.get(entry.manifest.runtime, entry.manifest.runtime),
        "inputs": [t.as_json() for t in sig.inputs],
        "outputs": [t.as_json() for t in sig.outputs],
    }


@dataclass
class InputTensor:
    """One decoded input: numeric data as a typed array in its declared shape; BYTES as an object
    array of `str` (JSON data) or `bytes` (binary data)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


@dataclass(frozen=True)
class OutputRequest:
    """One requested output and whether it goes back as binary data (None: the request's default)."""

    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """A parsed `POST .../infer`."""

    id: str | None
    inputs: list[InputTensor]
    outputs: list[OutputRequest] | None
    binary_output: bool = False


def split_body(body: bytes, header_length: str | None) -> tuple[memoryview, memoryview | None]:
    """The JSON part and the binary part of a request body (binary tensor data extension)."""
    view = memoryview(body)
    if header_length is None:
        return view, None
    try:
        n = int(header_length.strip())
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
    if n < 0 or n > len(body):
        raise BadRequest(f"Inference-Header-Content-Length is {n} but the body has {len(body)} bytes")
    return view[:n], view[n:]


def _params(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    return value


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > _MAX_DIMS:
        raise InvalidInput(f"input '{name}': shape must be a list of at most {_MAX_DIMS} integers")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value):
        raise InvalidInput(f"input '{name}': shape must hold non-negative integers, got {value}")
    return tuple(value)


def _int_param(params: dict[str, Any], key: str, where: str) -> int | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{where}.{key} must be a non-negative integer")
    return value


def _bool_param(params: dict[str, Any], key: str, where: str) -> bool | None:
    value = params.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise InvalidInput(f"{where}.{key} must be true or false")


def _object_array(items: Sequence[Any], shape: tuple[int, ...]) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = items
    return arr.reshape(shape)


def split_bytes_elements(buf: memoryview, count: int, name: str) -> list[bytes]:
    """BYTES binary data: `count` elements, each a 4-byte little-endian length and then the bytes."""
    out: list[bytes] = []
    pos, end = 0, len(buf)
    for i in range(count):
        if pos + 4 > end:
            raise InvalidInput(f"binary data of input '{name}' ends before element {i} of {count}")
        (length,) = _LEN.unpack_from(buf, pos)
        pos += 4
        if length > end - pos:
            raise InvalidInput(f"binary data of input '{name}': element {i} declares {length} bytes "
                               f"but only {end - pos} remain")
        out.append(bytes(buf[pos:pos + length]))
        pos += length
    if pos != end:
        raise InvalidInput(f"binary data of input '{name}' has {end - pos} bytes after its {count} elements")
    return out


def decode_binary(buf: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One input's binary data as an array of its declared shape (no copy for numeric data)."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(split_bytes_elements(buf, count, name), shape)
    dt = V2_DTYPES[datatype]
    need = count * dt.itemsize
    if len(buf) != need:
        raise InvalidInput(f"input '{name}': binary_data_size is {len(buf)} bytes but shape {list(shape)} "
                           f"of {datatype} needs {need}")
    if datatype == "BOOL":
        return np.frombuffer(buf, dtype=np.uint8).astype(np.bool_).reshape(shape)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def _flatten_strings(data: Any, count: int, name: str) -> list[str]:
    """Nested or flat JSON lists of strings, row-major, stopping as soon as there are too many."""
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a list of strings")
    out: list[str] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                if len(stack) > _MAX_DIMS:
                    raise InvalidInput(f"input '{name}': data is nested too deeply")
                stack.append(iter(x))
                break
            if not isinstance(x, str):
                raise InvalidInput(f"input '{name}' is BYTES: its data must be strings, got {type(x).__name__}")
            out.append(x)
            if len(out) > count:
                raise InvalidInput(f"input '{name}' has more values than its shape allows ({count})")
        else:
            stack.pop()
    if len(out) != count:
        raise InvalidInput(f"input '{name}' has {len(out)} values but its shape needs {count}")
    return out


_KINDS_FOR = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def decode_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    """One input's JSON data (nested or flat, row-major) as an array of its declared shape."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _object_array(_flatten_strings(data, count, name), shape)
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a list of numbers")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(f"input '{name}': data is not a rectangular array of numbers") from None
    if arr.size != count:
        raise InvalidInput(f"input '{name}' has {arr.size} values but shape {list(shape)} needs {count}")
    target = V2_DTYPES[datatype]
    if arr.size:
        if arr.dtype.kind not in _KINDS_FOR[target.kind]:
            raise InvalidInput(f"input '{name}' is {datatype} but its data holds {_kind_name(arr.dtype.kind)}")
        if target.kind in "iu":
            info = np.iinfo(target)
            if int(arr.min()) < info.min or int(arr.max()) > info.max:
                raise InvalidInput(f"input '{name}' has values outside the range of {datatype}")
    return arr.astype(target).reshape(shape)


def _kind_name(kind: str) -> str:
    return {"b": "booleans", "i": "integers", "u": "integers", "f": "floats", "U": "strings"}.get(kind, "mixed values")


def parse_json(body: bytes | memoryview) -> Any:
    """A request body as JSON (orjson), with a 400 that says why when it is not."""
    if not len(body):
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.msg} at position {exc.pos}") from None


def parse_infer_request(body: bytes, header_length: str | None, sig: ModelSignature) -> InferRequest:
    """Parse and check an inference request against the model's signature, before building any array.

    Declared shapes are checked against the per-input element limits first, so a huge shape costs nothing.
    """
    head, blob = split_body(body, header_length)
    doc = parse_json(head)
    if not isinstance(doc, dict):
        raise InvalidInput("the request must be a JSON object with 'inputs'")
    request_id = doc.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    params = _params(doc.get("parameters"), "parameters")
    binary_output = bool(_bool_param(params, "binary_data_output", "parameters"))
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("inputs must be a non-empty list of tensors")
    specs = {t.name: t for t in sig.inputs}
    plans: list[tuple[str, str, tuple[int, ...], Any, int | None]] = []
    seen: set[str] = set()
    total = 0
    for i, t in enumerate(raw_inputs):
        if not isinstance(t, dict):
            raise InvalidInput(f"inputs[{i}] must be a JSON object")
        name = t.get("name")
        if not isinstance(name, str) or name not in specs:
            raise InvalidInput(f"inputs[{i}]: unknown input {name!r}; the model takes {sig.input_names}")
        if name in seen:
            raise InvalidInput(f"input '{name}' is given twice")
        seen.add(name)
        datatype = t.get("datatype")
        if not isinstance(datatype, str) or datatype not in V2_DTYPES:
            raise InvalidInput(f"input '{name}': datatype must be one of {list(V2_DTYPES)}, got {datatype!r}")
        if datatype != specs[name].datatype:
            raise InvalidInput(f"input '{name}' has datatype {datatype}; the model expects {specs[name].datatype}")
        shape = _shape(t.get("shape"), name)
        count, cap = math.prod(shape), sig.max_elements[name]
        if count > cap:
            raise PayloadTooLarge(f"input '{name}' declares shape {list(shape)} ({count} elements); "
                                  f"this model accepts at most {cap}")
        size = _int_param(_params(t.get("parameters"), f"input '{name}' parameters"), "binary_data_size",
                          f"input '{name}' parameters")
        if size is not None:
            if "data" in t:
                raise InvalidInput(f"input '{name}' has both data and parameters.binary_data_size")
            if blob is None:
                raise BadRequest(f"input '{name}' has parameters.binary_data_size but the request has no "
                                 "Inference-Header-Content-Length header")
            if total + size > len(blob):
                raise BadRequest(f"input '{name}': binary_data_size {size} runs past the end of the body "
                                 f"({len(blob) - total} bytes of binary data left)")
            plans.append((name, datatype, shape, total, size))
            total += size
        elif "data" not in t:
            raise InvalidInput(f"input '{name}' has neither data nor parameters.binary_data_size")
        else:
            plans.append((name, datatype, shape, t["data"], None))
    if blob is not None and total != len(blob):
        raise BadRequest(f"the body has {len(blob) - total} bytes of binary data that no input claims")
    inputs = []
    for name, datatype, shape, where, size in plans:
        if size is not None:
            assert blob is not None
            data = decode_binary(blob[where:where + size], datatype, shape, name)
        else:
            data = decode_json(where, datatype, shape, name)
        inputs.append(InputTensor(name, datatype, shape, data))
    return InferRequest(request_id, inputs, _parse_outputs(doc.get("outputs"), sig), binary_output)


def _parse_outputs(value: Any, sig: ModelSignature) -> list[OutputRequest] | None:
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise InvalidInput("outputs must be a list of {name, parameters?}")
    out: list[OutputRequest] = []
    for i, o in enumerate(value):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InvalidInput(f"outputs[{i}] must be a JSON object with a name")
        name = o["name"]
        if name not in sig.output_names:
            raise InvalidInput(f"unknown output {name!r}; the model has {sig.output_names}")
        if any(r.name == name for r in out):
            raise InvalidInput(f"output '{name}' is requested twice")
        params = _params(o.get("parameters"), f"output '{name}' parameters")
        if _int_param(params, "classification", f"output '{name}' parameters"):
            raise InvalidInput("the classification extension is not supported; request 'probabilities' and 'label'")
        out.append(OutputRequest(name, _bool_param(params, "binary_data", f"output '{name}' parameters")))
    return out


def _bytes_rows(t: InputTensor) -> list[Any]:
    """The elements of a BYTES input of shape [N] (or [N, 1])."""
    if len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1):
        return list(t.data.reshape(-1))
    raise InvalidInput(f"input '{t.name}' must have shape [N] (or [N, 1]), got {list(t.shape)}")


def _utf8(value: Any, name: str, i: int) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"input '{name}' element {i} is not valid UTF-8") from None


def request_raws(task: Task, request: InferRequest) -> list[Any]:
    """The raw items `InferenceService.infer` takes, from a request's input tensors; every item checked."""
    by_name = {t.name: t for t in request.inputs}
    if isinstance(task, TensorTask):
        return task.rows_from_arrays({name: t.data for name, t in by_name.items()})
    where = _TEXT_INPUT
    if isinstance(task, TextTask):
        rows = _bytes_rows(by_name[_TEXT_INPUT])
        raws: list[Any] = [_utf8(v, _TEXT_INPUT, i) for i, v in enumerate(rows)]
    elif isinstance(task, ImageClassificationTask):
        if len(by_name) != 1:
            raise InvalidInput(f"give exactly one of the inputs '{_IMAGE_INPUT}' (encoded images; base64 "
                               f"strings in JSON) or '{_PIXELS_INPUT}'")
        if _IMAGE_INPUT in by_name:
            where, raws = _IMAGE_INPUT, _bytes_rows(by_name[_IMAGE_INPUT])
        else:
            where, pixels = _PIXELS_INPUT, by_name[_PIXELS_INPUT]
            if pixels.data.ndim != 4:
                raise InvalidInput(f"input '{_PIXELS_INPUT}' must have shape [N, 3, H, W], got {list(pixels.shape)}")
            raws = list(pixels.data)
    else:
        raise InvalidInput(f"task '{task.name}' is not served over the V2 protocol")
    task.check_count(len(raws), f"input '{where}'")
    for i, raw in enumerate(raws):
        task.check_item(raw, f"input '{where}' element {i}")
    return raws


def result_tensors(task: Task, items: Sequence[ItemResult]) -> dict[str, np.ndarray]:
    """Per-item results stacked into the model's V2 output tensors."""
    if isinstance(task, EmbeddingTask):
        return {"embedding": np.stack([it.outputs["embedding"] for it in items]).astype(np.float32, copy=False)}
    if isinstance(task, (TextClassificationTask, ImageClassificationTask)):
        probs = np.stack([it.outputs["probabilities"] for it in items]).astype(np.float32, copy=False)
        labels = task.entry.labels or []
        best = probs.argmax(axis=1).tolist()
        names = [labels[i] if i < len(labels) else str(i) for i in best]
        return {"probabilities": probs, "label": _object_array(names, (len(names),))}
    return {k: np.stack([it.outputs[k] for it in items]) for k in items[0].outputs}


def datatype_of(arr: np.ndarray) -> str:
    """The V2 datatype of an output array."""
    if arr.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _NUMPY_TO_V2[arr.dtype.name]
    except KeyError:
        raise TypeError(f"output dtype {arr.dtype} has no V2 datatype") from None


def _as_bytes(x: Any) -> bytes:
    return x if isinstance(x, bytes) else str(x).encode("utf-8")


def encode_binary(arr: np.ndarray) -> bytes:
    """A tensor's binary data: little-endian row-major values; BYTES as length-prefixed elements."""
    if datatype_of(arr) == "BYTES":
        parts = []
        for x in arr.reshape(-1):
            b = _as_bytes(x)
            parts.append(_LEN.pack(len(b)))
            parts.append(b)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()


def _json_data(arr: np.ndarray) -> Any:
    if datatype_of(arr) == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    return np.ascontiguousarray(arr).reshape(-1)


def infer_response(model: str, version: int, request: InferRequest, tensors: Mapping[str, np.ndarray],
                   sig: ModelSignature) -> tuple[dict[str, Any], list[bytes]]:
    """The response JSON and the binary blobs that follow it (in output order); no blobs: plain JSON."""
    if request.outputs is None:
        order = [n for n in sig.output_names if n in tensors] + [n for n in tensors if n not in sig.output_names]
        wanted = [OutputRequest(n) for n in order]
    else:
        wanted = request.outputs
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for o in wanted:
        if o.name not in tensors:
            raise InvalidInput(f"the model did not produce output '{o.name}'")
        arr = tensors[o.name]
        entry: dict[str, Any] = {"name": o.name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
        if request.binary_output if o.binary is None else o.binary:
            blob = encode_binary(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = _json_data(arr)
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": model, "model_version": str(version)}
    if request.id is not None:
        head["id"] = request.id
    head["outputs"] = outputs
    return head, blobs


def binary_body(head: dict[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, int]:
    """The body of a response with binary data, and its Inference-Header-Content-Length."""
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([header, *blobs]), len(header)


_V2_STATES = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE", "unloaded": "UNAVAILABLE"}


def repository_index(service: InferenceService, ready_only: bool = False) -> list[dict[str, Any]]:
    """`POST /v2/repository/index`: one row per model version on disk, with its state and the reason."""
    rows: list[dict[str, Any]] = []
    for name, entry in sorted(service.repository.entries.items()):
        if not entry.valid:
            rows.append({"name": name, "state": "UNAVAILABLE", "reason": entry.error or "invalid"})
            continue
        served = set(entry.served_versions)
        for v, mv in sorted(entry.versions.items()):
            state, error, _ = service.registry.state(name, v)
            if mv.error:
                reason = mv.error
            elif v not in served:
                reason = "not served under the version policy"
            else:
                reason = error or ("" if state in ("ready", "loading") else "unloaded")
            rows.append({"name": name, "version": str(v),
                         "state": _V2_STATES[state] if v in served else "UNAVAILABLE", "reason": reason})
    if ready_only:
        rows = [r for r in rows if r["state"] == "READY"]
    return rows


# --------------------------------------------------------------------------------------------
# OpenAI embeddings
# --------------------------------------------------------------------------------------------

EncodingFormat = Literal["float", "base64"]


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A parsed `POST /v1/embeddings`."""

    model: str
    texts: list[str]
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None


def parse_embeddings_request(body: Any, max_inputs: int) -> EmbeddingsRequest:
    """Check an OpenAI embeddings request; every problem is a 400 naming the field."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object with 'model' and 'input'")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("'model' is required: a model name or alias (see GET /v1/models)")
    value = body.get("input")
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, list):
        if not value:
            raise BadRequest("'input' must not be an empty list")
        if len(value) > max_inputs:
            raise BadRequest(f"'input' has {len(value)} items; at most {max_inputs} are allowed")
        if not all(isinstance(x, str) for x in value):
            if all(isinstance(x, int) or (isinstance(x, list) and all(isinstance(y, int) for y in x))
                   for x in value):
                raise BadRequest("'input' as token ids is not supported; send strings")
            raise BadRequest("'input' must be a string or a list of strings")
        texts = value
    else:
        raise BadRequest("'input' is required: a string or a list of strings")
    raw_fmt = body.get("encoding_format")
    fmt: EncodingFormat
    if raw_fmt is None or raw_fmt == "float":
        fmt = "float"
    elif raw_fmt == "base64":
        fmt = "base64"
    else:
        raise BadRequest(f"'encoding_format' must be 'float' or 'base64', got {raw_fmt!r}")
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise BadRequest(f"'dimensions' must be a positive integer, got {dims!r}")
    return EmbeddingsRequest(model, texts, fmt, dims)


async def embed_texts(service: InferenceService, name: str, texts: Sequence[str],
                      version: str | int | None = None) -> tuple[np.ndarray, int]:
    """Embeddings [N, D] and the token count, through `InferenceService.infer` in chunks of the
    model's `limits.max_items` (so a request may hold more items than one call allows)."""
    model = await service.model(name, version)
    task = model.task
    if not isinstance(task, EmbeddingTask):
        raise BadRequest(f"model '{model.name}' is a {task.name} model; embeddings need an embedding model")
    for i, text in enumerate(texts):
        task.check_item(text, f"input[{i}]")
    size = task.limits.max_items
    items: list[ItemResult] = []
    # one chunk at a time: fair to other requests, and the batches (so an int8 model's activation
    # scales) are the same as for the same calls to /inference
    for start in range(0, len(texts), size):
        items += (await service.infer(model.name, texts[start:start + size], model.version)).items
    emb = np.stack([it.outputs["embedding"] for it in items]).astype(np.float32, copy=False)
    return emb, sum(int(it.meta.get("tokens", 0)) for it in items)


def truncate_embeddings(emb: np.ndarray, dimensions: int | None, normalize: bool = True) -> np.ndarray:
    """The first `dimensions` values of each row, L2-renormalized when the model normalizes."""
    if dimensions is None or dimensions == emb.shape[1]:
        return emb
    if dimensions > emb.shape[1]:
        raise BadRequest(f"'dimensions' is {dimensions} but the model's embeddings have {emb.shape[1]}")
    out = emb[:, :dimensions].astype(np.float32)
    if normalize:
        out /= np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)
    return np.ascontiguousarray(out)


def embedding_objects(emb: np.ndarray, encoding_format: EncodingFormat) -> list[dict[str, Any]]:
    """OpenAI's `data` list; base64 is the little-endian float32 bytes of each row."""
    emb = np.ascontiguousarray(emb, dtype="<f4")
    if encoding_format == "base64":
        return [{"object": "embedding", "index": i, "embedding": base64.b64encode(row.tobytes()).decode("ascii")}
                for i, row in enumerate(emb)]
    return [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(emb)]


def openai_model(entry: ModelEntry) -> dict[str, Any]:
    """One entry of `GET /v1/models`; `created` is when its model.toml was written."""
    try:
        created = int(os.stat(entry.path / "model.toml").st_mtime)
    except OSError:
        created = 0
    return {"id": entry.name, "object": "model", "created": created, "owned_by": "ml-service"}


def embedding_entries(service: InferenceService) -> list[ModelEntry]:
    """The valid embedding models, by name."""
    return [e for _, e in sorted(service.repository.entries.items())
            if e.valid and e.manifest is not None and e.manifest.task == "embedding"]
