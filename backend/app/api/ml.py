"""The ML endpoints: each answer says which source gave it (`ml-service` or `openai`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, File, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import APIError, sanitizer_for, services, session
from app.config import Source
from app.services import features
from app.services.container import Services

router = APIRouter(prefix="/api/ml", tags=["ml"])


class TextIn(BaseModel):
    text: str = Field(min_length=1, max_length=5000)


class Categorized(BaseModel):
    category: str
    score: float
    source: Source


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
    source: Source


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
    source: Source


@router.post("/categorize")
async def categorize(body: TextIn, db: AsyncSession = Depends(session), s: Services = Depends(services)) -> Categorized:
    """The household category of a task text (kitchen, garden, bills, ...)."""
    out = await features.categorize(s, body.text, await sanitizer_for(db))
    return Categorized(category=out.label, score=out.score, source=out.source)


@router.post("/intent")
async def intent(body: TextIn, db: AsyncSession = Depends(session), s: Services = Depends(services)) -> IntentOut:
    """What a request to the home assistant wants (timer, shopping_list_update, ...)."""
    out = await features.intent(s, body.text, await sanitizer_for(db))
    return IntentOut(intent=out.label, score=out.score, source=out.source)


@router.post("/similar")
async def similar(body: SimilarIn, db: AsyncSession = Depends(session), s: Services = Depends(services)) -> SimilarOut:
    """The household's tasks most like a text."""
    found, source = await features.similar(s, db, body.text, body.limit, await sanitizer_for(db))
    return SimilarOut(results=[SimilarTask(task_id=t.id, title=t.title, category=t.category, score=round(score, 4))
                               for t, score in found], source=source)


@router.post("/recommend")
async def recommend(body: RecommendIn | None = None, db: AsyncSession = Depends(session),
                    s: Services = Depends(services)) -> RecommendOut:
    """Tasks to suggest next, from the catalog of common household tasks, each with its reason."""
    limit = body.limit if body else 10
    found, source = await features.recommend(s, db, limit, await sanitizer_for(db))
    return RecommendOut(recommendations=[RecommendationOut(**r.__dict__) for r in found], source=source)


@router.post("/classify-image")
async def classify_image(file: UploadFile = File(...), s: Services = Depends(services)) -> dict[str, Any]:
    """The item classifier's labels for a photo, and a household category where one maps (ml-service only)."""
    data = await file.read(s.settings.max_image_bytes + 1)
    if len(data) > s.settings.max_image_bytes:
        raise APIError(413, "payload_too_large", f"the image is over {s.settings.max_image_bytes} bytes")
    if not data:
        raise APIError(422, "invalid_input", "the uploaded file is empty")
    return await features.classify_image(s, data)
