"""OpenAI-compatible embeddings (`POST /v1/embeddings`, `GET /v1/models`): request, encodings, error shape."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import Meta, Struct

from ml_service.codecs import body
from ml_service.codecs.common import Protocol
from ml_service.dataplane import InferenceRequest, InferenceResult, ModelSpec
from ml_service.errors import BadRequest

EncodingFormat = Literal["float", "base64"]
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error"}


class EmbeddingsBody(Struct, frozen=True):
    """`POST /v1/embeddings`: `model` and `input`, optionally `encoding_format` and `dimensions`."""

    model: Annotated[str, Meta(min_length=1, description="a model name or alias (GET /v1/models)")]
    input: Annotated[str | Annotated[list[str], Meta(min_length=1)], Meta(
        description="a string or a non-empty list of strings (token ids are not supported)")]
    encoding_format: Annotated[EncodingFormat, Meta(description="float (the default) or base64 of little-endian "
                                                                "float32")] | None = None
    dimensions: Annotated[Annotated[int, Meta(ge=1)] | Annotated[float, Meta(ge=1)], Meta(
        description="a positive integer (3.0 is one): the first N values, renormalized")] | None = None
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input

    @property
    def format(self) -> EncodingFormat:
        return self.encoding_format or "float"

    @property
    def dims(self) -> int | None:
        """`dimensions` as an integer (`parse_request` has refused a fractional one)."""
        return None if self.dimensions is None else int(self.dimensions)


_DECODER = msgspec.json.Decoder(EmbeddingsBody)


def parse_request(raw: bytes | memoryview, max_inputs: int) -> EmbeddingsBody:
    """The request, typed; every problem is a 400 naming the field (OpenAI's status for invalid requests)."""
    req = body.decode(raw, _DECODER, BadRequest)
    if len(req.texts) > max_inputs:
        raise BadRequest(f"input has {len(req.texts)} items; at most {max_inputs} are allowed "
                         "(ML_SERVICE_OPENAI_MAX_INPUTS)")
    if isinstance(req.dimensions, float):
        if not req.dimensions.is_integer():  # 3.0 is an integer in JSON
            raise BadRequest(f"dimensions must be a positive integer, got {req.dimensions!r}")
        return msgspec.structs.replace(req, dimensions=int(req.dimensions))
    return req


def decode(req: EmbeddingsBody, spec: ModelSpec, max_inputs: int) -> InferenceRequest:
    """The data plane's request; only embedding models answer here."""
    if not spec.embeds:
        raise BadRequest(f"model '{spec.name}' is a {spec.task} model; /v1/embeddings needs an embedding "
                         "model (see GET /v1/models)")
    dim = spec.embedding_dim
    if req.dims is not None and dim > 0 and req.dims > dim:
        raise BadRequest(f"'dimensions' is {req.dims} but model '{spec.name}' has {dim}")
    return InferenceRequest(spec.name, req.texts, spec.version, max_items=max_inputs, where="input")


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


def encode(result: InferenceResult, req: EmbeddingsBody) -> dict[str, Any]:
    """The response body: `data`, `model`, `usage`."""
    emb = np.stack([it.outputs["embedding"] for it in result.items]).astype(np.float32, copy=False)
    emb = truncate_embeddings(emb, req.dims, result.spec.normalized)
    tokens = result.tokens
    return {
        "object": "list",
        "data": embedding_objects(emb, req.format),
        "model": result.spec.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_object(spec: ModelSpec) -> dict[str, Any]:
    """One entry of `GET /v1/models`; `created` is when its model.toml was written."""
    return {"id": spec.name, "object": "model", "created": spec.created, "owned_by": "ml-service"}


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """OpenAI's `{"error": {"message", "type", "param", "code"}}`."""
    return {"error": {"message": message, "type": _ERROR_TYPES.get(status, "server_error"), "param": None,
                      "code": code}}


#: this protocol's name and error shape, for the routes that speak it
PROTOCOL = Protocol("openai", error_body)
