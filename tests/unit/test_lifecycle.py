"""An inference request admitted, answered and ended through InferenceService and its Lifecycle,
on in-memory fakes (tests/unit/lifecycle_fakes.py): no database, no sockets, no engine."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from coderapi.errors import (
    ContextLengthExceeded,
    InternalError,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    QuotaExceeded,
    RateLimited,
    UpstreamError,
)
from coderapi.services.endpoints import Endpoint
from tests.unit.lifecycle_fakes import (
    PRINCIPAL,
    answer,
    chat_body,
    hanging,
    management,
    raising,
    rig,
    streaming,
)


def _row(row) -> tuple:
    return row.status, row.status_code, row.error_code


async def test_a_whole_answer_is_recorded_once_charged_with_its_hold_dropped_and_in_flight_released():
    r = rig(per_key=2, rpm=100, tpm=100_000)
    r.backend.script = answer(2)
    outcome = await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    assert not outcome.streaming and outcome.answer.usage.completion_tokens == 2
    assert "x-ratelimit-limit-requests" in outcome.headers
    rows = await r.rows()
    assert [_row(row) for row in rows] == [("success", 200, None)]
    # 3 prompt tokens at $1/M, 2 completion tokens at $2/M
    assert rows[0].cost == Decimal("0.000007") and rows[0].endpoint == "chat.completions"
    assert [reservation for _, reservation in r.ledger.settled] == [1]  # the hold, dropped once
    assert r.in_flight.running(PRINCIPAL) == (0, 0)


async def test_a_stream_ends_the_request_where_it_is_read_to_its_end_not_before():
    r = rig(per_key=1)
    r.backend.script = streaming(3)
    outcome = await r.inference.chat(chat_body(stream=True), PRINCIPAL, "req-1")
    assert outcome.streaming
    assert await r.rows() == [] and r.in_flight.running(PRINCIPAL) == (1, 1)  # still running
    chunks = [chunk async for chunk in outcome.answer]
    assert len(chunks) == 3
    rows = await r.rows()
    assert [_row(row) for row in rows] == [("success", 200, None)] and rows[0].completion_tokens == 3
    assert r.in_flight.running(PRINCIPAL) == (0, 0)


async def test_a_backend_refusal_before_any_token_is_refused_free_and_releases_everything_once():
    for script in (raising(Overloaded("queue full")), streaming(3, Overloaded("queue full"), fail_at=0)):
        r = rig(per_key=1)
        r.backend.script = script
        with pytest.raises(Overloaded):
            await r.inference.chat(chat_body(stream=True), PRINCIPAL, "req-1")
        rows = await r.rows()
        assert [_row(row) for row in rows] == [("refused", 503, "overloaded")] and rows[0].cost == 0
        assert [reservation for _, reservation in r.ledger.settled] == [1]
        assert r.in_flight.running(PRINCIPAL) == (0, 0)


async def test_errors_before_the_first_token_that_are_not_refusals_are_errors():
    for error, code in ((ContextLengthExceeded("too long"), 400), (UpstreamError("unreachable"), 502)):
        r = rig()
        r.backend.script = raising(error)
        with pytest.raises(type(error)):
            await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
        assert [_row(row)[:2] for row in await r.rows()] == [("error", code)]


async def test_an_error_mid_stream_is_an_error_whatever_its_type():
    r = rig()
    r.backend.script = streaming(4, Overloaded("queue full"), fail_at=2)
    outcome = await r.inference.chat(chat_body(stream=True), PRINCIPAL, "req-1")
    with pytest.raises(Overloaded):
        async for _ in outcome.answer:
            pass
    rows = await r.rows()
    assert [_row(row) for row in rows] == [("error", 503, "overloaded")] and rows[0].completion_tokens == 2


async def test_an_untyped_failure_answers_500_and_is_recorded_as_an_internal_error():
    r = rig()
    r.backend.script = raising(KeyError("bug"), after_tokens=1)
    with pytest.raises(InternalError):
        await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    assert [_row(row) for row in await r.rows()] == [("error", 500, "internal_error")]


async def test_a_cancelled_request_is_cancelled_charged_for_its_tokens_and_released():
    r = rig(per_key=1)
    r.backend.script = hanging()
    task = asyncio.create_task(r.inference.chat(chat_body(), PRINCIPAL, "req-1"))
    while r.in_flight.running(PRINCIPAL) == (0, 0) or not r.ledger.holds:
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    rows = await r.rows()
    assert [_row(row) for row in rows] == [("cancelled", 499, "client_disconnected")]
    assert rows[0].completion_tokens == 1 and rows[0].cost > 0
    assert r.in_flight.running(PRINCIPAL) == (0, 0)


async def test_a_stream_closed_early_by_its_reader_is_cancelled():
    r = rig()
    r.backend.script = streaming(5)
    outcome = await r.inference.chat(chat_body(stream=True), PRINCIPAL, "req-1")
    await anext(outcome.answer)
    await outcome.answer.aclose()
    assert [_row(row) for row in await r.rows()] == [("cancelled", 499, "client_disconnected")]


async def test_completions_go_to_the_backends_complete_method():
    r = rig()
    body = b'{"model": "coder-test", "prompt": "def f():", "max_tokens": 4}'
    outcome = await r.inference.complete(body, PRINCIPAL, "req-1")
    assert outcome.answer.object == "text_completion"
    assert [row.endpoint for row in await r.rows()] == [Endpoint.COMPLETIONS.value]


# -- refusal ordering: cheapest check first, and a gate's error is a refusal -------------------


async def test_the_key_kind_is_checked_before_the_in_flight_cap():
    r = rig(per_key=1)
    r.in_flight.acquire(PRINCIPAL)  # one running already: the cap is reached
    with pytest.raises(PermissionDenied) as caught:
        await r.inference.chat(chat_body(), management(), "req-1")
    assert caught.value.code == "wrong_key_kind"
    assert [_row(row) for row in await r.rows()] == [("refused", 403, "wrong_key_kind")]


async def test_the_in_flight_cap_comes_before_the_body():
    r = rig(per_key=1)
    r.in_flight.acquire(PRINCIPAL)
    with pytest.raises(RateLimited) as caught:
        await r.inference.chat(b"{not json", PRINCIPAL, "req-1")
    assert caught.value.code == "concurrency_limit_exceeded" and caught.value.headers["retry-after"] == "1"
    assert [_row(row) for row in await r.rows()] == [("refused", 429, "concurrency_limit_exceeded")]
    assert r.in_flight.running(PRINCIPAL) == (1, 1)  # the refused one took nothing


async def test_a_bad_body_is_an_error_that_counts_in_the_rate_limit_which_comes_before_its_parse():
    r = rig(rpm=1)
    with pytest.raises(InvalidRequest) as caught:
        await r.inference.chat(chat_body(temperature=5), PRINCIPAL, "req-1")  # the minute's one request
    assert caught.value.param == "temperature"
    with pytest.raises(RateLimited):  # not parsed: refused first, "{" is no body at all
        await r.inference.chat(b"{", PRINCIPAL, "req-2")
    rows = await r.rows()
    assert [_row(row)[:2] for row in rows] == [("error", 400), ("refused", 429)]
    assert r.reservations.asked == 2  # the key was confirmed before answering either


async def test_a_request_that_processed_nothing_keeps_its_bodys_tokens_counted():
    r = rig(tpm=1000)
    body = chat_body("x" * 2000, temperature=5)  # about 520 tokens by its bytes
    with pytest.raises(InvalidRequest):
        await r.inference.chat(body, PRINCIPAL, "req-1")
    with pytest.raises(RateLimited) as caught:  # 520 + 520 > 1000: the first body's tokens stayed
        await r.inference.chat(body, PRINCIPAL, "req-2")
    assert "tokens per minute" in str(caught.value)
    await r.inference.chat(chat_body("hi"), PRINCIPAL, "req-3")  # a small one still fits


async def test_an_unknown_model_is_rate_limited_first_and_then_not_found_before_any_hold():
    r = rig(rpm=1)
    with pytest.raises(ModelNotFound):
        await r.inference.chat(chat_body(model="gpt-4o"), PRINCIPAL, "req-1")
    with pytest.raises(RateLimited):  # the unknown model's request took the minute's one request
        await r.inference.chat(chat_body(model="gpt-4o"), PRINCIPAL, "req-2")
    assert [_row(row) for row in await r.rows()] == [
        ("error", 404, "model_not_found"), ("refused", 429, "rate_limit_exceeded"),
    ]
    assert r.ledger.holds == []  # never held money for either


async def test_no_money_is_refused_after_the_rate_limits_and_settles_them():
    r = rig(rpm=5)
    r.ledger.refuse = QuotaExceeded("Your balance is used up.")
    with pytest.raises(QuotaExceeded) as caught:
        await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    assert "x-ratelimit-remaining-requests" in caught.value.headers
    assert [_row(row) for row in await r.rows()] == [("refused", 403, "insufficient_quota")]
    assert [reservation for _, reservation in r.ledger.settled] == [None]  # nothing was held


async def test_a_key_disabled_meanwhile_answers_for_a_request_refused_before_its_hold():
    r = rig()
    r.reservations.verdict = PermissionDenied("This API key is disabled.", code="key_disabled")
    with pytest.raises(PermissionDenied) as caught:
        await r.inference.chat(chat_body(temperature=5), PRINCIPAL, "req-1")
    assert caught.value.code == "key_disabled"
    assert [_row(row) for row in await r.rows()] == [("refused", 403, "key_disabled")]
