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

A hold may be a key's credit lease (`Hold.want`, see `credit_leases` and `lease_size`): held like
any other hold, its requests' costs taken off it as they are settled (`Settlement.lease_id`).

Holds and settlements are applied in batches (`apply`): one transaction for all that a gateway
has queued (see `ledger_writer`), the users' rows locked in id order. A hold taken for a cached
key (`confirm_key`) also checks the key against its row in that transaction, so a key disabled,
deleted or changed anywhere is refused at once, without a lookup of its own per request.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy.orm import Session

from coderapi import crud
from coderapi.clock import utcnow
from coderapi.errors import AuthenticationFailed, CoderapiError, PermissionDenied, QuotaExceeded
from coderapi.money import to_money
from coderapi.services.account_types import Principal, UsageRecord
from coderapi.services.key_ops import LAST_USED_GRANULARITY, principal_from
from coderapi.services.spending import PeriodSpend
from coderapi.store.database import Database

LEASE_SHARE = 4  # a lease takes at most a quarter of what the user (and the key) has left
LEASE_MIN_REQUESTS = 2  # a lease smaller than two requests' worth is not worth a lease
PURGE_EVERY = timedelta(seconds=60)  # between purges of one user's lapsed and settled holds
_PERIODS = {"no_reset": "in total", "day": "per day", "week": "per week", "month": "per month"}


class KeyChanged(Exception):
    """The cached key's row changed (scopes, limits, its owner's limits): admit it again as `fresh`."""

    def __init__(self, fresh: Principal) -> None:
        super().__init__("the key changed since it was cached")
        self.fresh = fresh


@dataclass
class Hold:
    """One request's worst-case cost to hold; `result` (the hold's id) or `error` once applied."""

    principal: Principal
    request_id: str
    amount: Decimal
    confirm_key: bool = False  # a cached principal: check it against the key's row first
    want: Decimal | None = None  # a lease's size wanted: held when it fits (see `lease_size`)
    result: int | None = None
    granted: Decimal | None = None  # what was held: `amount`, or a lease's size
    error: Exception | None = None


@dataclass
class Settlement:
    """One ended request: its usage row to write and its hold to drop (`record` None: only drop
    the hold). `replayed`: from a journal left by a gateway that died; written unless its row is
    there already. `result`: the usage row's id, None when it was settled already."""

    record: UsageRecord | None
    reservation_id: int | None
    replayed: bool = False
    lease_id: int | None = None  # the request held its cost in this lease: its cost leaves the lease
    retried: bool = False  # an earlier try may have committed: written unless its row is there
    result: int | None = None


def _unbalanced(principal: Principal) -> Principal:
    return replace(principal, balance=None)


class CostReservations:
    def __init__(
        self, db: Database, spend: PeriodSpend, *, ttl_seconds: float, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._db = db
        self._spend = spend
        self._ttl = timedelta(seconds=ttl_seconds)
        self._now = clock
        self._purged: dict[int, datetime] = {}  # user id -> when its holds were last purged

    async def reserve(self, principal: Principal, request_id: str, amount: Decimal) -> int:
        """Hold `amount` USD for the request, or raise QuotaExceeded holding nothing; the hold's id."""
        hold = Hold(principal, request_id, to_money(amount))
        await asyncio.to_thread(self.apply, [], [hold])
        if hold.error is not None:
            raise hold.error
        return hold.result

    async def settle(self, record: UsageRecord, reservation_id: int | None) -> int | None:
        """Write the usage row, debit its cost and release the hold, in one transaction; the row's
        id, or None when this reservation was settled already (a retry: nothing is charged twice)."""
        settlement = Settlement(record, reservation_id)
        await asyncio.to_thread(self.apply, [settlement], [])
        return settlement.result

    def apply(self, settlements: list[Settlement], holds: list[Hold]) -> None:
        """Settlements, then holds (which see the money the settlements freed), in one transaction.
        A hold that does not fit gets its `error`; a failing transaction raises (nothing applied)."""
        now = self._now()
        users = [s.record.user_id for s in settlements if s.record] + [h.principal.user_id for h in holds]
        with self._db.session() as session:
            # The locks first, as every writer takes them: one lock order, no deadlock on PostgreSQL.
            balances = crud.reservations.lock_users(session, users)
            if settlements:
                for user_id, debit in self._settle_all(session, settlements, now).items():
                    balances[user_id] -= debit
            if holds:
                self._hold_all(session, holds, balances, now)

    def _settle_all(self, session: Session, settlements: list[Settlement], now: datetime) -> dict[int, Decimal]:
        """Writes the rows, drops the holds, debits the users; what each user was debited."""
        ids = [s.reservation_id for s in settlements if s.reservation_id is not None]
        released = crud.reservations.release(session, ids, now)  # one UPDATE ... RETURNING
        unreleased = [i for i in ids if i not in released]
        # Not released: settled by an earlier try (its row is there) or lapsed and purged (gone).
        done = crud.reservations.existing_ids(session, unreleased)
        todo: list[Settlement] = []
        for s in settlements:
            if s.reservation_id is not None:
                if s.reservation_id in done:
                    continue  # an earlier try committed, but its acknowledgement was lost
                done.add(s.reservation_id)
            if ((s.replayed or s.retried) and s.record and s.reservation_id not in released
                    and crud.usage.recorded(session, s.record)):
                continue  # replayed or retried with no hold of its own to tell, and its row is there
            todo.append(s)
        written = [s for s in todo if s.record is not None]
        rows = [{**s.record.row(now), "cost": to_money(s.record.cost)} for s in written]
        debits: dict[int, Decimal] = defaultdict(Decimal)
        for s, event_id in zip(written, crud.usage.insert_many(session, rows)):
            s.result = event_id
            debits[s.record.user_id] += to_money(s.record.cost)
        crud.reservations.debit_users(session, debits)
        spent_by_lease: dict[int, Decimal] = defaultdict(Decimal)
        for s in written:
            if s.lease_id is not None:
                spent_by_lease[s.lease_id] += to_money(s.record.cost)
        crud.reservations.shrink_leases(session, spent_by_lease)
        return debits

    def _hold_all(self, session: Session, holds: list[Hold], balances: dict[int, Decimal], now: datetime) -> None:
        """`balances`: the users' locked balances, less what this transaction debited."""
        users = sorted({h.principal.user_id for h in holds})
        self._confirm_keys(session, [h for h in holds if h.confirm_key], now)
        self._purge_now_and_then(session, users)
        held = defaultdict(Decimal, crud.reservations.held_by_users(session, users, now))
        limited = {h.principal.key_id: h.principal for h in holds if h.error is None and h.principal.limit_threshold is not None}
        key_held = defaultdict(Decimal, crud.reservations.held_by_keys(session, list(limited), now))
        spent = {key_id: self._spend.spent_in(session, key_id, p.key_prefix, p.limit_retention) for key_id, p in limited.items()}
        admitted: list[Hold] = []
        for hold in holds:
            if hold.error is not None:
                continue
            principal, amount = hold.principal, hold.amount
            try:
                if principal.user_id not in balances:
                    raise AuthenticationFailed("Invalid API key")  # the account was deleted meanwhile
                balance = to_money(balances[principal.user_id])
                _check_balance(balance, held[principal.user_id], amount)
                room = balance - held[principal.user_id]
                if principal.limit_threshold is not None:
                    spent_now, key_now = spent[principal.key_id], key_held[principal.key_id]
                    _check_key_limit(principal, spent_now, key_now, amount)
                    room = min(room, to_money(principal.limit_threshold) - spent_now - key_now)
            except CoderapiError as exc:
                hold.error = exc
                continue
            hold.granted = lease_size(amount, hold.want, room)
            held[principal.user_id] += hold.granted
            key_held[principal.key_id] += hold.granted
            admitted.append(hold)
        rows = [dict(user_id=h.principal.user_id, key_id=h.principal.key_id, request_id=h.request_id,
                     amount=h.granted, now=now, expires_at=now + self._ttl) for h in admitted]
        for hold, hold_id in zip(admitted, crud.reservations.insert_many(session, rows)):
            hold.result = hold_id

    def _purge_now_and_then(self, session: Session, users: list[int]) -> None:
        """Lapsed and long-settled holds are dropped at most once a minute per user: they hold
        nothing (every sum skips them), so purging them is tidiness, not a step of every hold."""
        now, due = self._now(), []
        for user_id in users:
            last = self._purged.get(user_id)
            if last is None or now - last >= PURGE_EVERY or now < last:
                due.append(user_id)
                self._purged[user_id] = now
        if len(self._purged) > 100_000:
            self._purged.clear()
        if due:
            crud.reservations.purge_expired_for(session, due, now)

    async def confirm_key(self, principal: Principal) -> Exception | None:
        """A cached principal against its key's row, in a transaction of its own: the refusal
        authentication would give now (or KeyChanged), None when the key is as cached."""
        return await asyncio.to_thread(self._confirm_one, principal)

    def _confirm_one(self, principal: Principal) -> Exception | None:
        with self._db.session() as session:
            found = crud.keys.with_owners_by_ids(session, [principal.key_id]).get(principal.key_id)
            return _key_verdict(found, principal)

    @staticmethod
    def _confirm_keys(session: Session, holds: list[Hold], now: datetime) -> None:
        """Cached principals against their keys' rows, for the whole batch in one query."""
        if not holds:
            return
        rows = crud.keys.with_owners_by_ids(session, [h.principal.key_id for h in holds])
        stale_stamps = set()
        for hold in holds:
            found = rows.get(hold.principal.key_id)
            hold.error = _key_verdict(found, hold.principal)
            if hold.error is None and (found[0].last_used_at is None or now - found[0].last_used_at >= LAST_USED_GRANULARITY):
                stale_stamps.add(found[0].id)
        crud.keys.touch_many(session, list(stale_stamps), now)


def lease_size(amount: Decimal, want: Decimal | None, room: Decimal) -> Decimal:
    """What to hold for a request that would take a lease of `want` (None: no lease), with `room`
    left under the balance (and the key's limit): at most 1/LEASE_SHARE of the room, so that one
    gateway's lease never leaves the others without credit while much is left; below
    LEASE_MIN_REQUESTS requests' worth, only the request's own `amount` (an exact hold)."""
    if want is None or want <= amount:
        return amount
    size = min(want, room / LEASE_SHARE).quantize(Decimal("0.000001"), rounding=ROUND_DOWN)  # never over the share
    return size if size >= amount * LEASE_MIN_REQUESTS else amount


def _key_verdict(found, principal: Principal) -> Exception | None:
    """A key deleted or disabled is refused as authentication would refuse it; one changed
    otherwise (scopes, limits, its owner's limits) is to be admitted again (KeyChanged)."""
    if found is None:
        return AuthenticationFailed("Invalid API key")
    key, user = found
    if key.disabled:
        return PermissionDenied("This API key is disabled", code="key_disabled")
    if user.disabled:
        return PermissionDenied("This account is disabled", code="user_disabled")
    fresh = principal_from(key, user)
    if _unbalanced(fresh) != _unbalanced(principal):
        return KeyChanged(fresh)
    return None


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
