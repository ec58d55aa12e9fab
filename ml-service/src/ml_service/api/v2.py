"""Routes of the Open Inference Protocol (KServe V2 / Triton): health, metadata, infer with JSON and binary
tensors, and the model repository extension."""

from __future__ import annotations

from ml_service import __version__
from ml_service.api.http import Call, Reply, json_reply
from ml_service.api.router import Route
from ml_service.codecs import v2
from ml_service.errors import BadRequest


async def live(call: Call) -> Reply:
    """200 while the process runs."""
    return json_reply({"live": True})


async def ready(call: Call) -> Reply:
    """200 once every preloaded model is loaded, else 503."""
    ok = call.rollout.ready
    return json_reply({"ready": ok}, 200 if ok else 503)


async def server_metadata(call: Call) -> Reply:
    """Server name, version and the protocol extensions it speaks."""
    return json_reply({"name": "ml-service", "version": __version__, "extensions": v2.EXTENSIONS})


async def model_metadata(call: Call) -> Reply:
    """Platform, served versions, and input and output tensors (-1: a variable dimension)."""
    spec = call.service.describe(call.params["model"], call.params.get("version"))
    entry = call.rollout.repository.get(spec.name)
    return json_reply(v2.model_metadata(spec, call.rollout.served(entry)))


async def model_ready(call: Call) -> Reply:
    """200 when the version would answer without loading anything (a head: and its encoder), else 503."""
    spec = call.service.describe(call.params["model"], call.params.get("version"))
    ok = call.reports.version_ready(spec.name, spec.version)
    return json_reply({"name": spec.name, "version": str(spec.version), "ready": ok}, 200 if ok else 503)


async def infer(call: Call) -> Reply:
    """Inference with JSON tensors, or JSON plus binary tensor data (Inference-Header-Content-Length)."""
    encoding = (call.header(b"content-encoding") or "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported; send the request uncompressed")
    resolved = await call.service.resolve(call.params["model"], call.params.get("version"), call.ctx)
    spec = resolved.spec
    envelope = v2.parse_envelope(call.body, call.header(v2.HEADER_LENGTH.encode()))
    call.service.admit(resolved, envelope.items)
    req = v2.tensors(envelope, spec.signature)
    head, blobs = v2.encode(await call.service.infer(v2.decode(req, spec), resolved, call.ctx), req)
    if not blobs:
        return json_reply(head)
    content, header_length = v2.binary_body(head, blobs)
    return Reply(content, media_type=b"application/octet-stream",
                 headers={"Inference-Header-Content-Length": str(header_length)})


async def repository_index(call: Call) -> Reply:
    """Every model version on disk with its state (READY, LOADING, UNLOADING, UNAVAILABLE) and the reason; a
    read-only listing, as in Triton (`/models/reload` re-reads the disk)."""
    ready_only = bool(v2.parse_index(call.body).ready)
    return json_reply(v2.repository_index(call.reports.version_rows(), ready_only))


async def repository_load(call: Call) -> Reply:
    """Load (or retry a failed load of) every served version of a model, re-reading its directory first."""
    params = v2.parse_model_body(call.body).parameters or {}
    if any(k == "config" or k.startswith("file:") for k in params):
        raise BadRequest("loading with a config or files is not supported; put the model in the repository")
    name, versions = await call.rollout.load_model(call.params["model"])
    return json_reply({"name": name, "versions": [str(v) for v in versions], "state": "READY"})


async def repository_unload(call: Call) -> Reply:
    """Unload every loaded version of a model (it loads again on its next request)."""
    v2.parse_model_body(call.body)
    name, done = await call.rollout.unload_model(call.params["model"])
    return json_reply({"name": name, "unloaded_versions": [str(v) for v in done]})


_INFER_ERRORS = (400, 401, 404, 413, 422, 503, 504)
_META_ERRORS = (401, 404, 503)
ROUTES = [
    Route("GET", "/v2/health/live", live, v2.PROTOCOL, "v2_live", auth=False, response="V2Live", tag="v2"),
    Route("GET", "/v2/health/ready", ready, v2.PROTOCOL, "v2_ready", auth=False, response="V2Ready", errors=(503,),
          tag="v2"),
    Route("GET", "/v2", server_metadata, v2.PROTOCOL, "v2_server_metadata", response="ServerMetadata", errors=(401,),
          tag="v2"),
    Route("GET", "/v2/models/{model}", model_metadata, v2.PROTOCOL, "v2_model_metadata", response="ModelMetadata",
          errors=_META_ERRORS, tag="v2"),
    Route("GET", "/v2/models/{model}/versions/{version}", model_metadata, v2.PROTOCOL, "v2_model_version_metadata",
          response="ModelMetadata", errors=_META_ERRORS, tag="v2"),
    Route("GET", "/v2/models/{model}/ready", model_ready, v2.PROTOCOL, "v2_model_ready", response="ModelReadyState",
          errors=_META_ERRORS, tag="v2"),
    Route("GET", "/v2/models/{model}/versions/{version}/ready", model_ready, v2.PROTOCOL, "v2_model_version_ready",
          response="ModelReadyState", errors=_META_ERRORS, tag="v2"),
    Route("POST", "/v2/models/{model}/infer", infer, v2.PROTOCOL, "v2_infer", body=v2.InferRequestBody,
          binary_body=True, response="InferResponseBody", errors=_INFER_ERRORS, watch_disconnect=True, limited=True,
          tag="v2"),
    Route("POST", "/v2/models/{model}/versions/{version}/infer", infer, v2.PROTOCOL, "v2_infer_version",
          body=v2.InferRequestBody, binary_body=True, response="InferResponseBody", errors=_INFER_ERRORS,
          watch_disconnect=True, limited=True, tag="v2"),
    Route("POST", "/v2/repository/index", repository_index, v2.PROTOCOL, "v2_repository_index",
          body=v2.RepositoryIndexBody, body_required=False, response="RepositoryIndex", errors=(400, 401, 422),
          tag="v2"),
    Route("POST", "/v2/repository/models/{model}/load", repository_load, v2.PROTOCOL, "v2_repository_load",
          body=v2.RepositoryModelBody, body_required=False, response="RepositoryLoaded",
          errors=(400, 401, 404, 422, 503), tag="v2"),
    Route("POST", "/v2/repository/models/{model}/unload", repository_unload, v2.PROTOCOL, "v2_repository_unload",
          body=v2.RepositoryModelBody, body_required=False, response="RepositoryUnloaded",
          errors=(400, 401, 404, 422), tag="v2"),
]
