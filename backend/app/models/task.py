"""A household task, with the embedding of its text."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Date, DateTime, Integer, LargeBinary, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class Task(Base):
    """A household task, with the embedding of its text (for /similar and /recommend)."""

    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(500))
    notes: Mapped[str | None] = mapped_column(Text, default=None)
    category: Mapped[str | None] = mapped_column(String(40), default=None)
    category_source: Mapped[str | None] = mapped_column(String(20), default=None)
    room: Mapped[str | None] = mapped_column(String(80), default=None)
    due_date: Mapped[dt.date | None] = mapped_column(Date, default=None)
    recurrence_days: Mapped[int | None] = mapped_column(Integer, default=None)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    assignee: Mapped[str | None] = mapped_column(String(120), default=None)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)  # float32 little-endian
    embedded_text: Mapped[str | None] = mapped_column(Text, default=None)  # the text the embedding is of
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(),
                                                    onupdate=func.now())

    @property
    def text(self) -> str:
        """What ml-service embeds: the title, and the notes when there are any."""
        return self.text_of(self.title, self.notes)

    @staticmethod
    def text_of(title: str, notes: str | None) -> str:
        return f"{title}. {notes}" if notes else title
