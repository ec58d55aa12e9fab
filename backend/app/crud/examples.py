"""The labelled examples: a task's text and the category its user gave it (one per task; a later correction
replaces it)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Example, Task

#: who may have categorized a task before its user did: a model's answer, kept beside the user's label
MODEL_SOURCES = frozenset({"ml-service", "vertex", "openai"})


async def record(db: AsyncSession, household: str, task: Task, text: str, model_category: str | None,
                 model_source: str | None) -> Example:
    """The task's example as it is now (`text` labelled `task.category`), replacing the one it had; the model's
    answer is the one given (`model_category`/`model_source`) or, when none is, the one kept with the example it
    replaces."""
    assert task.category is not None
    example = (await db.execute(select(Example).where(Example.task_id == task.id))).scalar_one_or_none()
    if example is None:
        example = Example(household=household, task_id=task.id, model_category=model_category,
                          model_source=model_source, text=text, label=task.category)
        db.add(example)
    else:
        example.household, example.text, example.label = household, text, task.category
        if model_source is not None:
            example.model_category, example.model_source = model_category, model_source
    await db.commit()
    await db.refresh(example)
    return example


async def forget(db: AsyncSession, task_id: int) -> None:
    """The user took the task's category away: its example is no label any more."""
    example = (await db.execute(select(Example).where(Example.task_id == task_id))).scalar_one_or_none()
    if example is not None:
        await db.delete(example)
        await db.commit()


async def detach(db: AsyncSession, task_id: int) -> None:
    """The task is deleted; what its user taught stays a labelled example."""
    await db.execute(update(Example).where(Example.task_id == task_id).values(task_id=None))
    await db.commit()


async def of_household(db: AsyncSession, household: str) -> Sequence[Example]:
    """The household's examples, oldest first."""
    q = select(Example).where(Example.household == household).order_by(Example.id)
    return (await db.execute(q)).scalars().all()


async def count(db: AsyncSession, household: str) -> int:
    q = select(func.count()).select_from(Example).where(Example.household == household)
    return int((await db.execute(q)).scalar_one())
