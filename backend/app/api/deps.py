"""What the routes depend on, as `Annotated` dependencies: the settings, the database (a request's session, or the
engine for work that calls out and so must not hold a session), the household's redactor and categories, the
features, the learner, and the path's ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.categories import CategorySet
from app.core.config import Settings
from app.crud import categories, members
from app.db import Database
from app.schemas.common import MAX_ID
from app.services.egress import Egress, Redactor
from app.services.features import Features
from app.services.learn import Learner


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_database(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_features(request: Request) -> Features:
    features: Features = request.app.state.features
    return features


def get_learner(request: Request) -> Learner:
    learner: Learner = request.app.state.learner
    return learner


SettingsDep = Annotated[Settings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
FeaturesDep = Annotated[Features, Depends(get_features)]
LearnerDep = Annotated[Learner, Depends(get_learner)]


async def get_session(db: DatabaseDep) -> AsyncIterator[AsyncSession]:
    """A session for the request; only for routes that call nothing outside the process."""
    async with db.sessions() as session:
        yield session


async def get_sanitizer(request: Request, db: DatabaseDep) -> Redactor:
    """The household's redactor: it knows the members' and assignees' names (read in a session of its own,
    closed at once)."""
    async with db.sessions() as session:
        names = await members.names(session)
    egress: Egress = request.app.state.egress
    return egress.redactor(names)


async def get_categories(db: DatabaseDep, settings: SettingsDep) -> CategorySet:
    """The household's categories (the fixed ones and those it added), read in a session of its own."""
    async with db.sessions() as session:
        return await categories.of_household(session, settings.household_id)


SessionDep = Annotated[AsyncSession, Depends(get_session)]
CategoriesDep = Annotated[CategorySet, Depends(get_categories)]
SanitizerDep = Annotated[Redactor, Depends(get_sanitizer)]
#: an id in the path: a positive integer the id column can hold (larger ones are a 422, not a database error)
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
