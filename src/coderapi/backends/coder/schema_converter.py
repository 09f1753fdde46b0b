"""llama-cpp-python's SchemaConverter, taught numeric bounds, multipleOf and uniqueItems.

Imported only where llama_cpp is installed. `visit` handles, before delegating to the base class
(which recurses back through `visit`):
- `integer`/`number` with minimum/maximum/exclusive*/multipleOf: the automaton of numeric_grammar;
- arrays with `uniqueItems: true` over a finite item domain (enum/const/boolean/null, at most 8
  values): one rule per set of values already used;
- `enum` as a prefix tree (enum_trie.py: the sampler's cost no longer grows with the values);
- `type` lists: each type keeps the schema's other keywords (the base class drops them);
- arrays with minItems/maxItems and no `items`: any JSON values (the base class ignores the counts);
- minLength/maxLength and minItems/maxItems as GBNF `{m,n}` repeats: the base class writes
  `(x (x (x ...)?)?)?`, one nested group per optional repetition, which llama.cpp's recursive
  parser cannot read past a few thousand (schema_limits.py keeps the bounds under 2,000, where
  llama.cpp enforces a `{m,n}` exactly).
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

from coderapi.backends.coder.automaton import render_gbnf
from coderapi.backends.coder.enum_trie import trie_alternation
from coderapi.backends.coder.numeric_grammar import NUMERIC_KEYWORDS, NumericSchemaError, number_automaton
from coderapi.backends.coder.schema_support import finite_domain

_ANY = {"type": ["object", "array", "string", "number", "boolean", "null"]}
_LEADS = ("$ref", "anyOf", "oneOf")


class SchemaTooHard(ValueError):
    pass


class BoundedSchemaConverter(SchemaConverter):
    def __init__(self) -> None:
        super().__init__(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        self._numbers: dict[str, str] = {}
        self._fresh = 0

    def visit(self, schema: Any, name: str) -> str:
        if not isinstance(schema, dict) or any(k in schema for k in _LEADS):
            return super().visit(schema, name)
        rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
        kind = schema.get("type")
        if isinstance(kind, list):
            if "const" in schema or "enum" in schema:
                return super().visit({k: v for k, v in schema.items() if k != "type"}, name)
            return self._add_rule(rule_name, self._generate_union_rule(name, [{**schema, "type": t} for t in kind]))
        if "enum" in schema and "const" not in schema and isinstance(schema["enum"], list) and schema["enum"]:
            texts = [json.dumps(value) for value in schema["enum"]]
            return self._add_rule(rule_name, trie_alternation(texts, self._format_literal))
        if "const" in schema or "enum" in schema:
            return super().visit(schema, name)
        if kind in ("integer", "number") and any(k in schema for k in NUMERIC_KEYWORDS):
            return self._add_rule(rule_name, self._number_rule(schema, rule_name) + " space")
        if kind in (None, "array") and "prefixItems" not in schema and not isinstance(schema.get("items"), list):
            if schema.get("uniqueItems") is True and schema.get("maxItems", 2) > 1:
                values = finite_domain(schema.get("items"), self._refs)
                if values is not None:
                    return self._add_rule(rule_name, self._unique_array(values, schema, rule_name))
            if kind == "array" and "items" not in schema and ("minItems" in schema or "maxItems" in schema):
                return self.visit({**schema, "items": _ANY}, name)
            if isinstance(schema.get("items"), dict) and ("minItems" in schema or "maxItems" in schema):
                return self._add_rule(rule_name, self._counted_array(schema, name, rule_name))
        if kind == "string" and ("minLength" in schema or "maxLength" in schema):
            if "pattern" not in schema and "format" not in schema:
                return self._add_rule(rule_name, self._counted_string(schema, rule_name))
        return super().visit(schema, name)

    def _counted_string(self, schema: dict[str, Any], rule_name: str) -> str:
        low, high = _counts(schema, "minLength", "maxLength", rule_name)
        char = self._add_primitive("char", PRIMITIVE_RULES["char"])
        if high == 0:
            return '"\\"" "\\"" space'
        # one rule per pair of bounds: llama.cpp expands each {m,n} into n-m rules, so strings of the
        # same bounds share the expansion
        run = self._add_rule(f"char-{low}-{'' if high is None else high}", _repeat(char, low, high))
        return f'"\\"" {run} "\\"" space'

    def _counted_array(self, schema: dict[str, Any], name: str, rule_name: str) -> str:
        low, high = _counts(schema, "minItems", "maxItems", rule_name)
        item = self.visit(schema["items"], f"{name}{'-' if name else ''}item")
        if high == 0:
            return '"[" space "]" space'
        rest = _repeat('( "," space ' + item + " )", max(low - 1, 0), None if high is None else high - 1)
        body = f"{item} {rest}" if low >= 1 else f"( {item} {rest} )?"
        return f'"[" space {body} "]" space'

    def _base(self, stem: str) -> str:
        """A rule-name prefix no rule uses yet (later rules of the same name get renamed, not these)."""
        while True:
            base = f"{stem}{self._fresh}-"
            self._fresh += 1
            if not any(rule.startswith(base) for rule in self._rules):
                return base

    def _number_rule(self, schema: dict[str, Any], rule_name: str) -> str:
        key = json.dumps({k: schema.get(k) for k in ("type", *NUMERIC_KEYWORDS)}, sort_keys=True)
        if key not in self._numbers:
            try:
                automaton = number_automaton(schema)
            except NumericSchemaError as exc:
                raise SchemaTooHard(f"{_where(rule_name)}: {exc}") from None
            base = self._base("num")
            self._rules.update(render_gbnf(automaton, lambda i: f"{base}{i}"))
            self._numbers[key] = f"{base}0"
        return self._numbers[key]

    def _unique_array(self, values: list[Any], schema: dict[str, Any], rule_name: str) -> str:
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", len(values)), len(values))
        if low > high:
            raise SchemaTooHard(
                f"{_where(rule_name)}: no array of {low} or more distinct items out of {len(values)} values "
                f"(maxItems {schema.get('maxItems')})"
            )
        literals = [self._generate_constant_rule(v) for v in values]
        base = self._base(f"{rule_name}-uniq")

        def alternatives(used: int) -> str:
            count = bin(used).count("1")
            alts = ['"]" space'] if count >= low else []
            if count < high:
                sep = '"," space ' if used else ""
                alts += [f"{sep}{lit} {base}{used | 1 << i}" for i, lit in enumerate(literals) if not used >> i & 1]
            return " | ".join(alts)

        for used in range(1, 1 << len(values)):
            if bin(used).count("1") <= high:
                self._rules[f"{base}{used}"] = alternatives(used)
        return f'"[" space ( {alternatives(0)} )'


def _counts(schema: dict[str, Any], low_key: str, high_key: str, rule_name: str) -> tuple[int, int | None]:
    low, high = int(schema.get(low_key, 0)), schema.get(high_key)
    high = None if high is None else int(high)
    if high is not None and low > high:
        raise SchemaTooHard(f"{_where(rule_name)}: {low_key} {low} is over {high_key} {high}")
    return low, high


def _repeat(item: str, low: int, high: int | None) -> str:
    """`item` repeated low..high times (high None: no upper bound) in GBNF; no nesting per repetition."""
    if high is None:
        return f"{item}*" if low == 0 else f"{item}{{{low},}}"
    if high == 0:
        return ""
    return f"{item}{{{low}}}" if low == high else f"{item}{{{low},{high}}}"


def _where(rule_name: str) -> str:
    return "the schema" if rule_name == "root" else f"'{rule_name}'"
