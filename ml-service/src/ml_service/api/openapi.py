"""/openapi.json from the route table: every route, its parameters, request body (the schema of the msgspec
Structs its codec parses it with), answer and error shapes (pydantic models in `schemas.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ml_service import __version__
from ml_service.api import schemas as s
from ml_service.api.router import Route
from ml_service.codecs import body

_ERROR_MODELS: dict[str, type[BaseModel]] = {"native": s.NativeError, "v2": s.V2Error, "openai": s.OpenAIError,
                                               "vertex": s.GoogleError}
_REF = "#/components/schemas/{model}"
_STATUS_TEXT = {400: "Bad request (not JSON, wrong framing)", 401: "Missing or invalid bearer token",
                404: "Unknown model or version", 405: "Method not allowed", 409: "Conflicts with the model's state",
                413: "Over a size limit",
                422: "Invalid input", 503: "Model unavailable or queue full (see Retry-After)",
                504: "Deadline exceeded"}


def _ref(model: type[Any]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _operation(route: Route) -> dict[str, Any]:
    doc = (route.handler.__doc__ or "").strip()
    op: dict[str, Any] = {"operationId": route.name, "summary": doc.split("\n")[0], "description": doc,
                          "tags": [route.tag or route.protocol.name]}
    params = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in route.params]
    params += [{"name": q.name, "in": "query", "required": False, "description": q.description, "schema": q.schema}
               for q in route.query]
    if params:
        op["parameters"] = params
    if route.body is not None:
        content: dict[str, Any] = {"application/json": {"schema": _ref(route.body)}}
        if route.binary_body:
            content["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}, "description": (
                "the JSON request, then the binary tensor data; `Inference-Header-Content-Length` gives the JSON's "
                "length")}
        op["requestBody"] = {"required": route.body_required, "content": content}
    ok: dict[str, Any] = {"description": "Accepted" if route.status == 202 else "OK"}
    if route.produces != "application/json":
        ok["content"] = {route.produces: {"schema": {"type": "string"}}}
    elif route.response is not None:
        ok["content"] = {"application/json": {"schema": {"$ref": _REF.format(model=route.response)}}}
        if route.binary_body:
            ok["content"]["application/octet-stream"] = {"schema": {"type": "string", "format": "binary"}}
    responses: dict[str, Any] = {str(route.status): ok}
    error = {"application/json": {"schema": _ref(_ERROR_MODELS[route.protocol.name])}}
    for status in sorted(set(route.errors) | {500}):
        responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Internal error"), "content": error}
    if route.auth:
        op["security"] = [{"bearer": []}]
    op["responses"] = responses
    return op


def build_openapi(routes: Sequence[Route], auth: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the route table."""
    models = {getattr(s, r.response) for r in routes if r.response is not None} | set(_ERROR_MODELS.values())
    _, defs = models_json_schema([(m, "validation") for m in sorted(models, key=lambda m: m.__name__)],
                                 ref_template=_REF)
    schemas: dict[str, Any] = defs.get("$defs", {})
    bodies = body.schemas(sorted({r.body for r in routes if r.body is not None}, key=lambda b: b.__name__),
                          _REF.replace("{model}", "{name}"))
    clash = set(schemas) & set(bodies)
    assert not clash, f"request and response schemas share names: {clash}"  # one would hide the other
    schemas.update(bodies)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "ml-service", "version": __version__,
                 "description": "Self-hosted inference: the service's own API, the Open Inference Protocol (KServe "
                                "V2) and OpenAI embeddings over one data plane."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
    if not auth:
        doc["info"]["description"] += " Auth is off on this server (no ML_SERVICE_SECRET)."
    return doc
