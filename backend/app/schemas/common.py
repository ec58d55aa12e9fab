"""Field types the bodies share: one-line text that is trimmed and never blank, names with letters in them, notes."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field

MAX_ID = 2**31 - 1  # ids are INTEGER columns: 32-bit in PostgreSQL (64 in SQLite)


def _one_line(value: object) -> object:
    """Surrounding whitespace off, inner runs of whitespace as one space."""
    return " ".join(value.split()) if isinstance(value, str) else value


def _blank_is_none(value: object) -> object:
    return None if isinstance(value, str) and not value.strip() else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _name(value: str) -> str:
    if sum(c.isalpha() for c in value) < 2:
        raise ValueError("a name needs at least 2 letters")
    return value


_Line = (BeforeValidator(_one_line), AfterValidator(_not_blank), AfterValidator(_no_nul))
_Optional = (BeforeValidator(_blank_is_none), BeforeValidator(_one_line))  # blank means none

#: a task's title: one line, trimmed, never blank
Title = Annotated[str, Field(max_length=500), *_Line]
Room = Annotated[Annotated[str, Field(max_length=80), AfterValidator(_no_nul)] | None, *_Optional]
#: a person's name: at least 2 letters (a member, or a task's assignee)
Name = Annotated[str, Field(max_length=120), *_Line, AfterValidator(_name)]
OptionalName = Annotated[Annotated[str, Field(max_length=120), AfterValidator(_no_nul), AfterValidator(_name)] | None,
                         *_Optional]
#: the text of an ML request: its lines as they are, never blank
Text = Annotated[str, Field(min_length=1, max_length=5000), AfterValidator(_not_blank), AfterValidator(_no_nul)]
#: notes keep their lines; blank notes are none
Notes = Annotated[Annotated[str, Field(max_length=5000), AfterValidator(_no_nul)] | None,
                  BeforeValidator(_blank_is_none)]
