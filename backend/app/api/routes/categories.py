"""The household's categories: the 12 fixed ones and those it added; a task may have any of them."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError

from app.api.deps import CategoriesDep, SessionDep, SettingsDep
from app.api.errors import APIError
from app.crud import categories
from app.schemas.category import CategoryCreate, CategoryOut

router = APIRouter(prefix="/api/categories", tags=["categories"])


@router.get("")
async def list_categories(known: CategoriesDep) -> list[CategoryOut]:
    """The fixed categories, then the household's own in the order added."""
    return [CategoryOut(name=c, added=c in known.added) for c in known.all]


@router.post("", status_code=201)
async def add_category(body: CategoryCreate, known: CategoriesDep, db: SessionDep,
                       settings: SettingsDep) -> CategoryOut:
    """Add a category of the household's own (`plants`): its tasks may have it at once, and the categorizer
    answers it once it has learnt it from them (`POST /api/ml/learn`). Names are lower case; a name the household
    has already is a 409."""
    if body.name in known:
        raise APIError(409, "duplicate", f"the household has a category {body.name!r} already")
    try:
        await categories.add(db, settings.household_id, body.name)
    except IntegrityError:  # added meanwhile by another request
        raise APIError(409, "duplicate", f"the household has a category {body.name!r} already") from None
    return CategoryOut(name=body.name, added=True)
