"""Service settings from the environment (built once in the entry point and passed in)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: the request limit of Vertex AI's shared public endpoints
VERTEX_MAX_BODY_BYTES = 1_572_864
#: AIP_MODE values, case-insensitive (Vertex AI itself sets PREDICTION)
_AIP_ON = frozenset({"prediction", "1", "true", "yes"})
_AIP_OFF = frozenset({"", "0", "false", "no"})


def cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs granted by the cgroup's CFS quota (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`); None when unlimited."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (cgroup / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (cgroup / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    try:
        q, p = float(quota), float(period)
    except ValueError:  # "max": no quota
        return None
    return q / p if q > 0 and p > 0 else None


class Settings(BaseSettings):
    """Everything the service can be told; names are `ML_SERVICE_<FIELD>` unless noted."""

    model_config = SettingsConfigDict(env_prefix="ML_SERVICE_", extra="ignore", populate_by_name=True)

    model_cache_dir: Path = Field(
        default=Path("models"),
        validation_alias=AliasChoices("MODEL_CACHE_DIR", "ML_SERVICE_MODEL_CACHE_DIR", "model_cache_dir"),
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    secret: str | None = Field(
        default=None, validation_alias=AliasChoices("ML_SERVICE_SECRET", "secret"), repr=False
    )
    secret_file: Path | None = Field(default=None, description="tokens, one a line; re-read on SIGHUP")
    allow_insecure: bool = Field(default=False, description="serve on a non-loopback address without a secret")
    trusted_proxies: str = Field(default="", description="addresses/CIDRs whose X-Forwarded-For is believed")
    rate_limit: str = Field(default="", description="per client, e.g. '20/second;600/minute'; empty: off")
    rate_limit_cost: Literal["requests", "items"] = "requests"
    rate_limit_fail: Literal["open", "closed"] = "open"
    redis_url: str | None = Field(default=None, description="redis://host:port/db: one rate-limit budget for replicas")
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="SIGTERM: time for in-flight requests to finish")
    repository_poll_s: float = Field(default=10.0, ge=0, description="re-read the repository this often; 0: off")
    preload: str = ""
    memory_budget_mb: int = Field(default=4096, ge=1)
    eviction_idle_s: float = Field(default=2.0, ge=0, description="a model idle for less than this is not evicted")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_workers: int = Field(default=0, ge=0, description="batches computed at once per model; 0 = auto")
    intra_op_threads: int = Field(default=0, ge=0, description="threads per batch; 0 = cores / workers")
    ort_spinning: bool = Field(default=False, description="let ONNX Runtime threads spin between batches")
    load_profiles: bool = Field(default=True, description=(
        "keep what each version cost to load in MODEL_CACHE_DIR/.load-profiles.json: loading the same files again "
        "(a restart) then runs beside other loads with a one-item warm-up"))
    release_idle_s: float = Field(default=1.0, ge=0, description="give a model's working memory back to the OS once "
                                                                "it has been idle this long (0: keep it)")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    request_timeout_s: float = Field(default=30.0, gt=0)
    target_wait_ms: float = Field(default=1000.0, ge=0, le=600_000, description=(
        "the most an accepted request should wait in a model's queue: once the queue stands over two thirds of it "
        "for an interval, it is held at a third by refusing longer waits at once; model.toml [batching] target_wait_ms "
        "overrides it; 0: only the deadline bounds the wait"))
    shed_interval_ms: float = Field(default=100.0, ge=1, le=60_000, description=(
        "how long a model's queue must stand over two thirds of its target wait before anything is shed (a burst that "
        "drains sooner is not)"))
    train_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description=(
        "the largest body of POST /models/{name}/train (413 over it)"))
    train_max_examples: int = Field(default=50_000, ge=1, description="most examples in one training")
    train_tolerance: float = Field(default=0.01, ge=0, le=0.05, description=(
        "accuracy a trained head may lose against the served version on the held-out texts both can label and still "
        "count as not worse (a non-inferiority margin: one held-out text of 240 is 0.0042); a request may say its own"))
    train_live_timeout_s: float = Field(default=120.0, gt=0, description=(
        "how long a training job waits for its published version to go live"))
    openai_max_inputs: int = Field(default=2048, ge=1, description="most items in one /v1/embeddings request")
    log_level: str = "info"
    log_format: Literal["console", "json"] = Field(default="console", description="json: one JSON object a line")
    request_log: bool = Field(default=True, description="one log line per request (id, model, status, timings)")
    metrics_public: bool = Field(default=False, description="serve /metrics without a token (a private scraper)")
    # Vertex AI custom-container mode: Vertex sets the AIP_* variables (nothing AIP_* is baked into the image)
    vertex_model: str = Field(default="", description="the model Vertex predictions use; default: the only one, "
                              "else text-embedding")
    storage_cache_dir: Path = Field(default=Path("~/.cache/ml-service/storage"),
                                    description="where a gs:// AIP_STORAGE_URI is copied at start")
    aip_mode: bool = Field(default=False, validation_alias=AliasChoices("AIP_MODE", "aip_mode"),
                           description="Vertex mode: PREDICTION (what Vertex sets), 1, true or yes")
    aip_http_port: int | None = Field(default=None, ge=1, le=65535,
                                      validation_alias=AliasChoices("AIP_HTTP_PORT", "aip_http_port"))
    aip_health_route: str | None = Field(default=None,
                                         validation_alias=AliasChoices("AIP_HEALTH_ROUTE", "aip_health_route"))
    aip_predict_route: str | None = Field(default=None,
                                          validation_alias=AliasChoices("AIP_PREDICT_ROUTE", "aip_predict_route"))
    aip_endpoint_id: str = Field(default="0", validation_alias=AliasChoices("AIP_ENDPOINT_ID", "aip_endpoint_id"))
    aip_deployed_model_id: str = Field(
        default="0", validation_alias=AliasChoices("AIP_DEPLOYED_MODEL_ID", "aip_deployed_model_id"))
    aip_storage_uri: str | None = Field(default=None,
                                        validation_alias=AliasChoices("AIP_STORAGE_URI", "aip_storage_uri"))

    @field_validator("secret")
    @classmethod
    def _blank_secret_is_none(cls, v: str | None) -> str | None:
        return v if v and v.strip() else None

    @field_validator("aip_mode", mode="before")
    @classmethod
    def _aip_mode(cls, v: object) -> bool:
        """Only a clear yes turns Vertex mode on (it opens a public bind without a secret): `AIP_MODE=0` must not."""
        if isinstance(v, bool) or v is None:
            return bool(v)
        word = str(v).strip().lower()
        if word in _AIP_ON:
            return True
        if word in _AIP_OFF:
            return False
        raise ValueError(f"AIP_MODE={str(v)[:40]!r} is not understood: PREDICTION (what Vertex AI sets), 1, true "
                         "or yes turn Vertex mode on; unset, 0, false or no leave it off")

    @field_validator("rate_limit")
    @classmethod
    def _parse_rate_limit(cls, v: str) -> str:
        if v.strip():
            from limits import parse_many

            try:
                items = parse_many(v)
            except ValueError:
                raise ValueError(f"not a rate limit: {v!r}; write e.g. '600/minute' or '20/second;600/minute'"
                                 ) from None
            if any(item.amount < 1 for item in items):
                raise ValueError(f"a rate limit of 0 admits nothing: {v!r}; leave it empty to turn limits off")
        return v.strip()

    @model_validator(mode="after")
    def _vertex_defaults(self) -> Settings:
        """Vertex's contract: listen on 0.0.0.0:$AIP_HTTP_PORT, bodies up to 1.5 MB, models from AIP_STORAGE_URI
        (a local path is the repository; a gs:// one is copied to `storage_cache_dir`)."""
        if not self.vertex:
            return self
        if self.aip_http_port is not None:
            self.host, self.port = "0.0.0.0", self.aip_http_port  # noqa: S104 (Vertex's contract)
        if "max_body_bytes" not in self.model_fields_set:
            self.max_body_bytes = VERTEX_MAX_BODY_BYTES
        uri = (self.aip_storage_uri or "").strip()
        if uri:
            self.model_cache_dir = self.storage_cache_dir.expanduser() if uri.startswith("gs://") else Path(uri)
        return self

    @property
    def vertex(self) -> bool:
        """Serving as a Vertex AI custom container (AIP_MODE says so, or AIP_HTTP_PORT is set)."""
        return self.aip_mode or self.aip_http_port is not None

    @property
    def api_keys(self) -> list[str]:
        """The accepted bearer tokens (ML_SERVICE_SECRET may hold several, comma-separated)."""
        if not self.secret:
            return []
        return [k.strip() for k in self.secret.split(",") if k.strip()]

    @property
    def api_keys_configured(self) -> bool:
        """Auth is on: a secret or a secret file is set."""
        return bool(self.api_keys) or self.secret_file is not None

    @property
    def preload_names(self) -> list[str]:
        """Model names to load at startup; `["*"]` means every valid model."""
        return [p.strip() for p in self.preload.split(",") if p.strip()]

    @staticmethod
    def cores(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
        """CPU cores this process may use: its affinity (a container's cpuset), capped by a CPU quota (`docker run
        --cpus`, a Kubernetes CPU limit), rounded up. Without the cap a pod limited to 2 CPUs on a 64-core node
        would start 64 workers and be throttled."""
        try:
            n = len(os.sched_getaffinity(0)) or 1
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
        quota = cpu_quota(cgroup)
        return max(1, min(n, math.ceil(quota))) if quota else n

    def workers(self, on_gpu: bool = False) -> int:
        """Compute workers per model: one per core on CPU (each single-threaded), one on a GPU."""
        if self.compute_workers:
            return self.compute_workers
        return 1 if on_gpu else self.cores()

    @property
    def threads(self) -> int:
        """Intra-op threads per runtime call: the cores shared among the workers."""
        if self.intra_op_threads:
            return self.intra_op_threads
        return max(1, self.cores() // self.workers())
