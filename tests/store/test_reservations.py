"""CostReservations on SQLite: holds count against the balance and the key's limit until they
are settled, settling writes the usage row and drops the hold in one step, and a hold left by a
gateway that died lapses after its time to live."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from coderapi.errors import QuotaExceeded
from coderapi.services.accounts import AccountService, UsageRecord
from coderapi.services.reservations import CostReservations
from coderapi.services.spending import PeriodSpend
from coderapi.crud.reservations import SETTLED_KEPT
from coderapi.store.tables import CostReservation, UsageEvent
from tests.clock import FixedClock

TTL = 600


@pytest.fixture
def setup(db):
    clock = FixedClock(datetime(2025, 7, 10, 12, 0, tzinfo=timezone.utc))
    accounts = AccountService(db, starting_credit=1, clock=clock)
    ledger = CostReservations(db, PeriodSpend(db, clock), ttl_seconds=TTL, clock=clock)

    async def seed():
        user = await accounts.signups.create_user("dev@example.com", "correct horse")
        _, secret = await accounts.keys.create_key(user.id, limit_threshold="0.5", limit_retention="day")
        return await accounts.keys.authenticate_key(secret)

    principal = asyncio.run(seed())
    return db, clock, accounts, ledger, principal


def _holds(db) -> int:
    """Holds not yet settled (settled rows linger a while, holding nothing)."""
    with db.session() as session:
        return session.query(CostReservation).filter(CostReservation.settled_at.is_(None)).count()


def test_holds_count_until_settled(setup):
    db, _, accounts, ledger, principal = setup
    unlimited = replace(principal, limit_threshold=None)
    first = asyncio.run(ledger.reserve(unlimited, "r1", Decimal("0.6")))
    with pytest.raises(QuotaExceeded) as caught:  # 1.00 - 0.60 held leaves 0.40
        asyncio.run(ledger.reserve(unlimited, "r2", Decimal("0.5")))
    assert caught.value.code == "insufficient_quota" and "$0.400000 is available" in caught.value.message
    record = UsageRecord("r1", principal.user_id, principal.key_id, principal.key_prefix, "m", "chat.completions",
                         cost=Decimal("0.1"))
    asyncio.run(ledger.settle(record, first))
    assert _holds(db) == 0 and asyncio.run(accounts.users.balance(principal.user_id)) == Decimal("0.9")
    asyncio.run(ledger.reserve(unlimited, "r2", Decimal("0.5")))  # 0.90 available now


def test_the_key_limit_counts_spend_and_holds(setup):
    _, _, _, ledger, principal = setup  # limit 0.5 per day
    asyncio.run(ledger.reserve(principal, "r1", Decimal("0.3")))
    with pytest.raises(QuotaExceeded) as caught:
        asyncio.run(ledger.reserve(principal, "r2", Decimal("0.3")))
    assert caught.value.code == "spending_limit_exceeded" and "$0.200000 is left" in caught.value.message


def test_a_hold_lapses_after_its_time_to_live(setup):
    db, clock, _, ledger, principal = setup
    unlimited = replace(principal, limit_threshold=None)
    asyncio.run(ledger.reserve(unlimited, "crashed", Decimal("0.9")))  # its gateway never settles it
    with pytest.raises(QuotaExceeded):
        asyncio.run(ledger.reserve(unlimited, "r2", Decimal("0.5")))
    clock.now += timedelta(seconds=TTL + 1)
    asyncio.run(ledger.reserve(unlimited, "r2", Decimal("0.5")))
    assert _holds(db) == 1  # the lapsed hold was purged, the new one kept


def test_a_retried_settlement_charges_nothing_twice(setup):
    """A usage write is retried when the database fails; if the first try committed but its
    acknowledgement was lost, the retry must not write a second row or debit twice."""
    db, _, accounts, ledger, principal = setup
    hold = asyncio.run(ledger.reserve(replace(principal, limit_threshold=None), "r1", Decimal("0.5")))
    record = UsageRecord("r1", principal.user_id, principal.key_id, principal.key_prefix, "m", "chat.completions",
                         cost=Decimal("0.2"))
    assert asyncio.run(ledger.settle(record, hold)) is not None
    assert asyncio.run(ledger.settle(record, hold)) is None
    with db.session() as session:
        assert session.query(UsageEvent).filter(UsageEvent.request_id == "r1").count() == 1
    assert asyncio.run(accounts.users.balance(principal.user_id)) == Decimal("0.8")


def test_settled_rows_are_purged_after_they_are_kept(setup):
    db, clock, _, ledger, principal = setup
    unlimited = replace(principal, limit_threshold=None)
    hold = asyncio.run(ledger.reserve(unlimited, "r1", Decimal("0.1")))
    record = UsageRecord("r1", principal.user_id, principal.key_id, principal.key_prefix, "m", "chat.completions")
    asyncio.run(ledger.settle(record, hold))
    clock.now += SETTLED_KEPT + timedelta(seconds=1)
    asyncio.run(ledger.reserve(unlimited, "r2", Decimal("0.1")))
    with db.session() as session:
        assert [r.request_id for r in session.query(CostReservation).all()] == ["r2"]
