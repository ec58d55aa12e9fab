"""What the routes share: the app's services (built once in the lifespan), sessions, the household's sanitizer,
and the error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
from fastapi import Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Member
from app.services.container import Services
from app.services.sanitize import Sanitizer


class APIError(Exception):
    """An error with its status, code and a message safe to show."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def services(request: Request) -> Services:
    s: Services = request.app.state.services
    return s


async def session(request: Request) -> AsyncIterator[AsyncSession]:
    async with services(request).db.sessions() as s:
        yield s


async def sanitizer_for(db: AsyncSession) -> Sanitizer:
    """The household's sanitizer: it knows the members' names."""
    names = (await db.execute(select(Member.name))).scalars().all()
    return Sanitizer(names)


def to_blob(vector: list[float]) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")
