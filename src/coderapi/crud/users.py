"""Queries on users and credit grants."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from coderapi.store.tables import CreditGrant, User


def get(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def get_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email))


def count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(User)) or 0


def list_all(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def insert(
    session: Session, *, email: str, password_hash: str, role: str, balance: Decimal, pending: bool = False
) -> User:
    """A `pending` user waits, disabled, for an admin's approval."""
    user = User(
        email=email, password_hash=password_hash, role=role, balance=balance,
        disabled=pending, pending_approval=pending,
    )
    session.add(user)
    session.flush()
    return user


def adjust_balance(session: Session, user_id: int, delta: Decimal) -> None:
    """Add `delta` (negative to debit) in one UPDATE, so concurrent requests cannot lose a write."""
    session.execute(
        update(User).where(User.id == user_id).values(balance=User.balance + delta),
        execution_options={"synchronize_session": False},
    )


def add_to_balance_within(session: Session, user_id: int, delta: Decimal, bound: Decimal) -> bool:
    """Add `delta` unless the balance would then leave [-bound, bound]; one UPDATE. True when added."""
    after = User.balance + delta
    result = session.execute(
        update(User).where(User.id == user_id, after <= bound, after >= -bound).values(balance=after),
        execution_options={"synchronize_session": False},
    )
    return result.rowcount == 1


def balance(session: Session, user_id: int) -> Decimal | None:
    return session.scalar(select(User.balance).where(User.id == user_id))


def insert_grant(
    session: Session, *, user_id: int, amount: Decimal, reason: str, granted_by: str
) -> CreditGrant:
    """The ledger row only; the caller moves the balance (see `adjust_balance`)."""
    grant = CreditGrant(user_id=user_id, amount=amount, reason=reason, granted_by=granted_by)
    session.add(grant)
    return grant
