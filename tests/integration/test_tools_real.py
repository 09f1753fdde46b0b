"""Tool calls on the real 0.5B: auto (parsed), required and named (grammar), streaming, history."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from tests.api.conftest import ALIAS_ID

pytestmark = pytest.mark.model


def sdk(platform):
    """The SDK with room for a slow, shared CPU (the api tier's client gives up after 30 s)."""
    return platform.client().with_options(timeout=300)


def _tool(name: str, description: str, properties: dict, required: list[str]) -> dict:
    parameters = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


WEATHER = _tool("get_weather", "Get the current weather in a city.",
                {"location": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                ["location"])
CALC = _tool("calculate", "Evaluate an arithmetic expression.", {"expression": {"type": "string"}}, ["expression"])
TOOLS = [WEATHER, CALC]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
PARIS = [{"role": "user", "content": "What's the weather like in Paris right now?"}]


def chat(platform, messages=PARIS, **extra):
    extra.setdefault("max_tokens", 60)
    return sdk(platform).chat.completions.create(
        model=ALIAS_ID, messages=messages, tools=TOOLS, temperature=0, **extra)


def assert_valid_calls(calls) -> None:
    for call in calls:
        assert call.id.startswith("call_") and call.type == "function"
        Draft202012Validator(SCHEMAS[call.function.name]).validate(json.loads(call.function.arguments))


def test_auto_weather_question_becomes_a_call(real_platform):
    choice = chat(real_platform).choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments)["location"] == "Paris"
    assert_valid_calls([call])


def test_auto_streamed_call_matches_non_streamed(real_platform):
    whole = chat(real_platform).choices[0].message.tool_calls
    chunks = list(chat(real_platform, stream=True))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    assert content == "" and deltas[0].id and deltas[0].function.name == "get_weather"
    assert "".join(d.function.arguments or "" for d in deltas) == whole[0].function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_auto_question_needing_no_tool_is_plain_content(real_platform):
    messages = [{"role": "user", "content": "Write a haiku about autumn leaves."}]
    choice = chat(real_platform, messages, max_tokens=40).choices[0]
    assert choice.message.tool_calls == [] and choice.message.content.strip()
    assert "<tool_call>" not in choice.message.content


def test_required_forces_a_valid_call_even_for_small_talk(real_platform):
    messages = [{"role": "user", "content": "Hello there!"}]
    choice = chat(real_platform, messages, tool_choice="required").choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    assert_valid_calls(choice.message.tool_calls)


def test_named_choice_calls_that_function_with_schema_valid_arguments(real_platform):
    messages = [{"role": "user", "content": "What is 12 times 34?"}]
    named = {"type": "function", "function": {"name": "get_weather"}}
    choice = chat(real_platform, messages, tool_choice=named).choices[0]
    assert [c.function.name for c in choice.message.tool_calls] == ["get_weather"]
    assert_valid_calls(choice.message.tool_calls)


def test_required_without_parallel_calls_gives_exactly_one(real_platform):
    messages = [{"role": "user", "content": "Weather in Paris, Rome and Oslo, please."}]
    choice = chat(real_platform, messages, tool_choice="required", parallel_tool_calls=False).choices[0]
    assert len(choice.message.tool_calls) == 1
    assert_valid_calls(choice.message.tool_calls)


def test_required_streamed_deltas(real_platform):
    chunks = list(chat(real_platform, tool_choice="required", stream=True))
    deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
    head = deltas[0]
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function" and head.function.name
    arguments = "".join(d.function.arguments or "" for d in deltas if d.index == 0)
    Draft202012Validator(SCHEMAS[head.function.name]).validate(json.loads(arguments))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ""


def test_tool_results_in_history_are_used_for_the_answer(real_platform):
    messages = PARIS + [
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"location": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 31, "condition": "sunny"}'},
        {"role": "user", "content": "So how warm is it in Paris? Answer in one sentence."},
    ]
    choice = chat(real_platform, messages, tool_choice="none", max_tokens=30).choices[0]
    assert "31" in choice.message.content and choice.message.tool_calls == []
