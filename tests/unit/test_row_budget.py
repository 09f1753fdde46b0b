"""Requests turned away before doing anything leave at most so many usage rows a user a minute: one
client drove 160 refusals a second through one key, each a row. Every other row is always written."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coderapi.errors import Overloaded, RateLimited
from coderapi.services.row_budget import EmptyRowBudget
from tests.clock import FixedClock
from tests.unit.lifecycle_fakes import PRINCIPAL, chat_body, raising, rig


def test_an_owner_gets_its_rows_a_minute_and_they_come_back_with_time():
    clock = FixedClock(100.0)
    budget = EmptyRowBudget(3, clock)
    assert [budget.admits(1) for _ in range(5)] == [True, True, True, False, False]
    assert budget.admits(2)  # another user has its own
    clock.now += 20  # a third of a minute: one row back
    assert [budget.admits(1) for _ in range(2)] == [True, False]
    assert all(EmptyRowBudget(0, clock).admits(1) for _ in range(1000))  # 0: every row


def test_buckets_kept_stay_bounded():
    clock = FixedClock(100.0)
    budget = EmptyRowBudget(1, clock)
    for owner in range(30_000):
        budget.admits(owner)
        clock.now += 0.01
    assert len(budget._buckets) <= 10_100  # refilled (full) ones are dropped as it grows, once a second


async def test_refusals_past_the_budget_are_answered_counted_and_leave_no_row():
    r = rig(rpm=1, empty_rows=2)
    await r.inference.chat(chat_body(), PRINCIPAL, "req-ok")
    for n in range(5):
        with pytest.raises(RateLimited):
            await r.inference.chat(chat_body(), PRINCIPAL, f"req-{n}")
    rows = await r.rows()
    assert [row.status for row in rows] == ["success", "refused", "refused"]
    assert r.metrics.unwritten_rows._value.get() == 3
    second_key = replace(PRINCIPAL, key_id=PRINCIPAL.key_id + 1, key_prefix="second")
    await r.inference.chat(chat_body(), second_key, "req-second-ok")  # its own RPM...
    with pytest.raises(RateLimited):
        await r.inference.chat(chat_body(), second_key, "req-second")
    assert [row.status for row in (await r.rows())[3:]] == ["success"]  # ...but the user's rows
    other_user = replace(PRINCIPAL, user_id=PRINCIPAL.user_id + 1, key_id=PRINCIPAL.key_id + 2, key_prefix="other")
    await r.inference.chat(chat_body(), other_user, "req-other-ok")
    with pytest.raises(RateLimited):
        await r.inference.chat(chat_body(), other_user, "req-other")
    assert [row.status for row in (await r.rows())[4:]] == ["success", "refused"]  # another user: its own


async def test_rows_of_requests_that_held_money_are_always_written():
    r = rig(empty_rows=1)
    r.backend.script = raising(Overloaded("busy"))  # refused by the backend, after its cost hold
    for n in range(4):
        with pytest.raises(Overloaded):
            await r.inference.chat(chat_body(), PRINCIPAL, f"req-{n}")
    rows = await r.rows()
    assert [row.status for row in rows] == ["refused"] * 4 and len(r.ledger.holds) == 4
    assert r.metrics.unwritten_rows._value.get() == 0
