"""The database: one engine and its sessions per app (SQLAlchemy 2, async; SQLite by default, PostgreSQL through
the same DATABASE_URL). The schema is Alembic's (`alembic/versions`), brought to head at startup on the app's own
engine, so a new database of any kind (a file, PostgreSQL, SQLite in memory) starts with its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

BACKEND = Path(__file__).resolve().parents[1]


def in_memory(url: str) -> bool:
    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")


class Database:
    """The engine and sessions of one app. SQLite in memory lives in one connection that every session shares;
    otherwise a pool of `pool_size` connections, each request waiting at most `pool_timeout_s` for one (then
    sqlalchemy's TimeoutError, which the API answers 503)."""

    def __init__(self, url: str, pool_size: int = 10, pool_timeout_s: float = 5.0) -> None:
        self.url = url
        options: dict[str, Any] = ({"poolclass": StaticPool} if in_memory(url) else
                                   {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": pool_timeout_s})
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, class_=AsyncSession)

    async def migrate(self) -> None:
        """Bring the schema to Alembic's head, on a connection of this engine."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _upgrade(connection: Connection) -> None:
    from alembic.config import Config

    from alembic import command

    cfg = Config(str(BACKEND / "alembic.ini"))
    cfg.set_main_option("script_location", str(BACKEND / "alembic"))
    cfg.attributes["connection"] = connection
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")
