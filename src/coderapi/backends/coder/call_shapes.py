"""Which JSON values are tool calls: the shapes Qwen2.5-Coder writes, offered names only."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from coderapi.protocol.json_text import parse_json_text


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ParsedCall:
    name: str
    arguments: str  # JSON text of an object
    id: str = field(default_factory=new_call_id)


def _arguments(item: dict[str, Any]) -> dict | None:
    args = item.get("arguments", item.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = parse_json_text(args) if args.strip() else {}
        except ValueError:
            return None
    return args if isinstance(args, dict) else None


def _one_call(item: object, names: set[str]) -> ParsedCall | None:
    if not isinstance(item, dict):
        return None
    function = item.get("function")
    if isinstance(function, dict):  # {"type": "function", "function": {"name": ..., "arguments": ...}}
        item = function
    elif isinstance(function, str) and "name" not in item:  # {"function": "name", "arguments": ...}
        item = {**item, "name": function}
    name = item.get("name")
    if not isinstance(name, str) or name not in names:
        return None
    args = _arguments(item)
    if args is None:
        return None
    return ParsedCall(name=name, arguments=json.dumps(args, ensure_ascii=False))


def calls_in(payload: object, names: set[str]) -> list[ParsedCall] | None:
    """The calls in a parsed JSON value (one call object or a list of them), or None."""
    items = payload if isinstance(payload, list) else [payload]
    calls = [_one_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls
