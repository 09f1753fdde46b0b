"""What a pass-through request is billed: the upstream's usage, when it is usable, never more than
the request's worst case; else the gateway's own count.

An upstream's usage is a claim, not a fact: a replica that lies (1e12 tokens, negative counts,
floats, strings) must not bill more than the cost hold admitted (`services/cost_estimate.py`),
nor break the metering. So counts are whole numbers >= 0 or not used at all (counted here
instead, as when the upstream reports none), and each is capped at the request's worst case:
- completion: its budget (`max_tokens`, else the model's default, <= the context) x every choice
  of every prompt, as the hold computed it;
- prompt: the request body's bytes plus the template allowance per prompt (a token is at least
  one byte), and at most the model's context per prompt, as the hold bounds it.
Backends may not import services (the import layers): these bounds mirror
`services.cost_estimate.worst_case_tokens`, and tests/unit/test_upstream_usage.py keeps them equal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from coderapi.backends.base import RequestTally
from coderapi.backends.upstream.token_count import TokenCounter
from coderapi.config import ModelSpec
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.common import Usage
from coderapi.protocol.completions import prompt_count

log = logging.getLogger("coderapi.upstream")

CHARS_PER_TOKEN_BOUND = 64  # no tokenizer's tokens average more: text past budget x 64 is over budget
# Event bytes per token (JSON, ids, 20 top logprobs each with its bytes: ~2 KiB): past budget x 8 KiB
# and 1 MiB, a stream is sending something else (empty chunks forever, padding).
EVENT_BYTES_PER_TOKEN_BOUND = 8 * 1024
EVENT_BYTES_SLACK = 1024 * 1024
TEMPLATE_ALLOWANCE = 512  # tokens a template may add to a prompt: services.cost_estimate's


@dataclass(frozen=True)
class UsageCaps:
    """The most one pass-through request can have used (see the module's docstring)."""

    prompt: int
    completion: int

    @classmethod
    def of(cls, request, spec: ModelSpec) -> UsageCaps:
        prompts = 1 if isinstance(request, ChatCompletionRequest) else max(1, prompt_count(request.prompt))
        prompt = min(_body_bytes(request) + TEMPLATE_ALLOWANCE * prompts, spec.context_length * prompts)
        return cls(prompt=prompt, completion=_budget(request, spec) * prompts * _choices(request))

    @property
    def streamed_chars(self) -> int:
        """Characters of text a stream may relay before it is clearly over its budget."""
        return self.completion * CHARS_PER_TOKEN_BOUND

    @property
    def streamed_bytes(self) -> int:
        """Bytes of events a stream may relay (empty ones too) before it is clearly over its budget."""
        return self.completion * EVENT_BYTES_PER_TOKEN_BOUND + EVENT_BYTES_SLACK


def _body_bytes(request) -> int:
    """The bytes of the body the client sent, at most: the fields it set, compact (the forwarded
    body is longer, with the defaults the gateway sends; the hold counted the client's)."""
    return len(request.model_dump_json(exclude_unset=True, by_alias=True))


def _budget(request, spec: ModelSpec) -> int:
    """Completion tokens of one sequence at most: what was asked, else the model's default; <= the context."""
    asked = request.max_tokens
    if isinstance(request, ChatCompletionRequest):
        asked = request.max_completion_tokens or asked
    return min(asked or spec.generation.max_tokens, spec.context_length)


def _choices(request) -> int:
    return max(getattr(request, "n", None) or 1, getattr(request, "best_of", None) or 1)


@dataclass(frozen=True)
class Counts:
    prompt: int
    completion: int
    cached: int


def _whole(value) -> int | None:
    """A token count as an upstream should send it: an int >= 0 (not a bool, float or string)."""
    return value if type(value) is int and value >= 0 else None


def usable_counts(usage) -> Counts | None:
    """The counts of an upstream's raw `usage` object, or None when they cannot be used."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _whole(usage.get("prompt_tokens")), _whole(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    details = usage.get("prompt_tokens_details")
    cached = _whole(details.get("cached_tokens")) if isinstance(details, dict) else None
    return Counts(prompt, completion, cached or 0)


class UsageMeter:
    """Fills one request's tally: from the upstream's usage when usable, else counted here; capped."""

    def __init__(self, request, tally: RequestTally, caps: UsageCaps, counter: TokenCounter) -> None:
        self.request = request
        self.tally = tally
        self.caps = caps
        self._counter = counter

    def reported(self, usage) -> bool:
        """Takes the upstream's raw `usage`; False (nothing taken) when there is none or it is not usable."""
        counts = usable_counts(usage)
        if counts is None:
            if usage is not None:
                log.warning("an upstream reported usage that is not token counts (%.200r); counting here", usage)
            return False
        if counts.prompt > self.caps.prompt or counts.completion > self.caps.completion:
            log.warning("an upstream reported %d prompt and %d completion tokens, over the request's worst case "
                        "(%d, %d); billing the worst case", counts.prompt, counts.completion,
                        self.caps.prompt, self.caps.completion)
        self._set(counts.prompt, counts.completion, counts.cached)
        return True

    async def count_locally(self, completion_text: str | None) -> None:
        """Counts the prompt and `completion_text` here (None: the text ran past its budget, which
        is then what it used)."""
        prompt = await self._counter.count_prompt(self.request, self.caps.prompt)
        if completion_text is None:
            completion = self.caps.completion
        else:
            completion = await self._counter.count_text(completion_text, self.caps.completion)
        self._set(prompt, completion, 0)

    def usage(self) -> Usage:
        """The usage to show the client: what is billed."""
        return self.tally.usage()

    def _set(self, prompt: int, completion: int, cached: int) -> None:
        prompt = min(prompt, self.caps.prompt)
        self.tally.set_counts(prompt, min(completion, self.caps.completion), min(cached, prompt))
