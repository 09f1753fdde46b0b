"""Queries on cost reservations (money held for requests in flight) and the user-row lock that
makes reserving and settling one step per user."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from coderapi.store.tables import CostReservation, User, to_money

# How long a settled row is kept: longer than metering retries a usage write (about 5 minutes).
SETTLED_KEPT = timedelta(minutes=15)


def lock_user(session: Session, user_id: int) -> Decimal | None:
    """The user's balance, with the user's row locked until the transaction ends; None: no user.

    PostgreSQL: SELECT ... FOR UPDATE. SQLite has no row locks, and Python's sqlite3 opens a
    transaction only at the first write; so the lock is a write (a no-op UPDATE), which takes
    SQLite's single write lock (waiting up to the busy timeout) before anything is read."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            update(User).where(User.id == user_id).values(balance=User.balance),
            execution_options={"synchronize_session": False},
        )
        return session.scalar(select(User.balance).where(User.id == user_id))
    return session.scalar(select(User.balance).where(User.id == user_id).with_for_update())


def held_by_user(session: Session, user_id: int, now: datetime) -> Decimal:
    query = select(func.coalesce(func.sum(CostReservation.amount), 0)).where(
        CostReservation.user_id == user_id, CostReservation.expires_at > now,
        CostReservation.settled_at.is_(None),
    )
    return to_money(session.scalar(query))


def held_by_key(session: Session, key_id: int, now: datetime) -> Decimal:
    query = select(func.coalesce(func.sum(CostReservation.amount), 0)).where(
        CostReservation.key_id == key_id, CostReservation.expires_at > now,
        CostReservation.settled_at.is_(None),
    )
    return to_money(session.scalar(query))


def insert(
    session: Session, *, user_id: int, key_id: int | None, request_id: str, amount: Decimal,
    now: datetime, expires_at: datetime,
) -> int:
    row = CostReservation(
        user_id=user_id, key_id=key_id, request_id=request_id[:64], amount=amount,
        created_at=now, expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row.id


def mark_settled(session: Session, reservation_id: int, now: datetime) -> bool:
    """Releases the hold; False when it was settled already (a retried settlement: write nothing).
    A hold that lapsed and was purged counts as not settled: its request is still charged."""
    row = session.execute(
        select(CostReservation.settled_at).where(CostReservation.id == reservation_id)
    ).first()
    if row is not None and row[0] is not None:
        return False
    session.execute(
        update(CostReservation).where(CostReservation.id == reservation_id).values(settled_at=now),
        execution_options={"synchronize_session": False},
    )
    return True


def purge_expired(session: Session, user_id: int, now: datetime) -> None:
    """Drop the user's lapsed holds (a gateway that died before settling left them) and settled
    rows older than SETTLED_KEPT."""
    session.execute(
        delete(CostReservation).where(
            CostReservation.user_id == user_id,
            (CostReservation.expires_at <= now) | (CostReservation.settled_at <= now - SETTLED_KEPT),
        ),
        execution_options={"synchronize_session": False},
    )
