"""Response bodies and error shapes of every route, as pydantic models: they describe the answers in /openapi.json
(for people, client generators and schema-driven fuzzers), and the tests check real answers against them.
Request bodies are not here: each codec declares its own as msgspec Structs, which parse the requests and are
documented as they are (`codecs/body.py`)."""

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
    memory_mb: float | None = Field(description="what the process grew by when it loaded (resident, measured)")
    peak_memory_mb: float | None = Field(description="what it counts against the memory budget: its measured peak, "
                                                     "every compute worker running a full batch")
    memory_from_profile: bool | None = Field(description=(
        "both figures are those measured when these files first loaded under these settings (the repository's "
        "load profiles), not by this load, which ran beside other loads with a one-item warm-up"))
    estimated_memory_mb: float
    device: str | None
    encoder: str | None = Field(description="for a head: the encoder it runs on (name:version)")
    batches: int | None
    items: int | None = Field(description="items computed")
    mean_batch_size: float | None
    cancelled_items: int | None = Field(description="items dropped uncomputed because their client left")
    expired_items: int | None = Field(description="items dropped uncomputed past their deadline")
    evictions: int
    card: dict[str, Any] = Field(default_factory=dict, description="this version's own card ([versions.N] card, and "
                                                                   "its card.json as `report`)")


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
    rolled_back: list[str] = Field(default_factory=list, description="versions a rollback holds back from being the "
                                                                     "default until a newer one goes live")
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


class TrainAccepted(BaseModel):
    job_id: str
    model: str
    state: Literal["queued"]


class LabelScores(BaseModel):
    precision: float
    recall: float
    f1: float
    support: int


class Scores(_Open):
    accuracy: float | None
    macro_f1: float | None
    per_label: dict[str, LabelScores] | None = None


class TrainReport(_Open):
    seed: int
    holdout: float
    n_train: int
    n_test: int
    labels: list[str] = Field(description="the new head's labels")
    new_labels: list[str] = Field(description="labels the served version does not know")
    new: Scores = Field(description="the new head on every held-out text")
    served: Scores = Field(description="the served version (`version`) on the held-out texts whose label both know")
    new_on_served_labels: Scores = Field(description="the new head on those same texts")
    agreement: float | None = Field(description="share of those texts where both give the same top label")
    decision: Literal["published", "not_better", "forced"]


class TrainingJob(BaseModel):
    job_id: str
    model: str
    state: Literal["queued", "running", "succeeded", "failed"]
    error: str | None
    report: TrainReport | None
    published: bool
    version: str | None = Field(description="the version it published")
    live: bool = Field(description="the published version is the model's default")


class RolledBack(BaseModel):
    model: str
    default_version: str
    rolled_back: str


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


class ResponseParameters(_Open):
    binary_data_size: int | None = Field(default=None, ge=0, description="bytes of this tensor after the JSON")


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: ResponseParameters | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = None
    state: Literal["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]
    reason: str


class RepositoryIndex(RootModel[list[RepositoryIndexEntry]]):
    """The body is the list of entries itself."""


class RepositoryLoaded(BaseModel):
    name: str
    versions: list[str]
    state: Literal["READY"]


class RepositoryUnloaded(BaseModel):
    name: str
    unloaded_versions: list[str]


# -- OpenAI embeddings ----------------------------------------------------------------------------
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
    expected_wait_ms: float | None = Field(description="what the queued items need at the measured service rate "
                                           "(null before the first batch)")
    service_rate_per_s: float | None = Field(description="items per busy second over the last batches")
    overloaded: bool = Field(description="the queue has stood over two thirds of its target wait: waits over a third "
                                         "are refused")
    target_wait_ms: float | None = Field(description="the most an accepted request should wait once the queue "
                                         "stands; 0: only the deadline")
    last_1m: WindowStats
    last_5m: WindowStats


class StatsReport(BaseModel):
    time: int
    windows_s: list[int]
    rss_mb: float
    memory_budget_mb: int
    ready: bool
    models: list[ModelStats]
