"""Grammars from JSON schemas and tools; invalid schemas are 400s naming the parameter."""

from __future__ import annotations

import pytest

from coderapi.backends.local import grammars
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import ChatCompletionRequest, ResponseFormat, Tool
from coderapi.protocol.completions import CompletionRequest

pytest.importorskip("llama_cpp")


def tool(name: str, parameters: dict | None = None) -> Tool:
    function = {"name": name, **({"parameters": parameters} if parameters is not None else {})}
    return Tool.model_validate({"type": "function", "function": function})


def response_format(schema) -> ResponseFormat:
    return ResponseFormat.model_validate({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})


def test_text_needs_no_grammar_and_json_object_gets_one():
    assert grammars.response_format_grammar(None) is None
    assert grammars.response_format_grammar(ResponseFormat(type="text")) is None
    assert "object ::=" in grammars.response_format_grammar(ResponseFormat(type="json_object"))


def test_schema_grammar_names_the_properties():
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "n": {"enum": [1, 2]}}, "required": ["city"]}
    grammar = grammars.response_format_grammar(response_format(schema))
    assert "root ::=" in grammar and '\\"city\\"' in grammar


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "objekt"},
        {"type": "object", "properties": {"a": {"type": 3}}},
        {"required": "a"},
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},
        {"type": "string", "pattern": "no-anchors"},
    ],
)
def test_invalid_or_unsupported_schemas_are_400_on_response_format(schema):
    with pytest.raises(InvalidRequest) as caught:
        grammars.response_format_grammar(response_format(schema))
    assert caught.value.param == "response_format"


def test_tool_parameters_must_be_valid_schemas_and_names_unique():
    with pytest.raises(InvalidRequest) as caught:
        grammars.check_tools([tool("f", {"type": "object", "properties": {"a": {"type": "whatever"}}})])
    assert caught.value.param == "tools"
    with pytest.raises(InvalidRequest):
        grammars.check_tools([tool("f"), tool("f")])
    grammars.check_tools([tool("f"), tool("g", {"type": "object", "properties": {"x": {"type": "integer"}}})])


def test_tool_call_grammar_per_choice():
    tools = [tool("get_weather", {"type": "object", "properties": {"location": {"type": "string"}},
                                  "required": ["location"]}), tool("git_status")]
    assert grammars.tool_call_grammar(tools, "auto", True) is None
    required = grammars.tool_call_grammar(tools, "required", True)
    assert 'root ::= call-block ("\\n" call-block)*' in required
    assert 'call-block ::= "<tool_call>\\n" call "\\n</tool_call>"' in required
    assert '\\"get_weather\\"' in required and '\\"git_status\\"' in required
    single = grammars.tool_call_grammar(tools, "required", False)
    assert "root ::= call-block\n" in single
    named = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [t.model_dump() for t in tools],
        "tool_choice": {"type": "function", "function": {"name": "git_status"}}}).tool_choice
    grammar = grammars.tool_call_grammar(tools, named, True)
    assert "root ::= call-block\n" in grammar and "get_weather" not in grammar


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"logprobs": False, "top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": {"type": "function", "function": {"name": "g"}}}, "tool_choice"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_inconsistent_chat_requests(body, param):
    with pytest.raises(InvalidRequest) as caught:
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "x"}], **body})
    assert caught.value.param == param


def test_inconsistent_completion_requests():
    for body, param in (({"suffix": "x", "echo": True}, "echo"), ({"n": 3, "best_of": 2}, "best_of")):
        with pytest.raises(InvalidRequest) as caught:
            CompletionRequest.model_validate({"model": "m", "prompt": "p", **body})
        assert caught.value.param == param
