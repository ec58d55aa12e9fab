"""The ML endpoints: each answer says which source gave it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Response, UploadFile

from app.api.deps import FeaturesDep, LearnerDep, SanitizerDep, SessionDep, SettingsDep
from app.api.errors import APIError
from app.crud import examples
from app.schemas.ml import (
    Categorized,
    ExampleOut,
    ImageOut,
    IntentOut,
    LabelScore,
    LearnIn,
    LearnOut,
    RecommendationOut,
    RecommendIn,
    RecommendOut,
    RollbackOut,
    SimilarIn,
    SimilarOut,
    SimilarTask,
    TextIn,
)

router = APIRouter(prefix="/api/ml", tags=["ml"])


@router.post("/categorize")
async def categorize(body: TextIn, features: FeaturesDep, sanitizer: SanitizerDep) -> Categorized:
    """The household category of a task text (kitchen, garden, bills, ..., or one the household added and the
    categorizer has learnt), and the model version that answered."""
    out = await features.categorize(body.text, sanitizer)
    return Categorized(category=out.label, score=out.score, source=out.source, version=out.version)


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


@router.get("/examples")
async def list_examples(db: SessionDep, settings: SettingsDep) -> list[ExampleOut]:
    """The household's labelled examples, oldest first: what `POST /api/ml/learn` sends."""
    return [ExampleOut.model_validate(e) for e in await examples.of_household(db, settings.household_id)]


@router.post("/learn")
async def learn(learner: LearnerDep, response: Response, body: LearnIn | None = None) -> LearnOut:
    """Train the categorizer on the household's labelled examples with the base set it was built from (ml-service
    only: the managed APIs cannot be trained), wait for the job (LEARN_TIMEOUT_S) and answer its report and whether
    the new version went live; 202 when the job still runs then (`GET /api/ml/learn/{job_id}` follows it)."""
    out = await learner.learn(force=body.force if body else False)
    if not out.finished:
        response.status_code = 202
    return LearnOut(job_id=out.job_id, state=out.state, published=out.published, version=out.version, live=out.live,
                    report=out.report, error=out.error, examples=out.examples)


JobId = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]


@router.get("/learn/{job_id}")
async def learn_job(job_id: JobId, learner: LearnerDep) -> LearnOut:
    """A training job as ml-service has it now (one a learn answered 202 for)."""
    job = await learner.job(job_id)
    return LearnOut(job_id=job.job_id, state=job.state, published=job.published, version=job.version, live=job.live,
                    report=job.report, error=job.error, examples=0)


@router.post("/rollback")
async def rollback(learner: LearnerDep) -> RollbackOut:
    """Make the categorizer's previous version the default again (409 when there is none)."""
    out = await learner.rollback()
    return RollbackOut(model=out.model, default_version=out.default_version, rolled_back=out.rolled_back)
