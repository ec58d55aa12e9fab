"""The household's tasks. A task created without a category gets one (ml-service, or the fallback); its text is
embedded for /similar and /recommend when ml-service is up (later otherwise)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Query

from app.api.deps import DatabaseDep, FeaturesDep, SanitizerDep, SessionDep
from app.api.errors import APIError
from app.crud import tasks
from app.db import Database
from app.models import Task
from app.schemas.task import TaskCreate, TaskOut, TaskUpdate
from app.services.fallback import NoSource
from app.services.features import Features
from app.services.ml_client import MLServiceError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/tasks", tags=["tasks"])


async def _embed(features: Features, db: Database, task: Task) -> Task:
    """The task with its embedding when ml-service can give one now (else /similar or /recommend embed it later)."""
    try:
        await features.embed_tasks([task])
    except MLServiceError as exc:
        log.info("task %d not embedded now: %s", task.id, type(exc).__name__)
        return task
    async with db.sessions() as s:
        return await tasks.get(s, task.id) or task


@router.post("", status_code=201)
async def create_task(body: TaskCreate, db: DatabaseDep, features: FeaturesDep, sanitizer: SanitizerDep) -> TaskOut:
    """Create a task; without a category, the categorizer gives it one."""
    fields = body.model_dump()
    if body.category:
        fields["category_source"] = "user"
    else:
        try:
            found = await features.categorize(body.title, sanitizer)
            fields["category"], fields["category_source"] = found.label, found.source
        except (NoSource, MLServiceError) as exc:
            log.info("task created without a category: %s", type(exc).__name__)
    async with db.sessions() as s:
        task = await tasks.create(s, fields)
    return TaskOut.model_validate(await _embed(features, db, task))


@router.get("")
async def list_tasks(db: SessionDep, done: bool | None = None, category: str | None = None,
                     limit: int = Query(default=500, ge=1, le=5000)) -> list[TaskOut]:
    """The tasks, oldest first; filter by `done` and `category`."""
    return [TaskOut.model_validate(t) for t in await tasks.list_filtered(db, done, category, limit)]


async def _get(db: SessionDep, task_id: int) -> Task:
    task = await tasks.get(db, task_id)
    if task is None:
        raise APIError(404, "not_found", f"no task {task_id}")
    return task


@router.get("/{task_id}")
async def get_task(task_id: int, db: SessionDep) -> TaskOut:
    return TaskOut.model_validate(await _get(db, task_id))


@router.patch("/{task_id}")
async def update_task(task_id: int, body: TaskUpdate, db: DatabaseDep, features: FeaturesDep) -> TaskOut:
    """Change some fields; marking it done stamps `done_at`; a new text is embedded again."""
    changes = body.model_dump(exclude_unset=True)
    async with db.sessions() as s:
        task = await tasks.update(s, await _get(s, task_id), changes)
    if "title" in changes or "notes" in changes:
        task = await _embed(features, db, task)
    return TaskOut.model_validate(task)


@router.delete("/{task_id}", status_code=204)
async def delete_task(task_id: int, db: SessionDep) -> None:
    await tasks.delete(db, await _get(db, task_id))
