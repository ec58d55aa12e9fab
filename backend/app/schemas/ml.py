"""The ML endpoints' bodies; every answer says which source gave it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.config import Answerer, Source
from app.schemas.common import Text


class TextIn(BaseModel):
    text: Text


class Categorized(BaseModel):
    category: str
    score: float
    source: Source
    version: str | None = None  # the model version that answered (ml-service's; a new one after learn/rollback)


class IntentOut(BaseModel):
    intent: str
    score: float
    source: Source


class SimilarIn(TextIn):
    limit: int = Field(default=5, ge=1, le=50)


class SimilarTask(BaseModel):
    task_id: int
    title: str
    category: str | None
    score: float


class SimilarOut(BaseModel):
    results: list[SimilarTask]
    source: Answerer


class RecommendIn(BaseModel):
    limit: int = Field(default=10, ge=1, le=50)


class RecommendationOut(BaseModel):
    title: str
    category: str
    every_days: int
    score: float
    reason: str


class RecommendOut(BaseModel):
    recommendations: list[RecommendationOut]
    source: Answerer


class LabelScore(BaseModel):
    label: str
    score: float


class ImageOut(BaseModel):
    label: str
    score: float
    top_k: list[LabelScore]
    category: str | None
    source: Source


class ExampleOut(BaseModel):
    """A labelled example: what the user said a task is, beside what a model had said."""

    model_config = ConfigDict(from_attributes=True)
    task_id: int | None  # null once the task is deleted
    text: str
    label: str
    model_category: str | None
    model_source: str | None
    updated_at: dt.datetime


class LearnIn(BaseModel):
    force: bool = Field(default=False, description="publish the new version even if it is not better")


class LearnOut(BaseModel):
    """How the training job ended (or stood when LEARN_TIMEOUT_S ran out: `state` queued or running, 202)."""

    job_id: str
    state: str
    published: bool
    version: str | None
    live: bool
    report: dict[str, Any] | None  # ml-service's, as it gave it
    error: str | None = None
    examples: int  # the household's labelled examples sent (the base set comes on top, ml-service's own)


class RollbackOut(BaseModel):
    model: str
    default_version: str | None
    rolled_back: Any = None
