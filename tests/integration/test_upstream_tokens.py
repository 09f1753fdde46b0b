"""An upstream stream the client cut short is counted with the real Qwen2.5 vocabulary (a
vocab-only load of the embedded GGUF), prompt and completion, and charged."""

from __future__ import annotations


import pytest

from coderapi.backends.upstream.token_count import estimate_tokens
from tests.fake_upstream import MODEL, WORD, launch_gateway, stream_then_hang_up
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def vocab():
    from llama_cpp import Llama

    path = embedded_gguf()
    return path, Llama(model_path=str(path), vocab_only=True, verbose=False)


def _count(vocab, text: str) -> int:
    return len(vocab.tokenize(text.encode(), add_bos=False, special=True))


def test_a_cancelled_upstream_stream_is_counted_with_the_model_vocabulary(vocab, tmp_path):
    path, tokenizer = vocab
    content = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)\n" * 3
    payload = {"model": MODEL, "messages": [{"role": "user", "content": content}], "stream": True}
    with launch_gateway(tmp_path, gguf=str(path)) as gateway:
        received = stream_then_hang_up(gateway.base, gateway.key, payload, words=20)
        row = gateway.wait_rows(gateway.user_id, 1, timeout=30)[0]
    assert row.status == "cancelled" and row.cost > 0
    assert _count(tokenizer, received) <= row.completion_tokens < _count(tokenizer, WORD * 400)
    # counted by the vocabulary, not by the fallback estimate (which takes 2 tokens for "token ")
    assert row.completion_tokens < estimate_tokens(received)
    # the prompt as the chat template renders it: the content plus a few dozen template tokens
    assert _count(tokenizer, content) < row.prompt_tokens < _count(tokenizer, content) + 60
