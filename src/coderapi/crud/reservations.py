"""Queries on cost reservations (money held for requests in flight) and the user-row lock that
makes reserving and settling one step per user."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update
from sqlalchemy import insert as insert_statement
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


# Batches: one statement for every user (or key) of a group-committed batch of holds and settlements.


def lock_users(session: Session, user_ids: list[int]) -> dict[int, Decimal]:
    """The users' balances, their rows locked until the transaction ends (in id order, the order
    every gateway takes them in, so two batches cannot deadlock); a missing user is left out."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    if session.get_bind().dialect.name == "sqlite":  # see lock_user: the write lock first
        session.execute(
            update(User).where(User.id.in_(ids)).values(balance=User.balance),
            execution_options={"synchronize_session": False},
        )
        return dict(session.execute(select(User.id, User.balance).where(User.id.in_(ids))).all())
    query = select(User.id, User.balance).where(User.id.in_(ids)).order_by(User.id).with_for_update()
    return dict(session.execute(query).all())


def held_by_users(session: Session, user_ids: list[int], now: datetime) -> dict[int, Decimal]:
    query = (
        select(CostReservation.user_id, func.sum(CostReservation.amount))
        .where(CostReservation.user_id.in_(sorted(set(user_ids))), CostReservation.expires_at > now,
               CostReservation.settled_at.is_(None))
        .group_by(CostReservation.user_id)
    )
    return {user_id: to_money(total) for user_id, total in session.execute(query)}


def held_by_keys(session: Session, key_ids: list[int], now: datetime) -> dict[int, Decimal]:
    if not key_ids:
        return {}
    query = (
        select(CostReservation.key_id, func.sum(CostReservation.amount))
        .where(CostReservation.key_id.in_(sorted(set(key_ids))), CostReservation.expires_at > now,
               CostReservation.settled_at.is_(None))
        .group_by(CostReservation.key_id)
    )
    return {key_id: to_money(total) for key_id, total in session.execute(query)}


def purge_expired_for(session: Session, user_ids: list[int], now: datetime) -> None:
    """purge_expired for several users in one statement."""
    session.execute(
        delete(CostReservation).where(
            CostReservation.user_id.in_(sorted(set(user_ids))),
            (CostReservation.expires_at <= now) | (CostReservation.settled_at <= now - SETTLED_KEPT),
        ),
        execution_options={"synchronize_session": False},
    )


def insert_many(session: Session, rows: list[dict]) -> list[int]:
    """Holds (the fields of `insert`, `now` as created_at) in one INSERT; their ids, in order."""
    if not rows:
        return []
    values = [
        dict(user_id=r["user_id"], key_id=r["key_id"], request_id=r["request_id"][:64], amount=r["amount"],
             created_at=r["now"], expires_at=r["expires_at"], settled_at=None)
        for r in rows
    ]
    statement = insert_statement(CostReservation).returning(CostReservation.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, values))


def settled_ids(session: Session, reservation_ids: list[int]) -> set[int]:
    """Of these holds, those settled already (a retried settlement must charge nothing twice)."""
    if not reservation_ids:
        return set()
    query = select(CostReservation.id).where(
        CostReservation.id.in_(reservation_ids), CostReservation.settled_at.is_not(None)
    )
    return set(session.scalars(query))


def mark_settled_many(session: Session, reservation_ids: list[int], now: datetime) -> None:
    if reservation_ids:
        session.execute(
            update(CostReservation).where(CostReservation.id.in_(reservation_ids)).values(settled_at=now),
            execution_options={"synchronize_session": False},
        )


def existing_ids(session: Session, reservation_ids: list[int]) -> set[int]:
    if not reservation_ids:
        return set()
    return set(session.scalars(select(CostReservation.id).where(CostReservation.id.in_(reservation_ids))))
