"""The scripted engine keeps the llama.cpp engine's contract (tests/integration/test_llama_engine.py
checks the same on the real model): what is refused when `generate` is called, what fails at the
first iteration, and output under a grammar that the grammar accepts."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from coderapi.backends.coder.grammars import schema_to_gbnf
from coderapi.engines.base import Engine, SamplingParams
from coderapi.engines.fake import FakeEngine
from coderapi.errors import ContextLengthExceeded, InternalError, InvalidRequest, ModelNotReady, Overloaded

GREEDY = SamplingParams(max_tokens=64, temperature=0.0)


def started(**kwargs) -> FakeEngine:
    engine = FakeEngine(**kwargs)
    asyncio.run(engine.start())
    return engine


def prompt(engine: FakeEngine, user: str) -> list[int]:
    return engine.tokenize(f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")


def answer(engine: FakeEngine, ids: list[int], params: SamplingParams = GREEDY) -> str:
    async def go():
        return "".join([e.text async for e in engine.generate(ids, params)])

    return asyncio.run(go())


def test_it_is_an_engine():
    assert isinstance(FakeEngine(), Engine)


@pytest.mark.parametrize(
    ("ids", "params", "error", "param"),
    [
        ([], GREEDY, InvalidRequest, "prompt"),
        ([100, 10_000], GREEDY, InvalidRequest, "prompt"),
        ([100] * 64, GREEDY, ContextLengthExceeded, "messages"),
        ([100], SamplingParams(max_tokens=0), InvalidRequest, "max_tokens"),
        ([100], SamplingParams(logprobs=-1), InvalidRequest, "top_logprobs"),
        ([100], SamplingParams(prediction_ids=(99_999,)), InvalidRequest, "prediction"),
        ([100], SamplingParams(logit_bias={99_999: 1.0}), InvalidRequest, "logit_bias"),
    ],
    ids=["empty", "unknown-id", "context", "max-tokens", "logprobs", "prediction", "logit-bias"],
)
def test_refused_when_generate_is_called_before_any_iteration(ids, params, error, param):
    engine = started(context_length=64)
    with pytest.raises(error) as caught:
        engine.generate(ids, params)  # not iterated: the call itself raises, as llama.cpp's does
    assert caught.value.param == param


def test_an_engine_not_started_is_not_ready_at_the_call():
    with pytest.raises(ModelNotReady):
        FakeEngine().generate([100], GREEDY)


def test_a_full_queue_is_overloaded_at_the_call_and_frees_as_streams_end():
    engine = started(n_parallel=1, max_waiting=1, token_delay=0.01)
    ids = prompt(engine, "repeat: " + "x" * 50)

    async def go():
        running = engine.generate(ids, GREEDY)
        await running.__anext__()  # a generator counts once it is iterated
        queued = asyncio.ensure_future(running_to_end(engine.generate(ids, GREEDY)))
        while engine.stats().waiting < 1:
            await asyncio.sleep(0.001)
        with pytest.raises(Overloaded):
            engine.generate(ids, GREEDY)
        await running.aclose()
        assert len(await queued) == 51
        assert engine.stats().running == engine.stats().waiting == 0

    asyncio.run(go())


async def running_to_end(stream):
    return [event async for event in stream]


def test_a_bad_grammar_fails_at_the_first_iteration_and_only_that_request():
    engine = started()
    stream = engine.generate(prompt(engine, "hi"), SamplingParams(grammar="root ::= ("))  # accepted at the call
    with pytest.raises(InvalidRequest) as caught:
        asyncio.run(running_to_end(stream))
    assert caught.value.param == "grammar"
    with pytest.raises(InvalidRequest):
        answer(engine, prompt(engine, "hi"), SamplingParams(grammar='other ::= "x"'))  # no root rule
    assert answer(engine, prompt(engine, "repeat: fine")) == "fine"


def test_a_scripted_failure_is_an_internal_error_mid_stream():
    engine = started()
    seen = []

    async def go():
        async for event in engine.generate(prompt(engine, "repeat: abcdef fail after 3"), GREEDY):
            seen.append(event.text)

    with pytest.raises(InternalError):
        asyncio.run(go())
    assert seen == ["a", "b", "c"]  # three tokens, then the failure


def test_grammar_choice_follows_the_script_where_it_may():
    engine = started()
    grammar = 'root ::= "yes" | "no"'
    assert answer(engine, prompt(engine, "repeat: no way"), SamplingParams(grammar=grammar)) == "no"
    assert answer(engine, prompt(engine, "repeat: maybe"), SamplingParams(grammar=grammar)) in ("yes", "no")


SCHEMA = {
    "type": "object",
    "properties": {
        "n": {"type": "integer", "minimum": 10, "maximum": 20},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "minItems": 2},
        "name": {"type": "string", "minLength": 4, "maxLength": 6},
        "ok": {"type": "boolean"},
    },
    "required": ["n", "tags", "name", "ok"],
}


@pytest.mark.parametrize("script", ["Hello! How can I help?", '{"n": 15, "tags": ["b"', '{"n": 7}', "", '{"name": "x"}'])
def test_json_schema_grammar_gives_schema_valid_json_whatever_the_script(script):
    engine = started(script=lambda _prompt: script)
    text = answer(engine, prompt(engine, "x"), SamplingParams(max_tokens=400, grammar=schema_to_gbnf(SCHEMA, "p")))
    jsonschema.validate(json.loads(text), SCHEMA)


def test_a_valid_script_is_kept_whole_under_its_grammar():
    valid = '{"n": 12, "tags": ["a", "b", "a"], "name": "abcde", "ok": true}'
    engine = started(script=lambda _prompt: valid + " and more text")
    grammar = schema_to_gbnf(SCHEMA, "p")
    assert answer(engine, prompt(engine, "x"), SamplingParams(max_tokens=400, grammar=grammar)).rstrip() == valid
