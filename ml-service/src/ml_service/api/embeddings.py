"""Routes of the OpenAI-compatible embeddings API: POST /v1/embeddings (and /embeddings), GET /v1/models."""

from __future__ import annotations

from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Route
from ml_service.codecs import embeddings
from ml_service.errors import ModelNotFound


async def create(call: Call) -> Reply:
    """Embeddings of a string or a list of strings; `float` or `base64` encoding; optional `dimensions`."""
    most = call.settings.openai_max_inputs
    req = embeddings.parse_request(call.body, most)
    resolved = await call.service.resolve(req.model, None, call.ctx)
    call.service.admit(resolved, len(req.texts))
    request = embeddings.decode(req, resolved.spec, most)
    return json_reply(embeddings.encode(await call.service.infer(request, resolved, call.ctx), req))


async def list_models(call: Call) -> Reply:
    """The embedding models, in OpenAI's list shape."""
    return json_reply({"object": "list",
                       "data": [embeddings.model_object(m) for m in call.service.describe_all() if m.embeds]})


async def retrieve_model(call: Call) -> Reply:
    """One embedding model by name or alias."""
    spec = call.service.describe(call.params["model"])
    if not spec.embeds:
        raise ModelNotFound(f"model {call.params['model']!r} is not an embedding model served at /v1")
    return json_reply(embeddings.model_object(spec))


_ERRORS = (400, 401, 404, 413, 422, 503, 504)
_BODY = embeddings.EmbeddingsBody
ROUTES = [
    Route("POST", "/v1/embeddings", create, embeddings.PROTOCOL, "openai_embeddings", body=_BODY,
          response="EmbeddingsResponse", errors=_ERRORS, watch_disconnect=True, limited=True, tag="openai"),
    Route("POST", "/embeddings", create, embeddings.PROTOCOL, "openai_embeddings_unversioned", body=_BODY,
          response="EmbeddingsResponse", errors=_ERRORS, watch_disconnect=True, limited=True, tag="openai"),
    Route("GET", "/v1/models", list_models, embeddings.PROTOCOL, "openai_models", response="OpenAIModelList",
          errors=(401,), tag="openai"),
    Route("GET", "/v1/models/{model}", retrieve_model, embeddings.PROTOCOL, "openai_model", response="OpenAIModel",
          errors=(401, 404), tag="openai"),
]
