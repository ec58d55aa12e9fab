"""OpenAI-compatible embeddings: POST /v1/embeddings (and /embeddings), GET /v1/models.

Errors come back in OpenAI's shape (api/errors.py). The logic lives in `ml_service.protocols`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ml_service import protocols
from ml_service.api.deps import get_service, json_response, read_json, require_auth
from ml_service.errors import BadRequest, ModelNotFound
from ml_service.service import InferenceService
from ml_service.settings import Settings

router = APIRouter(dependencies=[Depends(require_auth)], tags=["openai"])


async def create_embeddings(service: InferenceService, settings: Settings, body: Any) -> dict[str, Any]:
    """The embeddings response body for a request body (HTTP-free: the fast path calls it too)."""
    req = protocols.parse_embeddings_request(body, settings.openai_max_inputs)
    entry = service.entry(req.model)
    mv = entry.version(None)
    manifest = entry.manifest
    assert manifest is not None
    if manifest.task != "embedding":
        raise BadRequest(f"model '{entry.name}' is a {manifest.task} model; /v1/embeddings needs an embedding "
                         "model (see GET /v1/models)")
    dim = protocols.embedding_dim(manifest)
    if req.dimensions is not None and dim > 0 and req.dimensions > dim:
        raise BadRequest(f"'dimensions' is {req.dimensions} but model '{entry.name}' has {dim}")
    emb, tokens = await protocols.embed_texts(service, entry.name, req.texts, mv.number)
    emb = protocols.truncate_embeddings(emb, req.dimensions, manifest.postprocessing.normalize)
    return {
        "object": "list",
        "data": protocols.embedding_objects(emb, req.encoding_format),
        "model": entry.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@router.post("/v1/embeddings")
@router.post("/embeddings")
async def embeddings(request: Request) -> Response:
    """Embeddings of a string or a list of strings; `float` or `base64` encoding; optional `dimensions`.

    Served by the fast path (api/fast.py) in the running app; this route documents it and backs it."""
    body = await read_json(request)
    return json_response(await create_embeddings(get_service(request), request.app.state.settings, body))


@router.get("/v1/models")
async def list_models(service: InferenceService = Depends(get_service)) -> Response:
    """The embedding models, in OpenAI's list shape."""
    return json_response({"object": "list",
                          "data": [protocols.openai_model(e) for e in protocols.embedding_entries(service)]})


@router.get("/v1/models/{model}")
async def retrieve_model(model: str, service: InferenceService = Depends(get_service)) -> Response:
    """One embedding model by name or alias."""
    entry = service.entry(model)
    if entry.name not in {e.name for e in protocols.embedding_entries(service)}:
        raise ModelNotFound(f"model {model!r} is not an embedding model served at /v1")
    return json_response(protocols.openai_model(entry))
