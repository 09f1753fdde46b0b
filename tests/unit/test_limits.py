"""Token buckets, the RPM/TPM policy, the x-ratelimit headers and report windows: no I/O."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from coderapi.errors import InvalidRequest, RateLimited
from coderapi.limits import MemoryLimiter, RateLimits
from coderapi.limits.bucket import Take
from coderapi.limits.headers import duration
from coderapi.services.usage_window import Window
from tests.clock import FixedClock


def run(coro):
    return asyncio.run(coro)


def test_bucket_takes_refills_and_refuses_all_or_nothing():
    clock = FixedClock(1000.0)
    limiter = MemoryLimiter(clock)
    a, b = Take("a", 3, 3, 1.0), Take("b", 1, 10, 1.0)
    assert run(limiter.take([a, b])).allowed
    refused = run(limiter.take([a, b]))
    assert not refused.allowed and refused.levels[0].short and not refused.levels[1].short
    assert refused.levels[0].retry_after == pytest.approx(3.0)
    assert run(limiter.take([Take("b", 0, 10, 1.0)])).levels[0].tokens == 9  # b was not taken by the refusal
    clock.now += 3
    assert run(limiter.take([a])).allowed


def test_forced_takes_go_into_debt_and_refunds_stop_at_capacity():
    clock = FixedClock(1000.0)
    limiter = MemoryLimiter(clock)
    assert run(limiter.take([Take("t", 25, 10, 1.0, force=True)])).levels[0].tokens == -15
    assert not run(limiter.take([Take("t", 1, 10, 1.0)])).allowed
    clock.now += 16
    assert run(limiter.take([Take("t", 1, 10, 1.0)])).allowed
    assert run(limiter.take([Take("t", -100, 10, 1.0, force=True)])).levels[0].tokens == 10


def test_reserve_settle_and_headers():
    clock = FixedClock(1000.0)
    limits = RateLimits(MemoryLimiter(clock), default_rpm=60, default_tpm=600)
    quota = limits.quota(None, None)
    reservation = run(limits.reserve(7, quota, 500))
    assert reservation.headers["x-ratelimit-remaining-tokens"] == "100"
    assert reservation.headers["x-ratelimit-remaining-requests"] == "59"
    assert reservation.headers["x-ratelimit-reset-tokens"] == "50s"
    with pytest.raises(RateLimited) as caught:
        run(limits.reserve(7, quota, 200))
    assert "tokens per minute" in caught.value.message and caught.value.headers["retry-after"] == "10"
    run(limits.settle(reservation, 50))  # 450 reserved tokens were not used: they come back
    assert run(limits.peek(7, quota))["x-ratelimit-remaining-tokens"] == "550"
    big = run(limits.reserve(8, quota, 10_000))  # more than a minute's allowance: the whole bucket
    assert big.tokens == 600


def test_extend_adds_tokens_within_a_minutes_allowance_and_a_refusal_keeps_what_was_held():
    limits = RateLimits(MemoryLimiter(FixedClock(1000.0)), default_rpm=60, default_tpm=600, default_user_tpm=500)
    quota, owner = limits.quota(), limits.owner(7)
    held = run(limits.reserve(1, quota, 100, owner))  # the body's share
    run(limits.extend(held, 10**9))  # capped: the user's 500 in all
    assert held.tokens == 500 and held.headers["x-ratelimit-remaining-tokens"] == "100"  # the key's 600 - 500
    other = run(limits.reserve(2, quota, 0, owner))  # another key of the same user: the user's bucket is empty
    with pytest.raises(RateLimited) as caught:
        run(limits.extend(other, 1))
    assert "all its keys together" in caught.value.message and other.tokens == 0
    run(limits.settle(held, 0))  # nothing used: all 500 back
    run(limits.extend(other, 300))
    assert other.tokens == 300 and other.headers["x-ratelimit-remaining-requests"] == "59"  # its own key's bucket


def test_user_overrides_and_disabled_dimensions():
    limits = RateLimits(MemoryLimiter(FixedClock(1000.0)), default_rpm=60, default_tpm=600)
    assert limits.quota(5, None).rpm == 5 and limits.quota(None, 9).tpm == 9
    quota = limits.quota(1, 0)  # TPM switched off
    headers = run(limits.reserve(1, quota, 10**9)).headers
    assert "x-ratelimit-limit-tokens" not in headers and headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(RateLimited) as caught:
        run(limits.reserve(1, quota, 1))
    assert "requests per minute" in caught.value.message and caught.value.headers["retry-after"] == "60"


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (0.0004, "1ms"), (0.25, "250ms"), (1.5, "1.5s"), (60, "1m0s"), (360.25, "6m0.25s")]
)
def test_durations_read_like_openai(seconds, text):
    assert duration(seconds) == text


NOW = datetime(2026, 7, 27, 22, 15, tzinfo=timezone.utc)


def test_windows():
    assert Window.parse("24h", None, None, NOW) == Window(NOW - timedelta(hours=24), NOW)
    assert Window.parse(None, None, None, NOW).start == NOW - timedelta(days=30)
    window = Window.parse(None, "2026-07-01T00:00:00", "2026-07-02T12:00:00+02:00", NOW)
    assert window.start == datetime(2026, 7, 1, tzinfo=timezone.utc)
    assert window.end == datetime(2026, 7, 2, 10, tzinfo=timezone.utc)
    for args, param in [(("1d", "2026-01-01", None), "period"), ((None, "2026-01-01", None), "end"),
                        (("-1d", None, None), "period"), ((None, "x", "2026-01-01"), "start")]:
        with pytest.raises(InvalidRequest) as caught:
            Window.parse(*args, NOW)
        assert caught.value.param == param


def test_days_follow_the_time_zone():
    window = Window(datetime(2026, 3, 28, 12, tzinfo=timezone.utc), datetime(2026, 3, 30, 12, tzinfo=timezone.utc))
    labels, edges = window.days(ZoneInfo("Europe/Berlin"))
    assert [d.isoformat() for d in labels] == ["2026-03-28", "2026-03-29", "2026-03-30"]
    # Berlin's clocks go forward on 29 March: that day starts at 23:00 UTC, the next at 22:00 UTC
    assert edges == [datetime(2026, 3, 28, 23, tzinfo=timezone.utc), datetime(2026, 3, 29, 22, tzinfo=timezone.utc)]
