"""The dashboard's building blocks without HTTP: sessions, login throttle, CSRF, secret, charts,
filters."""

from __future__ import annotations

import asyncio
import stat
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from starlette.datastructures import QueryParams

from coderapi.config import Settings
from coderapi.services.accounts import AccountService
from coderapi.store.tables import WebSession
from coderapi.web import charts, filters
from coderapi.web.csrf import csrf_token, csrf_valid
from coderapi.web.report_filters import ReportFilters
from coderapi.web.secret import load_session_secret
from coderapi.services.web_sessions import SessionStore
from coderapi.services.auth_throttle import AuthThrottle, Refusal
from tests.clock import FixedClock

T0 = datetime(2025, 3, 10, 12, 0, tzinfo=timezone.utc)


def _user(db, email="u@example.com"):
    return asyncio.run(AccountService(db, starting_credit=1).signups.create_user(email, "password123"))


def test_sessions_resolve_rotate_expire_and_are_stored_hashed(db):
    clock, user = FixedClock(T0), _user(db)
    store = SessionStore(db, lifetime=timedelta(hours=1), clock=clock)
    first = asyncio.run(store.create(user.id))
    assert asyncio.run(store.resolve(first)).email == "u@example.com"
    with db.session() as session:
        assert first not in [row.id for row in session.query(WebSession)]  # only the sha256
    second = asyncio.run(store.create(user.id, replacing=first))
    assert second != first and asyncio.run(store.resolve(first)) is None
    clock.now += timedelta(hours=1, seconds=1)
    assert asyncio.run(store.resolve(second)) is None
    assert asyncio.run(store.resolve("x" * 500)) is None and asyncio.run(store.resolve("")) is None


def test_sessions_end_when_the_user_is_disabled_or_revoked(db):
    user = _user(db)
    store = SessionStore(db)
    token, other = asyncio.run(store.create(user.id)), asyncio.run(store.create(user.id))
    asyncio.run(AccountService(db, starting_credit=1).users.set_user_disabled(user.id, True))
    assert asyncio.run(store.resolve(token)) is None
    asyncio.run(AccountService(db, starting_credit=1).users.set_user_disabled(user.id, False))
    asyncio.run(store.revoke_user(user.id))
    assert asyncio.run(store.resolve(other)) is None


def test_login_throttle_counts_per_email_and_per_address_within_the_window(db):
    clock = FixedClock(T0)
    throttle = AuthThrottle(db, login_per_email=3, login_per_ip=4, login_window=timedelta(minutes=10), clock=clock)
    for minute in range(3):
        clock.now = T0 + timedelta(minutes=minute)
        assert asyncio.run(throttle.charge_login("A@Example.com ", "1.2.3.4")) is None
    refused = asyncio.run(throttle.charge_login("a@example.com", "5.6.7.8"))  # any address
    assert refused == Refusal("email", 8 * 60)  # the window began at T0 and lasts 10 minutes
    assert asyncio.run(throttle.charge_login("b@example.com", "1.2.3.4")) is None  # the 4th from 1.2.3.4
    assert asyncio.run(throttle.charge_login("c@example.com", "1.2.3.4")).reason == "ip"
    assert asyncio.run(throttle.charge_login("c@example.com", "9.9.9.9")) is None  # c was not counted
    clock.now = T0 + timedelta(minutes=10, seconds=1)
    assert asyncio.run(throttle.charge_login("a@example.com", "1.2.3.4")) is None  # a new window


def test_a_right_password_clears_the_email_but_only_refunds_the_address(db):
    throttle = AuthThrottle(db, login_per_email=2, login_per_ip=3, clock=FixedClock(T0))
    for _ in range(2):
        assert asyncio.run(throttle.charge_login("victim@example.com", "1.2.3.4")) is None
    assert asyncio.run(throttle.charge_login("mine@example.com", "1.2.3.4")) is None
    asyncio.run(throttle.login_succeeded("mine@example.com", "1.2.3.4"))  # takes back its own attempt only
    assert asyncio.run(throttle.charge_login("other@example.com", "1.2.3.4")) is None
    assert asyncio.run(throttle.charge_login("victim@example.com", "1.2.3.4")).reason == "ip"
    asyncio.run(throttle.login_succeeded("victim@example.com", "5.6.7.8"))  # the owner signs in elsewhere
    assert asyncio.run(throttle.charge_login("victim@example.com", "5.6.7.8")) is None


def test_concurrent_attempts_cannot_all_pass_the_check(db):
    """The check and the record are one statement: 40 attempts at once, exactly the limit pass."""
    throttle = AuthThrottle(db, login_per_email=5, login_per_ip=1000)

    async def burst():
        return await asyncio.gather(*(throttle.charge_login("x@example.com", f"10.0.0.{i}") for i in range(40)))

    results = asyncio.run(burst())
    assert sum(r is None for r in results) == 5


def test_sign_ups_are_counted_per_address(db):
    throttle = AuthThrottle(db, signup_per_ip=2, clock=FixedClock(T0))
    assert [asyncio.run(throttle.charge_signup("1.2.3.4")) for _ in range(2)] == [None, None]
    assert asyncio.run(throttle.charge_signup("1.2.3.4")) == Refusal("ip", 3600)
    assert asyncio.run(throttle.charge_signup("5.6.7.8")) is None


def test_csrf_tokens_are_bound_to_the_session():
    secret = b"s" * 32
    token = csrf_token(secret, "session-a")
    assert csrf_valid(secret, "session-a", token)
    assert not csrf_valid(secret, "session-b", token)
    assert not csrf_valid(b"t" * 32, "session-a", token)
    assert not csrf_valid(secret, None, token) and not csrf_valid(secret, "session-a", None)
    assert not csrf_valid(secret, "session-a", "é" * 64)


def test_session_secret_is_generated_once_with_private_permissions(tmp_path):
    settings = Settings(data_dir=tmp_path / "data", bootstrap_admin=False)
    first = load_session_secret(settings)
    assert len(first) >= 32 and load_session_secret(settings) == first
    assert stat.S_IMODE((tmp_path / "data" / "session_secret").stat().st_mode) == 0o600
    assert load_session_secret(Settings(data_dir=tmp_path, session_secret="given" * 8)) == b"given" * 8


def test_bar_chart_geometry_stacks_and_scales():
    chart = charts.bar_chart(["a", "b", "c"], [("ok", [1, 4, 0]), ("failed", [1, 0, 0])], width=300)
    assert not chart.empty and [label for _, label in chart.grid] == ["0", "1", "2", "3", "4"]
    a_ok, a_failed, b_ok = chart.bars
    assert a_ok.h == a_failed.h and a_failed.y + a_failed.h == a_ok.y  # stacked
    assert b_ok.h == pytest.approx(2 * (a_ok.h + a_failed.h))
    assert charts.bar_chart(["a"], [("x", [0])]).empty
    counts = charts.bar_chart(["a", "b"], [("requests", [1, 2])])
    assert [label for _, label in counts.grid] == ["0", "1", "2"]  # no half requests
    money = charts.bar_chart(["a"], [("usd", [0.03])], fmt=str)
    assert [label for _, label in money.grid] == ["0.0", "0.01", "0.02", "0.03"]
    assert charts.nice_step(13) == 5 and charts.nice_step(0.03) == 0.01
    assert charts.share(5, 10) == 50 and charts.share(0.001, 10) == 1 and charts.share(0, 0) == 0


def test_money_and_number_filters():
    assert filters.money(Decimal("5")) == "$5.00"
    assert filters.money(Decimal("0.000091")) == "$0.000091"
    assert filters.money(Decimal("0.0005")) == "$0.000500" and filters.money(Decimal("4.75"), 6) == "$4.750000"
    assert filters.money(Decimal("-2.5")) == "-$2.50"
    assert filters.compact(1234) == "1.2k" and filters.compact(2_500_000) == "2.5M" and filters.compact(12) == "12"
    assert filters.ago(T0 - timedelta(minutes=3), T0) == "3 minutes ago" and filters.ago(None) == "never"


def test_report_filters_round_trip_and_windows():
    query = QueryParams("period=custom&start=2025-03-01&end=2025-03-02&key=abcdefgh&status=error&page=3")
    f = ReportFilters.from_query(query)
    assert f.offset == 50 and ReportFilters.from_query(QueryParams(f.query())) == f
    window = f.window(T0)
    assert window.start == datetime(2025, 3, 1, tzinfo=timezone.utc) and window.end.date().day == 2
    odd = ReportFilters.from_query(QueryParams("period=1y&status=nope&page=-1&start=yesterday"))
    assert (odd.period, odd.status, odd.page, odd.start) == ("7d", "", 1, "")
    assert "page" not in ReportFilters().query() and "start" not in ReportFilters(start="2025-01-01").query()
