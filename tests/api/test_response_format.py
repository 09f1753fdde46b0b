"""response_format and forced tool calls on the scripted engine, which follows the request's grammar
as llama.cpp does: the script while the grammar allows it, then the shortest text that completes it.
So the grammars the app builds are tested end to end here; every answer is validated with jsonschema."""

from __future__ import annotations

import json

import jsonschema
import pytest

from tests.api.conftest import ALIAS_ID

ORDER = {
    "type": "object",
    "properties": {
        "id": {"type": "integer", "minimum": 100, "maximum": 999},
        "status": {"enum": ["open", "shipped", "closed"]},
        "items": {"type": "array", "items": {"type": "string", "minLength": 3}, "minItems": 2, "maxItems": 4},
        "price": {"type": "number", "exclusiveMinimum": 0.5},
        "gift": {"type": "boolean"},
        "note": {"type": ["string", "null"]},
    },
    "required": ["id", "status", "items", "price", "gift"],
    "additionalProperties": False,
}
FORMATS = {
    "strict": {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER, "strict": True}},
    "loose": {"type": "json_schema", "json_schema": {"name": "order", "schema": ORDER}},
}
TOOL = {"type": "function", "function": {"name": "ship", "parameters": ORDER}}
OTHER = {"type": "function", "function": {"name": "cancel", "parameters": {
    "type": "object", "properties": {"reason": {"enum": ["late", "lost"]}}, "required": ["reason"]}}}


def chat(platform, reply: str, **extra):
    return platform.client().chat.completions.create(
        model=ALIAS_ID, messages=[{"role": "user", "content": "repeat: " + reply}], temperature=0, **extra)


def streamed_content(platform, reply: str, **extra) -> tuple[str, str]:
    chunks = list(chat(platform, reply, stream=True, **extra))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    return text, finish


@pytest.mark.parametrize("kind", FORMATS)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_schema_answer_validates_although_the_script_is_prose(platform, kind, stream):
    if stream:
        text, finish = streamed_content(platform, "Sure! Here is your order.", response_format=FORMATS[kind])
    else:
        choice = chat(platform, "Sure! Here is your order.", response_format=FORMATS[kind]).choices[0]
        text, finish = choice.message.content, choice.finish_reason
    jsonschema.validate(json.loads(text), ORDER)
    assert finish == "stop"


def test_a_valid_scripted_answer_comes_through_unchanged(platform):
    valid = '{"id": 123, "status": "shipped", "items": ["pen", "ink"], "price": 2.5, "gift": false, "note": null}'
    done = chat(platform, valid, response_format=FORMATS["strict"])
    assert done.choices[0].message.content == valid


def test_the_grammar_cuts_the_script_where_the_schema_refuses_it(platform):
    # 1234 is over the maximum (999): the grammar refuses the 4th digit and completes the object
    done = chat(platform, '{"id": 1234, "status": "lost"}', response_format=FORMATS["strict"])
    value = json.loads(done.choices[0].message.content)
    jsonschema.validate(value, ORDER)
    assert value["id"] == 123


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_json_object_gives_an_object(platform, stream):
    extra = {"response_format": {"type": "json_object"}}
    if stream:
        text, _ = streamed_content(platform, "Hello there", **extra)
    else:
        text = chat(platform, "Hello there", **extra).choices[0].message.content
    assert isinstance(json.loads(text), dict)
    scripted = chat(platform, '{"a": [1, {"b": null}]}', **extra).choices[0].message.content
    assert json.loads(scripted) == {"a": [1, {"b": None}]}


def test_text_format_is_the_script_itself(platform):
    done = chat(platform, "Plain words.", response_format={"type": "text"})
    assert done.choices[0].message.content == "Plain words."


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "ship"}}],
                         ids=["required", "named"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_forced_tool_call_has_schema_valid_arguments(platform, choice, stream):
    extra = {"tools": [TOOL, OTHER], "tool_choice": choice}
    if stream:
        chunks = list(chat(platform, "I will ship it now.", stream=True, **extra))
        deltas = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or []]
        names = [d.function.name for d in deltas if d.function.name]
        arguments = ["".join(d.function.arguments or "" for d in deltas if d.index == i) for i in range(len(names))]
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason)
    else:
        message = chat(platform, "I will ship it now.", **extra).choices[0]
        names = [c.function.name for c in message.message.tool_calls]
        arguments = [c.function.arguments for c in message.message.tool_calls]
        finish = message.finish_reason
    assert finish == "tool_calls" and len(names) == 1
    schema = {"ship": ORDER, "cancel": OTHER["function"]["parameters"]}[names[0]]
    if isinstance(choice, dict):
        assert names == ["ship"]
    jsonschema.validate(json.loads(arguments[0]), schema)


def test_named_choice_holds_a_scripted_call_to_another_tool_to_the_named_one(platform):
    script = '<tool_call>\n{"name": "cancel", "arguments": {"reason": "late"}}\n</tool_call>'
    done = chat(platform, script, tools=[TOOL, OTHER], tool_choice={"type": "function", "function": {"name": "ship"}})
    [call] = done.choices[0].message.tool_calls
    assert call.function.name == "ship"
    jsonschema.validate(json.loads(call.function.arguments), ORDER)
