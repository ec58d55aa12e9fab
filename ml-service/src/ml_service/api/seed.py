"""The seed API: POST /inference, /health, /models and explicit load/unload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ml_service.api.deps import get_service, json_response, read_json, require_auth
from ml_service.errors import InvalidInput
from ml_service.service import InferenceService

health_router = APIRouter(tags=["health"])
router = APIRouter(dependencies=[Depends(require_auth)], tags=["inference"])


@health_router.get("/health")
async def health(service: InferenceService = Depends(get_service)) -> Response:
    """Overall status and each model's state."""
    return json_response(service.health())


@health_router.get("/health/live")
async def live() -> Response:
    """200 while the process runs."""
    return json_response({"status": "alive"})


@health_router.get("/health/ready")
async def ready(service: InferenceService = Depends(get_service)) -> Response:
    """200 once the preload list is loaded, else 503."""
    if service.ready:
        return json_response({"ready": True})
    return json_response({"ready": False}, status_code=503)


def _parse_version(value: Any) -> str | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidInput("version must be a string or an integer")
    return value


async def seed_inference(service: InferenceService, body: Any) -> dict[str, Any]:
    """`{"model_type", "data", "version"?}` -> the response body (HTTP-free: the fast path calls it too)."""
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object with 'model_type' and 'data'")
    model_type = body.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise InvalidInput("model_type must be a non-empty string (a model name or alias, see GET /models)")
    data = body.get("data")
    if not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    result, options = await service.infer_seed(model_type, data, _parse_version(body.get("version")))
    fmt = result.model_task.format_seed
    return {
        "model": result.model,
        "version": str(result.version),
        "outputs": [fmt(item, options) for item in result.items],
        "timings_ms": result.timings_ms,
    }


@router.post("/inference")
async def inference(request: Request) -> Response:
    """`{"model_type", "data", "version"?}` -> one output per input, plus timings.

    Served by the fast path (api/fast.py) in the running app; this route documents it and backs it."""
    return json_response(await seed_inference(get_service(request), await read_json(request)))


@router.get("/models")
async def models(service: InferenceService = Depends(get_service)) -> Response:
    """Every model in the repository with versions, state, memory and errors."""
    service.repository.scan()
    return json_response({"models": service.models_info()})


@router.post("/models/{name}/load")
async def load_model(name: str, version: int | None = None,
                     service: InferenceService = Depends(get_service)) -> Response:
    """Load a model (its served versions, or one `?version=`); retries a failed load."""
    model, versions = await service.load_model(name, version)
    return json_response({"model": model, "loaded_versions": [str(v) for v in versions]})


@router.post("/models/{name}/unload")
async def unload_model(name: str, version: int | None = None,
                       service: InferenceService = Depends(get_service)) -> Response:
    """Unload a model (every loaded version, or one `?version=`)."""
    model, done = await service.unload_model(name, version)
    return json_response({"model": model, "unloaded_versions": [str(v) for v in done]})
