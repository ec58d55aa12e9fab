"""The household's tasks. A task created without a category gets one (ml-service, or the fallback); its text is
embedded for /similar and /recommend when ml-service is up (later otherwise)."""

from __future__ import annotations

import datetime as dt
import logging

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import APIError, sanitizer_for, services, session
from app.db import Task
from app.services import features
from app.services.container import Services
from app.services.ml_client import MLServiceError
from app.services.router import NoSource

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/tasks", tags=["tasks"])


class TaskIn(BaseModel):
    title: str = Field(min_length=1, max_length=500)
    notes: str | None = Field(default=None, max_length=5000)
    category: str | None = Field(default=None, max_length=40)
    room: str | None = Field(default=None, max_length=80)
    due_date: dt.date | None = None
    recurrence_days: int | None = Field(default=None, ge=1, le=3650)
    done: bool = False
    assignee: str | None = Field(default=None, max_length=120)


class TaskPatch(BaseModel):
    title: str | None = Field(default=None, min_length=1, max_length=500)
    notes: str | None = Field(default=None, max_length=5000)
    category: str | None = Field(default=None, max_length=40)
    room: str | None = Field(default=None, max_length=80)
    due_date: dt.date | None = None
    recurrence_days: int | None = Field(default=None, ge=1, le=3650)
    done: bool | None = None
    assignee: str | None = Field(default=None, max_length=120)


class TaskOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    notes: str | None
    category: str | None
    category_source: str | None
    room: str | None
    due_date: dt.date | None
    recurrence_days: int | None
    done: bool
    done_at: dt.datetime | None
    assignee: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


async def _embed(s: Services, db: AsyncSession, task: Task) -> None:
    try:
        await features.embed_missing(s, db, [task])
    except MLServiceError as exc:  # embedded later, when /similar or /recommend need it
        log.info("task %d not embedded now: %s", task.id, type(exc).__name__)
    await db.refresh(task)  # the commit left `updated_at` (set by the database) to be read again


@router.post("", status_code=201)
async def create_task(body: TaskIn, db: AsyncSession = Depends(session), s: Services = Depends(services)) -> TaskOut:
    """Create a task; without a category, the categorizer gives it one."""
    task = Task(**body.model_dump())
    if body.done:
        task.done_at = dt.datetime.now(dt.UTC)
    if not task.category:
        try:
            found = await features.categorize(s, body.title, await sanitizer_for(db))
            task.category, task.category_source = found.label, found.source
        except (NoSource, MLServiceError) as exc:
            log.info("task created without a category: %s", type(exc).__name__)
    else:
        task.category_source = "user"
    db.add(task)
    await db.commit()
    await db.refresh(task)
    await _embed(s, db, task)
    return TaskOut.model_validate(task)


@router.get("")
async def list_tasks(done: bool | None = None, category: str | None = None,
                     limit: int = Query(default=500, ge=1, le=5000),
                     db: AsyncSession = Depends(session)) -> list[TaskOut]:
    """The tasks, oldest first; filter by `done` and `category`."""
    q = select(Task).order_by(Task.id).limit(limit)
    if done is not None:
        q = q.where(Task.done == done)
    if category is not None:
        q = q.where(Task.category == category)
    return [TaskOut.model_validate(t) for t in (await db.execute(q)).scalars().all()]


async def _get(db: AsyncSession, task_id: int) -> Task:
    task = await db.get(Task, task_id)
    if task is None:
        raise APIError(404, "not_found", f"no task {task_id}")
    return task


@router.get("/{task_id}")
async def get_task(task_id: int, db: AsyncSession = Depends(session)) -> TaskOut:
    return TaskOut.model_validate(await _get(db, task_id))


@router.patch("/{task_id}")
async def update_task(task_id: int, body: TaskPatch, db: AsyncSession = Depends(session),
                      s: Services = Depends(services)) -> TaskOut:
    """Change some fields; marking it done stamps `done_at`; a new text is embedded again."""
    task = await _get(db, task_id)
    changes = body.model_dump(exclude_unset=True)
    for key, value in changes.items():
        setattr(task, key, value)
    if "category" in changes:
        task.category_source = "user" if changes["category"] else None
    if changes.get("done") is True:
        task.done_at = dt.datetime.now(dt.UTC)
    elif changes.get("done") is False:
        task.done_at = None
    await db.commit()
    await db.refresh(task)
    if "title" in changes or "notes" in changes:
        await _embed(s, db, task)
    return TaskOut.model_validate(task)


@router.delete("/{task_id}", status_code=204)
async def delete_task(task_id: int, db: AsyncSession = Depends(session)) -> None:
    await db.delete(await _get(db, task_id))
    await db.commit()
