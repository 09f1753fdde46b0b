"""GBNF grammars that make llama.cpp's sampler produce valid JSON, schema-valid JSON or tool calls.

Schemas are checked against the JSON Schema meta-schema first (jsonschema), then converted by
llama-cpp-python's converter, subclassed in schema_converter.py. Enforced: `type` (a list of types
keeps the other keywords), `properties`, `required`, `additionalProperties` (properties not listed
are never generated unless it allows them), `enum`, `const`, `anyOf`, `items`/`prefixItems`,
`minItems`/`maxItems`, `minLength`/`maxLength`, `pattern`, local `$ref`s, the
date/time/date-time/uuid formats; `minimum`/`maximum`/`exclusiveMinimum`/`exclusiveMaximum`/
`multipleOf` on integer and number (an automaton, numeric_grammar.py: no exponent, a number with a
"." has at most 15 digits, `multipleOf` decided in decimal); `uniqueItems` over enum/const/boolean/
null items with at most 8 values. Unsatisfiable bounds, `multipleOf` over 1000 units of its last
digit and too few distinct values for `minItems` are 400s.

With `strict: true` on a response_format, every other validation keyword (`not`, `allOf`, `oneOf`,
`if`, `patternProperties`, `minProperties`, unknown formats, `uniqueItems` over other items, ...)
is a 400 naming it and its place (schema_support.py). Otherwise, and for tool parameters, those
keywords are not enforced: the answer parses but may not validate (`oneOf` is treated as `anyOf`).
"""

from __future__ import annotations

import json
import re
from typing import Any

from coderapi.backends.local.schema_support import check_strict
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import NamedToolChoice, ResponseFormat, Tool

_ROOT = re.compile(r"^root ::=", re.MULTILINE)


def check_schema(schema: Any, param: str, what: str) -> None:
    """Refuses a schema that is not a valid JSON Schema (400 naming `param`)."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise InvalidRequest(f"{what} must be a JSON object", param=param)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{what} is not a valid JSON Schema: {exc.message}", param=param) from None


def schema_to_gbnf(schema: dict[str, Any], param: str) -> str | None:
    """The grammar of `schema` (as json_schema_to_gbnf builds it, with our converter), None without llama_cpp."""
    try:  # lazy: only the llama.cpp engine uses grammars; without it (the scripted engine) none is built
        from coderapi.backends.local.schema_converter import BoundedSchemaConverter, SchemaTooHard
    except ImportError:
        return None
    try:
        converter = BoundedSchemaConverter()
        copy = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
        converter.visit(copy, "")
        return converter.format_grammar()
    except SchemaTooHard as exc:
        raise InvalidRequest(f"Unsupported JSON schema: {exc}", param=param) from None
    except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
        raise InvalidRequest(f"Unsupported JSON schema: {exc}", param=param) from exc


def response_format_grammar(response_format: ResponseFormat | None) -> str | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return schema_to_gbnf({"type": "object"}, "response_format")
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    if schema is None:
        return schema_to_gbnf({"type": "object"}, "response_format")
    check_schema(schema, "response_format", "response_format.json_schema.schema")
    if response_format.json_schema.strict:
        check_strict(schema, "response_format")
    return schema_to_gbnf(schema, "response_format")


def check_tools(tools: list[Tool] | None) -> None:
    names = set()
    for index, tool in enumerate(tools or []):
        if tool.function.name in names:
            raise InvalidRequest(f"tools[{index}]: function {tool.function.name!r} is defined twice", param="tools")
        names.add(tool.function.name)
        check_schema(tool.function.parameters, "tools", f"tools[{index}].function.parameters")


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": tool.function.parameters or {"type": "object"},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_call_grammar(tools: list[Tool], tool_choice: object, parallel: bool) -> str | None:
    """For `required` or a named function: the output is one or more valid calls in Qwen's markup."""
    if isinstance(tool_choice, NamedToolChoice):
        chosen = [t for t in tools if t.function.name == tool_choice.function.name]
    elif tool_choice == "required":
        chosen = tools
    else:
        return None
    schema = _call_schema(chosen[0]) if len(chosen) == 1 else {"anyOf": [_call_schema(t) for t in chosen]}
    rules = schema_to_gbnf(schema, "tools")
    if rules is None:
        return None
    rules = _ROOT.sub("call ::=", rules, count=1)
    repeat = ' ("\\n" call-block)*' if parallel and not isinstance(tool_choice, NamedToolChoice) else ""
    return rules + f'\ncall-block ::= "<tool_call>\\n" call "\\n</tool_call>"\nroot ::= call-block{repeat}\n'
