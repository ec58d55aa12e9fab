"""The ML endpoints: each answer says which source gave it."""

from __future__ import annotations

from fastapi import APIRouter, File, UploadFile

from app.api.deps import FeaturesDep, SanitizerDep, SettingsDep
from app.api.errors import APIError
from app.schemas.ml import (
    Categorized,
    ImageOut,
    IntentOut,
    LabelScore,
    RecommendationOut,
    RecommendIn,
    RecommendOut,
    SimilarIn,
    SimilarOut,
    SimilarTask,
    TextIn,
)

router = APIRouter(prefix="/api/ml", tags=["ml"])


@router.post("/categorize")
async def categorize(body: TextIn, features: FeaturesDep, sanitizer: SanitizerDep) -> Categorized:
    """The household category of a task text (kitchen, garden, bills, ...)."""
    out = await features.categorize(body.text, sanitizer)
    return Categorized(category=out.label, score=out.score, source=out.source)


@router.post("/intent")
async def intent(body: TextIn, features: FeaturesDep, sanitizer: SanitizerDep) -> IntentOut:
    """What a request to the home assistant wants (timer, shopping_list_update, ...)."""
    out = await features.intent(body.text, sanitizer)
    return IntentOut(intent=out.label, score=out.score, source=out.source)


@router.post("/similar")
async def similar(body: SimilarIn, features: FeaturesDep, sanitizer: SanitizerDep) -> SimilarOut:
    """The household's tasks most like a text."""
    found, source = await features.similar(body.text, body.limit, sanitizer)
    return SimilarOut(results=[SimilarTask(task_id=t.id, title=t.title, category=t.category, score=round(score, 4))
                               for t, score in found], source=source)


@router.post("/recommend")
async def recommend(features: FeaturesDep, sanitizer: SanitizerDep, body: RecommendIn | None = None) -> RecommendOut:
    """Tasks to suggest next, from the catalog of common household tasks, each with its reason."""
    found, source = await features.recommend(body.limit if body else 10, sanitizer)
    return RecommendOut(recommendations=[RecommendationOut(**r.__dict__) for r in found], source=source)


@router.post("/classify-image")
async def classify_image(features: FeaturesDep, settings: SettingsDep, file: UploadFile = File(...)) -> ImageOut:
    """The item classifier's labels for a photo, and a household category where one maps (ml-service only)."""
    data = await file.read(settings.max_image_bytes + 1)
    if len(data) > settings.max_image_bytes:
        raise APIError(413, "payload_too_large", f"the image is over {settings.max_image_bytes} bytes")
    if not data:
        raise APIError(422, "invalid_input", "the uploaded file is empty")
    out = await features.classify_image(data)
    return ImageOut(label=out.label, score=out.score, top_k=[LabelScore(label=lb, score=sc) for lb, sc in out.top_k],
                    category=out.category, source=out.source)
