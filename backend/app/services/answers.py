"""The shapes of the sources' answers, checked before anything is used: an answer that does not fit (HTML, `{}`,
fewer outputs than inputs, a label outside the ones asked for, NaN) is that source's `InvalidAnswer`, so the next
source answers and the source's breaker hears of it."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from app.services.resilience import InvalidAnswer

M = TypeVar("M", bound=BaseModel)


def _version(value: object) -> object:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


#: a version as ml-service names it (a string; a number is taken as one)
Version = Annotated[str | None, BeforeValidator(_version)]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class LabelScore(_Answer):
    label: str = Field(min_length=1)
    score: float = Field(ge=0, le=1)


class Classification(LabelScore):
    """ml-service's (and so Vertex's) answer per text for a classifier."""

    top_k: list[LabelScore] = Field(default_factory=list)
    #: the model version that answered (ml-service's answer says it once for all; not part of the item's dump)
    version: Version = Field(default=None, exclude=True)


class Embedding(_Answer):
    embedding: list[float] = Field(min_length=1)

    @field_validator("embedding")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        if not all(math.isfinite(x) for x in v):
            raise ValueError("not finite")
        return v


class Outputs(_Answer, Generic[M]):
    """ml-service's `POST /inference` answer."""

    outputs: list[M]
    version: Version = None


class Predictions(_Answer, Generic[M]):
    """Vertex AI's `:predict` answer."""

    predictions: list[M]


EmbeddingOutputs = Outputs[Embedding]
ClassificationOutputs = Outputs[Classification]
EmbeddingPredictions = Predictions[Embedding]
ClassificationPredictions = Predictions[Classification]


class _Message(_Answer):
    content: str


class _Choice(_Answer):
    message: _Message


class ChatCompletion(_Answer):
    """OpenAI's chat completion, as far as we read it."""

    choices: list[_Choice] = Field(min_length=1)


class TrainStarted(_Answer):
    """`POST /models/{name}/train`'s 202."""

    job_id: str = Field(min_length=1)
    model: str = ""
    state: str = "queued"


class TrainJob(_Answer):
    """`GET /models/jobs/{id}`: extra fields are ignored, missing optional ones take their defaults."""

    job_id: str = Field(min_length=1)
    model: str = ""
    state: str = Field(min_length=1)  # queued, running, succeeded, failed (another is taken as ended)
    error: str | None = None
    report: dict[str, Any] | None = None
    published: bool = False
    version: Version = None
    live: bool = False

    @property
    def finished(self) -> bool:
        return self.state not in ("queued", "running")


class RolledBack(_Answer):
    """`POST /models/{name}/rollback`'s answer."""

    model: str = ""
    default_version: Version = None
    rolled_back: Any = None  # the version left (ml-service's to say how)


def parse(peer: str, model: type[M], raw: bytes | str) -> M:
    """`raw` as `model`, or InvalidAnswer naming what did not fit (never the content: it may be personal)."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise InvalidAnswer(f"{peer}'s answer is not what was asked for ({where}: {first['msg']})") from None


def checked(peer: str, items: list[Any], count: int, labels: Collection[str] | None = None) -> list[Any]:
    """One item per input; labels among `labels` when given; embeddings of one dimension."""
    if len(items) != count:
        raise InvalidAnswer(f"{peer} answered {len(items)} outputs for {count} inputs")
    if labels is not None and (bad := [i.label for i in items if i.label not in labels]):
        raise InvalidAnswer(f"{peer} answered a label outside the ones asked for ({bad[0][:40]!r})")
    if items and isinstance(items[0], Embedding) and len({len(i.embedding) for i in items}) > 1:
        raise InvalidAnswer(f"{peer} answered embeddings of different sizes")
    return items
