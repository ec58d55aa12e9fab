"""A task's bodies: the fields both variants share are declared once in `TaskBase`; `TaskCreate` requires a title,
`TaskUpdate` changes only the fields it is given and refuses `null` for those a task must have."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.categories import CategoryName
from app.schemas.common import Notes, OptionalName, Room, Title


class TaskBase(BaseModel):
    """The optional fields of a task, with their limits."""

    notes: Notes = None
    category: CategoryName | None = None  # the household's: checked against its categories by the route
    room: Room = None
    due_date: dt.date | None = None
    recurrence_days: int | None = Field(default=None, ge=1, le=3650)
    assignee: OptionalName = None


class TaskCreate(TaskBase):
    title: Title
    done: bool = False


class TaskUpdate(TaskBase):
    """Only the fields given are changed."""

    title: Title | None = None
    done: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _required_fields_are_not_null(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("title", "done"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} may be changed but not removed (null)")
        return data


class TaskOut(TaskBase):
    model_config = ConfigDict(from_attributes=True)
    id: int
    title: str
    done: bool
    done_at: dt.datetime | None
    category: str | None  # as stored, even from before the categories were checked
    category_source: str | None
    assignee: str | None
    notes: str | None
    room: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
