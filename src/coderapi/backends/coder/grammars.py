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

Nothing here can take the process down: a schema is bounded (schema_limits.py) before jsonschema
or the converter walk it, every grammar is bounded (grammar_limits.py) before llama.cpp sees it,
and `verify`, when the engine has one, parses it with the real llama.cpp in a sandbox process
(engines/llama_cpp/grammar_sandbox.py). Each refusal is a 400 naming `response_format` or
`tools[i].function.parameters`. All of it is synchronous CPU work: call it off the event loop.

The converter is llama-cpp-python's: without it a Coder model does not start
(`require_grammar_support`), rather than serving answers its grammars would have constrained.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable

from coderapi.backends.coder.grammar_limits import check_gbnf
from coderapi.backends.coder.schema_limits import check_schema_limits
from coderapi.backends.coder.schema_support import check_strict
from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import NamedToolChoice, ResponseFormat, Tool

_ROOT = re.compile(r"^root ::=", re.MULTILINE)

# Parses a grammar with the real llama.cpp, out of process: None when it is fine, else why not.
GrammarVerifier = Callable[[str], "str | None"]


def tool_param(index: int) -> str:
    return f"tools[{index}].function.parameters"


def checked(grammar: str | None, param: str, verify: GrammarVerifier | None) -> str | None:
    """`grammar` once the static guard, then the sandbox (if any), accept it."""
    if grammar is None:
        return None
    check_gbnf(grammar, param)
    reason = verify(grammar) if verify is not None else None
    if reason is not None:
        raise InvalidRequest(f"The grammar built for {param} was refused by llama.cpp: {reason}", param=param)
    return grammar


def check_schema(schema: Any, param: str, what: str) -> None:
    """Refuses a schema that is not a valid JSON Schema (400 naming `param`)."""
    from jsonschema import SchemaError
    from jsonschema.validators import validator_for

    if not isinstance(schema, dict):
        raise InvalidRequest(f"{what} must be a JSON object", param=param)
    check_schema_limits(schema, param)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{what} is not a valid JSON Schema: {exc.message}", param=param) from None


def require_grammar_support() -> None:
    """Raises at start when the converter cannot be imported: every engine of the Coder layer (the
    scripted one too) is given grammars, so a Coder model never runs silently without them."""
    try:
        import llama_cpp.llama_grammar  # noqa: F401  (the base of schema_converter.py)
    except ImportError as exc:
        raise RuntimeError(
            "The Coder layer builds its grammars (response_format, tool_choice, tool calls) with "
            "llama-cpp-python's JSON-schema converter, which cannot be imported "
            f"({exc}): install it (pip install 'coderapi[llama]')"
        ) from None


def schema_to_gbnf(schema: dict[str, Any], param: str, *, ordered: bool = False) -> str:
    """The grammar of `schema` (as json_schema_to_gbnf builds it, with our converter).
    `ordered`: object properties in the schema's order, optional ones skippable (ordered_objects.py)."""
    require_grammar_support()
    # imported here, not at the top: a gateway serving only pass-through models needs no llama-cpp-python
    from coderapi.backends.coder.ordered_objects import OrderedObjectConverter
    from coderapi.backends.coder.schema_converter import BoundedSchemaConverter, SchemaTooHard

    try:
        converter = OrderedObjectConverter() if ordered else BoundedSchemaConverter()
        copy = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
        converter.visit(copy, "")
        return converter.format_grammar()
    except SchemaTooHard as exc:
        raise InvalidRequest(f"Unsupported JSON schema: {exc}", param=param) from None
    except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
        raise InvalidRequest(f"Unsupported JSON schema: {exc}", param=param) from exc


def response_format_grammar(
    response_format: ResponseFormat | None, verify: GrammarVerifier | None = None
) -> str | None:
    if response_format is None or response_format.type == "text":
        return None
    param = "response_format"
    schema = response_format.json_schema.schema_ if response_format.json_schema else None
    if response_format.type == "json_object" or schema is None:
        return checked(schema_to_gbnf({"type": "object"}, param), param, verify)
    check_schema(schema, param, "response_format.json_schema.schema")
    if response_format.json_schema.strict:
        check_strict(schema, param)
    return checked(schema_to_gbnf(schema, param), param, verify)


def check_tools(tools: list[Tool] | None) -> None:
    """Each tool's schema within one schema's limits, and all of them together too: jsonschema's
    check costs ~15 ms per 20 properties, so the request as a whole is held to one schema's budget."""
    names = set()
    for index, tool in enumerate(tools or []):
        if tool.function.name in names:
            raise InvalidRequest(f"tools[{index}]: function {tool.function.name!r} is defined twice", param="tools")
        names.add(tool.function.name)
        if isinstance(tool.function.parameters, dict):
            check_schema_limits(tool.function.parameters, tool_param(index))
    if tools:
        check_schema_limits({"anyOf": [t.function.parameters or {} for t in tools]}, "tools")
    for index, tool in enumerate(tools or []):
        check_schema(tool.function.parameters, tool_param(index), tool_param(index))


def call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "name": {"const": tool.function.name},
            "arguments": tool.function.parameters or {"type": "object"},
        },
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


def tool_call_grammar(
    tools: list[Tool], tool_choice: object, parallel: bool, verify: GrammarVerifier | None = None
) -> str | None:
    """For `required` or a named function: the output is one or more valid calls in Qwen's markup.

    Each chosen tool's grammar is bounded on its own first, so a refusal names its index; when
    llama.cpp refuses the combined grammar, the tools' own grammars are tried to find the culprit.
    """
    if isinstance(tool_choice, NamedToolChoice):
        chosen = [(i, t) for i, t in enumerate(tools) if t.function.name == tool_choice.function.name]
    elif tool_choice == "required":
        chosen = list(enumerate(tools))
    else:
        return None
    if not chosen:
        raise InvalidRequest("tool_choice names a function that is not in tools", param="tool_choice")
    repeat = parallel and not isinstance(tool_choice, NamedToolChoice)
    own = []
    for index, tool in chosen:
        check_schema_limits(tool.function.parameters or {}, tool_param(index))
        grammar = _calls_grammar(schema_to_gbnf(call_schema(tool), tool_param(index)), repeat)
        own.append((index, checked(grammar, tool_param(index), None)))
    if len(own) == 1:
        index, grammar = own[0]
        return checked(grammar, tool_param(index), verify)
    combined = _calls_grammar(schema_to_gbnf({"anyOf": [call_schema(t) for _, t in chosen]}, "tools"), repeat)
    check_gbnf(combined, "tools")
    if verify is None or verify(combined) is None:
        return combined
    for index, grammar in own:
        checked(grammar, tool_param(index), verify)
    return checked(combined, "tools", verify)


def _calls_grammar(rules: str, repeat: bool) -> str:
    rules = _ROOT.sub("call ::=", rules, count=1)
    more = ' ("\\n" call-block)*' if repeat else ""
    return rules + f'\ncall-block ::= "<tool_call>\\n" call "\\n</tool_call>"\nroot ::= call-block{more}\n'
