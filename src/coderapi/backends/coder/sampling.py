"""Request parameters -> engine SamplingParams, with the model's recommended defaults."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Hashable, Iterator

from coderapi.config import GenerationDefaults
from coderapi.engines.base import SamplingParams
from coderapi.engines.token_limit import PromptTokens, TooManyTokens, leading_tokens
from coderapi.errors import ContextLengthExceeded


@dataclass(frozen=True)
class SamplingRequest:
    """The sampling fields shared by chat and legacy completions."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    repetition_penalty: float | None
    presence_penalty: float | None
    frequency_penalty: float | None
    logit_bias: dict[str, float] | None
    seed: int | None
    logprobs: int | None

    _SHARED = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty", "presence_penalty",
               "frequency_penalty", "logit_bias", "seed")

    @classmethod
    def of(cls, request, *, max_tokens: int | None, logprobs: int | None) -> "SamplingRequest":
        """The sampling fields of a chat or legacy completions request (same names in both)."""
        return cls(max_tokens=max_tokens, logprobs=logprobs, **{f: getattr(request, f) for f in cls._SHARED})


def completion_budget(
    requested: int | None, prompt_tokens: int, context_length: int, default: int, *, param: str = "messages"
) -> int:
    """How many tokens may be generated; refuses a prompt that cannot fit before any work is done."""
    room = context_length - prompt_tokens
    if requested is not None and requested > room or room < 1:
        asked = requested if requested is not None else 1
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, you requested "
            f"{prompt_tokens + asked} tokens ({prompt_tokens} in the {param}, {asked} in the completion). "
            f"Please reduce the length of the {param} or completion.",
            param=param,
        )
    return requested if requested is not None else min(default, room)


def prompt_tokenizer(engine) -> PromptTokens:
    """The engine's `tokenize` for one prompt, stopping once the prompt cannot fit the context
    (one token must be left to generate): its work is bounded by the context, not the body."""
    return PromptTokens(engine.tokenize, engine.info.context_length - 1)


@contextmanager
def refused_past_context(context_length: int, param: str) -> Iterator[None]:
    """A prompt found too long part way through its tokenizing (`prompt_tokenizer`) answered as
    one counted whole would be: 400 context_length_exceeded, with the count it reached."""
    try:
        yield
    except TooManyTokens as over:
        raise ContextLengthExceeded(
            f"This model's maximum context length is {context_length} tokens. However, your {param} "
            f"resulted in at least {over.at_least} tokens. Please reduce the length of the {param}.",
            param=param,
        ) from None


def prediction_ids(engine, prediction) -> tuple[int, ...] | None:
    """Predicted Outputs: the prediction's tokens (drafts only: they never change the answer), at
    most a context's worth; None without a prediction."""
    if prediction is None:
        return None
    # Text as the model would write it: control-token markup in it is characters, not tokens.
    return tuple(leading_tokens(engine.tokenize, prediction.text, engine.info.context_length, parse_special=False))


def sampling_params(
    request: SamplingRequest,
    defaults: GenerationDefaults,
    *,
    max_tokens: int,
    grammar: str | None = None,
    seed_offset: int = 0,
    prediction: tuple[int, ...] | None = None,
    owner: Hashable | None = None,
) -> SamplingParams:
    def pick(value, default):
        return default if value is None else value

    top_k = pick(request.top_k, defaults.top_k)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=pick(request.temperature, defaults.temperature),
        top_p=pick(request.top_p, defaults.top_p),
        top_k=max(0, top_k),
        min_p=pick(request.min_p, 0.0),
        repetition_penalty=pick(request.repetition_penalty, defaults.repetition_penalty),
        presence_penalty=pick(request.presence_penalty, 0.0),
        frequency_penalty=pick(request.frequency_penalty, 0.0),
        logit_bias={int(k): float(v) for k, v in (request.logit_bias or {}).items()},
        seed=None if request.seed is None else request.seed + seed_offset,
        grammar=grammar,
        logprobs=request.logprobs,
        prediction_ids=prediction,
        owner=owner,
    )
