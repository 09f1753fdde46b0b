"""Queries on API keys. Lookups by secret go through the unique sha256 index."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from coderapi.store.tables import ApiKey, User


def insert(session: Session, **fields) -> ApiKey:
    key = ApiKey(**fields)
    session.add(key)
    session.flush()
    return key


def with_owner_by_sha256(session: Session, secret_sha256: str) -> tuple[ApiKey, User] | None:
    row = session.execute(
        select(ApiKey, User)
        .join(User, ApiKey.user_id == User.id)
        .where(ApiKey.secret_sha256 == secret_sha256)
    ).first()
    return None if row is None else (row[0], row[1])


def by_sha256(session: Session, secret_sha256: str) -> ApiKey | None:
    return session.scalar(select(ApiKey).where(ApiKey.secret_sha256 == secret_sha256))


def by_prefix(session: Session, prefix: str, user_id: int | None = None) -> ApiKey | None:
    """The key with `prefix`; with `user_id`, only if that user owns it (tenant isolation)."""
    query = select(ApiKey).where(ApiKey.prefix == prefix)
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return session.scalar(query)


def list_for_user(session: Session, user_id: int) -> list[ApiKey]:
    """Oldest first, as the key-management contract orders them."""
    query = select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.created_at, ApiKey.id)
    return list(session.scalars(query))


def count_for_user(session: Session, user_id: int) -> int:
    return session.scalar(select(func.count()).select_from(ApiKey).where(ApiKey.user_id == user_id)) or 0


def touch(session: Session, key_id: int, when: datetime) -> None:
    session.execute(
        update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when),
        execution_options={"synchronize_session": False},
    )


def delete(session: Session, key: ApiKey) -> None:
    session.delete(key)


def with_owners_by_ids(session: Session, key_ids: list[int]) -> dict[int, tuple[ApiKey, User]]:
    """Keys and their owners by key id, in one query; a deleted key is left out."""
    if not key_ids:
        return {}
    query = select(ApiKey, User).join(User, ApiKey.user_id == User.id).where(ApiKey.id.in_(sorted(set(key_ids))))
    return {key.id: (key, user) for key, user in session.execute(query).all()}


def touch_many(session: Session, key_ids: list[int], when: datetime) -> None:
    if key_ids:
        session.execute(
            update(ApiKey).where(ApiKey.id.in_(sorted(set(key_ids)))).values(last_used_at=when),
            execution_options={"synchronize_session": False},
        )
