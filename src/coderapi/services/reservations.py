"""Money is held before a request runs and settled once where it ends, so it is never lost.

The rule: at admission, each request reserves its worst-case cost (see `cost_estimate`: every
prompt and every choice at the model's prices) against both
- the user's balance, less what the user's requests in flight already hold, and
- the key's spending limit for its period, less what the key spent and what its requests hold.
A request that does not fit is refused with 403 (`insufficient_quota`, `spending_limit_exceeded`:
never 429, which the `openai` SDK retries), saying how much it reserved and how much was
available. So a balance cannot go below zero however many requests run at once, on one gateway
or on several sharing a database: the check and the hold are one transaction, taken with the
user's row locked (SELECT ... FOR UPDATE on PostgreSQL; the write lock on SQLite).

Where the request ends (success, error, refusal, client gone), one transaction, again under the
user's lock, writes its usage row, debits its real cost and drops its hold. A hold whose gateway
died before settling lapses after `reservation_ttl_seconds`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from coderapi import crud
from coderapi.errors import AuthenticationFailed, QuotaExceeded
from coderapi.services.account_types import Principal, UsageRecord
from coderapi.services.spending import PeriodSpend
from coderapi.store.database import Database
from coderapi.store.tables import to_money, utcnow

_PERIODS = {"no_reset": "in total", "day": "per day", "week": "per week", "month": "per month"}


class CostReservations:
    def __init__(
        self, db: Database, spend: PeriodSpend, *, ttl_seconds: float, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        self._spend = spend
        self._ttl = timedelta(seconds=ttl_seconds)
        self._now = clock

    async def reserve(self, principal: Principal, request_id: str, amount: Decimal) -> int:
        """Hold `amount` USD for the request, or raise QuotaExceeded holding nothing; the hold's id."""
        return await asyncio.to_thread(self._reserve, principal, request_id, to_money(amount))

    async def settle(self, record: UsageRecord, reservation_id: int | None) -> int | None:
        """Write the usage row, debit its cost and release the hold, in one transaction; the row's
        id, or None when this reservation was settled already (a retry: nothing is charged twice)."""
        return await asyncio.to_thread(self._settle, record, reservation_id)

    def _reserve(self, principal: Principal, request_id: str, amount: Decimal) -> int:
        now = self._now()
        with self._db.session() as session:
            balance = crud.reservations.lock_user(session, principal.user_id)
            if balance is None:
                raise AuthenticationFailed("Invalid API key")  # the account was deleted meanwhile
            crud.reservations.purge_expired(session, principal.user_id, now)
            held = crud.reservations.held_by_user(session, principal.user_id, now)
            _check_balance(to_money(balance), held, amount)
            if principal.limit_threshold is not None:
                spent = self._spend.spent_in(
                    session, principal.key_id, principal.key_prefix, principal.limit_retention
                )
                key_held = crud.reservations.held_by_key(session, principal.key_id, now)
                _check_key_limit(principal, spent, key_held, amount)
            return crud.reservations.insert(
                session, user_id=principal.user_id, key_id=principal.key_id, request_id=request_id,
                amount=amount, now=now, expires_at=now + self._ttl,
            )

    def _settle(self, record: UsageRecord, reservation_id: int | None) -> int | None:
        cost = to_money(record.cost)
        now = self._now()
        with self._db.session() as session:
            # The lock first, as reserving takes it: one lock order, no deadlock on PostgreSQL.
            crud.reservations.lock_user(session, record.user_id)
            if reservation_id is not None and not crud.reservations.mark_settled(session, reservation_id, now):
                return None  # an earlier try committed, but its acknowledgement was lost
            event = crud.usage.insert(session, **{**vars(record), "cost": cost, "created_at": now})
            if cost:
                crud.users.adjust_balance(session, record.user_id, -cost)
            return event.id


def _check_balance(balance: Decimal, held: Decimal, amount: Decimal) -> None:
    available = balance - held
    if balance <= 0 or amount > available:
        raise QuotaExceeded(
            f"You do not have enough credit for this request: it may cost up to ${amount:.6f}, "
            f"which is reserved before it runs, and ${max(available, Decimal(0)):.6f} is available "
            f"(balance ${balance:.6f}, ${held:.6f} held by requests in flight). "
            "Lower max_tokens or n, or ask an administrator to grant more credit.",
            code="insufficient_quota",
        )


def _check_key_limit(principal: Principal, spent: Decimal, held: Decimal, amount: Decimal) -> None:
    threshold = to_money(principal.limit_threshold)
    left = threshold - spent - held
    if spent >= threshold or amount > left:
        raise QuotaExceeded(
            f"This API key's spending limit of ${threshold:.6f} "
            f"{_PERIODS.get(principal.limit_retention, '')} does not cover this request: it may cost "
            f"up to ${amount:.6f}, which is reserved before it runs, and ${max(left, Decimal(0)):.6f} "
            f"is left (spent ${spent:.6f}, ${held:.6f} held by requests in flight). "
            "Lower max_tokens or n, raise the limit on the key, or wait for the period to reset.",
            code="spending_limit_exceeded",
        )
