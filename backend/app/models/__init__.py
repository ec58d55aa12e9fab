"""The ORM models (SQLAlchemy 2): the household's tasks and members, the categories it added, and the labelled
examples its corrections made. The schema itself is Alembic's (`alembic/versions`); these classes describe it to
the code."""

from app.models.base import Base
from app.models.category import AddedCategory
from app.models.example import Example
from app.models.member import Member
from app.models.task import Task

__all__ = ["AddedCategory", "Base", "Example", "Member", "Task"]
