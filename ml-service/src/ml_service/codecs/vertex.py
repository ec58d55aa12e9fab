"""Vertex AI's custom-container predict format: `{"instances": [...], "parameters": {...}}` in,
`{"predictions": [...]}` out (one prediction per instance, in order), errors shaped like Google APIs'.

Vertex's SDK sends protobuf `Value`s, so every number arrives as a float: `top_k: 3.0` is an integer here.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from ml_service.codecs import body
from ml_service.codecs.common import Protocol
from ml_service.codecs.native import item_output
from ml_service.dataplane import InferenceRequest, InferenceResult, ModelSpec
from ml_service.errors import InvalidInput, PayloadTooLarge
from ml_service.tensors import to_array

#: Google's canonical status names, by HTTP status (google.rpc.Code)
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           405: "UNIMPLEMENTED", 409: "ABORTED", 413: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT",
           429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
           504: "DEADLINE_EXCEEDED"}


class PredictParameters(Struct, frozen=True, forbid_unknown_fields=True):
    """Accepted: `top_k` (classifiers; 3 or 3.0) and `model` (another model of the repository than the
    deployment's)."""

    top_k: Annotated[int | float, Meta(description="labels to return (classifiers), an integer")] | UnsetType = UNSET
    model: Annotated[str, Meta(min_length=1, description="a model name or alias")] | None = None


class VertexPredictBody(Struct, frozen=True):
    """A predict request: a non-empty `instances` list and optional `parameters`."""

    instances: Annotated[list[Any], Meta(min_length=1, description=(
        'a non-empty list of texts ("..." or {"text": "..."}), images ({"image": {"b64": "..."}}) or, for tensor '
        "models, {input name: row}"))]
    parameters: PredictParameters | None = None

    @property
    def model(self) -> str | None:
        """`parameters.model`: another model of the repository than the deployment's own (one endpoint, all
        models)."""
        return self.parameters.model if self.parameters is not None else None


_DECODER = msgspec.json.Decoder(VertexPredictBody)


def parse_request(raw: bytes | memoryview) -> VertexPredictBody:
    """The envelope, typed: invalid input is INVALID_ARGUMENT (400) naming the field."""
    return body.decode(raw, _DECODER, InvalidInput)


def _integer(value: Any, name: str, low: int, high: int) -> int:
    """An integer sent as an int or an integral float (protobuf Values are doubles)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"parameters.{name} must be an integer from {low} to {high}, got {value!r}")
    return value


def _text(instance: Any, i: int) -> Any:
    if isinstance(instance, dict):
        if set(instance) != {"text"}:
            raise InvalidInput(f"instances[{i}] must be a string or {{\"text\": string}}")
        return instance["text"]
    return instance  # the data plane checks it is a string within the limits


def _image(instance: Any, i: int) -> Any:
    inner = instance.get("image") if isinstance(instance, dict) and set(instance) == {"image"} else instance
    if not isinstance(inner, dict) or set(inner) != {"b64"}:
        raise InvalidInput(f"instances[{i}] must be {{\"image\": {{\"b64\": base64 of a JPEG/PNG/WebP}}}}")
    return inner["b64"]


def _tensors(instance: Any, i: int, spec: ModelSpec) -> dict[str, Any]:
    sig = spec.signature
    if not isinstance(instance, dict) or set(instance) != set(sig.input_names):
        raise InvalidInput(f"instances[{i}] must be an object with the inputs {sorted(sig.input_names)}")
    row = {}
    for info in sig.inputs:
        arr = to_array(instance[info.name], info.datatype, None, f"instances[{i}].{info.name}")
        if arr.size > info.max_elements:
            raise PayloadTooLarge(f"instances[{i}].{info.name} has {arr.size} elements; the limit is "
                                  f"{info.max_elements}")
        row[info.name] = arr
    return row


def decode(req: VertexPredictBody, spec: ModelSpec) -> tuple[InferenceRequest, int]:
    """The data plane's request for the instances, and the top-k for classifier answers."""
    sig = spec.signature
    top_k = 0
    if sig.answer == "classification":
        n = len(spec.labels)
        asked = req.parameters.top_k if req.parameters is not None else UNSET
        top_k = min(5, n) if asked is UNSET else _integer(asked, "top_k", 1, n)
    kind = sig.inputs[0].kind
    if kind == "text":
        items: list[Any] = [_text(x, i) for i, x in enumerate(req.instances)]
    elif kind == "image":
        items = [_image(x, i) for i, x in enumerate(req.instances)]
    elif kind == "tensor":
        items = [_tensors(x, i, spec) for i, x in enumerate(req.instances)]
    else:
        raise InvalidInput(f"model {spec.name!r} takes {kind} inputs, which Vertex predictions do not carry")
    return InferenceRequest(spec.name, items, spec.version, where="instances"), top_k


def encode(result: InferenceResult, top_k: int) -> dict[str, Any]:
    """`{"predictions": [...]}`: each the same object `/inference` answers for that input."""
    return {"predictions": [item_output(item, result.spec, top_k) for item in result.items]}


def http_status(status: int) -> int:
    """Google APIs answer INVALID_ARGUMENT with 400 (their SDKs raise BadRequest for it), where our other
    protocols say 422 (invalid input) or 413 (over a size limit); the reason stays in the error's details."""
    return 400 if status in (413, 422) else status


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """`{"error": {"code": <HTTP status>, "message", "status": <google.rpc.Code name>, "details"}}`."""
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN"),
                      "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": code,
                                   "domain": "ml-service"}]}}


#: this protocol's name and error shape, for the routes that speak it
PROTOCOL = Protocol("vertex", error_body, http_status)
