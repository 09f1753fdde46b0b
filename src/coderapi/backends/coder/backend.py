"""The Coder layer: OpenAI-level requests on any token engine (in-process llama.cpp, a remote
completion server, or the fake), with Qwen2.5-Coder's template, tool calls, grammars and FIM."""

from __future__ import annotations

import uuid
from typing import Callable, TypeVar

from coderapi.backends.base import ChatAnswer, CompletionAnswer, RequestTally
from coderapi.backends.coder import chat_flow, chat_stream, completion_flow, grammars
from coderapi.backends.coder.families import family_of
from coderapi.backends.coder.sampling import refused_past_context
from coderapi.backends.coder.template import ChatTemplate
from coderapi.backends.prep_pool import PrepPool
from coderapi.config import ModelSpec
from coderapi.engines.base import Engine
from coderapi.engines.token_limit import tokenize_within
from coderapi.errors import InvalidRequest, ModelNotReady
from coderapi.protocol.chat import ChatCompletionRequest
from coderapi.protocol.completions import CompletionRequest

_TOKENIZE_INLINE_CHARS = 2048  # longer texts are tokenized off the event loop
T = TypeVar("T")


class CoderBackend:
    def __init__(self, spec: ModelSpec, engine: Engine) -> None:
        self.spec = spec
        chosen = family_of(spec.family, spec.tool_parser)  # ValueError at start for an unknown name
        grammars.require_grammar_support()  # RuntimeError at start without llama-cpp-python's converter
        self.family = chosen.family
        self.tool_parser = chosen.tool_parser
        self.engine = engine
        self.served_model = spec.id
        self._template: ChatTemplate | None = None
        self._prep: PrepPool | None = None

    @property
    def ready(self) -> bool:
        return self.engine.ready

    @property
    def template(self) -> ChatTemplate:
        if self._template is None:
            info = self.engine.info
            self._template = ChatTemplate(
                info.chat_template or self.family.fallback_chat_template, bos_token=info.bos_token, eos_token=info.eos_token
            )
        return self._template

    @property
    def context_length(self) -> int:
        return self.engine.info.context_length

    async def start(self) -> None:
        await self.engine.start()

    async def close(self) -> None:
        await self.engine.close()

    def _require_ready(self) -> None:
        if not self.engine.ready:
            raise ModelNotReady(f"Model {self.spec.id} is still loading; try again shortly.", retry_after=5)

    def attach_prep_pool(self, pool: PrepPool) -> None:
        """The app's preparation threads (Services.build); every request's CPU work runs there."""
        self._prep = pool

    async def prepare(self, work: Callable[..., T], *args) -> T:
        if self._prep is None:
            raise RuntimeError("CoderBackend has no PrepPool: Services.build attaches one")
        return await self._prep.run(work, *args)

    def _tokenize_now(self, text: str) -> list[int]:
        """/tokenize's count, up to the context: a longer text is refused once a part of it is found to be."""
        with refused_past_context(self.engine.info.context_length, "prompt"):
            return tokenize_within(self.engine.tokenize, text, self.engine.info.context_length)

    async def tokenize(self, text: str) -> list[int]:
        self._require_ready()
        if len(text) <= _TOKENIZE_INLINE_CHARS:
            return self._tokenize_now(text)
        return await self.prepare(self._tokenize_now, text)

    def detokenize_now(self, tokens: list[int]) -> str:
        """On a preparation thread (or for a few ids): the text of in-vocabulary token ids."""
        vocab = self.engine.info.vocab_size
        bad = [t for t in tokens if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(f"token ids out of range [0, {vocab}): {bad[:5]}", param="tokens")
        return self.engine.detokenize(tokens)

    async def detokenize(self, tokens: list[int]) -> str:
        self._require_ready()
        return await self.prepare(self.detokenize_now, tokens)

    def _tokenize_messages_now(self, messages: list, add_generation_prompt: bool) -> list[int]:
        return chat_flow.chat_prompt(self, messages, None, add_generation_prompt)[1]

    async def tokenize_messages(self, messages: list, *, add_generation_prompt: bool = True) -> list[int]:
        self._require_ready()
        return await self.prepare(self._tokenize_messages_now, messages, add_generation_prompt)

    def check_logit_bias(self, logit_bias: dict[str, float] | None) -> None:
        vocab = self.engine.info.vocab_size
        bad = [k for k in logit_bias or {} if int(k) >= vocab]
        if bad:
            raise InvalidRequest(f"logit_bias names token ids beyond the vocabulary ({vocab}): {bad[:5]}", param="logit_bias")

    async def chat(self, request: ChatCompletionRequest, tally: RequestTally) -> ChatAnswer:
        self._require_ready()
        prepared = await chat_flow.prepare_chat(self, request, "chatcmpl-" + uuid.uuid4().hex)
        if request.stream:
            return chat_stream.stream_chat(self, prepared, tally, request.wants_usage)
        return await chat_flow.complete_chat(self, prepared, tally)

    async def complete(self, request: CompletionRequest, tally: RequestTally) -> CompletionAnswer:
        self._require_ready()
        prepared = await completion_flow.prepare_completion(self, request, "cmpl-" + uuid.uuid4().hex)
        if request.stream:
            return completion_flow.stream_completion(self, prepared, tally, request.wants_usage)
        return await completion_flow.complete_completion(self, prepared, tally)
