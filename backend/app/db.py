"""The app's data: tasks and the household's members (SQLAlchemy 2, async; SQLite by default, PostgreSQL through the
same DATABASE_URL). The schema is Alembic's (`alembic/versions`), applied at startup."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from sqlalchemy import Boolean, Date, DateTime, Integer, LargeBinary, String, Text, func
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

BACKEND = Path(__file__).resolve().parents[1]


class Base(DeclarativeBase):
    pass


class Member(Base):
    """A member of the household: the sanitizer never lets their name leave."""

    __tablename__ = "members"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


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
        """What is embedded: the title, and the notes when there are any."""
        return self.text_of(self.title, self.notes)

    @staticmethod
    def text_of(title: str, notes: str | None) -> str:
        return f"{title}. {notes}" if notes else title


class Database:
    """The engine and sessions of one app."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    async def migrate(self) -> None:
        """Bring the schema to Alembic's head (in a thread: Alembic runs its own event loop for async engines)."""
        from alembic.config import Config

        from alembic import command

        cfg = Config(str(BACKEND / "alembic.ini"))
        cfg.set_main_option("script_location", str(BACKEND / "alembic"))
        cfg.set_main_option("sqlalchemy.url", self.url)
        cfg.attributes["configure_logger"] = False
        await asyncio.to_thread(command.upgrade, cfg, "head")

    async def close(self) -> None:
        await self.engine.dispose()
