"""backends/upstream/token_count.py: an upstream stream cut short is counted here, and no further
than what can be billed (the request's worst case): a client that sends a 4 MiB prompt and hangs up
at once had the gateway tokenize all of it (6-8 s of a default-executor thread, which the database
calls share) to bill a count capped at the context anyway."""

from __future__ import annotations

import asyncio

from coderapi.backends.upstream.token_count import TokenCounter
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest

HUGE = "word " * 800_000  # 4 MB


class ByteVocab:
    """One token per byte, remembering how many characters it was given."""

    def __init__(self) -> None:
        self.chars = 0

    def tokenize(self, text: str, **options) -> list[int]:
        self.chars += len(text)
        return list(text.encode())


def counter_with(vocab: ByteVocab) -> TokenCounter:
    counter = TokenCounter(None)
    counter._vocab, counter._tried = vocab, True  # as loaded; no template: chat is counted flat
    return counter


def test_a_huge_prompt_is_counted_only_past_the_cap():
    vocab = ByteVocab()
    request = CompletionRequest.model_validate({"model": "m", "prompt": HUGE})
    assert asyncio.run(counter_with(vocab).count_prompt(request, 4096)) == 4097
    assert vocab.chars <= 16 * 4097


def test_a_huge_chat_is_counted_only_past_the_cap():
    vocab = ByteVocab()
    request = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": HUGE}]})
    assert 4097 <= asyncio.run(counter_with(vocab).count_prompt(request, 4096)) < 4200  # + the per-message allowance
    assert vocab.chars <= 16 * 4097


def test_texts_within_the_cap_are_counted_exactly():
    vocab = ByteVocab()
    counter = counter_with(vocab)
    assert asyncio.run(counter.count_text("def f(): pass", 4096)) == len("def f(): pass")
    request = CompletionRequest.model_validate({"model": "m", "prompt": ["ab", "cde"], "suffix": "fg"})
    assert asyncio.run(counter.count_prompt(request, 4096)) == 7


def test_a_long_streamed_text_is_counted_only_past_the_cap():
    vocab = ByteVocab()
    assert asyncio.run(counter_with(vocab).count_text(HUGE, 1000)) == 1001
    assert vocab.chars <= 16 * 1001
