"""Queries on cost reservations (money held for requests in flight) and the user-row lock that
makes reserving and settling one step per user."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache
from types import SimpleNamespace

from sqlalchemy import bindparam, case, delete, func, select, update
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
# Core statements on the tables, not the ORM's bulk paths, each built once (with expanding IN
# parameters) and compiled once by SQLAlchemy's cache: they run in every hold's transaction, and
# building a statement per call cost about as much as running it.

_USERS = User.__table__
_HOLDS = CostReservation.__table__


@cache
def _statements() -> SimpleNamespace:
    ids, users = bindparam("ids", expanding=True), _USERS.c
    holds = _HOLDS.c
    # Typed: the values go through UTCDateTime (UTC on every database), as the ORM's would.
    now, kept = bindparam("now", type_=holds.expires_at.type), bindparam("kept", type_=holds.settled_at.type)

    def unsettled_sum(column):
        return (select(column, func.sum(holds.amount))
                .where(column.in_(ids), holds.expires_at > now, holds.settled_at.is_(None)).group_by(column))

    return SimpleNamespace(
        # SQLite: the write lock is taken by a no-op UPDATE (see lock_user) that returns the balances.
        lock_sqlite=update(_USERS).where(users.id.in_(ids)).values(balance=users.balance)
        .returning(users.id, users.balance),
        lock=select(users.id, users.balance).where(users.id.in_(ids)).order_by(users.id).with_for_update(),
        debit=update(_USERS).where(users.id == bindparam("user_id"))
        .values(balance=users.balance - bindparam("amount", type_=users.balance.type)),
        held_by_users=unsettled_sum(holds.user_id),
        held_by_keys=unsettled_sum(holds.key_id),
        purge=delete(_HOLDS).where(holds.user_id.in_(ids), (holds.expires_at <= now) | (holds.settled_at <= kept)),
        insert_one=insert_statement(_HOLDS).returning(holds.id),
        insert_many=insert_statement(_HOLDS).returning(holds.id, sort_by_parameter_order=True),
        release=update(_HOLDS).where(holds.id.in_(ids), holds.settled_at.is_(None)).values(settled_at=now)
        .returning(holds.id),
        existing=select(holds.id).where(holds.id.in_(ids)),
        # A lease gives back what its requests spent (now debited from the balance instead).
        shrink=update(_HOLDS).where(holds.id == bindparam("lease_id"), holds.settled_at.is_(None))
        .values(amount=case((holds.amount > bindparam("spent", type_=holds.amount.type),
                             holds.amount - bindparam("spent", type_=holds.amount.type)), else_=0)),
    )


def lock_users(session: Session, user_ids: list[int]) -> dict[int, Decimal]:
    """The users' balances, their rows locked until the transaction ends (in id order, the order
    every gateway takes them in, so two batches cannot deadlock); a missing user is left out."""
    ids = sorted(set(user_ids))
    if not ids:
        return {}
    sqlite = session.get_bind().dialect.name == "sqlite"
    statement = _statements().lock_sqlite if sqlite else _statements().lock
    return dict(session.execute(statement, {"ids": ids}).all())


def debit_users(session: Session, debits: dict[int, Decimal]) -> None:
    """Subtract each user's amount from their balance (one UPDATE per user, in id order)."""
    for user_id, amount in sorted(debits.items()):
        if amount:
            session.execute(_statements().debit, {"user_id": user_id, "amount": amount})


def held_by_users(session: Session, user_ids: list[int], now: datetime) -> dict[int, Decimal]:
    rows = session.execute(_statements().held_by_users, {"ids": sorted(set(user_ids)), "now": now})
    return {user_id: to_money(total) for user_id, total in rows}


def held_by_keys(session: Session, key_ids: list[int], now: datetime) -> dict[int, Decimal]:
    if not key_ids:
        return {}
    rows = session.execute(_statements().held_by_keys, {"ids": sorted(set(key_ids)), "now": now})
    return {key_id: to_money(total) for key_id, total in rows}


def purge_expired_for(session: Session, user_ids: list[int], now: datetime) -> None:
    """purge_expired for several users in one statement."""
    session.execute(_statements().purge, {"ids": sorted(set(user_ids)), "now": now, "kept": now - SETTLED_KEPT})


def insert_many(session: Session, rows: list[dict]) -> list[int]:
    """Holds (the fields of `insert`, `now` as created_at) in one INSERT; their ids, in order."""
    if not rows:
        return []
    values = [
        dict(user_id=r["user_id"], key_id=r["key_id"], request_id=r["request_id"][:64], amount=r["amount"],
             created_at=r["now"], expires_at=r["expires_at"], settled_at=None)
        for r in rows
    ]
    if len(values) == 1:  # the lone request's hold: a plain INSERT ... RETURNING
        return [session.execute(_statements().insert_one, values[0]).scalar_one()]
    return list(session.execute(_statements().insert_many, values).scalars())


def release(session: Session, reservation_ids: list[int], now: datetime) -> set[int]:
    """Marks these holds settled; those it released (one UPDATE ... RETURNING). A hold not
    returned was settled already (a retry) or is gone (lapsed and purged): `existing_ids` tells."""
    if not reservation_ids:
        return set()
    return set(session.execute(_statements().release, {"ids": sorted(set(reservation_ids)), "now": now}).scalars())


def existing_ids(session: Session, reservation_ids: list[int]) -> set[int]:
    if not reservation_ids:
        return set()
    return set(session.execute(_statements().existing, {"ids": sorted(set(reservation_ids))}).scalars())


def shrink_leases(session: Session, spent: dict[int, Decimal]) -> None:
    """Take what each lease's settled requests cost off the lease (never below zero); a lease
    released or lapsed meanwhile is left alone (see `services.credit_leases`)."""
    rows = [{"lease_id": lease_id, "spent": amount} for lease_id, amount in sorted(spent.items()) if amount]
    if rows:
        session.execute(_statements().shrink, rows)
