"""The ORM models (SQLAlchemy 2): the household's tasks and members. The schema itself is Alembic's
(`alembic/versions`); these classes describe it to the code."""

from app.models.base import Base
from app.models.member import Member
from app.models.task import Task

__all__ = ["Base", "Member", "Task"]
