"""GBNF grammars that make llama.cpp's sampler produce valid JSON, schema-valid JSON or tool calls."""

from __future__ import annotations

import json
from typing import Any

from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import NamedToolChoice, ResponseFormat, Tool


def _schema_to_gbnf(schema: dict[str, Any], param: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf  # lazy: only the local engine needs it

    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
        raise InvalidRequest(f"Unsupported or invalid JSON schema: {exc}", param=param) from exc


def response_format_grammar(response_format: ResponseFormat | None) -> str | None:
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_object":
        return _schema_to_gbnf({"type": "object"}, "response_format")
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    return _schema_to_gbnf(schema or {"type": "object"}, "response_format.json_schema.schema")


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
    """For `required` or a named function: the output is always a valid call in Qwen's markup."""
    if isinstance(tool_choice, NamedToolChoice):
        chosen = [t for t in tools if t.function.name == tool_choice.function.name]
    elif tool_choice == "required":
        chosen = tools
    else:
        return None
    schema = _call_schema(chosen[0]) if len(chosen) == 1 else {"anyOf": [_call_schema(t) for t in chosen]}
    rules = _schema_to_gbnf(schema, "tools").replace("root ::=", "call ::=", 1)
    repeat = ' ("\\n" call-block)*' if parallel and not isinstance(tool_choice, NamedToolChoice) else ""
    return rules + f'\ncall-block ::= "<tool_call>\\n" call "\\n</tool_call>"\nroot ::= call-block{repeat}\n'
