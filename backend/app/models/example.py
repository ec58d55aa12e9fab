"""A labelled example: a task's text and the category its user gave it, kept for the categorizer to learn from."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Example(Base):
    """One per task whose category the user set or changed (a later correction replaces it); `model_category` and
    `model_source` are what a model had given the task before (null when the user chose first)."""

    __tablename__ = "examples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household: Mapped[str] = mapped_column(String(64), index=True)
    task_id: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)  # null once the task is deleted
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(40))
    model_category: Mapped[str | None] = mapped_column(String(40), default=None)
    model_source: Mapped[str | None] = mapped_column(String(20), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())
