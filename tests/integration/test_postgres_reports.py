"""Usage reports and period spend on a real PostgreSQL: the grouping, filters and sums in SQL."""

from __future__ import annotations

import asyncio
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from coderapi.services.accounts import AccountService, UsageRecord
from coderapi.services.spending import PeriodSpend
from coderapi.services.usage_reports import UsageReports
from coderapi.services.usage_window import Window
from coderapi.store.database import Database
from tests.clock import FixedClock
from tests.integration.test_postgres_store import schema_url  # noqa: F401 - the per-test schema fixture

pytestmark = pytest.mark.postgres
UTC = timezone.utc
START = datetime(2026, 3, 28, 12, tzinfo=UTC)


def test_reports_on_postgres(schema_url):  # noqa: F811
    url, _ = schema_url
    db = Database(url)
    db.upgrade()
    clock = FixedClock(START)
    accounts = AccountService(db, starting_credit=10, clock=clock)
    try:
        asyncio.run(_exercise(db, clock, accounts))
    finally:
        db.dispose()


async def _exercise(db, clock, accounts) -> None:
    user = await accounts.signups.create_user("pg@example.com", "correct horse")
    other = await accounts.signups.create_user("other@example.com", "correct horse")
    key, _ = await accounts.keys.create_key(user.id)
    stranger, _ = await accounts.keys.create_key(other.id)
    plan = [  # hours after START, model, status, cost
        (0, "Qwen/Qwen2.5-Coder-32B-Instruct", "success", "0.5"),
        (1, "Qwen/Qwen2.5-Coder-32B-Instruct", "error", "0"),
        (13, "Qwen/Qwen2.5-Coder-0.5B-Instruct", "cancelled", "0.25"),  # 01:00 in Berlin on the 29th
        (30, "Qwen/Qwen2.5-Coder-32B-Instruct", "refused", "0"),  # 20:00 in Berlin on the 29th
    ]
    for hours, model, status, cost in plan:
        clock.now = START + timedelta(hours=hours)
        record = UsageRecord(f"r{hours}", user.id, key.id, key.prefix, model, "chat.completions", prompt_tokens=10,
                             completion_tokens=5, cost=Decimal(cost), status=status)
        await accounts.users.record_usage(record)
    await accounts.users.record_usage(UsageRecord("x", other.id, stranger.id, stranger.prefix, "m", "completions", cost=1))
    reports = UsageReports(db)
    window = Window(START - timedelta(hours=1), START + timedelta(days=2))
    totals = await reports.totals(user.id, window)
    assert (totals.requests, totals.succeeded, totals.spend) == (4, 2, Decimal("0.75"))
    days = await reports.series(user.id, window, by=("day",), tz="Europe/Berlin")
    assert [(g.day, g.totals.requests) for g in days] == [
        (date(2026, 3, 28), 2), (date(2026, 3, 29), 2), (date(2026, 3, 30), 0)]
    by_day_model = await reports.series(user.id, window, by=("day", "model"), tz="UTC")
    assert sum(g.totals.requests for g in by_day_model) == 4 and len(by_day_model) == 3
    detail = await reports.detail(user.id, window, key_prefix=key.prefix, group_by=("model",))
    assert detail.models[0].model == "Qwen/Qwen2.5-Coder-32B-Instruct" and detail.totals.spend == Decimal("0.75")
    page = await reports.logs(user.id, window, models=["Qwen2.5-Coder-32B-Instruct"], statuses=["failed"], limit=1)
    assert page.total == 2 and page.has_more and page.items[0].status == "refused"
    clock.now = START + timedelta(days=1, hours=7)
    assert await PeriodSpend(db, clock).spent(key.id, key.prefix, "week") == Decimal("0.75")
