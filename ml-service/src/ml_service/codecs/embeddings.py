"""OpenAI-compatible embeddings (`POST /v1/embeddings`, `GET /v1/models`): request, encodings, error shape."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ml_service.codecs.common import Protocol
from ml_service.dataplane import InferenceRequest, InferenceResult, ModelSpec
from ml_service.errors import BadRequest

EncodingFormat = Literal["float", "base64"]
_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
                405: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
                429: "rate_limit_error"}


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A parsed `POST /v1/embeddings`."""

    model: str
    texts: list[str]
    encoding_format: EncodingFormat = "float"
    dimensions: int | None = None


def parse_request(body: Any, max_inputs: int) -> EmbeddingsRequest:
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
    if isinstance(dims, float) and dims.is_integer():  # 3.0 is an integer in JSON
        dims = int(dims)
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise BadRequest(f"'dimensions' must be a positive integer, got {dims!r}")
    return EmbeddingsRequest(model, texts, fmt, dims)


def decode(req: EmbeddingsRequest, spec: ModelSpec, max_inputs: int) -> InferenceRequest:
    """The data plane's request; only embedding models answer here."""
    if not spec.embeds:
        raise BadRequest(f"model '{spec.name}' is a {spec.task} model; /v1/embeddings needs an embedding "
                         "model (see GET /v1/models)")
    dim = spec.embedding_dim
    if req.dimensions is not None and dim > 0 and req.dimensions > dim:
        raise BadRequest(f"'dimensions' is {req.dimensions} but model '{spec.name}' has {dim}")
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


def encode(result: InferenceResult, req: EmbeddingsRequest) -> dict[str, Any]:
    """The response body: `data`, `model`, `usage`."""
    emb = np.stack([it.outputs["embedding"] for it in result.items]).astype(np.float32, copy=False)
    emb = truncate_embeddings(emb, req.dimensions, result.spec.normalized)
    tokens = result.tokens
    return {
        "object": "list",
        "data": embedding_objects(emb, req.encoding_format),
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
