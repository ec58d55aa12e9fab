"""The household's members: names the sanitizer keeps from ever leaving the house."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.api.deps import APIError, session
from app.db import Member

router = APIRouter(prefix="/api/household", tags=["household"])


class MemberIn(BaseModel):
    name: str = Field(min_length=1, max_length=120)


class MemberOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    created_at: dt.datetime


@router.get("/members")
async def list_members(db: AsyncSession = Depends(session)) -> list[MemberOut]:
    """The members of the household."""
    rows = (await db.execute(select(Member).order_by(Member.id))).scalars().all()
    return [MemberOut.model_validate(m) for m in rows]


@router.post("/members", status_code=201)
async def add_member(body: MemberIn, db: AsyncSession = Depends(session)) -> MemberOut:
    """Add a member (their name is redacted from everything sent to the managed API)."""
    member = Member(name=body.name.strip())
    db.add(member)
    try:
        await db.commit()
    except IntegrityError:
        raise APIError(409, "duplicate", f"a member named {body.name.strip()!r} exists already") from None
    await db.refresh(member)
    return MemberOut.model_validate(member)


@router.delete("/members/{member_id}", status_code=204)
async def remove_member(member_id: int, db: AsyncSession = Depends(session)) -> None:
    member = await db.get(Member, member_id)
    if member is None:
        raise APIError(404, "not_found", f"no member {member_id}")
    await db.delete(member)
    await db.commit()
