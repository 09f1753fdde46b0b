"""PeriodSpend: a key's spend in its limit period, cached in settled parts and still exact."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from coderapi import crud
from coderapi.services.accounts import AccountService, UsageRecord
from coderapi.services.spending import PeriodSpend
from tests.clock import FixedClock

UTC = timezone.utc


@pytest.fixture
def setup(db):
    clock = FixedClock(datetime(2025, 7, 10, 12, 0, tzinfo=UTC))  # a Thursday
    accounts = AccountService(db, starting_credit=100, clock=clock)

    async def seed():
        user = await accounts.signups.create_user("dev@example.com", "correct horse")
        key, _ = await accounts.keys.create_key(user.id, limit_threshold=10, limit_retention="day")
        return user, key

    user, key = asyncio.run(seed())
    return db, clock, accounts, user, key


def _spend(accounts, clock, user, key, cost: str, at: datetime) -> None:
    clock.now = at
    record = UsageRecord("req", user.id, key.id, key.prefix, "m", "chat.completions", cost=Decimal(cost))
    asyncio.run(accounts.users.record_usage(record))


def test_spend_stays_exact_as_the_settled_part_advances(setup):
    db, clock, accounts, user, key = setup
    spend = PeriodSpend(db, clock)
    start = datetime(2025, 7, 10, 0, 5, tzinfo=UTC)
    expected = Decimal(0)
    _spend(accounts, clock, user, key, "5", start - timedelta(hours=1))  # yesterday: not in the period
    for minute in range(0, 600, 7):  # a row every 7 minutes, checked after each
        at = start + timedelta(minutes=minute)
        _spend(accounts, clock, user, key, "0.010000", at)
        expected += Decimal("0.01")
        clock.now = at + timedelta(seconds=30)
        assert asyncio.run(spend.spent(key.id, key.prefix, "day")) == expected
    for retention in ("week", "month", "no_reset"):
        with db.session() as session:  # the plain sum over the period's rows
            direct = crud.usage.spend_since(session, key.id, crud.usage.period_start(retention, clock.now))
        assert asyncio.run(spend.spent(key.id, key.prefix, retention)) == direct
    clock.now = datetime(2025, 7, 11, 0, 1, tzinfo=UTC)  # a new day: the period starts again
    assert asyncio.run(spend.spent(key.id, key.prefix, "day")) == 0
    assert asyncio.run(spend.spent(key.id, key.prefix, "week")) == expected + 5


def test_cache_slots_are_per_key_prefix_so_a_reused_id_starts_afresh(setup):
    db, clock, accounts, user, key = setup
    spend = PeriodSpend(db, clock)
    _spend(accounts, clock, user, key, "3", clock.now - timedelta(hours=3))
    clock.now += timedelta(minutes=1)
    assert asyncio.run(spend.spent(key.id, key.prefix, "day")) == 3
    assert asyncio.run(spend.spent(key.id, "otherkey", "day")) == 3  # read afresh, not from the cache
