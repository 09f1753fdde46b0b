"""Queries on dashboard sessions (table `web_sessions`); ids are sha256 digests of the tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from coderapi.store.tables import User, WebSession


def insert(session: Session, *, digest: str, user_id: int, now: datetime, expires_at: datetime) -> None:
    session.add(WebSession(id=digest, user_id=user_id, created_at=now, expires_at=expires_at))


def with_user(session: Session, digest: str) -> tuple[WebSession, User] | None:
    found = session.execute(
        select(WebSession, User).join(User, User.id == WebSession.user_id).where(WebSession.id == digest)
    ).first()
    return (found[0], found[1]) if found is not None else None


def delete_by_id(session: Session, digest: str) -> None:
    session.execute(delete(WebSession).where(WebSession.id == digest))


def delete_of_user(session: Session, user_id: int) -> None:
    session.execute(delete(WebSession).where(WebSession.user_id == user_id))


def delete_expired(session: Session, now: datetime) -> None:
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
