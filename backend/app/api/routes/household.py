"""The household's members: names the sanitizer keeps from ever leaving the house."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError

from app.api.deps import IdPath, SessionDep
from app.api.errors import APIError
from app.crud import members
from app.schemas.member import MemberCreate, MemberOut

router = APIRouter(prefix="/api/household", tags=["household"])


@router.get("/members")
async def list_members(db: SessionDep) -> list[MemberOut]:
    """The members of the household."""
    return [MemberOut.model_validate(m) for m in await members.list_all(db)]


@router.post("/members", status_code=201)
async def add_member(body: MemberCreate, db: SessionDep) -> MemberOut:
    """Add a member (their name is redacted from everything sent to a managed API)."""
    try:
        return MemberOut.model_validate(await members.create(db, body.name))
    except IntegrityError:
        raise APIError(409, "duplicate", f"a member named {body.name!r} exists already") from None


@router.delete("/members/{member_id}", status_code=204)
async def remove_member(member_id: IdPath, db: SessionDep) -> None:
    member = await members.get(db, member_id)
    if member is None:
        raise APIError(404, "not_found", f"no member {member_id}")
    await members.delete(db, member)
