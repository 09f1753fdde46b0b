"""Finding tool calls in a whole output of Qwen2.5-Coder (the streaming machine, fed at once).

Qwen's template asks for `<tool_call>{"name": ..., "arguments": ...}</tool_call>`, but the
Coder models often answer with a ```json fenced block or a bare JSON object instead; all three
are accepted, and only for names among the offered tools (see tool_stream.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from coderapi.backends.coder.call_shapes import ParsedCall, calls_in
from coderapi.backends.coder.tool_stream import ContentText, ToolCallStream

if TYPE_CHECKING:
    from coderapi.backends.coder.families import ToolParserFactory

__all__ = ["ParsedCall", "ParsedOutput", "calls_in", "parse_tool_calls"]


@dataclass
class ParsedOutput:
    content: str | None
    calls: list[ParsedCall]
    truncated: bool = False  # the text ended inside a call


def parse_tool_calls(
    text: str, tool_names: set[str], max_calls: int | None = None, parser: ToolParserFactory | None = None
) -> ParsedOutput:
    if not tool_names:
        return ParsedOutput(text, [])
    stream = (parser or ToolCallStream)(tool_names, max_calls)
    events = stream.feed(text) + stream.finish()
    content = "".join(e.text for e in events if isinstance(e, ContentText))
    if not stream.calls:
        return ParsedOutput(content, [])
    return ParsedOutput(content or None, stream.calls, stream.truncated)
