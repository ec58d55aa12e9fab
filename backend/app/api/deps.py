"""What the routes depend on, as `Annotated` dependencies: the settings, the database (a request's session, or the
engine for work that calls out and so must not hold a session), the household's sanitizer and the features."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.crud import members
from app.db import Database
from app.services.features import Features
from app.services.sanitize import Sanitizer


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_features(request: Request) -> Features:
    features: Features = request.app.state.features
    return features


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
FeaturesDep = Annotated[Features, Depends(get_features)]


async def get_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """A session for the request; only for routes that call nothing outside the process."""
    async with db.sessions() as session:
        yield session


async def get_sanitizer(db: DatabaseDep) -> Sanitizer:
    """The household's sanitizer: it knows the members' names (read in a session of its own, closed at once)."""
    async with db.sessions() as session:
        names = await members.names(session)
    return Sanitizer(names)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
SanitizerDep = Annotated[Sanitizer, Depends(get_sanitizer)]
