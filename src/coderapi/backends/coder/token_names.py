"""vLLM's `return_tokens_as_token_ids`: logprob tokens named "token_id:N" instead of their text.

A client that works in token ids (another coderapi's remote engine, or vLLM clients) reads the
exact id of every generated token and alternative this way, even where a token's text is not a
whole UTF-8 character or is shared by several tokens.
"""

from __future__ import annotations

from typing import AsyncIterator

from coderapi.engines.base import Engine, SamplingParams, TokenEvent, TopLogprob

PREFIX = "token_id:"


def token_name(token_id: int) -> str:
    return f"{PREFIX}{token_id}"


def named_id(name: str) -> int | None:
    """The id in a "token_id:N" name, None for anything else."""
    digits = name[len(PREFIX):] if name.startswith(PREFIX) else ""
    return int(digits) if digits.isascii() and digits.isdecimal() else None  # not "²": isdigit() takes it


class TokenIdNames:
    """`engine` as run_choice sees it, with every token (chosen and alternatives) named by its id."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def token_text(self, token_id: int) -> str:
        return token_name(token_id)

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        return self._named(self._engine.generate(prompt_ids, params))  # the engine validates now

    @staticmethod
    async def _named(events: AsyncIterator[TokenEvent]) -> AsyncIterator[TokenEvent]:
        try:
            async for event in events:
                if event.top_logprobs:
                    event.top_logprobs = [TopLogprob(t.token_id, token_name(t.token_id), t.logprob) for t in event.top_logprobs]
                yield event
        finally:
            await events.aclose()

    def __getattr__(self, name: str):
        return getattr(self._engine, name)
