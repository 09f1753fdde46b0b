"""Streaming chat: deltas of n choices -> chunks; with tools, calls become tool-call deltas.

Without tools the text goes out as it comes. With tools offered, each choice's text passes
through its own tool parser (the model family's: tool_stream.ToolCallStream for Qwen2.5-Coder):
plain content still goes out live, a call goes out as a first tool-call delta (index, id, type, name, arguments "") and then argument fragments, and no call
markup reaches `content`. Logprobs of text still held back ride on the next chunk of that choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator

from coderapi.backends.base import RequestTally
from coderapi.backends.coder.chat_flow import PreparedChat, deltas
from coderapi.backends.coder.choice import ChoiceDelta
from coderapi.backends.coder.tool_stream import CallArguments, CallStart, ContentText, ToolEvent
from coderapi.protocol.chat import ChatCompletionChunk, ChunkChoice, Delta, DeltaToolCall, DeltaToolCallFunction
from coderapi.protocol.common import LogprobEntry, Logprobs, Usage

if TYPE_CHECKING:  # the flows are CoderBackend's; it imports them
    from coderapi.backends.coder.backend import CoderBackend


def _tool_delta(event: ToolEvent) -> Delta:
    if isinstance(event, ContentText):
        return Delta(content=event.text)
    if isinstance(event, CallStart):
        function = DeltaToolCallFunction(name=event.name, arguments="")
        return Delta(tool_calls=[DeltaToolCall(index=event.index, id=event.id, type="function", function=function)])
    assert isinstance(event, CallArguments)
    return Delta(tool_calls=[DeltaToolCall(index=event.index, function=DeltaToolCallFunction(arguments=event.fragment))])


class _ChoiceState:
    """One choice's parser and the logprobs not yet sent."""

    def __init__(self, index: int, prepared: PreparedChat, want_logprobs: bool) -> None:
        self.index = index
        tool_names = prepared.tool_names
        self.tools = prepared.tool_parser(tool_names, prepared.max_calls) if tool_names else None
        self.want_logprobs = want_logprobs
        self.logprobs: list[LogprobEntry] = []

    def _take_logprobs(self) -> Logprobs | None:
        if not self.want_logprobs or not self.logprobs:
            return None
        entries, self.logprobs = self.logprobs, []
        return Logprobs(content=entries)

    def chunks(self, delta: ChoiceDelta) -> list[ChunkChoice]:
        self.logprobs.extend(delta.logprobs)
        if self.tools is None:
            deltas = [Delta(content=delta.text)] if delta.text else []
        else:
            events = self.tools.feed(delta.text)
            if delta.finish_reason is not None:
                events += self.tools.finish()
            deltas = [_tool_delta(e) for e in events]
        out = [ChunkChoice(index=self.index, delta=d, logprobs=self._take_logprobs()) for d in deltas]
        if delta.finish_reason is not None:
            out.append(ChunkChoice(index=self.index, delta=Delta(), finish_reason=self.finish_reason(delta),
                                   logprobs=self._take_logprobs()))
        return out

    def finish_reason(self, delta: ChoiceDelta) -> str:
        if self.tools is not None and self.tools.calls and not self.tools.truncated:
            return "tool_calls"
        return delta.finish_reason


async def _chain(first: ChoiceDelta | None, rest: AsyncIterator[ChoiceDelta]) -> AsyncIterator[ChoiceDelta]:
    if first is not None:
        yield first
    async for delta in rest:
        yield delta


async def stream_chat(
    backend: CoderBackend, prepared: PreparedChat, tally: RequestTally, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=prepared.request_id, created=prepared.created, model=prepared.model, choices=choices, usage=usage
        )

    want_logprobs = prepared.params[0].logprobs is not None
    states = [
        _ChoiceState(i, prepared, want_logprobs) for i in range(len(prepared.params))
    ]
    stream = deltas(backend, prepared, tally)
    try:
        # The first token comes before the role chunk, so a refusal (queue full) is still an HTTP error.
        first = await anext(stream, None)
        for state in states:
            yield chunk([ChunkChoice(index=state.index, delta=Delta(role="assistant", content=prepared.echo_text))])
        async for delta in _chain(first, stream):
            for piece in states[delta.index].chunks(delta):
                if piece.finish_reason is not None and piece.index == 0:
                    tally.set_finish_reason(piece.finish_reason)
                yield chunk([piece])
        if include_usage:
            yield chunk([], usage=tally.usage())
    finally:
        await stream.aclose()  # the choices stop with their reader, not when collected
