"""Report queries on usage events (always within one user: tenant isolation lives in `where`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, literal, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from coderapi.store.tables import ApiKey, CreditGrant, UsageEvent

SUCCEEDED = ("success", "cancelled")  # charged: the tokens were generated
FAILED = ("error", "refused")  # cost nothing


@dataclass(frozen=True)
class UsageFilter:
    user_id: int
    start: datetime
    end: datetime
    key_prefix: str | None = None
    models: tuple[str, ...] = ()  # `Org/Name` exactly, or a bare `Name` matching `*/Name`
    statuses: tuple[str, ...] = ()  # stored statuses: success, error, refused, cancelled


def where(f: UsageFilter) -> list:
    conditions = [UsageEvent.user_id == f.user_id, UsageEvent.created_at >= f.start, UsageEvent.created_at <= f.end]
    if f.key_prefix is not None:
        conditions.append(UsageEvent.key_prefix == f.key_prefix)
    if f.models:
        bare = [UsageEvent.model.endswith("/" + m, autoescape=True) for m in f.models if "/" not in m]
        conditions.append(or_(UsageEvent.model.in_(f.models), *bare))
    if f.statuses:
        conditions.append(UsageEvent.status.in_(f.statuses))
    return conditions


def _aggregates(rows) -> list:
    """Sums over `rows` (the table, or a subquery's columns) under the names UsageTotals uses."""
    succeeded = case((rows.status.in_(SUCCEEDED), 1), else_=0)
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(succeeded), 0).label("succeeded"),
        func.coalesce(func.sum(rows.prompt_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(rows.completion_tokens), 0).label("output_tokens"),
        func.coalesce(func.sum(rows.cost), 0).label("spend"),
    ]


def totals(session: Session, f: UsageFilter) -> Row:
    return session.execute(select(*_aggregates(UsageEvent)).where(*where(f))).one()


def grouped(session: Session, f: UsageFilter, dims: tuple[str, ...], day_edges: list[datetime]) -> list[Row]:
    """Aggregates per group of `dims` ("day", "model", "key"). A row's day is the index of its
    bucket: rows before day_edges[i] (and not before day_edges[i-1]) are in bucket i. The groups
    are computed in a subquery, so every database groups by plain columns."""
    bucket = _bucket(UsageEvent.created_at, day_edges, 0, len(day_edges)) if day_edges else None
    columns = {"day": bucket, "model": UsageEvent.model, "key": UsageEvent.key_prefix}
    keys = [columns[d].label(d) for d in dims if columns[d] is not None]
    measures = [UsageEvent.status, UsageEvent.prompt_tokens, UsageEvent.completion_tokens, UsageEvent.cost]
    rows = select(*keys, *measures).where(*where(f)).subquery()
    group = [rows.c[k.name] for k in keys]
    return list(session.execute(select(*group, *_aggregates(rows.c)).group_by(*group)))


def _bucket(column, edges: list[datetime], low: int, high: int):
    """The bucket in [low, high] of `column` (bucket i: before edges[i], not before edges[i-1]), as
    a binary search of nested CASEs: a row costs ~log2(days) comparisons, not one per day (grouping
    1,000,000 rows by day and model over 90 days: 1.2 s against 2.8 s for a flat CASE, SQLite)."""
    if low == high:
        return literal(low)
    middle = (low + high) // 2  # bucket <= middle exactly when column < edges[middle]
    return case(
        (column < edges[middle], _bucket(column, edges, low, middle)), else_=_bucket(column, edges, middle + 1, high)
    )


def page(session: Session, f: UsageFilter, limit: int, offset: int) -> tuple[int, list[UsageEvent]]:
    """Matching rows newest first, and how many match in all."""
    total = session.scalar(select(func.count()).select_from(UsageEvent).where(*where(f))) or 0
    query = (
        select(UsageEvent).where(*where(f))
        .order_by(UsageEvent.created_at.desc(), UsageEvent.id.desc()).limit(limit).offset(offset)
    )
    return total, list(session.scalars(query))


def charges(session: Session, user_id: int, limit: int) -> list[UsageEvent]:
    """The user's most recent charged requests (cost above zero), newest first."""
    query = (
        select(UsageEvent).where(UsageEvent.user_id == user_id, UsageEvent.cost > 0)
        .order_by(UsageEvent.created_at.desc(), UsageEvent.id.desc()).limit(limit)
    )
    return list(session.scalars(query))


def grants(session: Session, user_id: int, limit: int) -> list[CreditGrant]:
    query = (
        select(CreditGrant).where(CreditGrant.user_id == user_id)
        .order_by(CreditGrant.created_at.desc(), CreditGrant.id.desc()).limit(limit)
    )
    return list(session.scalars(query))


def prefix_is_users(session: Session, user_id: int, prefix: str) -> bool:
    """True when `prefix` names one of the user's keys, or a deleted one they have usage of."""
    key = select(ApiKey.id).where(ApiKey.user_id == user_id, ApiKey.prefix == prefix)
    used = select(UsageEvent.id).where(UsageEvent.user_id == user_id, UsageEvent.key_prefix == prefix)
    return session.scalar(key.limit(1)) is not None or session.scalar(used.limit(1)) is not None
