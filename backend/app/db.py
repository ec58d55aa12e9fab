"""The database: one engine and its sessions per app (SQLAlchemy 2, async; SQLite by default, PostgreSQL through
the same DATABASE_URL). The schema is Alembic's (`alembic/versions`), brought to head at startup."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

BACKEND = Path(__file__).resolve().parents[1]


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
