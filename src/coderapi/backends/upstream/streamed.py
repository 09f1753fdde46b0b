"""The text an upstream answered, kept as it passes, so it can be counted here when the upstream
reports no usage (a stream the client cut short never gets to its usage chunk); and the bounds of
what a pass-through stream relays (an upstream that ignores max_tokens would stream forever)."""

from __future__ import annotations

from collections import defaultdict


class StreamedText:
    """`max_chars` of text and `max_bytes` of events at most (see `UsageCaps`): past either, `add`
    refuses the chunk and the stream is `over` its budget. So memory stays bounded too."""

    def __init__(self, max_chars: int, max_bytes: int) -> None:
        self._parts: dict[int, list[str]] = defaultdict(list)  # per choice index
        self._max_chars = max_chars
        self._max_bytes = max_bytes
        self._chars = 0
        self._bytes = 0
        self._unfinished: set[int] = set()  # choices seen that sent no finish_reason yet
        self.reported = False  # the upstream sent its usage: nothing to count here
        self.over = False  # past its bounds: relayed no further, billed at its budget

    def add(self, chunk, size: int) -> bool:
        """Keeps the chunk's text (its event was `size` bytes); False, keeping nothing, once the
        stream is past its bounds."""
        pieces = list(_pieces(chunk))
        chars = sum(len(text) for _, text in pieces)
        self._bytes += size
        if self._chars + chars > self._max_chars or self._bytes > self._max_bytes:
            self.over = True
            return False
        self._chars += chars
        for index, text in pieces:
            self._parts[index].append(text)
        for choice in getattr(chunk, "choices", None) or ():
            if choice.finish_reason is None:
                self._unfinished.add(choice.index)
            else:
                self._unfinished.discard(choice.index)
        return True

    @property
    def unfinished(self) -> list[int]:
        return sorted(self._unfinished)

    def text(self) -> str:
        return "\n".join("".join(parts) for parts in self._parts.values())


def _pieces(chunk):
    """(choice index, text) of a chunk's generated text: completions' `text`, chat's content and tool calls."""
    for choice in getattr(chunk, "choices", None) or ():
        text = getattr(choice, "text", None)  # completions
        if text:
            yield choice.index, text
        delta = getattr(choice, "delta", None)  # chat
        if delta is None:
            continue
        if delta.content:
            yield choice.index, delta.content
        for call in delta.tool_calls or ():
            for part in (call.function.name, call.function.arguments):
                if part:
                    yield choice.index, part


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
