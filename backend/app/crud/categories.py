"""The categories a household added to the fixed ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.categories import CategorySet
from app.models import AddedCategory


async def of_household(db: AsyncSession, household: str) -> CategorySet:
    """The fixed categories and the household's own, in the order added."""
    q = select(AddedCategory.name).where(AddedCategory.household == household).order_by(AddedCategory.id)
    return CategorySet((await db.execute(q)).scalars().all())


async def add(db: AsyncSession, household: str, name: str) -> AddedCategory:
    """Raises sqlalchemy's IntegrityError when the household has it already."""
    added = AddedCategory(household=household, name=name)
    db.add(added)
    await db.commit()
    await db.refresh(added)
    return added
