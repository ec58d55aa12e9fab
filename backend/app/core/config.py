"""The backend's settings, from the environment (built once in `main.create_app` and passed in)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Literal, cast

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Source = Literal["ml-service", "vertex", "openai"]
SOURCES: tuple[Source, ...] = ("ml-service", "vertex", "openai")
#: who answered: a source, or `stored` (what the backend keeps: embeddings computed before, the catalog) or `none`
#: (nothing had to be asked: an empty household has nothing similar)
Answerer = Literal["ml-service", "vertex", "openai", "stored", "none"]

#: DATABASE_URL as users write it -> the async driver the app runs on
_ASYNC_SCHEMES = {"sqlite": "sqlite+aiosqlite", "sqlite+pysqlite": "sqlite+aiosqlite", "sqlite+aiosqlite":
                  "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg",
                  "postgresql+psycopg2": "postgresql+asyncpg", "postgresql+pg8000": "postgresql+asyncpg",
                  "postgresql+asyncpg": "postgresql+asyncpg"}
_DRIVERS = {"sqlite+aiosqlite": ("aiosqlite", "pip install aiosqlite"),
            "postgresql+asyncpg": ("asyncpg", "pip install 'ml-service-backend[postgres]' (in the repository: "
                                              "pip install './backend[postgres]')")}


def async_database_url(url: str) -> str:
    """`url` on the async driver (`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`, `postgresql://` and `postgres://`
    -> `postgresql+asyncpg://`); ValueError, saying what is accepted, for anything else or a missing driver."""
    scheme, sep, rest = url.strip().partition("://")
    target = _ASYNC_SCHEMES.get(scheme.lower()) if sep else None
    if target is None:
        raise ValueError("DATABASE_URL must be sqlite:///path/to/file.db, sqlite:// (in memory) or "
                         "postgresql://user:password@host:5432/database")
    module, install = _DRIVERS[target]
    try:
        importlib.import_module(module)
    except ImportError:
        raise ValueError(f"DATABASE_URL is {target.split('+')[0]}, whose driver {module} is not installed: "
                         f"{install}") from None
    return f"{target}://{rest}"


class Settings(BaseSettings):
    """Names as the deployment guide has them (`ML_SERVICE_URL`, `OPENAI_API_KEY`, ...)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", populate_by_name=True)

    ml_service_url: str = "http://ml-service:8001"
    ml_service_secret: str | None = Field(default=None, repr=False)
    ml_service_secret_file: Path | None = Field(default=None, description="the token in a file (a Docker or "
                                                "Kubernetes secret); its first token is used")
    ml_service_timeout_s: float = Field(default=5.0, gt=0, description="a call's whole time budget, retries included")
    ml_service_retries: int = Field(default=2, ge=0, description="retries on connection errors, 429, 502, 503 and 504")
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open the circuit")
    breaker_cooldown_s: float = Field(default=10.0, gt=0, description="open circuit: time before one probe call")
    openai_api_key: str | None = Field(default=None, repr=False)
    openai_api_key_file: Path | None = Field(default=None, description="the key in a file (a Docker secret)")
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_s: float = Field(default=20.0, gt=0, description="an OpenAI call's whole budget, its retry included")
    vertex_project: str | None = None
    vertex_location: str | None = Field(default=None, description="e.g. europe-west4")
    vertex_endpoint_id: str | None = None
    vertex_api_endpoint: str | None = Field(default=None, description="default https://{location}-aiplatform."
                                            "googleapis.com; set for a private endpoint or a test stand-in")
    vertex_timeout_s: float = Field(default=10.0, gt=0, description="a Vertex call's whole budget, its retry included")
    fallback_order: str = Field(default="ml-service,vertex,openai",
                                validation_alias=AliasChoices("ML_FALLBACK_ORDER", "FALLBACK_ORDER", "fallback_order"),
                                description="who answers, in order: any of ml-service, vertex, openai")
    ml_request_budget_s: float = Field(default=10.0, gt=0, description="one ML request's whole time budget: every "
                                       "source it tries, and every call it makes, within it")
    fallback_max_tasks: int = Field(default=200, ge=1, description="at most this many of the household's tasks go "
                                    "into one managed-API request (not done and recently changed first)")
    fallback_max_chars: int = Field(default=16_000, ge=100, description="and at most this many characters of them")
    sanitize_cache_size: int = Field(default=20_000, ge=0, description="sanitized texts kept (per household names)")
    database_url: str = "sqlite+aiosqlite:///./household.db"
    database_pool_size: int = Field(default=10, ge=1, description="connections kept open (not for SQLite in memory)")
    database_pool_timeout_s: float = Field(default=5.0, gt=0, description="wait for a free connection; then 503")
    max_image_bytes: int = Field(default=8 * 1024 * 1024, ge=1)
    household_id: str = Field(default="home", min_length=1, max_length=64, description="the household this backend "
                              "serves: its added categories and labelled examples are kept under this name")
    ml_category_model: str = Field(default="task-category", min_length=1, description="ml-service's task-category "
                                   "model: categorize asks it, learn trains it")
    learn_timeout_s: float = Field(default=300.0, gt=0, description="POST /api/ml/learn waits this long for "
                                   "ml-service's training job; then it answers 202 with the job still running")
    learn_after_corrections: int = Field(default=0, ge=0, description="learn in the background after every N new "
                                         "corrections (0: only when asked, POST /api/ml/learn)")
    log_level: str = "info"
    log_format: Literal["console", "json"] = "console"

    @field_validator("ml_service_secret", "openai_api_key", "vertex_project", "vertex_location", "vertex_endpoint_id",
                     "vertex_api_endpoint")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v if v and v.strip() else None

    @model_validator(mode="after")
    def _secrets_from_files(self) -> Settings:
        """A secret given as a file (Docker/Kubernetes secrets) when not given inline."""
        for name in ("ml_service_secret", "openai_api_key"):
            path = getattr(self, f"{name}_file")
            if path is not None and getattr(self, name) is None:
                try:
                    tokens = path.read_text().replace(",", "\n").split()
                except OSError as e:
                    raise ValueError(f"{name.upper()}_FILE {path} cannot be read: {e.strerror}") from None
                setattr(self, name, tokens[0] if tokens else None)
        return self

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, v: str) -> str:
        return async_database_url(v)

    @field_validator("fallback_order")
    @classmethod
    def _order(cls, v: str) -> str:
        parts = [p.strip() for p in v.split(",") if p.strip()]
        if not parts or any(p not in SOURCES for p in parts) or len(set(parts)) != len(parts):
            raise ValueError(f"the fallback order is a comma-separated list of {', '.join(SOURCES)}, each at most "
                             f"once; got {v!r}")
        return ",".join(parts)

    @property
    def sources(self) -> list[Source]:
        """Who answers the ML features, in order."""
        return [cast(Source, p) for p in self.fallback_order.split(",")]  # checked by the validator

    @property
    def vertex_configured(self) -> bool:
        """A Vertex AI endpoint is named (project, location and endpoint id)."""
        return bool(self.vertex_project and self.vertex_location and self.vertex_endpoint_id)
