"""Tool-call arguments keep the tool's declared property order, optional ones skippable.

The grammar is turned into a Python regex (its rules are not recursive for these schemas) to
check which texts it accepts.
"""

from __future__ import annotations

import json
import re
from itertools import combinations

import pytest

from coderapi.backends.coder.grammars import schema_to_gbnf

pytest.importorskip("llama_cpp")

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\[(?:[^\]\\]|\\.)*\])|([a-zA-Z0-9-]+)|(\{\d*,?\d*\})|([()|?*+])|\s+')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(x[0-9a-fA-F]{2}|.)", lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == "x"
                  and len(m.group(1)) == 3 else _ESCAPES[m.group(1)], text)


def as_regex(grammar: str, rule: str = "root") -> str:
    rules = dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())

    def body(name: str, depth: int) -> str:
        assert depth < 50, "recursive grammar"
        out, text, pos = [], rules[name], 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            assert match, text[pos:]
            pos = match.end()
            literal, klass, ref, count, op = match.groups()
            if literal is not None:
                out.append(re.escape(_unescape(literal)))
            elif klass:
                out.append(klass)
            elif ref:
                out.append(f"(?:{body(ref, depth + 1)})")
            elif count or op:
                out.append("(?:" if (count or op) == "(" else (count or op))
        return "".join(out)

    return body(rule, 0)


SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "start": {"type": "string"}, "minutes": {"type": "integer"},
                   "attendees": {"type": "string"}, "note": {"type": "string"}},
    "required": ["title", "start", "attendees"],
}
VALUES = {"title": "T", "start": "S", "minutes": 30, "attendees": "A", "note": "N"}


def text(keys) -> str:
    return json.dumps({k: VALUES[k] for k in keys})


def test_any_subset_with_the_required_ones_in_declared_order_is_accepted_and_nothing_else():
    regex = re.compile(as_regex(schema_to_gbnf(SCHEMA, "p", ordered=True)))
    names = list(SCHEMA["properties"])
    for size in range(len(names) + 1):
        for keys in combinations(names, size):
            complete = set(SCHEMA["required"]) <= set(keys)
            assert bool(regex.fullmatch(text(keys))) == complete, keys
    assert not regex.fullmatch(text(["title", "start", "attendees", "minutes"]))  # out of order
    assert not regex.fullmatch('{"title": "T", "start": "S", , "attendees": "A"}')


def test_the_default_converter_would_have_refused_the_declared_order():
    """What the ordered converter fixes: required-first refuses an optional between required ones."""
    regex = re.compile(as_regex(schema_to_gbnf(SCHEMA, "p")))
    assert not regex.fullmatch(text(["title", "start", "minutes", "attendees"]))
    ordered = re.compile(as_regex(schema_to_gbnf(SCHEMA, "p", ordered=True)))
    assert ordered.fullmatch(text(["title", "start", "minutes", "attendees"]))


def test_all_optional_and_empty_objects():
    schema = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}}
    regex = re.compile(as_regex(schema_to_gbnf(schema, "p", ordered=True)))
    for accepted in ["{}", '{"a": "x"}', '{"b": 1}', '{"a": "x", "b": 1}']:
        assert regex.fullmatch(accepted), accepted
    for refused in ['{"b": 1, "a": "x"}', '{, "b": 1}', '{"a": "x",}']:
        assert not regex.fullmatch(refused), refused
