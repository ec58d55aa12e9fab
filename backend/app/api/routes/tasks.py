"""The household's tasks. A task created without a category gets one (ml-service, or the fallback; none when no
source can say); its text is embedded for /similar and /recommend after the answer."""

from __future__ import annotations

from fastapi import APIRouter, Query

from app.api.deps import FeaturesDep, IdPath, SanitizerDep, SessionDep
from app.api.errors import APIError
from app.core.categories import Category
from app.crud import tasks
from app.models import Task
from app.schemas.task import TaskCreate, TaskOut, TaskUpdate

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.post("", status_code=201)
async def create_task(body: TaskCreate, features: FeaturesDep, sanitizer: SanitizerDep) -> TaskOut:
    """Create a task; without a category, the categorizer gives it one."""
    return TaskOut.model_validate(await features.add_task(body.model_dump(), sanitizer))


@router.get("")
async def list_tasks(db: SessionDep, done: bool | None = None, category: Category | None = None,
                     limit: int = Query(default=500, ge=1, le=5000)) -> list[TaskOut]:
    """The tasks, oldest first; filter by `done` and `category`."""
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
async def update_task(task_id: IdPath, body: TaskUpdate, db: SessionDep, features: FeaturesDep) -> TaskOut:
    """Change some fields; marking it done stamps `done_at`; a new text is embedded again (after the answer)."""
    changes = body.model_dump(exclude_unset=True)
    task = await tasks.update(db, await _get(db, task_id), changes)
    if "title" in changes or "notes" in changes:
        features.embed_later(task)
    return TaskOut.model_validate(task)


@router.delete("/{task_id}", status_code=204)
async def delete_task(task_id: IdPath, db: SessionDep) -> None:
    await tasks.delete(db, await _get(db, task_id))
