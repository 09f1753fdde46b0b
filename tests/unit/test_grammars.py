"""Grammars from JSON schemas and tools; invalid schemas are 400s naming the parameter."""

from __future__ import annotations

import pytest

from coderapi.backends.coder import grammars
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
    assert caught.value.param == "tools[0].function.parameters"
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


def strict_format(schema, strict=True) -> ResponseFormat:
    return ResponseFormat.model_validate(
        {"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": strict}})


def parses_in_llama_cpp(grammar: str) -> bool:
    import llama_cpp

    sampler = llama_cpp.llama_sampler_init_grammar(None, grammar.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)


_STRINGS = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "object", "properties": {"a": {"type": "string", "not": {"const": "x"}}}},
         "'not' at #/properties/a"),
        ({"type": "object", "properties": {"a": {"type": "integer"}}, "if": {"required": ["a"]},
          "then": {"required": ["a"]}}, "'if' at #"),
        ({"type": "object", "patternProperties": {"^x": {"type": "string"}}}, "'patternProperties' at #"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "minProperties": 1}, "'minProperties' at #"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "dependentRequired": {"a": ["a"]}},
         "'dependentRequired'"),
        ({"type": "array", "items": {"type": "string"}, "contains": {"const": "x"}}, "'contains' at #"),
        ({"type": "object", "properties": {"mail": {"type": "string", "format": "email"}}},
         "format 'email' at #/properties/mail"),
        ({"type": "object", "properties": {"tags": _STRINGS}}, "'uniqueItems' (enforced only for arrays of enum"),
        ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a", "b"]},
         "required property 'b' not listed"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "'oneOf' at #"),
        ({"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}}]}, "'allOf' at #"),
        ({"type": "object", "properties": {"a": {"type": "string", "pattern": "^a+$", "maxLength": 3}}},
         "'maxLength' next to 'pattern'"),
        ({"$defs": {"p": {"type": "integer"}}, "$ref": "#/$defs/p", "minimum": 3}, "'minimum' next to '$ref'"),
        ({"$defs": {"p": {"type": "string", "minLength": 2, "format": "date"}}, "type": "object",
          "properties": {"a": {"$ref": "#/$defs/p"}}}, "at #/$defs/p"),
    ],
)
def test_strict_schemas_refuse_keywords_the_grammar_does_not_enforce(schema, message):
    with pytest.raises(InvalidRequest) as caught:
        grammars.response_format_grammar(strict_format(schema))
    assert caught.value.param == "response_format"
    assert message in str(caught.value)
    if "'uniqueItems'" in message or "'not'" in message or "'contains'" in message:
        assert grammars.response_format_grammar(strict_format(schema, strict=False))  # not strict: built anyway


def test_strict_schemas_with_annotations_and_enforced_keywords_pass():
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "https://example.com/s", "title": "T",
        "description": "d", "$comment": "c", "examples": [{}], "type": "object",
        "$defs": {"point": {"type": "object", "properties": {"x": {"type": "number", "minimum": -1, "maximum": 1}},
                            "required": ["x"], "additionalProperties": False}},
        "properties": {
            "name": {"type": "string", "maxLength": 20, "default": "x", "deprecated": False, "readOnly": True},
            "age": {"type": "integer", "minimum": 0, "maximum": 150, "writeOnly": False},
            "price": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 0.25},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "uniqueItems": True, "maxItems": 2},
            "flags": {"type": "array", "items": {"type": "boolean"}, "uniqueItems": True},
            "names": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "maxItems": 1},
            "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[A-Z]{2}$"},
            "kind": {"type": "string", "enum": ["x", "y"]},
            "maybe": {"type": ["integer", "null"], "minimum": 1, "maximum": 3},
            "shape": {"anyOf": [{"$ref": "#/$defs/point"}, {"type": "null"}]},
        },
        "required": ["name", "age"],
    }
    grammar = grammars.response_format_grammar(strict_format(schema))
    assert parses_in_llama_cpp(grammar)


def test_numeric_keywords_are_in_the_grammar_and_type_lists_keep_them():
    grammar = grammars.response_format_grammar(response_format(
        {"type": "object", "properties": {"n": {"type": ["integer", "null"], "minimum": 1, "maximum": 3}},
         "required": ["n"]}))
    assert parses_in_llama_cpp(grammar)
    assert "n-0 ::= num0-0 space" in grammar and "num0-0 ::= [1-3]" in grammar and "null" in grammar


@pytest.mark.parametrize(
    "schema",
    [{"type": "integer", "minimum": 5, "maximum": 4}, {"type": "integer", "minimum": 1, "maximum": 6, "multipleOf": 7},
     {"type": "number", "multipleOf": 1001},
     {"type": "array", "items": {"enum": [1, 2]}, "uniqueItems": True, "minItems": 3}],
)
def test_unsatisfiable_numbers_and_unique_arrays_are_400(schema):
    with pytest.raises(InvalidRequest) as caught:
        grammars.response_format_grammar(response_format({"type": "object", "properties": {"v": schema}}))
    assert caught.value.param == "response_format"
    with pytest.raises(InvalidRequest) as caught:
        grammars.tool_call_grammar([tool("f", {"type": "object", "properties": {"v": schema}})], "required", False)
    assert caught.value.param == "tools[0].function.parameters"


def test_unique_items_over_a_finite_domain_is_one_rule_per_used_set():
    grammar = grammars.response_format_grammar(response_format({"type": "array", "items": {"type": "boolean"},
                                                                "uniqueItems": True}))
    assert 'root ::= "[" space ( "]" space | "true" root-uniq0-1 | "false" root-uniq0-2 )' in grammar
    assert 'root-uniq0-1 ::= "]" space | "," space "false" root-uniq0-3' in grammar
    assert 'root-uniq0-3 ::= "]" space\n' in grammar
    grammar = grammars.response_format_grammar(response_format(
        {"type": "array", "items": {"enum": ["a", "b", "c", 1, 1.0]}, "uniqueItems": True, "minItems": 2,
         "maxItems": 3}))
    assert parses_in_llama_cpp(grammar)
    assert '"[" space ( "\\"a\\""' in grammar and '"1.0"' not in grammar  # 1 and 1.0 are one value


def test_tool_parameters_ignore_unique_items_over_strings_but_enforce_bounds():
    parameters = {"type": "object", "properties": {"paths": _STRINGS, "depth": {"type": "integer", "minimum": 1,
                                                                                 "maximum": 9}}}
    grammar = grammars.tool_call_grammar([tool("f", parameters)], "required", False)
    assert parses_in_llama_cpp(grammar) and "num0-0 ::= [1-9]" in grammar
