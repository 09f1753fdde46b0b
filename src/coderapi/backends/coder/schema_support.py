"""What the schema-to-grammar conversion enforces, and the strict-mode refusal of everything else.

`check_strict` walks a response_format schema with `strict: true` and refuses (400,
`response_format`) every validation keyword the grammar would not enforce, naming the keyword and
its place in the schema. Keywords the validator does not know (annotations such as `title`,
`description`, `default`, `examples`, `$comment`, ...) are always fine. No llama_cpp needed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from coderapi.errors import InvalidRequest

MAX_UNIQUE_VALUES = 8  # uniqueItems is enforced over at most this many distinct item values
STRING_FORMATS = {"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"}
NUMERIC = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
ENFORCED = {
    "type", "enum", "const", "$ref", "anyOf", "properties", "required", "additionalProperties", "items",
    "prefixItems", "minItems", "maxItems", "uniqueItems", "minLength", "maxLength", "pattern", "format", *NUMERIC,
}
_CONTAINERS = {"$defs", "definitions"}


def finite_domain(items: Any, refs: dict[str, Any] | None = None) -> list[Any] | None:
    """The distinct values an item schema allows when that is a short list (enum, const, boolean, null)."""
    if not isinstance(items, dict):
        return None
    if "$ref" in items and refs is not None:
        items = refs.get(items["$ref"], items)
    if "const" in items:
        values = [items["const"]]
    elif "enum" in items:
        values = list(items["enum"])
    elif items.get("type") == "boolean":
        values = [True, False]
    elif items.get("type") == "null":
        values = [None]
    else:
        return None
    distinct: dict[str, Any] = {}
    for value in values:
        distinct.setdefault(_identity(value), value)
    return list(distinct.values()) if len(distinct) <= MAX_UNIQUE_VALUES else None


def _identity(value: Any) -> str:
    """Equal for values uniqueItems finds equal (1 and 1.0; but true is not 1)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "n" + str(Decimal(repr(value) if isinstance(value, float) else value).normalize())
    return "j" + json.dumps(value, sort_keys=True)


def check_strict(schema: dict[str, Any], param: str) -> None:
    from jsonschema.validators import validator_for

    keywords = set(validator_for(schema).VALIDATORS)
    _check(schema, "#", keywords, param, schema)


def _refuse(param: str, path: str, message: str):
    raise InvalidRequest(f"strict schema: {message} at {path} (the grammar cannot enforce it)", param=param)


def _check(node: Any, path: str, keywords: set[str], param: str, root: dict) -> None:
    if not isinstance(node, dict):
        if node is True or node is False:
            _refuse(param, path, "a boolean subschema")
        return
    validation = {k for k in node if k in keywords}
    for key in sorted(validation - ENFORCED):
        _refuse(param, path, f"'{key}'")
    for lead in ("$ref", "anyOf", "enum", "const"):
        if lead in node:
            allowed = {lead, "type"} if lead in ("enum", "const") else {lead}
            others = sorted(validation - allowed)
            if others:
                _refuse(param, path, f"'{others[0]}' next to '{lead}'")
    kind = node.get("type")
    _check_strings(node, path, kind, param)
    _check_arrays(node, path, param, root)
    if kind not in (None, "object") or "$ref" in node or "anyOf" in node:
        pass
    else:
        missing = [n for n in node.get("required", []) if n not in node.get("properties", {})]
        if missing:
            _refuse(param, path, f"required property {missing[0]!r} not listed in 'properties'")
    for key in ("properties", *_CONTAINERS):
        for name, sub in (node.get(key) or {}).items():
            _check(sub, f"{path}/{key}/{name}", keywords, param, root)
    for key in ("anyOf", "prefixItems"):
        for i, sub in enumerate(node.get(key) or []):
            _check(sub, f"{path}/{key}/{i}", keywords, param, root)
    items = node.get("items")
    for i, sub in enumerate(items if isinstance(items, list) else []):
        _check(sub, f"{path}/items/{i}", keywords, param, root)
    if isinstance(items, dict):
        _check(items, f"{path}/items", keywords, param, root)
    if isinstance(node.get("additionalProperties"), dict):
        _check(node["additionalProperties"], f"{path}/additionalProperties", keywords, param, root)


def _check_strings(node: dict, path: str, kind: Any, param: str) -> None:
    if kind not in (None, "string") and not (isinstance(kind, list) and "string" in kind):
        return
    if "format" in node and node["format"] not in STRING_FORMATS:
        _refuse(param, path, f"format {node['format']!r}")
    lengths = [k for k in ("minLength", "maxLength") if k in node]
    if "pattern" in node and "format" in node:
        _refuse(param, path, "'format' next to 'pattern'")
    if lengths and ("pattern" in node or "format" in node):
        _refuse(param, path, f"'{lengths[0]}' next to '{'pattern' if 'pattern' in node else 'format'}'")


def _check_arrays(node: dict, path: str, param: str, root: dict) -> None:
    items = node.get("items")
    tuple_items = items if isinstance(items, list) else node.get("prefixItems")
    if isinstance(items, dict) and "prefixItems" in node:
        _refuse(param, path, "'items' next to 'prefixItems'")
    if isinstance(tuple_items, list):
        n = len(tuple_items)
        if node.get("minItems", 0) > n or node.get("maxItems", n) < n:
            _refuse(param, path, f"'minItems'/'maxItems' other than the {n} tuple items")
    if node.get("uniqueItems") is True and node.get("maxItems", 2) > 1:
        if isinstance(tuple_items, list) or finite_domain(items, _local_refs(root, items)) is None:
            _refuse(param, path, f"'uniqueItems' (enforced only for arrays of enum/const/boolean items, "
                                 f"at most {MAX_UNIQUE_VALUES} values)")


def _local_refs(root: dict, items: Any) -> dict[str, Any] | None:
    ref = items.get("$ref") if isinstance(items, dict) else None
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    target: Any = root
    for part in ref[2:].split("/"):
        if not isinstance(target, dict) or part not in target:
            return None
        target = target[part]
    return {ref: target}
