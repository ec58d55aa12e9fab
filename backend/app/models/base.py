"""The declarative base every model derives from (its metadata is what Alembic compares against)."""

from __future__ import annotations

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass
