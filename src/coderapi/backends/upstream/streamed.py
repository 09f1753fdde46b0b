"""The text an upstream answered, kept as it passes, so it can be counted here when the upstream
reports no usage (a stream the client cut short never gets to its usage chunk)."""

from __future__ import annotations

from collections import defaultdict


class StreamedText:
    def __init__(self) -> None:
        self._parts: dict[int, list[str]] = defaultdict(list)  # per choice index
        self.reported = False  # the upstream sent its usage: nothing to count here

    def add(self, chunk) -> None:
        for choice in getattr(chunk, "choices", None) or ():
            parts = self._parts[choice.index]
            text = getattr(choice, "text", None)  # completions
            if text:
                parts.append(text)
            delta = getattr(choice, "delta", None)  # chat
            if delta is not None:
                if delta.content:
                    parts.append(delta.content)
                for call in delta.tool_calls or ():
                    parts.extend(filter(None, (call.function.name, call.function.arguments)))

    def text(self) -> str:
        return "\n".join("".join(parts) for parts in self._parts.values())


def answer_text(result) -> str:
    """A whole (non-streamed) answer's generated text, every choice."""
    texts = []
    for choice in result.choices:
        message = getattr(choice, "message", None)
        if message is None:
            texts.append(getattr(choice, "text", "") or "")
            continue
        texts.append(message.content or "")
        texts.extend(call.function.name + call.function.arguments for call in message.tool_calls)
    return "\n".join(texts)
