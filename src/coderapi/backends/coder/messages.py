"""Wire messages -> the plain dicts a Hugging Face chat template expects."""

from __future__ import annotations

from typing import Any

from coderapi.errors import InvalidRequest
from coderapi.protocol.chat import AssistantMessage, ChatMessage, Tool, content_text
from coderapi.protocol.json_text import JsonTextError, parse_json_text


def _arguments(raw: str, index: int) -> Any:
    # `arguments` is a JSON string on the wire; templates encode it again with tojson,
    # so parse it first or the model sees it encoded twice.
    try:
        return parse_json_text(raw) if raw.strip() else {}
    except JsonTextError as exc:
        raise InvalidRequest(
            f"messages[{index}].tool_calls: arguments is not valid JSON ({exc})", param="messages"
        ) from None


def template_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    rendered: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        role = "system" if message.role == "developer" else message.role
        item: dict[str, Any] = {"role": role, "content": content_text(message.content)}
        if isinstance(message, AssistantMessage) and message.tool_calls:
            item["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": _arguments(call.function.arguments, index)},
                }
                for call in message.tool_calls
            ]
        if message.role == "tool":
            item["tool_call_id"] = message.tool_call_id
        if getattr(message, "name", None):
            item["name"] = message.name
        rendered.append(item)
    return rendered


def template_tools(tools: list[Tool] | None) -> list[dict[str, Any]] | None:
    if not tools:
        return None
    return [{"type": "function", "function": tool.function.model_dump(exclude_none=True)} for tool in tools]
