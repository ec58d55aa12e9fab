"""The household's members."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Member, Task


async def list_all(db: AsyncSession) -> Sequence[Member]:
    return (await db.execute(select(Member).order_by(Member.id))).scalars().all()


async def get(db: AsyncSession, member_id: int) -> Member | None:
    return await db.get(Member, member_id)


async def create(db: AsyncSession, name: str) -> Member:
    """Raises sqlalchemy's IntegrityError when the name exists already."""
    member = Member(name=name)
    db.add(member)
    await db.commit()
    await db.refresh(member)
    return member


async def delete(db: AsyncSession, member: Member) -> None:
    await db.delete(member)
    await db.commit()


async def names(db: AsyncSession) -> list[str]:
    """The names the sanitizer must keep in the house: the members', and every task's assignee."""
    query = select(Member.name).union(select(Task.assignee).where(Task.assignee.is_not(None)).distinct())
    return [n for n in (await db.execute(query)).scalars().all() if n]
