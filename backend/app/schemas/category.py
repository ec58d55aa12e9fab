"""The household's categories: the fixed ones and those it added."""

from __future__ import annotations

from pydantic import BaseModel

from app.core.categories import NewCategoryName


class CategoryCreate(BaseModel):
    name: NewCategoryName


class CategoryOut(BaseModel):
    name: str
    added: bool  # by the household (false: one of the fixed categories)
