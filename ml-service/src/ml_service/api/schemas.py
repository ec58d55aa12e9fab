"""Request and response bodies of every route, as pydantic models: they describe the API in /openapi.json (for
people, client generators and schema-driven fuzzers) and the tests check real answers against them. The codecs
parse and write the bodies themselves (faster, with messages that name the field); these models say what
those codecs accept and answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors --------------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_input, model_not_found, queue_full")
    message: str = Field(description="what is wrong and how to fix it")


class NativeError(BaseModel):
    """The error shape of the service's own API (and health and admin routes)."""

    error: ErrorDetail


class V2Error(BaseModel):
    """The Open Inference Protocol's error shape."""

    error: str


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error shape."""

    error: OpenAIErrorDetail


class GoogleErrorDetail(BaseModel):
    code: int = Field(description="the HTTP status")
    message: str
    status: str = Field(description="google.rpc.Code name, e.g. INVALID_ARGUMENT, UNAVAILABLE")
    details: list[dict[str, Any]] = Field(description="a google.rpc.ErrorInfo whose reason is our error code")


class GoogleError(BaseModel):
    """Google APIs' error shape (Vertex AI routes)."""

    error: GoogleErrorDetail


# -- the service's own API ------------------------------------------------------------------------
class InferenceData(_Open):
    """One of `text`/`texts` (text models), `image`/`images` (base64 JPEG, PNG or WebP; image models) or
    `inputs` (tensor models), and `top_k` for classifiers."""

    text: str | None = None
    texts: list[str] | None = None
    image: str | None = Field(default=None, description="base64 (a data: URL prefix is accepted)")
    images: list[str] | None = None
    inputs: dict[str, Any] | None = Field(default=None, description="{input name: nested list}, batch first")
    top_k: int | None = Field(default=None, ge=1, description="labels to return (classifiers; default 5)")


class InferenceBody(BaseModel):
    model_type: str = Field(min_length=1, description="a model name or alias (GET /models)")
    data: InferenceData
    version: str | int | None = Field(default=None, description="pin a served version; default the highest")


class LabelScore(BaseModel):
    label: str
    score: float


class InferenceOutput(_Open):
    """An embedding (`embedding`), a classification (`label`, `score`, `top_k`) or named tensors; text models
    add `tokens` and `truncated` (true when the text was cut at the model's token limit)."""

    embedding: list[float] | None = None
    label: str | None = None
    score: float | None = None
    top_k: list[LabelScore] | None = None
    tokens: int | None = None
    truncated: bool | None = None


class Timings(BaseModel):
    queue: float
    inference: float
    total: float


class InferenceResponse(BaseModel):
    model: str
    version: str
    outputs: list[InferenceOutput]
    timings_ms: Timings


class ModelHealth(BaseModel):
    state: str
    error: str | None = None
    manifest_error: str | None = None


class Health(BaseModel):
    """Without a valid token when auth is on: `status` only."""

    status: Literal["ok", "degraded"]
    ready: bool | None = None
    models: dict[str, ModelHealth] | None = None
    preload_errors: dict[str, str] | None = Field(default=None, description="preloaded models that failed, why")


class Live(BaseModel):
    status: Literal["alive"]


class Ready(BaseModel):
    ready: bool


class VersionInfo(BaseModel):
    version: str
    served: bool
    default: bool = Field(description="the version requests get when they pin none")
    state: Literal["unloaded", "loading", "ready", "failed", "unloading"]
    error: str | None
    labels: int | None = Field(description="this version's labels (a version may change its classes)")
    memory_mb: float | None
    estimated_memory_mb: float
    device: str | None
    encoder: str | None = Field(description="for a head: the encoder it runs on (name:version)")
    batches: int | None
    items: int | None = Field(description="items computed")
    mean_batch_size: float | None
    cancelled_items: int | None = Field(description="items dropped uncomputed because their client left")
    expired_items: int | None = Field(description="items dropped uncomputed past their deadline")
    evictions: int


class ModelInfo(BaseModel):
    name: str
    valid: bool
    task: str | None
    runtime: str | None
    aliases: list[str]
    alias_conflicts: list[str] = Field(description="aliases this model declares that another model holds")
    versions: list[str]
    served_versions: list[str]
    default_version: str | None
    state: str = Field(description="the state of what serves the model (its default version)")
    error: str | None = Field(description="why the model cannot serve, when it cannot")
    manifest_error: str | None = Field(description="why model.toml is not applied now (the last good one is)")
    memory_mb: float
    labels: int | None
    card: dict[str, Any] | None
    version_details: list[VersionInfo]


class ModelList(BaseModel):
    models: list[ModelInfo]


class Reloaded(BaseModel):
    switched: dict[str, list[int | None]] = Field(description="model -> [old default, new default]")
    republished: list[str] = Field(description="name:version whose changed files were loaded, checked and swapped in")
    failed: dict[str, str] = Field(description="name:version -> why it did not go live (what served keeps serving)")
    unloaded: list[str] = Field(description="name:version gone from disk or no longer served, drained and unloaded")
    manifest_errors: dict[str, str] = Field(description="model -> why its model.toml is not applied (the last good "
                                                        "one stays in force)")


class Loaded(BaseModel):
    model: str
    loaded_versions: list[str]


class Unloaded(BaseModel):
    model: str
    unloaded_versions: list[str]


# -- Open Inference Protocol (KServe V2) ----------------------------------------------------------
class V2Live(BaseModel):
    live: bool


class V2Ready(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReadyState(BaseModel):
    name: str
    version: str
    ready: bool


class TensorParameters(_Open):
    binary_data_size: int | None = Field(default=None, ge=0, description="bytes of this tensor after the JSON")


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                      "FP32", "FP64", "BYTES"]
    parameters: TensorParameters | None = None
    data: list[Any] | None = Field(default=None, description="row-major values, flat or nested")


class OutputParameters(_Open):
    binary_data: bool | None = None


class RequestOutput(BaseModel):
    name: str
    parameters: OutputParameters | None = None


class InferParameters(_Open):
    binary_data_output: bool | None = None


class InferRequestBody(BaseModel):
    """JSON tensors; with `Inference-Header-Content-Length`, this JSON followed by binary tensor data."""

    id: str | None = None
    parameters: InferParameters | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: TensorParameters | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexBody(BaseModel):
    ready: bool | None = Field(default=None, description="only models that are ready")


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = None
    state: Literal["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]
    reason: str


class RepositoryIndex(RootModel[list[RepositoryIndexEntry]]):
    """The body is the list of entries itself."""


class RepositoryLoadBody(BaseModel):
    parameters: dict[str, Any] | None = None


class RepositoryLoaded(BaseModel):
    name: str
    versions: list[str]
    state: Literal["READY"]


class RepositoryUnloaded(BaseModel):
    name: str
    unloaded_versions: list[str]


# -- OpenAI embeddings ----------------------------------------------------------------------------
class EmbeddingsBody(_Open):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(description="a string or a list of strings (token ids are not supported)")
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class Embedding(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: list[float] | str = Field(description="floats, or base64 of little-endian float32")


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: Usage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class OpenAIModelList(BaseModel):
    object: Literal["list"]
    data: list[OpenAIModel]


# -- Vertex AI custom container ----------------------------------------------------------------------
class VertexPredictBody(BaseModel):
    instances: list[Any] = Field(min_length=1, description="texts (`\"...\"` or `{\"text\": \"...\"}`), images "
                                 "(`{\"image\": {\"b64\": \"...\"}}`) or, for tensor models, {input name: row}")
    parameters: dict[str, Any] | None = Field(default=None, description="`top_k` for classifiers (3 or 3.0); "
                                              "`model`: another model of the repository than the deployment's")


class VertexPredictResponse(BaseModel):
    predictions: list[InferenceOutput] = Field(description="one per instance, in order; as /inference's outputs")


class VertexHealth(BaseModel):
    ready: bool
    model: str


# -- observability ----------------------------------------------------------------------------------
class WindowStats(BaseModel):
    requests: int
    rate_per_s: float
    error_rate: float = Field(description="share of requests answered 5xx")
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


class ModelStats(BaseModel):
    model: str
    version: str
    state: str
    memory_mb: float | None
    queue_depth: int
    in_flight: int
    mean_batch_size: float | None
    last_1m: WindowStats
    last_5m: WindowStats


class StatsReport(BaseModel):
    time: int
    windows_s: list[int]
    rss_mb: float
    memory_budget_mb: int
    ready: bool
    models: list[ModelStats]
