"""Admission's steps and the in-flight caps, and Metering's one record, on in-memory fakes (no I/O)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.errors import PermissionDenied, RateLimited, ServiceUnavailable
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.key_cache import KeyCache
from coderapi.services.request_life import Ending, RequestLife, Status
from coderapi.services.reservations import KeyChanged
from tests.unit.lifecycle_fakes import PRINCIPAL, SPEC, chat_body, rig

# -- in-flight caps ---------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(1, 3), st.integers(1, 2)),  # key id, user id
        st.tuples(st.just("release"), st.integers(0, 20), st.just(0)),  # the n-th acquired (mod)
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(operations, st.integers(0, 3), st.integers(0, 4))
def test_in_flight_counts_follow_a_model_and_refuse_exactly_at_the_caps(ops, per_key, per_user):
    limits = InFlightLimits(per_key, per_user)
    keys: dict[int, int] = {}
    users: dict[int, int] = {}
    held: list[list] = []  # [key, user, release, released]: a released one may be released again
    for op, a, b in ops:
        if op == "acquire":
            principal = replace(PRINCIPAL, key_id=a, user_id=b)
            full = (per_key and keys.get(a, 0) >= per_key) or (per_user and users.get(b, 0) >= per_user)
            if full:
                with pytest.raises(RateLimited) as caught:
                    limits.acquire(principal)
                assert caught.value.code == "concurrency_limit_exceeded"
                continue
            held.append([a, b, limits.acquire(principal), False])
            keys[a] = keys.get(a, 0) + 1
            users[b] = users.get(b, 0) + 1
        elif held:
            entry = held[a % len(held)]
            entry[2]()  # again after the first time: counts nothing out
            if not entry[3]:
                entry[3] = True
                keys[entry[0]] -= 1
                users[entry[1]] -= 1
    for key_id in range(1, 4):
        for user_id in range(1, 3):
            running = limits.running(replace(PRINCIPAL, key_id=key_id, user_id=user_id))
            assert running == (keys.get(key_id, 0), users.get(user_id, 0))


def test_the_user_cap_holds_across_the_users_keys():
    limits = InFlightLimits(per_key=0, per_user=2)
    limits.acquire(replace(PRINCIPAL, key_id=1))
    limits.acquire(replace(PRINCIPAL, key_id=2))
    with pytest.raises(RateLimited) as caught:
        limits.acquire(replace(PRINCIPAL, key_id=3))
    assert "all its keys together" in caught.value.message


# -- the cost hold and a key that changed since it was cached --------------------------------


async def test_a_key_changed_since_cached_is_held_as_it_is_now():
    r = rig()
    fresh = replace(PRINCIPAL, rpm_limit=5)
    seen = []

    async def reserve(principal, request_id, amount, *, confirm_key):
        seen.append(principal)
        if len(seen) == 1:
            raise KeyChanged(fresh)
        return 42

    r.ledger.reserve = reserve
    from coderapi.protocol.chat import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate_json(chat_body())
    admission = r.lifecycle._admission
    hold, principal = await admission.reserve_cost(PRINCIPAL, SPEC, request, 100, "req-1")
    assert (hold.reservation_id, hold.lease, principal) == (42, None, fresh)
    assert seen == [PRINCIPAL, fresh]


async def test_a_key_that_keeps_changing_or_loses_its_scope_is_refused():
    r = rig()
    from coderapi.protocol.chat import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate_json(chat_body())
    admission = r.lifecycle._admission

    async def always_changed(principal, request_id, amount, *, confirm_key):
        raise KeyChanged(principal)

    r.ledger.reserve = always_changed
    with pytest.raises(ServiceUnavailable) as caught:
        await admission.reserve_cost(PRINCIPAL, SPEC, request, 100, "req-1")
    assert caught.value.code == "key_changing"

    async def scope_removed(principal, request_id, amount, *, confirm_key):
        raise KeyChanged(replace(principal, scopes=()))

    r.ledger.reserve = scope_removed
    with pytest.raises(PermissionDenied) as caught:
        await admission.reserve_cost(PRINCIPAL, SPEC, request, 100, "req-1")
    assert caught.value.code == "missing_scope"


# -- metering: one record per ended request ----------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(list(Status)), st.integers(0, 50), st.integers(0, 50))
def test_only_success_and_cancelled_are_charged(status, prompt, completion):
    async def scenario():
        r = rig()
        life = r.metering.open(PRINCIPAL, "chat.completions", "req-1")
        life.spec, life.model = SPEC, SPEC.id
        life.tally.set_counts(prompt, completion)
        r.metering.record(life, Ending(status, 200))
        return await r.rows()

    rows = asyncio.run(scenario())
    expected = (Decimal(prompt) * 1 + Decimal(completion) * 2) / Decimal(1_000_000)
    assert len(rows) == 1 and rows[0].status == status.value
    assert rows[0].cost == (expected.quantize(Decimal("0.000001")) if status.charged else 0)


async def test_counts_left_for_the_end_are_made_before_the_row_and_the_rate_limit_is_settled_with_them():
    r = rig()
    settled: list[int] = []
    life: RequestLife = r.metering.open(PRINCIPAL, "chat.completions", "req-1")

    async def settle(used: int) -> None:
        settled.append(used)

    async def count() -> None:
        await asyncio.sleep(0)
        life.tally.set_counts(10, 4)

    life.settle = settle
    life.tally.count_at_end(count)
    life.end()
    rows = await r.rows()
    assert (rows[0].prompt_tokens, rows[0].completion_tokens) == (10, 4) and settled == [14]


async def test_metrics_count_the_outcome_under_the_registry_s_model_name_only():
    r = rig()
    life = r.metering.open(PRINCIPAL, "chat.completions", "req-1")
    life.model = "made-up-model"  # unknown: no spec
    life.end()
    await r.rows()
    value = r.metrics.registry.get_sample_value(
        "coderapi:request_success_total", {"model_name": "unknown", "finished_reason": "success"}
    )
    assert value == 1


# -- the key cache trusts an entry only in the auth epoch it was looked up in ----------------


def test_a_newer_epoch_empties_the_key_cache_and_an_older_lookup_is_not_kept():
    cache = KeyCache(8)
    cache.sync(1)
    cache.put("digest", PRINCIPAL, 1)
    assert cache.get("digest", 1) == PRINCIPAL
    cache.sync(2)  # a key changed somewhere
    assert cache.get("digest", 2) is None
    cache.put("digest", PRINCIPAL, 1)  # looked up by a request that read the older epoch
    assert cache.get("digest", 2) is None
    cache.sync(1)  # a late reader of the older epoch does not take the cache back
    assert cache.epoch == 2 and cache.get("digest", 1) is None
