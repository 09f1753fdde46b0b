"""tool_choice "auto" over HTTP: a call the model starts is finished under the call grammar.

The scripted engine follows its script where the grammar allows it (engines/fake_grammar.py), and
these scripted calls are valid, so these tests check the restart mechanics through the whole app:
the second generation gets the call grammar (offered names only) and the prompt continued with the
text before the call; the answer, streamed or not, is the scripted text; usage counts every
generated token and stays within max_tokens.
"""

from __future__ import annotations

import json

from tests.api.conftest import ALIAS_ID, SERVED_ID
from tests.api.test_tools import WEATHER

OTHER = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
BEFORE = "Checking. "
CALL = '{"name": "get_weather", "arguments": {"location": "Paris"}}'


def engine_of(platform):
    engine = platform.services.registry.resolve(SERVED_ID).backend.engine
    engine.requests.clear()
    return engine


def ask(platform, reply: str, **extra):
    messages = [{"role": "user", "content": "repeat: " + reply}]
    return platform.client().chat.completions.create(
        model=ALIAS_ID, messages=messages, tools=[WEATHER, OTHER], temperature=0, **extra)


def test_the_call_is_generated_again_under_the_grammar_from_the_text_before_it(platform):
    engine = engine_of(platform)
    done = ask(platform, BEFORE + CALL)
    [call] = done.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}
    assert done.choices[0].message.content == BEFORE.strip() and done.choices[0].finish_reason == "tool_calls"
    (free_ids, free), (call_ids, constrained), _after = list(engine.requests)
    assert free.grammar is None
    assert call_ids == free_ids + engine.tokenize(BEFORE)
    root = constrained.grammar.rstrip().rsplit("\n", 1)[-1]
    assert root == "root ::= call" and '"\\"get_weather\\""' in constrained.grammar
    assert '"\\"get_time\\""' in constrained.grammar and 'space ::= " "?' in constrained.grammar
    # the free phase's '{"name"' (7 tokens) and the call's end token were generated and dropped
    assert done.usage.completion_tokens == len(BEFORE + CALL) + 7 + 1 + 1


def test_streamed_answer_equals_the_whole_answer(platform):
    reply = f"Sure.\n```json\n{CALL}\n```"
    engine = engine_of(platform)
    whole = ask(platform, reply).choices[0]
    chunks = list(ask(platform, reply, stream=True))
    assert [bool(params.grammar) for _, params in engine.requests] == [False, True, False] * 2
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == whole.message.content == "Sure."
    assert deltas[0].function.name == whole.message.tool_calls[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas) == whole.message.tool_calls[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_usage_stays_within_max_tokens_across_the_restart(platform):
    engine = engine_of(platform)
    done = ask(platform, BEFORE + CALL, max_tokens=30)
    assert [params.max_tokens for _, params in engine.requests] == [30, 30 - len(BEFORE) - 7]
    assert done.usage.completion_tokens == 30 and done.choices[0].finish_reason == "length"


def test_parallel_tool_calls_false_stops_after_the_first_call(platform):
    engine = engine_of(platform)
    done = ask(platform, f"{CALL}\n{CALL}", parallel_tool_calls=False)
    assert len(done.choices[0].message.tool_calls) == 1
    assert engine.requests[1][1].grammar is not None


def test_each_choice_restarts_on_its_own(platform):
    engine = engine_of(platform)
    done = ask(platform, BEFORE + CALL, n=2)
    assert [len(c.message.tool_calls) for c in done.choices] == [1, 1]
    assert sum(1 for _, params in engine.requests if params.grammar) == 2


def test_no_call_means_one_generation_as_before(platform):
    engine = engine_of(platform)
    done = ask(platform, "Just text {with braces} and [brackets].")
    assert done.choices[0].message.content == "Just text {with braces} and [brackets]."
    assert len(engine.requests) == 1 and engine.requests[0][1].grammar is None


def test_named_or_required_choice_keeps_its_one_grammar(platform):
    engine = engine_of(platform)
    ask(platform, CALL, tool_choice="required")
    assert len(engine.requests) == 1 and "<tool_call>" in engine.requests[0][1].grammar
