"""Tool calls over HTTP with the scripted engine (it answers `repeat: TEXT` with TEXT)."""

from __future__ import annotations

import json
from contextlib import contextmanager

import jsonschema
import openai
import pytest

from tests.api.conftest import ALIAS_ID, SERVED_ID

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
TAGGED = '<tool_call>\n{"name": "get_weather", "arguments": {"location": "Paris"}}\n</tool_call>'
FENCED = '```json\n{"name": "get_weather", "arguments": {"location": "Oslo"}}\n```'


def ask(platform, reply: str, **extra):
    messages = [{"role": "user", "content": "repeat: " + reply}]
    return platform.client().chat.completions.create(model=ALIAS_ID, messages=messages, tools=[WEATHER], **extra)


def test_non_streaming_call(platform):
    done = ask(platform, TAGGED)
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"location": "Paris"}


def test_content_beside_calls_and_several_calls(platform):
    done = ask(platform, f"Checking both.\n{TAGGED}\n{FENCED}")
    message = done.choices[0].message
    assert message.content == "Checking both."
    assert [json.loads(c.function.arguments)["location"] for c in message.tool_calls] == ["Paris", "Oslo"]
    assert len({c.id for c in message.tool_calls}) == 2


def test_parallel_tool_calls_false_gives_one_call(platform):
    done = ask(platform, f"{TAGGED}\n{FENCED}", parallel_tool_calls=False)
    assert len(done.choices[0].message.tool_calls) == 1


@contextmanager
def without_lazy_grammar(platform):
    """The model setting `lazy_tool_grammar: false`: the answer is generated freely, then parsed."""
    backend = platform.services.registry.resolve(SERVED_ID).backend
    spec = backend.spec
    backend.spec = spec.model_copy(update={"lazy_tool_grammar": False})
    try:
        yield
    finally:
        backend.spec = spec


def test_unknown_function_names_stay_content(platform):
    reply = '{"name": "launch_rocket", "arguments": {}}'
    with without_lazy_grammar(platform):
        done = ask(platform, reply)
    assert done.choices[0].message.tool_calls == [] and done.choices[0].message.content == reply
    assert done.choices[0].finish_reason == "stop"


def test_a_started_call_to_an_unknown_function_is_held_to_an_offered_one(platform):
    """With the lazy call grammar (the default), once the model opens `{"name"` only offered names
    can follow, as llama.cpp enforces it: the call is to an offered tool, its arguments valid."""
    done = ask(platform, '{"name": "launch_rocket", "arguments": {}}')
    [call] = done.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and done.choices[0].finish_reason == "tool_calls"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_tool_choice_none_parses_nothing(platform):
    done = ask(platform, TAGGED, tool_choice="none")
    assert done.choices[0].message.tool_calls == [] and done.choices[0].finish_reason == "stop"


def _stream(platform, reply: str, **extra) -> list:
    return list(ask(platform, reply, stream=True, **extra))


def test_streaming_call_deltas_name_first_then_argument_fragments(platform):
    chunks = _stream(platform, "Let me look.\n" + TAGGED)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    content = "".join(d.content or "" for d in deltas)
    assert content == "Let me look."
    calls = [tc for d in deltas for tc in d.tool_calls or []]
    head, rest = calls[0], calls[1:]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "get_weather" and head.function.arguments == ""
    assert len(rest) > 1 and all(tc.index == 0 and tc.id is None and tc.function.name is None for tc in rest)
    assert json.loads("".join(tc.function.arguments for tc in rest)) == {"location": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_streamed_content_never_carries_markup(platform):
    chunks = _stream(platform, f"A\n{TAGGED}\nB\n{FENCED}\nC")
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == "A\nB\nC"
    assert not any(m in p for p in pieces for m in ("<", "```", "{"))
    indexes = [tc.index for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or [] if tc.id]
    assert indexes == [0, 1]


def test_streaming_matches_non_streaming(platform):
    reply = f"Sure.\n{FENCED}\n{TAGGED}"
    whole = ask(platform, reply).choices[0].message
    chunks = _stream(platform, reply)
    args: dict[int, str] = {}
    for chunk in chunks:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            args[tc.index] = args.get(tc.index, "") + (tc.function.arguments or "")
    assert [args[i] for i in sorted(args)] == [c.function.arguments for c in whole.tool_calls]


def test_n_streamed_choices_each_carry_their_calls(platform):
    chunks = _stream(platform, TAGGED, n=2)
    heads = [(c.choices[0].index, tc.function.name) for c in chunks if c.choices
             for tc in c.choices[0].delta.tool_calls or [] if tc.id]
    assert sorted(heads) == [(0, "get_weather"), (1, "get_weather")]


def test_tool_history_round_trip_is_accepted(platform):
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
        {"role": "user", "content": "repeat: It is 21 C in Paris."},
    ]
    done = platform.client().chat.completions.create(model=ALIAS_ID, messages=messages, tools=[WEATHER])
    assert done.choices[0].message.content == "It is 21 C in Paris."


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nonsense"}}}]},
         "tools[0].function.parameters"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
         "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": [{"role": "assistant", "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]},
            {"role": "user", "content": "hi"}]}, "messages"),
    ],
)
def test_inconsistent_tool_and_format_requests_are_400(platform, extra, param):
    body = {"messages": [{"role": "user", "content": "hi"}], **extra}
    with pytest.raises(openai.BadRequestError) as caught:
        platform.client().chat.completions.create(model=ALIAS_ID, messages=body.pop("messages"), extra_body=body)
    assert caught.value.body["param"] == param, caught.value.body
