"""One interface at the OpenAI level, implemented by the in-process and the upstream backends."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable, Protocol, Union

from coderapi.protocol.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from coderapi.protocol.common import CompletionTokensDetails, PromptTokensDetails, Usage
from coderapi.protocol.completions import Completion, CompletionRequest


@dataclass
class RequestTally:
    """What one request consumed; filled in by the backend as it goes (through the methods
    below), read once, by the request's lifecycle, to record it."""

    started_at: float = field(default_factory=time.monotonic)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    first_token_at: float | None = None
    queue_seconds: float | None = None  # waiting for an engine slot (local engine only)
    finish_reason: str | None = None
    token_gaps: list[float] = field(default_factory=list)  # seconds between a choice's tokens (ITL)
    # Set by a backend whose counts need async work once the request ended (an upstream stream cut
    # short: its text is tokenized here); metering awaits it before recording the usage.
    count_later: Callable[[], Awaitable[None]] | None = None
    # Predicted Outputs (set when the request sent a prediction): draft tokens accepted and refused.
    predicted: bool = False
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    # Told once, at the first token: the request's lifecycle marks that generation has started.
    on_first_token: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def count_prompt(self, tokens: int, *, predicted: bool = False) -> None:
        self.prompt_tokens = tokens
        self.predicted = predicted

    def count_token(self, gap: float | None = None) -> None:
        """One more completion token; `gap`: seconds since its choice's previous token."""
        self.mark_first_token()
        if gap is not None:
            self.token_gaps.append(gap)
        self.completion_tokens += 1

    def add_completion_tokens(self, tokens: int) -> None:
        self.completion_tokens += tokens

    def note_engine(self, cached_tokens: int, queue_seconds: float | None) -> None:
        """The engine's report on the prompt: tokens found in its cache, seconds waited for a slot."""
        self.cached_tokens = cached_tokens
        if queue_seconds is not None:
            self.queue_seconds = queue_seconds

    def set_counts(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int | None = None) -> None:
        """Counts reported (or counted) whole, e.g. by an upstream: whole numbers >= 0 only (a
        backend caps them first; anything else, a float, a string, a negative, counts as 0)."""
        self.prompt_tokens = token_count(prompt_tokens)
        self.completion_tokens = token_count(completion_tokens)
        if cached_tokens is not None:
            self.cached_tokens = min(token_count(cached_tokens), self.prompt_tokens)

    def set_finish_reason(self, reason: str | None, *, keep_first: bool = False) -> None:
        if not (keep_first and self.finish_reason):
            self.finish_reason = reason

    def count_at_end(self, count: Callable[[], Awaitable[None]]) -> None:
        self.count_later = count

    def count_prediction(self, accepted: int, rejected: int) -> None:
        """More prediction tokens verified; refused ones are billed as completion tokens (OpenAI's rule)."""
        self.accepted_prediction_tokens += accepted
        self.rejected_prediction_tokens += rejected
        self.completion_tokens += rejected

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
            if self.on_first_token is not None:
                self.on_first_token()

    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            prompt_tokens_details=PromptTokensDetails(cached_tokens=self.cached_tokens),
            completion_tokens_details=CompletionTokensDetails(
                accepted_prediction_tokens=self.accepted_prediction_tokens,
                rejected_prediction_tokens=self.rejected_prediction_tokens,
            )
            if self.predicted
            else None,
        )

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started_at


def token_count(value) -> int:
    """A token count as metered: a whole number >= 0 (a backend's odd number is 0, never an error)."""
    return value if type(value) is int and value >= 0 else 0


ChatAnswer = Union[ChatCompletion, AsyncIterator[ChatCompletionChunk]]
CompletionAnswer = Union[Completion, AsyncIterator[Completion]]


class Backend(Protocol):
    served_model: str  # the weights that really answer, named in responses

    @property
    def ready(self) -> bool: ...

    @property
    def context_length(self) -> int:
        """Tokens one sequence may hold (prompt and completion), as /tokenize reports it."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def chat(self, request: ChatCompletionRequest, tally: RequestTally) -> ChatAnswer:
        """Validation and context checks raise before a stream starts; a stream yields chunks."""

    async def complete(self, request: CompletionRequest, tally: RequestTally) -> CompletionAnswer: ...

    async def tokenize(self, text: str) -> list[int]: ...

    async def tokenize_messages(self, messages: list, *, add_generation_prompt: bool = True) -> list[int]:
        """The token ids of chat messages rendered by the model's chat template."""

    async def detokenize(self, tokens: list[int]) -> str: ...
