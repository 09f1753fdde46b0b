"""JSON read from text (a request's tool-call arguments, the calls a model writes) never raises
anything but a refusal: json.loads raised RecursionError on deep nesting and a bare ValueError on a
huge integer, which became 500s (and, for a model's answer, a failed request nobody paid for)."""

from __future__ import annotations

import pytest

from coderapi.backends.coder.call_shapes import calls_in
from coderapi.backends.coder.messages import template_messages
from coderapi.backends.coder.schema_limits import check_schema_limits
from coderapi.backends.coder.tool_calls import parse_tool_calls
from coderapi.backends.coder.tool_stream import ToolCallStream
from coderapi.engines.remote.errors import error_for
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.json_text import JsonTextError, parse_json_text

DEEP = "[" * 5000 + "]" * 5000
HUGE_INT = "1" * 4301
UNREADABLE = {
    "deep": '{"a": ' + DEEP + "}",
    "huge integer": '{"a": ' + HUGE_INT + "}",
    "past a double": '{"a": 1e400}',
    "past a double, negative": '{"a": [-2E+308]}',
    "past a double, no exponent": '{"a": ' + "9" * 400 + ".5}",
    "lone surrogate": '{"a": "\\ud800"}',
    "NaN": '{"a": NaN}',
    "not JSON": "{oops",
}


@pytest.mark.parametrize("text", UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_json_is_one_error_type(text):
    with pytest.raises(JsonTextError):
        parse_json_text(text)


def test_readable_json_reads_as_json_loads_would():
    assert parse_json_text('{"a": [1, 2.5, 1e300, 1e-400, "\\ud83d\\ude00", null], "b": {"c": true}}') == {
        "a": [1, 2.5, 1e300, 0.0, "😀", None], "b": {"c": True}
    }
    assert parse_json_text("[" * 200 + "]" * 200) is not None
    assert parse_json_text(b'{"n": ' + b"7" * 4300 + b"}")["n"] == int("7" * 4300)


def _calls_text(arguments: str) -> list[str]:
    """Model outputs holding one call to `f` whose arguments the parser must read whole."""
    return [
        '{"arguments": ' + arguments + ', "name": "f"}',  # name last: held until the value ends
        '[{"name": "f", "arguments": ' + arguments + "}]",
        "<tool_call>\n" + '{"arguments": ' + arguments + ', "name": "f"}' + "\n</tool_call>",
        '```json\n{"parameters": ' + arguments + ', "name": "f"}\n```',
        '{"name": "f", "arguments": ' + _as_string(arguments) + "}",  # arguments as a JSON string
    ]


def _as_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize("name", [n for n in UNREADABLE if n not in ("not JSON", "NaN")])
def test_a_model_writing_unreadable_arguments_gets_text_not_a_crash(name):
    for text in _calls_text(UNREADABLE[name]):
        whole = parse_tool_calls(text, {"f"})
        assert whole.calls == [] and whole.content, text[:60]
        stream = ToolCallStream({"f"}, None)
        for start in range(0, len(text), 997):
            stream.feed(text[start : start + 997])
        stream.finish()
        assert stream.calls == []


def test_readable_arguments_of_the_same_shapes_are_calls():
    for text in _calls_text('{"a": [[1]], "b": 1e300}'):
        calls = parse_tool_calls(text, {"f"}).calls
        assert [(c.name, parse_json_text(c.arguments)) for c in calls] == [("f", {"a": [[1]], "b": 1e300})], text


def test_calls_in_refuses_arguments_strings_it_cannot_write_back():
    assert calls_in({"name": "f", "arguments": '{"a": 1e400}'}, {"f"}) is None
    assert calls_in({"name": "f", "arguments": '{"a": 1}'}, {"f"})[0].arguments == '{"a": 1}'


@pytest.mark.parametrize("name", list(UNREADABLE), ids=list(UNREADABLE))
def test_a_request_whose_tool_call_arguments_are_unreadable_is_a_400_on_messages(name):
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": UNREADABLE[name]}}
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [call]}]}
    )
    with pytest.raises(InvalidRequest) as caught:
        template_messages(request.messages)
    assert caught.value.param == "messages" and "messages[1].tool_calls" in str(caught.value)


@pytest.mark.parametrize("schema", [
    {"type": "number", "minimum": float("inf")},
    {"enum": [1, float("-inf")]},
    {"type": "object", "properties": {"a": {"const": {"x": [float("inf")]}}}},
])
def test_a_schema_number_past_a_double_is_refused_naming_the_param(schema):
    with pytest.raises(InvalidRequest, match="beyond the range of a double") as caught:
        check_schema_limits(schema, "response_format")
    assert caught.value.param == "response_format"


def test_a_replicas_deeply_nested_error_body_is_still_an_error_not_a_recursion_error():
    error = error_for(400, b'{"error": ' + DEEP.encode() + b"}", None, "http://a:1/v1")
    assert error.status_code in (400, 502)
