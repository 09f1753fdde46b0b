"""Usage events: inserts and spend sums over UTC periods."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy import insert as insert_statement
from sqlalchemy.orm import Session

from coderapi.store.tables import UsageEvent, to_money


def period_start(retention: str, now: datetime) -> datetime | None:
    """Start of the current spending period in UTC; None for `no_reset` (all time)."""
    if retention == "no_reset":
        return None
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if retention == "day":
        return midnight
    if retention == "week":
        return midnight - timedelta(days=midnight.weekday())  # Monday
    if retention == "month":
        return midnight.replace(day=1)
    raise ValueError(f"unknown limit retention {retention!r}")


def _fit_strings(fields: dict) -> dict:
    """Cut strings to their column's length: a usage row must not be lost to a long model name."""
    for column in UsageEvent.__table__.columns:
        limit, value = getattr(column.type, "length", None), fields.get(column.name)
        if limit and isinstance(value, str) and len(value) > limit:
            fields[column.name] = value[:limit]
    return fields


def insert(session: Session, **fields) -> UsageEvent:
    event = UsageEvent(**_fit_strings(fields))
    session.add(event)
    session.flush()
    return event


def insert_many(session: Session, rows: list[dict]) -> list[int]:
    """Usage events in one INSERT (a group-committed batch of settlements); their ids, in order.
    Core, not the ORM's unit of work: nothing here needs the objects back."""
    if not rows:
        return []
    table = UsageEvent.__table__  # the table, not the entity: no ORM bulk-insert machinery per batch
    statement = insert_statement(table).returning(table.c.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, [_fit_strings(dict(fields)) for fields in rows]))


def spend_since(session: Session, key_id: int, since: datetime | None) -> Decimal:
    """The key's spend since `since` (None: all time)."""
    return spend_between(session, key_id, since, None)


def spend_between(session: Session, key_id: int, since: datetime | None, until: datetime | None) -> Decimal:
    """The key's spend in [since, until); None leaves that end open."""
    query = select(func.coalesce(func.sum(UsageEvent.cost), 0)).where(UsageEvent.key_id == key_id)
    if since is not None:
        query = query.where(UsageEvent.created_at >= since)
    if until is not None:
        query = query.where(UsageEvent.created_at < until)
    return to_money(session.scalar(query))


def spend_by_key_since(session: Session, key_ids: Iterable[int], since: datetime) -> dict[int, Decimal]:
    """Spend per key since `since`, in one query; keys without usage are left out."""
    ids = list(key_ids)
    if not ids:
        return {}
    query = (
        select(UsageEvent.key_id, func.sum(UsageEvent.cost))
        .where(UsageEvent.key_id.in_(ids), UsageEvent.created_at >= since)
        .group_by(UsageEvent.key_id)
    )
    return {key_id: to_money(total) for key_id, total in session.execute(query)}


def recorded(session: Session, record) -> bool:
    """Whether this request's usage row exists (same request id, key, model and latency): a
    journal replayed after its hold was purged must not write it twice."""
    query = select(UsageEvent.id).where(
        UsageEvent.request_id == record.request_id[:64], UsageEvent.key_id == record.key_id,
        UsageEvent.latency_ms == record.latency_ms, UsageEvent.user_id == record.user_id,
    ).limit(1)
    return session.scalar(query) is not None
