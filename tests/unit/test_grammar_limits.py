"""The static guard on schemas and GBNF grammars: hostile bounds are refused (400 naming the param) or
written as flat `{m,n}` repeats; ordinary schemas pass; each limit holds exactly at its boundary."""

from __future__ import annotations

import pytest

from coderapi.backends.coder import grammars
from coderapi.backends.coder.grammar_limits import GrammarLimits, check_gbnf
from coderapi.backends.coder.schema_limits import SchemaLimits, check_schema_limits
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import ResponseFormat, Tool

pytest.importorskip("llama_cpp")

LIMITS = GrammarLimits()


def tool(name: str, parameters: dict) -> Tool:
    return Tool.model_validate({"type": "function", "function": {"name": name, "parameters": parameters}})


def response_format(schema) -> ResponseFormat:
    return ResponseFormat.model_validate({"type": "json_schema", "json_schema": {"name": "s", "schema": schema}})


def refused_param(call) -> str:
    with pytest.raises(InvalidRequest) as caught:
        call()
    return caught.value.param


def nested_groups(depth: int) -> str:
    """What llama-cpp-python's converter writes for "a" repeated 0..depth times."""
    return "root ::= " + '("a" ' * depth + ")?" * depth + "\n"


# -- the three crashes of issue 10 (a, b, c) ------------------------------------------------------


def test_a_max_length_20000_is_refused_naming_response_format():
    rf = response_format({"type": "string", "maxLength": 20000})
    assert refused_param(lambda: grammars.response_format_grammar(rf)) == "response_format"


def test_b_pattern_with_a_20000_repeat_is_refused_naming_response_format():
    rf = response_format({"type": "string", "pattern": "^a{0,20000}$"})
    assert refused_param(lambda: grammars.response_format_grammar(rf)) == "response_format"


def test_c_tool_max_items_20000_is_refused_naming_the_tool_index():
    bad = {"type": "object", "properties": {"xs": {"type": "array", "items": {"type": "integer"}, "maxItems": 20000}}}
    tools = [tool("fine", {"type": "object", "properties": {"q": {"type": "string"}}}), tool("bad", bad)]
    assert refused_param(lambda: grammars.check_tools(tools)) == "tools[1].function.parameters"
    assert refused_param(lambda: grammars.tool_call_grammar(tools, "required", True)) == "tools[1].function.parameters"


# -- bounds written as flat repeats ----------------------------------------------------------------


def test_length_and_item_bounds_become_exact_flat_repeats():
    schema = {
        "type": "object",
        "properties": {
            "s": {"type": "string", "minLength": 2, "maxLength": 2000},
            "xs": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2000},
        },
        "required": ["s", "xs"],
    }
    grammar = grammars.response_format_grammar(response_format(schema))
    assert "char{2,2000}" in grammar
    assert '( "," space integer ){0,1999}' in grammar
    assert "(" * 20 not in grammar.replace(" ", "")  # nothing nested per repetition
    check_gbnf(grammar, "response_format")


def test_an_ordinary_schema_passes_and_its_grammar_is_unchanged_by_the_guard():
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "tags": {"type": "array", "items": {"enum": ["a", "b"]}}, "when": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[A-Z]{2,3}-[0-9]{1,4}$"},
        },
        "required": ["name", "age"],
    }
    grammar = grammars.response_format_grammar(response_format(schema))
    assert grammar == grammars.schema_to_gbnf(schema, "response_format")
    tools = [tool("f", schema)]
    assert grammars.tool_call_grammar(tools, "required", True).endswith('root ::= call-block ("\\n" call-block)*\n')


# -- schema limits at their boundaries ---------------------------------------------------------------


@pytest.mark.parametrize("keyword", ["minLength", "maxLength", "minItems", "maxItems"])
def test_counts_up_to_2000_pass_and_2001_is_refused(keyword):
    kind = "string" if "Length" in keyword else "array"
    check_schema_limits({"type": kind, keyword: 2000}, "p")
    with pytest.raises(InvalidRequest, match=keyword):
        check_schema_limits({"type": kind, keyword: 2001}, "p")


def test_pattern_repeats_up_to_200_pass():
    grammars.response_format_grammar(response_format({"type": "string", "pattern": "^a{0,200}$"}))
    for pattern in ("^a{201}$", "^(ab){3,201}$", "^x{0,5}y{250,}$"):
        with pytest.raises(InvalidRequest, match="repeat"):
            check_schema_limits({"type": "string", "pattern": pattern}, "p")
    check_schema_limits({"type": "string", "pattern": r"^\{999\}[{]9999$"}, "p")  # escaped braces are literals


def test_pattern_group_nesting_and_length_are_bounded():
    check_schema_limits({"pattern": "^" + "(" * 32 + "a" + ")" * 32 + "$"}, "p")
    with pytest.raises(InvalidRequest, match="nested"):
        check_schema_limits({"pattern": "^" + "(" * 33 + "a" + ")" * 33 + "$"}, "p")
    with pytest.raises(InvalidRequest, match="characters"):
        check_schema_limits({"pattern": "^" + "a" * 1000 + "$"}, "p")


def _objects(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"x": schema}}
    return schema


def test_ten_levels_of_objects_pass_and_eleven_are_refused():
    grammars.response_format_grammar(response_format(_objects(10)))
    with pytest.raises(InvalidRequest, match="nested more than 10"):
        grammars.response_format_grammar(response_format(_objects(11)))


def test_a_very_deep_schema_is_a_400_not_a_recursion_error():
    deep: dict = {}
    for _ in range(100_000):
        deep = {"anyOf": [deep]}
    assert refused_param(lambda: grammars.check_schema(deep, "response_format", "schema")) == "response_format"
    deep_value: list = []
    for _ in range(100_000):
        deep_value = [deep_value]
    with pytest.raises(InvalidRequest, match="64 levels"):
        check_schema_limits({"const": deep_value}, "p")


def test_properties_enum_values_and_string_characters_are_capped():
    limits = SchemaLimits()
    props = {f"p{i}": {"type": "string"} for i in range(limits.max_properties + 1)}
    with pytest.raises(InvalidRequest, match="5000 properties"):
        check_schema_limits({"type": "object", "properties": props}, "p")
    check_schema_limits({"enum": list(range(1000))}, "p")
    with pytest.raises(InvalidRequest, match="1000 enum values"):
        check_schema_limits({"anyOf": [{"enum": list(range(600))}, {"enum": list(range(401))}]}, "p")
    check_schema_limits({"enum": ["x" * 1000] * 120}, "p")
    with pytest.raises(InvalidRequest, match="120000 characters"):
        check_schema_limits({"enum": ["x" * 1000] * 120, "const": "y"}, "p")


# -- the GBNF guard at its boundaries ----------------------------------------------------------------


def test_group_nesting_up_to_the_limit_passes():
    check_gbnf(nested_groups(LIMITS.max_group_depth), "p")
    with pytest.raises(InvalidRequest, match="nested more than 256"):
        check_gbnf(nested_groups(LIMITS.max_group_depth + 1), "p")
    with pytest.raises(InvalidRequest) as caught:
        check_gbnf(nested_groups(20000), "response_format")
    assert caught.value.param == "response_format"


def test_repeat_bounds_over_2000_are_refused_not_loosened():
    check_gbnf('root ::= "a"{0,2000} "b"{2000} "c"{3,}\n', "p")
    for text in ('root ::= "a"{0,2001}\n', 'root ::= "a"{2001,}\n', 'root ::= "a"{20000}\n'):
        with pytest.raises(InvalidRequest, match="repeat bound"):
            check_gbnf(text, "p")


def test_expanded_rules_and_size_are_capped():
    check_gbnf("root ::= " + " ".join(['"a"{0,2000}'] * 9) + "\n", "p")
    with pytest.raises(InvalidRequest, match="rules and repeated items"):
        check_gbnf("root ::= " + " ".join(['"a"{0,2000}'] * 11) + "\n", "p")
    with pytest.raises(InvalidRequest, match="bytes"):
        check_gbnf('root ::= "' + "a" * LIMITS.max_bytes + '"\n', "p")


def _left_chain(n: int) -> str:
    return "root ::= r0\n" + "".join(f'r{i} ::= ("," "x")? r{i + 1}\n' for i in range(n)) + f'r{n} ::= "y"\n'


def test_leftmost_reference_chains_and_left_recursion_are_refused():
    check_gbnf(_left_chain(LIMITS.max_left_depth - 2), "p")
    with pytest.raises(InvalidRequest, match="leftmost"):
        check_gbnf(_left_chain(LIMITS.max_left_depth), "p")
    with pytest.raises(InvalidRequest, match="left recursion"):
        check_gbnf('root ::= a\na ::= b "x" | "y"\nb ::= "z"? root\n', "p")


def test_the_scanner_reads_gbnf_as_llama_cpp_does():
    text = (
        'root ::= "a(" [()\\]"] b # a comment with ( and {99999}\n'
        'b ::= (\n  "x" |\n  "\\"" )* c\n'
        "c ::=\n  [^\\n] |\n  \"{9999}\"\n"
    )
    check_gbnf(text, "p")
    with pytest.raises(InvalidRequest, match="undefined"):
        check_gbnf("root ::= missing\n", "p")


def _tools(count: int, properties: int):
    from coderapi.protocol.chat import Tool

    props = {f"p{i}": {"type": "string"} for i in range(properties)}
    return [
        Tool.model_validate({"type": "function", "function": {
            "name": f"f{i}", "parameters": {"type": "object", "properties": props}}})
        for i in range(count)
    ]


def test_all_tools_together_are_held_to_one_schemas_budget():
    from coderapi.backends.coder.grammars import check_tools

    check_tools(_tools(128, 30))  # 3,840 properties in all: fine
    with pytest.raises(InvalidRequest) as refused:
        check_tools(_tools(128, 60))  # each tool is small; together 7,680 properties
    assert refused.value.param == "tools" and "in all" in refused.value.message
