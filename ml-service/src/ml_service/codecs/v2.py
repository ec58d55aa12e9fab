"""The Open Inference Protocol (KServe V2, what Triton and MLServer speak): model metadata, inference requests
with JSON and binary tensors (the binary tensor data extension `tritonclient` uses by default), responses,
the repository index, and its error shape."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import orjson
from msgspec import UNSET, Meta, Struct

from ml_service.codecs import body
from ml_service.codecs.common import Protocol, split_rows
from ml_service.dataplane import InferenceRequest, InferenceResult, ModelSpec, Signature
from ml_service.errors import BadRequest, InvalidInput
from ml_service.tensors import (
    MAX_DIMS,
    check_shape,
    datatype_of,
    decode_binary,
    decode_json,
    encode_binary,
    json_data,
    object_array,
)

#: The `platform` of model metadata, by manifest runtime.
PLATFORMS: dict[str, str] = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch",
                             "openvino": "openvino", "fake": "fake"}
#: Extensions this server speaks (`GET /v2`).
EXTENSIONS = ["binary_tensor_data", "model_repository"]
HEADER_LENGTH = "inference-header-content-length"
_STATES = {"ready": "READY", "loading": "LOADING", "unloading": "UNLOADING", "failed": "UNAVAILABLE",
           "unloaded": "UNAVAILABLE"}


def model_metadata(spec: ModelSpec, versions: Sequence[int]) -> dict[str, Any]:
    """`GET /v2/models/{name}`: name, served versions, platform, inputs and outputs."""
    return {
        "name": spec.name,
        "versions": [str(v) for v in versions],
        "platform": PLATFORMS.get(spec.runtime, spec.runtime),
        "inputs": [t.as_json() for t in spec.signature.inputs],
        "outputs": [t.as_json() for t in spec.signature.outputs],
    }


@dataclass
class InputTensor:
    """One decoded input: numeric data as a typed array in its declared shape; BYTES as an object array of
    `str` (JSON data) or `bytes` (binary data)."""

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


def split_body(raw: bytes, header_length: str | None) -> tuple[memoryview, memoryview | None]:
    """The JSON part and the binary part of a request body (binary tensor data extension)."""
    view = memoryview(raw)
    if header_length is None:
        return view, None
    try:
        n = int(header_length.strip())
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer, got {header_length!r}") from None
    if n < 0 or n > len(raw):
        raise BadRequest(f"Inference-Header-Content-Length is {n} but the body has {len(raw)} bytes")
    return view[:n], view[n:]


Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                   "FP32", "FP64", "BYTES"]


class TensorParameters(Struct, frozen=True):
    """An input's parameters (others are accepted and ignored)."""

    binary_data_size: Annotated[int, Meta(ge=0, description="bytes of this tensor after the JSON")] | None = None


class RequestInput(Struct, frozen=True):
    """One input tensor: JSON `data`, or `parameters.binary_data_size` bytes of binary data after the JSON."""

    name: str
    shape: Annotated[list[Annotated[int, Meta(ge=0)]], Meta(
        max_length=MAX_DIMS, description=f"non-negative integers, at most {MAX_DIMS}")]
    datatype: Annotated[Datatype, Meta(description="the tensor's datatype, as the model declares it")]
    parameters: TensorParameters | None = None
    data: Annotated[Any, Meta(description="row-major values, flat or nested")] = UNSET


class OutputParameters(Struct, frozen=True):
    """An output's parameters (others are accepted and ignored)."""

    binary_data: bool | None = None
    classification: Annotated[int, Meta(ge=0, description="not supported: request 'probabilities' and 'label'")
                              ] | None = None


class RequestOutput(Struct, frozen=True):
    """One requested output."""

    name: str
    parameters: OutputParameters | None = None


class InferParameters(Struct, frozen=True):
    """The request's parameters (others are accepted and ignored)."""

    binary_data_output: bool | None = None


class InferRequestBody(Struct, frozen=True):
    """JSON tensors; with `Inference-Header-Content-Length`, this JSON followed by binary tensor data."""

    inputs: Annotated[list[RequestInput], Meta(min_length=1, description="a non-empty list of input tensors")]
    id: str | None = None
    parameters: InferParameters | None = None
    outputs: list[RequestOutput] | None = None


class RepositoryIndexBody(Struct, frozen=True):
    """`POST /v2/repository/index` (an empty body is `{}`)."""

    ready: Annotated[bool, Meta(description="only models that are ready")] | None = None


class RepositoryModelBody(Struct, frozen=True):
    """`POST /v2/repository/models/{model}/load|unload` (an empty body is `{}`)."""

    parameters: dict[str, Any] | None = None


_INFER = msgspec.json.Decoder(InferRequestBody)
_INDEX = msgspec.json.Decoder(RepositoryIndexBody)
_MODEL = msgspec.json.Decoder(RepositoryModelBody)


def parse_index(raw: bytes) -> RepositoryIndexBody:
    """The repository index's body; empty is `{}`."""
    return body.decode(raw, _INDEX, InvalidInput) if raw.strip() else RepositoryIndexBody()


def parse_model_body(raw: bytes) -> RepositoryModelBody:
    """A repository load or unload body; empty is `{}`."""
    return body.decode(raw, _MODEL, InvalidInput) if raw.strip() else RepositoryModelBody()


@dataclass(frozen=True)
class Envelope:
    """An infer request's JSON part, typed (tensor `data` still as parsed JSON), and its binary part."""

    doc: InferRequestBody
    blob: memoryview | None

    @property
    def items(self) -> int:
        """The batch size the first input declares (admission decides on it before any tensor is built)."""
        shape = self.doc.inputs[0].shape
        return shape[0] if shape else 1


def parse_envelope(raw: bytes, header_length: str | None) -> Envelope:
    """The body split (binary tensor data extension) and its JSON part decoded; no array is built yet."""
    head, blob = split_body(raw, header_length)
    return Envelope(body.decode(head, _INFER, InvalidInput), blob)


def parse_infer_request(raw: bytes, header_length: str | None, sig: Signature) -> InferRequest:
    """Parse and check an inference request against the model's signature (`parse_envelope`, then `tensors`)."""
    return tensors(parse_envelope(raw, header_length), sig)


def tensors(envelope: Envelope, sig: Signature) -> InferRequest:
    """Check an envelope against the model's signature, then build its input arrays.

    Declared shapes are checked against the per-input element limits first, so a huge shape costs nothing.
    """
    doc, blob = envelope.doc, envelope.blob
    plans: list[tuple[str, str, tuple[int, ...], Any, int | None]] = []
    seen: set[str] = set()
    total = 0
    for i, t in enumerate(doc.inputs):
        spec = sig.input(t.name)
        if spec is None:
            raise InvalidInput(f"inputs[{i}]: unknown input {t.name!r}; the model takes {sig.input_names}")
        if spec.name in seen:
            raise InvalidInput(f"input '{spec.name}' is given twice")
        seen.add(spec.name)
        if t.datatype != spec.datatype:
            raise InvalidInput(f"input '{spec.name}' has datatype {t.datatype}; the model expects {spec.datatype}")
        shape = tuple(t.shape)
        check_shape(shape, spec.max_elements, spec.name)
        size = t.parameters.binary_data_size if t.parameters is not None else None
        if size is not None:
            if t.data is not UNSET:
                raise InvalidInput(f"input '{spec.name}' has both data and parameters.binary_data_size")
            if blob is None:
                raise BadRequest(f"input '{spec.name}' has parameters.binary_data_size but the request has no "
                                 "Inference-Header-Content-Length header")
            if total + size > len(blob):
                raise BadRequest(f"input '{spec.name}': binary_data_size {size} runs past the end of the body "
                                 f"({len(blob) - total} bytes of binary data left)")
            plans.append((spec.name, t.datatype, shape, total, size))
            total += size
        elif t.data is UNSET:
            raise InvalidInput(f"input '{spec.name}' has neither data nor parameters.binary_data_size")
        else:
            plans.append((spec.name, t.datatype, shape, t.data, None))
    if blob is not None and total != len(blob):
        raise BadRequest(f"the body has {len(blob) - total} bytes of binary data that no input claims")
    inputs = []
    for name, datatype, shape, where_data, size in plans:
        if size is not None:
            assert blob is not None
            data = decode_binary(blob[where_data:where_data + size], datatype, shape, name)
        else:
            data = decode_json(where_data, datatype, shape, name)
        inputs.append(InputTensor(name, datatype, shape, data))
    binary_output = bool(doc.parameters is not None and doc.parameters.binary_data_output)
    return InferRequest(doc.id, inputs, _outputs(doc.outputs, sig), binary_output)


def _outputs(value: list[RequestOutput] | None, sig: Signature) -> list[OutputRequest] | None:
    if not value:
        return None
    out: list[OutputRequest] = []
    for o in value:
        if o.name not in sig.output_names:
            raise InvalidInput(f"unknown output {o.name!r}; the model has {sig.output_names}")
        if any(r.name == o.name for r in out):
            raise InvalidInput(f"output '{o.name}' is requested twice")
        params = o.parameters or OutputParameters()
        if params.classification:
            raise InvalidInput("the classification extension is not supported; request 'probabilities' and 'label'")
        out.append(OutputRequest(o.name, params.binary_data))
    return out


def _rows(t: InputTensor) -> list[Any]:
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


def decode(req: InferRequest, spec: ModelSpec) -> InferenceRequest:
    """The data plane's request from the input tensors, by the kind each input declares."""
    sig = spec.signature
    by_name = {t.name: t for t in req.inputs}
    if all(t.kind == "tensor" for t in sig.inputs):
        rows = split_rows({name: t.data for name, t in by_name.items()}, sig)
        return InferenceRequest(spec.name, rows, spec.version, where="inputs")
    if len(by_name) != 1:
        names = " or ".join(f"'{t.name}'" for t in sig.inputs)
        raise InvalidInput(f"give exactly one of the inputs {names}")
    (t,) = by_name.values()
    kind = next(i.kind for i in sig.inputs if i.name == t.name)
    items: list[Any]
    if kind == "text":
        items = [_utf8(v, t.name, i) for i, v in enumerate(_rows(t))]
    elif kind == "image":
        items = _rows(t)
    else:  # pixels: [N, C, H, W]
        if t.data.ndim != 4:
            raise InvalidInput(f"input '{t.name}' must have shape [N, 3, H, W], got {list(t.shape)}")
        items = list(t.data)
    return InferenceRequest(spec.name, items, spec.version, where=f"input '{t.name}'")


def result_tensors(result: InferenceResult) -> dict[str, np.ndarray]:
    """Per-item results stacked into the model's output tensors (a label output: the best label's name)."""
    items, sig, labels = result.items, result.spec.signature, result.spec.labels
    tensors: dict[str, np.ndarray] = {}
    for out in sig.outputs:
        if out.label_of is not None:
            best = np.stack([it.outputs[out.label_of] for it in items]).argmax(axis=1).tolist()
            names = [labels[i] if i < len(labels) else str(i) for i in best]
            tensors[out.name] = object_array(names, (len(names),))
        elif out.name in items[0].outputs:
            arr = np.stack([it.outputs[out.name] for it in items])
            tensors[out.name] = arr.astype(np.float32, copy=False) if out.datatype == "FP32" else arr
    for name in items[0].outputs:  # outputs a graph has beyond what the manifest declares
        if name not in tensors:
            tensors[name] = np.stack([it.outputs[name] for it in items])
    return tensors


def encode(result: InferenceResult, req: InferRequest) -> tuple[dict[str, Any], list[bytes]]:
    """The response JSON and the binary blobs that follow it (in output order); no blobs: plain JSON."""
    tensors = result_tensors(result)
    wanted = req.outputs if req.outputs is not None else [OutputRequest(n) for n in tensors]
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for o in wanted:
        if o.name not in tensors:
            raise InvalidInput(f"the model did not produce output '{o.name}'")
        arr = tensors[o.name]
        entry: dict[str, Any] = {"name": o.name, "datatype": datatype_of(arr), "shape": list(arr.shape)}
        if req.binary_output if o.binary is None else o.binary:
            blob = encode_binary(arr)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = json_data(arr)
        outputs.append(entry)
    head: dict[str, Any] = {"model_name": result.spec.name, "model_version": str(result.spec.version)}
    if req.id is not None:
        head["id"] = req.id
    head["outputs"] = outputs
    return head, blobs


def binary_body(head: dict[str, Any], blobs: Sequence[bytes]) -> tuple[bytes, int]:
    """The body of a response with binary data, and its Inference-Header-Content-Length."""
    header = orjson.dumps(head, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([header, *blobs]), len(header)


def repository_index(rows: Sequence[Mapping[str, Any]], ready_only: bool = False) -> list[dict[str, Any]]:
    """`POST /v2/repository/index` from the data plane's version rows."""
    out: list[dict[str, Any]] = []
    for r in rows:
        row: dict[str, Any] = {"name": r["name"]}
        if r["version"] is not None:
            row["version"] = str(r["version"])
        row["state"] = _STATES[r["state"]] if r["served"] else "UNAVAILABLE"
        row["reason"] = r["reason"]
        out.append(row)
    return [r for r in out if r["state"] == "READY"] if ready_only else out


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """`{"error": message}`, as the protocol specifies."""
    return {"error": message}


#: this protocol's name and error shape, for the routes that speak it
PROTOCOL = Protocol("v2", error_body)
