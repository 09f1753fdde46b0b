"""Bounds on a JSON Schema, checked before jsonschema or the grammar converter walk it.

Both of those recurse: a schema nested a few thousand levels deep would raise RecursionError (a
500) or, in C, overflow the stack; a `maxLength` of 10^9 would make the converter write a grammar
of gigabytes. `check_schema_limits` walks the schema iteratively and refuses (400 naming `param`):
- JSON nested deeper than `max_json_depth`, objects nested deeper than `max_object_depth`;
- a number past a double's range (`1e400`, read as inf);
- more than `max_properties` properties, `max_enum_values` enum values in all, or
  `max_string_chars` characters of property names, definition names, enum and const strings
  (OpenAI's published structured-output limits: 10 levels, 5000 properties, 1000 enum values,
  120,000 characters);
- minLength/maxLength/minItems/maxItems over `max_repeat` (the grammar writes them as `{m,n}`);
- a `pattern` longer than `max_pattern_chars`, with groups nested deeper than
  `max_pattern_depth` or a `{m,n}` quantifier over `max_pattern_repeat` (the converter writes
  those as nested groups, one level per optional repetition).
No llama_cpp needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from coderapi.errors import InvalidRequest


@dataclass(frozen=True)
class SchemaLimits:
    max_json_depth: int = 64
    max_object_depth: int = 10
    max_properties: int = 5_000
    max_enum_values: int = 1_000
    max_string_chars: int = 120_000
    max_repeat: int = 2_000
    max_pattern_chars: int = 1_000
    max_pattern_depth: int = 32
    max_pattern_repeat: int = 200


_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("items", "prefixItems", "anyOf", "oneOf", "allOf")
_SCHEMA_ONE = (
    "items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames",
    "additionalItems", "unevaluatedItems", "unevaluatedProperties",
)
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_QUANTIFIER = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


def check_schema_limits(schema: Any, param: str, limits: SchemaLimits = SchemaLimits()) -> None:
    _check_json_values(schema, param, limits.max_json_depth)
    _Walk(param, limits).run(schema)


def _refuse(param: str, message: str):
    raise InvalidRequest(f"{param}: {message}", param=param)


def _check_json_values(value: Any, param: str, limit: int) -> None:
    """Depth, and numbers a double holds: JSON's parser reads `1e400` as inf, which the grammar
    converter cannot bound and which an `enum` or `const` would write out as the non-JSON `Infinity`."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            _refuse(param, f"the schema is nested more than {limit} levels deep")
        if isinstance(node, float) and not math.isfinite(node):
            _refuse(param, "the schema holds a number beyond the range of a double (such as 1e400)")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


class _Walk:
    def __init__(self, param: str, limits: SchemaLimits) -> None:
        self.param, self.limits = param, limits
        self.properties = self.enum_values = self.chars = 0

    def run(self, schema: Any) -> None:
        stack = [(schema, "#", 0)]
        while stack:
            node, path, objects = stack.pop()
            if not isinstance(node, dict):
                continue
            if node.get("type") == "object" or "properties" in node:
                objects += 1
                if objects > self.limits.max_object_depth:
                    _refuse(self.param, f"objects nested more than {self.limits.max_object_depth} levels deep at {path}")
            self._node(node, path)
            stack.extend(self._children(node, path, objects))

    def _children(self, node: dict, path: str, objects: int):
        for key in _SCHEMA_MAPS:
            value = node.get(key)
            if isinstance(value, dict):
                if key != "properties":
                    self._add_chars(sum(len(k) for k in value))
                yield from ((sub, f"{path}/{key}/{name}", objects) for name, sub in value.items())
        for key in _SCHEMA_LISTS:
            value = node.get(key)
            if isinstance(value, list):
                yield from ((sub, f"{path}/{key}/{i}", objects) for i, sub in enumerate(value))
        for key in _SCHEMA_ONE:
            if isinstance(node.get(key), dict):
                yield node[key], f"{path}/{key}", objects

    def _node(self, node: dict, path: str) -> None:
        limits = self.limits
        properties = node.get("properties")
        if isinstance(properties, dict):
            self.properties += len(properties)
            if self.properties > limits.max_properties:
                _refuse(self.param, f"more than {limits.max_properties} properties in all")
            self._add_chars(sum(len(k) for k in properties))
        enum = node.get("enum")
        if isinstance(enum, list):
            self.enum_values += len(enum)
            if self.enum_values > limits.max_enum_values:
                _refuse(self.param, f"more than {limits.max_enum_values} enum values in all")
            self._add_chars(sum(_text_size(v) for v in enum))
        if "const" in node:
            self._add_chars(_text_size(node["const"]))
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > limits.max_repeat:
                _refuse(self.param, f"'{key}' of {value} at {path} (at most {limits.max_repeat} can be enforced)")
        if isinstance(node.get("pattern"), str):
            self._pattern(node["pattern"], path)

    def _add_chars(self, count: int) -> None:
        self.chars += count
        if self.chars > self.limits.max_string_chars:
            _refuse(self.param, f"more than {self.limits.max_string_chars} characters of property names, "
                                "definition names, enum and const values")

    def _pattern(self, pattern: str, path: str) -> None:
        limits = self.limits
        if len(pattern) > limits.max_pattern_chars:
            _refuse(self.param, f"a 'pattern' of {len(pattern)} characters at {path} (limit {limits.max_pattern_chars})")
        depth, i, n = 0, 0, len(pattern)
        while i < n:
            c = pattern[i]
            if c == "\\":
                i += 2
                continue
            if c == "[":
                i = _class_end(pattern, i + 1)
                continue
            if c == "(":
                depth += 1
                if depth > limits.max_pattern_depth:
                    _refuse(self.param, f"'pattern' groups nested more than {limits.max_pattern_depth} deep at {path}")
            elif c == ")":
                depth -= 1
            elif c == "{":
                match = _QUANTIFIER.match(pattern, i)
                bounds = [int(b) for b in (match.groups() if match else ()) if b]
                if any(b > limits.max_pattern_repeat for b in bounds):
                    _refuse(self.param, f"a 'pattern' repeat {match.group(0)} at {path} "
                                        f"(bounds up to {limits.max_pattern_repeat} are enforced)")
            i += 1


def _class_end(pattern: str, i: int) -> int:
    n = len(pattern)
    if i < n and pattern[i] == "^":
        i += 1
    if i < n and pattern[i] == "]":
        i += 1
    while i < n and pattern[i] != "]":
        i += 2 if pattern[i] == "\\" else 1
    return i + 1


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (dict, list)):
        return len(json.dumps(value))  # depth already bounded by _check_json_values
    return 0
