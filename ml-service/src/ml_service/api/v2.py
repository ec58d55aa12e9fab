"""Open Inference Protocol (KServe V2 / Triton) over HTTP: health, metadata, infer with JSON and
binary tensors, and the model repository extension. The logic lives in `ml_service.protocols`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ml_service import __version__, protocols
from ml_service.api.deps import get_service, json_response, read_body, require_auth
from ml_service.errors import BadRequest, InvalidInput
from ml_service.service import InferenceService

health_router = APIRouter(tags=["v2"])
router = APIRouter(prefix="/v2", dependencies=[Depends(require_auth)], tags=["v2"])

_HEADER_LENGTH = "inference-header-content-length"


@health_router.get("/v2/health/live")
async def live() -> Response:
    """200 while the process runs."""
    return json_response({"live": True})


@health_router.get("/v2/health/ready")
async def ready(service: InferenceService = Depends(get_service)) -> Response:
    """200 once the preload list is loaded, else 503."""
    return json_response({"ready": service.ready}, status_code=200 if service.ready else 503)


@router.get("")
async def server_metadata() -> Response:
    """Server name, version and the protocol extensions it speaks."""
    return json_response({"name": "ml-service", "version": __version__, "extensions": protocols.EXTENSIONS})


async def _metadata(service: InferenceService, model: str, version: str | None) -> Response:
    entry = service.entry(model)
    entry.version(version)  # 404 for a version that is not served
    return json_response(protocols.model_metadata(entry))


@router.get("/models/{model}")
async def model_metadata(model: str, service: InferenceService = Depends(get_service)) -> Response:
    """Platform, served versions, and input and output tensors (-1: variable dimension)."""
    return await _metadata(service, model, None)


@router.get("/models/{model}/versions/{version}")
async def model_version_metadata(model: str, version: str,
                                 service: InferenceService = Depends(get_service)) -> Response:
    """Metadata of one served version."""
    return await _metadata(service, model, version)


def _model_ready(service: InferenceService, model: str, version: str | None) -> Response:
    entry = service.entry(model)
    mv = entry.version(version)
    state, _, _ = service.registry.state(entry.name, mv.number)
    ok = state == "ready"
    return json_response({"name": entry.name, "version": str(mv.number), "ready": ok},
                         status_code=200 if ok else 503)


@router.get("/models/{model}/ready")
async def model_ready(model: str, service: InferenceService = Depends(get_service)) -> Response:
    """200 when the model's default version is loaded, else 503 (it loads on first use or on load)."""
    return _model_ready(service, model, None)


@router.get("/models/{model}/versions/{version}/ready")
async def model_version_ready(model: str, version: str,
                              service: InferenceService = Depends(get_service)) -> Response:
    """200 when that version is loaded, else 503."""
    return _model_ready(service, model, version)


async def _infer(request: Request, model: str, version: str | None) -> Response:
    service = get_service(request)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; send the request uncompressed")
    entry = service.entry(model)
    mv = entry.version(version)
    sig = protocols.signature(entry)
    body = await read_body(request)
    req = protocols.parse_infer_request(body, request.headers.get(_HEADER_LENGTH), sig)
    loaded = await service.model(entry.name, mv.number)
    raws = protocols.request_raws(loaded.task, req)
    result = await service.infer(entry.name, raws, mv.number)
    tensors = protocols.result_tensors(loaded.task, result.items)
    head, blobs = protocols.infer_response(result.model, result.version, req, tensors, sig)
    if not blobs:
        return json_response(head)
    content, header_length = protocols.binary_body(head, blobs)
    return Response(content, media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)})


@router.post("/models/{model}/infer")
async def infer(model: str, request: Request) -> Response:
    """Inference with JSON tensors, or JSON plus binary tensor data (Inference-Header-Content-Length)."""
    return await _infer(request, model, None)


@router.post("/models/{model}/versions/{version}/infer")
async def infer_version(model: str, version: str, request: Request) -> Response:
    """Inference on one served version."""
    return await _infer(request, model, version)


async def _optional_json(request: Request) -> dict[str, Any]:
    """A JSON object body, or {} when the body is empty (clients send either)."""
    body = await read_body(request)
    if not body.strip():
        return {}
    doc = protocols.parse_json(body)
    if not isinstance(doc, dict):
        raise InvalidInput("request body must be a JSON object")
    return doc


@router.post("/repository/index")
async def repository_index(request: Request) -> Response:
    """Every model version on disk with its state (READY, LOADING, UNAVAILABLE) and the reason."""
    service = get_service(request)
    doc = await _optional_json(request)
    ready_only = doc.get("ready", False)
    if not isinstance(ready_only, bool):
        raise InvalidInput("ready must be true or false")
    service.repository.scan()
    return json_response(protocols.repository_index(service, ready_only))


@router.post("/repository/models/{model}/load")
async def load(model: str, request: Request) -> Response:
    """Load (or retry a failed load of) every served version of a model, re-reading the repository first."""
    service = get_service(request)
    doc = await _optional_json(request)
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be a JSON object")
    if any(k == "config" or k.startswith("file:") for k in params):
        raise BadRequest("loading with a config or files is not supported; put the model in the repository")
    name, versions = await service.load_model(model, rescan=True)
    return json_response({"name": name, "versions": [str(v) for v in versions], "state": "READY"})


@router.post("/repository/models/{model}/unload")
async def unload(model: str, request: Request) -> Response:
    """Unload every loaded version of a model (it loads again on its next request)."""
    service = get_service(request)
    await _optional_json(request)
    name, done = await service.unload_model(model)
    return json_response({"name": name, "unloaded_versions": [str(v) for v in done]})
