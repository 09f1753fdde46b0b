"""Queries on sign-up invites (table `invites`): single-use codes kept as their sha256."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from coderapi.store.tables import Invite


def insert(session: Session, *, code_sha256: str, created_by: int | None, now: datetime) -> Invite:
    invite = Invite(code_sha256=code_sha256, created_by=created_by, created_at=now)
    session.add(invite)
    session.flush()
    return invite


def consume(session: Session, *, code_sha256: str, user_id: int, now: datetime) -> bool:
    """Mark the unused invite with this code used by `user_id`; False when there is none. One
    UPDATE guarded by `used_at IS NULL`, so two sign-ups racing for one code cannot both win."""
    result = session.execute(
        update(Invite)
        .where(Invite.code_sha256 == code_sha256, Invite.used_at.is_(None))
        .values(used_at=now, used_by=user_id),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount == 1


def list_all(session: Session) -> list[Invite]:
    return list(session.scalars(select(Invite).order_by(Invite.id.desc())))


def delete_unused(session: Session, invite_id: int) -> bool:
    result = session.execute(delete(Invite).where(Invite.id == invite_id, Invite.used_at.is_(None)))
    return result.rowcount == 1
