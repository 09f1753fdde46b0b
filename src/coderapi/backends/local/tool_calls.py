"""Finding tool calls in what Qwen2.5-Coder writes.

Qwen's template asks for `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, but the
Coder models often answer with a ```json fenced block or a bare JSON object instead; all three
are accepted, and only for names among the offered tools.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCED = re.compile(r"```(?:json|tool_call|JSON)?\s*\n?(.*?)```", re.DOTALL)


@dataclass
class ParsedCall:
    name: str
    arguments: str  # JSON text
    id: str = field(default_factory=lambda: "call_" + secrets.token_hex(12))


@dataclass
class ParsedOutput:
    content: str | None
    calls: list[ParsedCall]


def _calls_in(payload: object, names: set[str]) -> list[ParsedCall] | None:
    items = payload if isinstance(payload, list) else [payload]
    calls = []
    for item in items:
        if not isinstance(item, dict):
            return None
        if "function" in item and isinstance(item["function"], dict):
            item = item["function"]
        name = item.get("name")
        args = item.get("arguments", item.get("parameters", {}))
        if name not in names:
            return None
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(ParsedCall(name=name, arguments=json.dumps(args, ensure_ascii=False)))
    return calls or None


def _json_values(text: str) -> list[tuple[int, int, object]]:
    """Every top-level JSON object/array in `text`, as (start, end, value)."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    while index < len(text):
        starts = [i for i in (text.find("{", index), text.find("[", index)) if i >= 0]
        if not starts:
            break
        start = min(starts)
        try:
            value, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        found.append((start, end, value))
        index = end
    return found


def parse_tool_calls(text: str, tool_names: set[str]) -> ParsedOutput:
    if not tool_names:
        return ParsedOutput(text, [])
    for pattern in (_TAGGED, _FENCED):
        calls, spans = [], []
        for match in pattern.finditer(text):
            for _, _, value in _json_values(match.group(1)):
                found = _calls_in(value, tool_names)
                if found:
                    calls.extend(found)
                    spans.append(match.span())
        if calls:
            return ParsedOutput(_remainder(text, spans), calls)
    calls, spans = [], []
    for start, end, value in _json_values(text):
        found = _calls_in(value, tool_names)
        if found:
            calls.extend(found)
            spans.append((start, end))
    return ParsedOutput(_remainder(text, spans), calls) if calls else ParsedOutput(text, [])


def _remainder(text: str, spans: list[tuple[int, int]]) -> str | None:
    pieces, last = [], 0
    for start, end in sorted(set(spans)):
        pieces.append(text[last:start])
        last = end
    pieces.append(text[last:])
    rest = "".join(pieces).strip()
    return rest or None
