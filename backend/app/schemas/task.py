"""A task's bodies: the fields both variants share are declared once in `TaskBase`; `TaskCreate` requires a title,
`TaskUpdate` changes only the fields it is given."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class TaskBase(BaseModel):
    """The optional fields of a task, with their limits."""

    notes: str | None = Field(default=None, max_length=5000)
    category: str | None = Field(default=None, max_length=40)
    room: str | None = Field(default=None, max_length=80)
    due_date: dt.date | None = None
    recurrence_days: int | None = Field(default=None, ge=1, le=3650)
    assignee: str | None = Field(default=None, max_length=120)


class TaskCreate(TaskBase):
    title: str = Field(min_length=1, max_length=500)
    done: bool = False


class TaskUpdate(TaskBase):
    """Only the fields given are changed."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    done: bool | None = None


class TaskOut(TaskBase):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    done: bool
    done_at: dt.datetime | None
    category_source: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
