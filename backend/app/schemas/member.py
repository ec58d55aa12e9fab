"""A household member's bodies."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from app.schemas.common import Name


class MemberCreate(BaseModel):
    name: Name


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    created_at: dt.datetime
