"""The household categories: the 12 fixed ones (the labels of ml-service's `task-category` model as built, the
ones the OpenAI fallback is asked to choose from) plus those a household adds (`POST /api/categories`, stored);
a task may have any of them and no other."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BeforeValidator, Field

Category = Literal["kitchen", "bathroom", "laundry", "cleaning", "garden", "shopping", "bills", "maintenance", "pets",
                   "kids", "health", "car"]
CATEGORIES: tuple[str, ...] = get_args(Category)
MAX_CATEGORY_CHARS = 40  # the width of the category columns

#: what a category a household adds may look like: a short lower-case label (a model's label, sent as typed):
#: letters of any script, digits, spaces, '-' and '_', from a letter to a letter or digit
_SHAPE = re.compile(r"[^\W\d_][\w -]*[^\W_]")


def _normalized(value: object) -> object:
    """Trimmed, inner whitespace as one space, lower case: `" House  Plants "` -> `"house plants"`."""
    return " ".join(value.split()).lower() if isinstance(value, str) else value


def _not_blank(value: str) -> str:
    if not value:
        raise ValueError("must not be blank")
    return value


def _shaped(value: str) -> str:
    if not _SHAPE.fullmatch(value):
        raise ValueError("a category is 2-40 letters, digits, spaces, '-' or '_', starting with a letter")
    return value


#: a category as a request names it (normalized; whether the household has it is checked against the database)
CategoryName = Annotated[str, Field(max_length=MAX_CATEGORY_CHARS), BeforeValidator(_normalized),
                         AfterValidator(_not_blank)]
#: a category a household adds: also of the shape a model's label can take
NewCategoryName = Annotated[CategoryName, AfterValidator(_shaped)]


class CategorySet:
    """The categories one household's tasks may have: the fixed ones, then those it added (in the order added)."""

    def __init__(self, added: Iterable[str] = ()) -> None:
        self.added: tuple[str, ...] = tuple(c for c in dict.fromkeys(added) if c not in CATEGORIES)
        self.all: tuple[str, ...] = CATEGORIES + self.added

    def __contains__(self, name: object) -> bool:
        return name in self.all

    def check(self, name: str | None, field: str = "category") -> str | None:
        """`name` when the household has it (or None); ValueError saying which exist otherwise."""
        if name is None or name in self.all:
            return name
        listed = ", ".join(repr(c) for c in CATEGORIES)
        added = f" or one the household added ({', '.join(repr(c) for c in self.added)})" if self.added else \
            " (or one added with POST /api/categories)"
        raise ValueError(f"{field}: Input should be {listed}{added}")
