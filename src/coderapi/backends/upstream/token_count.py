"""Counting tokens here, for what an upstream streamed without telling us its usage.

An upstream reports usage in its last stream chunk; a client that hangs up mid-stream (or an
upstream that dies) means that chunk never comes. The gateway then counts, itself, the prompt it
sent and the text it passed on, with a tokenizer loaded from the model's `gguf` (vocabulary only,
a few MB of memory and well under a second to load; the embedded Qwen2.5-Coder GGUF shares
Qwen2.5's tokenizer, so Qwen2.5(-Coder) upstreams are counted exactly, others approximately).
The prompt is rendered with the GGUF's chat template, as the upstream would render it.

When no tokenizer can be loaded (llama-cpp-python missing, no GGUF), the count is a documented
conservative estimate: one token per `ESTIMATE_BYTES_PER_TOKEN` UTF-8 bytes, rounded up, plus
`ESTIMATE_MESSAGE_OVERHEAD` tokens per chat message. Code and English average 3.5 to 4 bytes per
token in Qwen's vocabulary, so this over-counts rather than lets streamed inference go unpaid.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path

from coderapi.engines.token_limit import leading_tokens
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest

log = logging.getLogger("coderapi.upstream")

ESTIMATE_BYTES_PER_TOKEN = 3
ESTIMATE_MESSAGE_OVERHEAD = 8  # <|im_start|>role\n ... <|im_end|>\n, with room to spare


def estimate_tokens(text: str) -> int:
    size = len(text.encode("utf-8", "replace"))
    return -(-size // ESTIMATE_BYTES_PER_TOKEN)


class TokenCounter:
    """Loads the tokenizer on first use (in a worker thread); every count runs off the event loop."""

    def __init__(self, locate_gguf: Callable[[], Path] | None) -> None:
        self._locate = locate_gguf
        self._vocab = None
        self._template = None
        self._tried = False
        self._lock = asyncio.Lock()

    async def count_text(self, text: str, cap: int) -> int:
        """`text`'s tokens, counted no further than past `cap` (what is billed is capped there)."""
        if not text:
            return 0
        vocab = await self._loaded()
        if vocab is None:
            return estimate_tokens(text)
        return await asyncio.to_thread(_tokenize_count, vocab, text, cap)

    async def count_prompt(self, request, cap: int) -> int:
        """The prompt tokens of a chat or completions request, as the upstream would count them;
        each text is counted no further than past `cap`, so a 4 MiB prompt costs a context's worth."""
        vocab = await self._loaded()
        return await asyncio.to_thread(self._count_prompt, vocab, request, cap)

    def _count_prompt(self, vocab, request, cap: int) -> int:
        if isinstance(request, ChatCompletionRequest):
            text = self._render_chat(request)
            if text is not None and vocab is not None:
                return _tokenize_count(vocab, text, cap)
            flat = _flat_chat(request)
            overhead = ESTIMATE_MESSAGE_OVERHEAD * (len(request.messages) + 1)
            return (_tokenize_count(vocab, flat, cap) if vocab is not None else estimate_tokens(flat)) + overhead
        total = 0
        for prompt in _prompts(request):
            if isinstance(prompt, list):
                total += len(prompt)  # token ids: already counted
            elif vocab is not None:
                total += _tokenize_count(vocab, prompt, cap)
            else:
                total += estimate_tokens(prompt)
        return total + (_tokenize_count(vocab, request.suffix, cap) if vocab and request.suffix else 0)

    def _render_chat(self, request: ChatCompletionRequest) -> str | None:
        if self._template is None:
            return None
        from coderapi.backends.coder.messages import template_messages, template_tools

        try:
            return self._template.render(template_messages(request.messages), tools=template_tools(request.tools))
        except Exception:  # a template the request upsets: fall back to the flat count
            return None

    async def _loaded(self):
        if self._tried:
            return self._vocab
        async with self._lock:
            if not self._tried:
                self._vocab, self._template = await asyncio.to_thread(self._open)
                self._tried = True
        return self._vocab

    def _open(self):
        if self._locate is None:
            return None, None
        try:
            from coderapi.engines.remote.tokenizer import FamilyTokenizer

            vocab = FamilyTokenizer(self._locate())
            vocab.load()
        except Exception as exc:
            log.warning("no local tokenizer for upstream usage (%s); counting by estimate", exc)
            return None, None
        return vocab, _chat_template(vocab)

    def close(self) -> None:
        vocab, self._vocab = self._vocab, None
        if vocab is not None:
            vocab.close()


def _tokenize_count(vocab, text: str, cap: int) -> int:
    """min(tokens, cap + 1): past the cap the count only needs to show it was passed."""
    return len(leading_tokens(vocab.tokenize, text, cap + 1))


def _chat_template(vocab):
    source = vocab.chat_template
    if not source:
        return None
    from coderapi.backends.coder.template import ChatTemplate

    try:
        return ChatTemplate(source)
    except Exception:
        return None


def _flat_chat(request: ChatCompletionRequest) -> str:
    from coderapi.protocol.chat import content_text

    parts = []
    for message in request.messages:
        parts.append(content_text(message.content) or "")
        for call in getattr(message, "tool_calls", None) or ():
            parts.append(call.function.name + call.function.arguments)
    if request.tools:
        parts.append(json.dumps([t.model_dump(mode="json", exclude_none=True) for t in request.tools]))
    return "\n".join(parts)


def _prompts(request: CompletionRequest) -> list:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    if prompt and isinstance(prompt[0], int):
        return [prompt]
    return list(prompt)
