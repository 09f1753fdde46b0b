"""Metering never loses a usage row to odd numbers and never charges more than a request held;
faults of ours (500 internal_error) leave their traceback in the server log, not in the answer.
On the in-memory fakes of tests/unit/lifecycle_fakes.py: no database, no sockets."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from coderapi.backends.served import ServedModel
from coderapi.errors import InternalError
from coderapi.limits import MemoryLimiter, RateLimits
from coderapi.protocol.chat import ChatChoice, ChatCompletion, ResponseMessage
from coderapi.services.in_flight import InFlightLimits
from coderapi.services.registry import ModelRegistry
from coderapi.services.tokenizer import TokenizerService
from tests.unit.lifecycle_fakes import MODEL, PRINCIPAL, SPEC, chat_body, raising, rig


def counted(prompt_tokens, completion_tokens):
    """A backend answer whose tally holds these counts, whatever they are."""
    async def run(tally) -> ChatCompletion:
        tally.mark_first_token()
        tally.prompt_tokens, tally.completion_tokens = prompt_tokens, completion_tokens
        choice = ChatChoice(index=0, message=ResponseMessage(content="x"), finish_reason="stop")
        return ChatCompletion(id="c", created=0, model=MODEL, choices=[choice], usage={"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0})
    return run


@pytest.mark.parametrize("odd", [-10**9, 1.5, "7", None])
async def test_odd_token_counts_are_recorded_as_zero_never_an_error(odd):
    r = rig()
    r.backend.script = counted(odd, odd)
    outcome = await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    assert outcome.answer.choices[0].message.content == "x"
    [row] = await r.rows()
    assert (row.status, row.prompt_tokens, row.completion_tokens, row.cost) == ("success", 0, 0, Decimal(0))


async def test_a_cost_over_the_hold_is_charged_at_the_hold():
    r = rig()
    r.backend.script = counted(3, 10**12)  # $2,000,000 at $2 per million: far over max_tokens 8
    await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    [row] = await r.rows()
    assert Decimal(0) < row.cost < Decimal("0.01")  # the worst case of 8 tokens and the body, as held


async def test_an_untyped_failure_is_logged_with_its_traceback_for_operators_only(caplog):
    r = rig()
    r.backend.script = raising(KeyError("secret-detail"))
    with caplog.at_level(logging.ERROR, logger="coderapi.lifecycle"), pytest.raises(InternalError) as caught:
        await r.inference.chat(chat_body(), PRINCIPAL, "req-1")
    assert "secret-detail" not in json.dumps(caught.value.to_body())
    [logged] = [rec for rec in caplog.records if rec.name == "coderapi.lifecycle"]
    assert "req-1" in logged.getMessage() and "secret-detail" in repr(logged.exc_info[1])


async def test_an_untyped_tokenizer_failure_is_logged_with_its_traceback(caplog):
    r = rig()

    async def tokenize(text: str) -> list[int]:
        raise KeyError("secret-detail")

    r.backend.tokenize = tokenize
    registry = ModelRegistry([ServedModel(SPEC, r.backend, "scripted")])
    service = TokenizerService(registry, RateLimits(MemoryLimiter(), default_rpm=0, default_tpm=0), r.metering, InFlightLimits(0, 0))
    body = json.dumps({"model": MODEL, "prompt": "hi"}).encode()
    with caplog.at_level(logging.ERROR, logger="coderapi.tokenizer"), pytest.raises(InternalError) as caught:
        await service.tokenize(body, PRINCIPAL, "req-2")
    assert "secret-detail" not in json.dumps(caught.value.to_body())
    [logged] = [rec for rec in caplog.records if rec.name == "coderapi.tokenizer"]
    assert "req-2" in logged.getMessage() and "secret-detail" in repr(logged.exc_info[1])
