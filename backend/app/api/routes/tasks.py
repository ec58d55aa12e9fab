"""The household's tasks. A task created without a category gets one (ml-service, or the fallback; none when no
source can say); its text is embedded for /similar and /recommend after the answer. A category its user sets or
changes is kept as a labelled example for the categorizer to learn from (`POST /api/ml/learn`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import CategoriesDep, FeaturesDep, IdPath, LearnerDep, SanitizerDep, SessionDep
from app.api.errors import APIError
from app.core.categories import CategoryName, CategorySet
from app.crud import examples, tasks
from app.models import Task
from app.schemas.task import TaskCreate, TaskOut, TaskUpdate

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


def _known(known: CategorySet, category: str | None) -> None:
    """A category the household has (the fixed ones and its own), or a 422 saying which it has."""
    try:
        known.check(category)
    except ValueError as exc:
        raise APIError(422, "invalid_input", str(exc)) from None


@router.post("", status_code=201)
async def create_task(body: TaskCreate, features: FeaturesDep, sanitizer: SanitizerDep, known: CategoriesDep,
                      learner: LearnerDep) -> TaskOut:
    """Create a task; without a category, the categorizer gives it one."""
    _known(known, body.category)
    task = await features.add_task(body.model_dump(), sanitizer, known)
    if body.category:
        learner.corrected()
    return TaskOut.model_validate(task)


@router.get("")
async def list_tasks(db: SessionDep, known: CategoriesDep, done: bool | None = None,
                     category: Annotated[CategoryName | None, Query()] = None,
                     limit: int = Query(default=500, ge=1, le=5000)) -> list[TaskOut]:
    """The tasks, oldest first; filter by `done` and `category`."""
    _known(known, category)
    return [TaskOut.model_validate(t) for t in await tasks.list_filtered(db, done, category, limit)]


async def _get(db: SessionDep, task_id: int) -> Task:
    task = await tasks.get(db, task_id)
    if task is None:
        raise APIError(404, "not_found", f"no task {task_id}")
    return task


@router.get("/{task_id}")
async def get_task(task_id: IdPath, db: SessionDep) -> TaskOut:
    return TaskOut.model_validate(await _get(db, task_id))


@router.patch("/{task_id}")
async def update_task(task_id: IdPath, body: TaskUpdate, db: SessionDep, features: FeaturesDep,
                      known: CategoriesDep, learner: LearnerDep) -> TaskOut:
    """Change some fields; marking it done stamps `done_at`; a new text is embedded again (after the answer). A
    category set here is the user's: kept as a labelled example beside the model's answer it replaces."""
    changes = body.model_dump(exclude_unset=True)
    _known(known, changes.get("category"))
    task = await _get(db, task_id)
    before, by = task.category, task.category_source
    task = await tasks.update(db, task, changes)
    by_model = by in examples.MODEL_SOURCES
    if "category" in changes and task.category is None:
        await examples.forget(db, task.id)
    elif "category" in changes:
        await features.keep_example(db, task, before if by_model else None, by if by_model else None)
        if by != "user" or before != task.category:  # a new label, not the same one again
            learner.corrected()
    elif "title" in changes and task.category_source == "user":
        await features.keep_example(db, task)  # the same label, for the text as it is now
    if "title" in changes or "notes" in changes:
        features.embed_later(task)
    return TaskOut.model_validate(task)


@router.delete("/{task_id}", status_code=204)
async def delete_task(task_id: IdPath, db: SessionDep) -> None:
    """Delete a task; a category its user gave it stays a labelled example."""
    task = await _get(db, task_id)
    await examples.detach(db, task.id)
    await tasks.delete(db, task)
