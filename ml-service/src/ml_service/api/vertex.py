"""Routes of Vertex AI's custom-container contract (only in Vertex mode, at the routes Vertex names): the health
probe and predict. Vertex's front end authenticates its callers; what it forwards carries no bearer token."""

from __future__ import annotations

from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Route
from ml_service.codecs import vertex
from ml_service.errors import ModelUnavailable
from ml_service.settings import Settings
from ml_service.vertex import health_route, predict_routes


async def health(call: Call) -> Reply:
    """200 once the served model is loaded, else 503 (Vertex sends traffic only after a 200)."""
    model = call.parts.vertex.model if call.parts.vertex is not None else None
    if model is not None and call.reports.version_ready(model):
        return json_reply({"ready": True, "model": model})
    raise ModelUnavailable("the served model is not loaded yet")


async def predict(call: Call) -> Reply:
    """One prediction per instance, in order: embeddings, or labels with scores. The deployment's model unless
    `parameters.model` names another one of the repository."""
    req = vertex.parse_request(call.body)
    name = req.model or (call.parts.vertex.model if call.parts.vertex is not None else None)
    if name is None:
        raise ModelUnavailable("the service is still starting")
    resolved = await call.service.resolve(name, None, call.ctx)
    call.service.admit(resolved, len(req.instances))
    request, top_k = vertex.decode(req, resolved.spec)
    result = await call.service.infer(request, resolved, call.ctx)
    return json_reply(vertex.encode(result, top_k),
                      headers={"X-Model": result.spec.name, "X-Model-Version": str(result.spec.version)})


def routes(settings: Settings) -> list[Route]:
    """The Vertex routes for these settings (none outside Vertex mode)."""
    if not settings.vertex:
        return []
    out = [Route("GET", health_route(settings), health, vertex.PROTOCOL, "vertex_health", auth=False,
                 response="VertexHealth", errors=(503,), tag="vertex")]
    for i, path in enumerate(predict_routes(settings)):
        out.append(Route("POST", path, predict, vertex.PROTOCOL, "vertex_predict" if i == 0 else f"vertex_predict_{i}",
                         auth=False, body=vertex.VertexPredictBody, response="VertexPredictResponse",
                         errors=(400, 503, 504), watch_disconnect=True, limited=True, tag="vertex"))
    return out
