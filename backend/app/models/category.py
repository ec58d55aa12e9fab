"""A category a household added to the fixed ones."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Integer, String, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class AddedCategory(Base):
    """A household's own category (`plants`): its tasks may have it, and the categorizer may answer it once it has
    learnt it from the household's examples."""

    __tablename__ = "categories"
    __table_args__ = (UniqueConstraint("household", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    household: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
