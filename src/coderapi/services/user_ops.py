"""Users and their money: the focused service `UserService`, and the blocking steps it runs in a
worker thread (each opens its own transaction on the `Database`; argon2 work is done elsewhere).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy.orm import Session

from coderapi import crud
from coderapi.clock import utcnow
from coderapi.errors import InvalidRequest, NotFound
from coderapi.money import MAX_AMOUNT, to_money
from coderapi.services import passwords, user_limits
from coderapi.services.account_types import UsageRecord, UserInfo
from coderapi.store.database import Database

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_MAX_EMAIL_LENGTH = 254


# Unicode categories no address holds: controls, format characters (zero-width, bidi overrides),
# surrogates, private-use and unassigned code points, spaces and line breaks. They would make an
# address that looks like another one (a@x.io and a@x.io + U+200B) or rewrite an operator's terminal.
_NOT_IN_EMAIL = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


def normalize_email(email: str) -> str:
    email = (email or "").strip().lower()
    if len(email) > _MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(email):
        raise InvalidRequest(f"Not a valid email address: {email!r}", param="email")
    if any(unicodedata.category(char) in _NOT_IN_EMAIL for char in email):
        raise InvalidRequest(
            f"Not a valid email address: {email!r}: it must not contain spaces, control characters or "
            "invisible characters (such as zero-width or text-direction marks).", param="email",
        )
    return email


def check_password(password: str) -> None:
    if len(password or "") < passwords.MIN_PASSWORD_LENGTH:
        raise InvalidRequest(
            f"The password must be at least {passwords.MIN_PASSWORD_LENGTH} characters long",
            param="password",
        )
    if len(password) > passwords.MAX_PASSWORD_LENGTH:
        raise InvalidRequest("The password is too long", param="password")


def exact_money(value, param: str) -> Decimal:
    """A USD amount the money column keeps exactly: more than six decimals or more than
    MAX_AMOUNT is refused (400 naming `param`), never rounded into another amount."""
    try:
        given = Decimal(value if isinstance(value, (Decimal, int)) else str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        raise InvalidRequest(f"Not a valid USD amount: {value!r}", param=param) from None
    if isinstance(value, bool) or not given.is_finite():
        raise InvalidRequest(f"Not a valid USD amount: {value!r}", param=param)
    if abs(given) > MAX_AMOUNT:
        raise InvalidRequest(f"USD amount {value!r} is too large (at most {MAX_AMOUNT:,})", param=param)
    amount = to_money(given)
    if amount != given:
        raise InvalidRequest(
            f"USD amount {value!r} has more than 6 decimal places, which cannot be stored exactly",
            param=param,
        )
    return amount


def _user_or_404(session: Session, user_id: int):
    user = crud.users.get(session, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}")
    return user


def insert_user(
    session: Session, email: str, password_hash: str, role: str, credit: Decimal, *, pending: bool = False
):
    """Insert a user holding `credit`, with the matching ledger row when it is not zero. A
    `pending` user waits, disabled, for an admin's approval."""
    user = crud.users.insert(
        session, email=email, password_hash=password_hash, role=role, balance=credit, pending=pending
    )
    if credit:
        crud.users.insert_grant(
            session, user_id=user.id, amount=credit, reason="starting credit", granted_by="system"
        )
    return user


def get_user(db: Database, user_id: int) -> UserInfo:
    with db.session() as session:
        return UserInfo.from_row(_user_or_404(session, user_id))


def get_user_by_email(db: Database, email: str) -> UserInfo:
    email = normalize_email(email)
    with db.session() as session:
        user = crud.users.get_by_email(session, email)
        if user is None:
            raise NotFound(f"No user with email {email}")
        return UserInfo.from_row(user)


def list_users(db: Database) -> list[UserInfo]:
    with db.session() as session:
        return [UserInfo.from_row(u) for u in crud.users.list_all(session)]


def set_user_disabled(db: Database, user_id: int, disabled: bool) -> UserInfo:
    with db.session() as session:
        user = _user_or_404(session, user_id)
        return UserInfo.from_row(crud.rows.update(session, user, disabled=disabled))


def record_usage(db: Database, record: UsageRecord, now: datetime) -> int:
    """Insert the event and debit its cost from the user's balance, in one transaction."""
    cost = to_money(record.cost)
    with db.session() as session:
        event = crud.usage.insert(session, **{**record.row(now), "cost": cost})
        if cost:
            crud.users.adjust_balance(session, record.user_id, -cost)
        return event.id


def balance(db: Database, user_id: int) -> Decimal:
    with db.session() as session:
        amount = crud.users.balance(session, user_id)
    if amount is None:
        raise NotFound(f"No user with id {user_id}")
    return to_money(amount)


def grant_credit(db: Database, user_id: int, amount, reason: str, granted_by: str) -> Decimal:
    """Add `amount` USD (negative to take some back) with a ledger row; returns the new balance."""
    amount = exact_money(amount, "amount")
    if not amount:
        raise InvalidRequest("The amount must not be zero", param="amount")
    with db.session() as session:
        _user_or_404(session, user_id)
        # One conditional UPDATE, so two grants at once cannot both pass the check.
        if not crud.users.add_to_balance_within(session, user_id, amount, MAX_AMOUNT):
            raise InvalidRequest(
                f"A grant may not take a balance beyond ±${MAX_AMOUNT:,}; this one holds "
                f"${to_money(crud.users.balance(session, user_id))}", param="amount",
            )
        crud.users.insert_grant(
            session, user_id=user_id, amount=amount, reason=reason, granted_by=granted_by
        )
        if amount < 0:  # credit taken back: gateways give back the credit they lease (see store.auth_epoch)
            crud.auth_epoch.bump(session)
        return to_money(crud.users.balance(session, user_id))



class UserService:
    """Users, their rate-limit overrides and their balances, for the API, dashboard and CLI; the
    database work runs in a worker thread. Returns `UserInfo`, never ORM rows."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self._db = db
        self._now = clock

    async def get_user(self, user_id: int) -> UserInfo:
        return await asyncio.to_thread(get_user, self._db, user_id)

    async def get_user_by_email(self, email: str) -> UserInfo:
        return await asyncio.to_thread(get_user_by_email, self._db, email)

    async def list_users(self) -> list[UserInfo]:
        return await asyncio.to_thread(list_users, self._db)

    async def set_user_disabled(self, user_id: int, disabled: bool) -> UserInfo:
        return await asyncio.to_thread(set_user_disabled, self._db, user_id, disabled)

    async def set_user_limits(self, user_id: int, *, rpm_limit: int | None, tpm_limit: int | None) -> UserInfo:
        """Per-user requests/tokens per minute for each of the user's keys; None: the default."""
        return await asyncio.to_thread(user_limits.set_user_limits, self._db, user_id, rpm_limit, tpm_limit)

    async def record_usage(self, record: UsageRecord) -> int:
        """Insert the usage event and debit its cost, in one transaction; returns the event id."""
        return await asyncio.to_thread(record_usage, self._db, record, self._now())

    async def balance(self, user_id: int) -> Decimal:
        return await asyncio.to_thread(balance, self._db, user_id)

    async def grant_credit(self, user_id: int, amount: Decimal | float, reason: str, granted_by: str) -> Decimal:
        """Credit (or, negative, debit) the balance with a ledger row; returns the new balance."""
        return await asyncio.to_thread(grant_credit, self._db, user_id, amount, reason, granted_by)
