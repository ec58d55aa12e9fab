"""Routes of the service's own API: POST /inference, health, /models and explicit load/unload."""

from __future__ import annotations

from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Query, Route
from ml_service.codecs import native

_VERSION = Query("version", "one version (default: every served/loaded version)", {"type": "integer", "minimum": 1})


async def inference(call: Call) -> Reply:
    """Run a model: one output per input (embeddings, labels with top-k, or tensors), plus timings."""
    req = native.parse_request(call.body)
    resolved = await call.service.resolve(req.model_type, req.version, call.ctx)
    call.service.admit(resolved, native.count(req))
    request, top_k = native.decode(req, resolved.spec)
    return json_reply(native.encode(await call.service.infer(request, resolved, call.ctx), top_k))


async def health(call: Call) -> Reply:
    """Overall status (`degraded` when a model or the preload failed) and, with a valid token when auth is on, each
    model's state and the reasons."""
    report = call.reports.health()
    if call.ctx.caller is None and call.settings.api_keys_configured:
        return json_reply({"status": report["status"]})
    return json_reply(report)


async def live(call: Call) -> Reply:
    """200 while the process runs."""
    return json_reply({"status": "alive"})


async def ready(call: Call) -> Reply:
    """200 once every preloaded model is loaded, else 503."""
    ok = call.rollout.ready
    return json_reply({"ready": ok}, 200 if ok else 503)


async def models(call: Call) -> Reply:
    """Every model in the repository with versions, state, memory, errors and model cards."""
    return json_reply({"models": call.reports.models()})


async def load(call: Call) -> Reply:
    """Load a model (its served versions, or one `?version=`), re-reading its directory first; retries a failed
    load."""
    name, versions = await call.rollout.load_model(call.params["name"], call.version_query())
    return json_reply({"model": name, "loaded_versions": [str(v) for v in versions]})


async def unload(call: Call) -> Reply:
    """Unload a model (every loaded version, or one `?version=`) once its requests finish."""
    name, done = await call.rollout.unload_model(call.params["name"], call.version_query())
    return json_reply({"model": name, "unloaded_versions": [str(v) for v in done]})


async def reload(call: Call) -> Reply:
    """Re-read the model repository now: new versions go live once loaded, removed ones drain and unload, changed
    model.toml files apply (the periodic re-read, ML_SERVICE_REPOSITORY_POLL_S, does the same but does not retry
    versions that failed as they are on disk)."""
    return json_reply(await call.rollout.reload(retry_failed=True))


ROUTES = [
    Route("POST", "/inference", inference, native.PROTOCOL, "inference", body=native.InferenceBody,
          response="InferenceResponse", errors=(400, 401, 404, 413, 422, 503, 504), watch_disconnect=True, limited=True,
          tag="inference"),
    Route("GET", "/health", health, native.PROTOCOL, "health", auth=False, response="Health", tag="health"),
    Route("GET", "/health/live", live, native.PROTOCOL, "health_live", auth=False, response="Live", tag="health"),
    Route("GET", "/health/ready", ready, native.PROTOCOL, "health_ready", auth=False, response="Ready", errors=(503,),
          tag="health"),
    Route("GET", "/models", models, native.PROTOCOL, "models", response="ModelList", errors=(401,), tag="models"),
    Route("POST", "/models/reload", reload, native.PROTOCOL, "reload_models", body_required=False, response="Reloaded",
          errors=(401,), tag="models"),
    Route("POST", "/models/{name}/load", load, native.PROTOCOL, "load_model", body_required=False, response="Loaded",
          errors=(401, 404, 422, 503), query=(_VERSION,), tag="models"),
    Route("POST", "/models/{name}/unload", unload, native.PROTOCOL, "unload_model", body_required=False,
          response="Unloaded", errors=(401, 404, 422), query=(_VERSION,), tag="models"),
]
