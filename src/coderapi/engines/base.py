"""The token-level engine interface: prompt ids in, token events out.

Engines know nothing of HTTP, accounts or chat templates. Closing the iterator returned by
`generate` (``aclose()``, or the consumer going away) cancels the sequence and frees its slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Hashable, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0  # 0 disables
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None
    grammar: str | None = None  # GBNF, enforced while sampling
    logprobs: int | None = None  # None: no logprobs; k >= 0: chosen token plus top-k alternatives
    stop_token_ids: frozenset[int] = frozenset()
    ignore_eos: bool = False
    # Predicted Outputs: the tokens the output is expected to repeat (drafts for speculative
    # decoding; the output itself is what the model generates, with or without them).
    prediction_ids: tuple[int, ...] | None = None
    # Whose request this is (a user id; None: nobody's in particular). Not a sampling setting: an
    # engine that shares its places admits owners in turn and caps each one's share (capacity.py).
    owner: Hashable | None = None


@dataclass
class TopLogprob:
    token_id: int
    text: str
    logprob: float


@dataclass
class TokenEvent:
    token_id: int
    text: str  # newly completed UTF-8 text; "" while a multi-byte character is still incomplete
    logprob: float | None = None
    top_logprobs: list[TopLogprob] | None = None
    finish_reason: str | None = None  # set on the last event: "stop" or "length"
    cached_prompt_tokens: int = 0  # prompt tokens served from the prefix cache
    queue_seconds: float | None = None  # first event only: time spent waiting for a sequence slot
    # Speculative decoding, counted so far (cumulative on every event, so the last one a consumer
    # sees has the totals): draft tokens the model agreed with, and those it refused, per source.
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    accepted_ngram_tokens: int = 0
    rejected_ngram_tokens: int = 0


@dataclass
class EngineInfo:
    model_path: str
    context_length: int  # tokens available to one sequence (prompt + completion)
    vocab_size: int
    chat_template: str | None
    bos_token: str
    eos_token: str
    metadata: dict[str, str] = field(default_factory=dict)
    # The texts of the vocabulary's control tokens (`<|im_start|>`, `</s>`): markup in a template,
    # plain text in what a user wrote (backends/coder/literal_text.py).
    control_texts: frozenset[str] = frozenset()


@dataclass
class EngineStats:
    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0  # 0..1
    prefix_cache_queries: int = 0  # prompt tokens looked up in the prefix cache
    prefix_cache_hits: int = 0  # of those, tokens found
    waiting_for_reader: int = 0  # sequences paused until their client reads what they made
    preemptions: int = 0  # sequences set aside so that another user's request got a slot (so far)


@runtime_checkable
class Engine(Protocol):
    info: EngineInfo

    @property
    def ready(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        """Special-token markup in `text` (e.g. `<|im_start|>`) becomes the special token, unless
        `parse_special` is false (then it is plain text)."""

    def detokenize(self, token_ids: list[int]) -> str: ...

    def token_text(self, token_id: int) -> str: ...

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]: ...

    def verify_grammar(self, grammar: str) -> str | None:
        """None when the engine can run `grammar` (GBNF), else why not. Blocks: call it off the loop."""

    def stats(self) -> EngineStats: ...
