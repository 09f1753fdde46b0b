"""A scripted, deterministic engine for tests: byte-level tokens, ChatML specials, no model.

The reply is chosen by `script(prompt_text)`. The default script answers the last user turn:
`repeat: TEXT` replies TEXT, `fail after N` fails after N tokens, anything else gets a greeting.

It keeps the llama.cpp engine's contract (engines/llama_cpp/engine.py), so the API tier sees what
the real model would give it:
- `generate` refuses at the call, before any iteration, what the real one refuses there
  (request_checks.py: empty prompt, unknown ids, a prompt that fills the context, ...; a full
  queue is `Overloaded`, an owner's full share `RateLimited` (capacity.py); an engine not started
  is `ModelNotReady`);
- a grammar it cannot parse is refused at the first iteration (`InvalidRequest`, param `grammar`),
  as llama.cpp refuses it when the worker builds the sampler; a failure while generating is an
  `InternalError`;
- under a grammar (response_format, tool_choice, lazy tool calls, a raw GBNF), the reply is what a
  model preferring the script writes under it (fake_grammar.py): the script while the grammar allows
  it, then the shortest text that completes the grammar. So JSON-schema answers are schema-valid.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import OrderedDict, deque
from typing import AsyncIterator, Callable

from coderapi.engines.base import EngineInfo, EngineStats, SamplingParams, TokenEvent, TopLogprob
from coderapi.engines.capacity import EngineCapacity
from coderapi.engines.fake_grammar import Grammar, GrammarError, constrained_text
from coderapi.engines.request_checks import check_request
from coderapi.errors import InternalError, InvalidRequest, ModelNotReady

SPECIALS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_call>", "</tool_call>",
]
EOS_ID = 256  # <|endoftext|>
IM_END_ID = 258
CONTROLS = frozenset(SPECIALS[:9])  # as in Qwen's vocabulary: the tool-call tags are not control tokens
_SPECIAL_RE = re.compile("|".join(re.escape(s) for s in SPECIALS))
_USER_DEFINED_RE = re.compile("|".join(re.escape(s) for s in SPECIALS if s not in CONTROLS))
GREETING = "Hello! How can I assist you today?"
_ANSWER_START = "<|im_start|>assistant\n"
_GRAMMAR_CACHE = 8


def answer_so_far(prompt: str) -> str:
    """The assistant text a prompt already ends with (a continuation), "" for a fresh answer."""
    head, found, tail = prompt.rpartition(_ANSWER_START)
    return tail if found and "<|im_end|>" not in tail else ""


def default_script(prompt: str) -> str:
    turns = re.findall(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", prompt, re.DOTALL)
    last = turns[-1] if turns else prompt
    if "<|fim_middle|>" in prompt:
        return "return a + b\n"
    if last.startswith("repeat: "):
        return last[len("repeat: "):]
    return GREETING


def prediction_counts(output: list[int], prediction: tuple[int, ...] | None) -> list[tuple[int, int]]:
    """Predicted Outputs, scripted: after each output token, prediction tokens accepted and refused
    so far. While aligned, the prediction's next token is the draft: accepted if the output has it,
    else refused and alignment is lost; it comes back after the next place, forward, where the
    output's last three tokens occur in the prediction."""
    counts, accepted, rejected, at, aligned = [], 0, 0, 0, True
    prediction = tuple(prediction or ())
    for i, token in enumerate(output):
        if aligned and at < len(prediction):
            if prediction[at] == token:
                accepted, at = accepted + 1, at + 1
            else:
                rejected, aligned = rejected + 1, False
        elif not aligned:
            tail = tuple(output[max(0, i - 2) : i + 1])
            found = next((j for j in range(at, len(prediction) - 2) if prediction[j : j + 3] == tail), None)
            if found is not None:
                at, aligned = found + 3, True
        counts.append((accepted, rejected))
    return counts


class FakeEngine:
    def __init__(
        self,
        *,
        script: Callable[[str], str] = default_script,
        context_length: int = 4096,
        n_parallel: int = 4,
        max_waiting: int = 16,
        max_waiting_per_owner: int | None = None,
        token_delay: float = 0.0,
    ) -> None:
        self.info = EngineInfo(
            model_path="fake://scripted",
            context_length=context_length,
            vocab_size=256 + len(SPECIALS),
            chat_template=None,
            bos_token="",
            eos_token="<|im_end|>",
            control_texts=CONTROLS,
        )
        self._script = script
        self._slots = asyncio.Semaphore(n_parallel)
        self._capacity = EngineCapacity(n_parallel, max_waiting, max_waiting_per_owner)
        self._delay = token_delay
        self._running = 0
        self._ready = False
        # (prompt ids, params) of the latest generate calls, for tests of what the engine was asked
        self.requests: deque[tuple[list[int], SamplingParams]] = deque(maxlen=64)
        self._grammars: OrderedDict[str, Grammar] = OrderedDict()  # parsed, the latest few (parsing costs)
        self._grammar_lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        self._ready = True

    async def close(self) -> None:
        self._ready = False

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = True) -> list[int]:
        ids: list[int] = []
        position = 0
        # Like llama.cpp: without parse_special, control tokens are text; the others still parse.
        for match in (_SPECIAL_RE if parse_special else _USER_DEFINED_RE).finditer(text):
            ids.extend(text[position:match.start()].encode("utf-8"))
            ids.append(256 + SPECIALS.index(match.group()))
            position = match.end()
        ids.extend(text[position:].encode("utf-8"))
        return ids

    def detokenize(self, token_ids: list[int]) -> str:
        out, pending = [], bytearray()
        for t in token_ids:
            if t < 256:
                pending.append(t)
                continue
            out.append(pending.decode("utf-8", "replace"))
            pending.clear()
            out.append(SPECIALS[t - 256])
        out.append(pending.decode("utf-8", "replace"))
        return "".join(out)

    def token_text(self, token_id: int) -> str:
        return self.detokenize([token_id])

    def stats(self) -> EngineStats:
        return EngineStats(running=self._running, waiting=self._capacity.held - self._running)

    def _reply(self, prompt_ids: list[int], grammar: str | None) -> tuple[list[int], int | None]:
        """Blocking (a grammar is parsed and followed): run it off the event loop."""
        prompt = self.detokenize(prompt_ids)
        fail = re.search(r"fail after (\d+)", prompt)
        reply, partial = self._script(prompt), answer_so_far(prompt)
        if partial:  # asked to continue its answer: the rest of it, as a model would
            # (an answer a grammar took elsewhere than the script has nothing more to say)
            reply = reply[len(partial) :] if reply.startswith(partial) else ""
        if grammar is not None:
            reply = constrained_text(self._parsed(grammar), reply)
        return list(reply.encode("utf-8")), int(fail.group(1)) if fail else None

    def verify_grammar(self, grammar: str) -> str | None:
        """As the real engines' sandbox check: None when the grammar parses, else why not."""
        try:
            self._parsed(grammar)
        except InvalidRequest as exc:
            return exc.message
        return None

    def _parsed(self, grammar: str) -> Grammar:
        with self._grammar_lock:  # several streams' threads share the cache
            if grammar not in self._grammars:
                try:
                    self._grammars[grammar] = Grammar(grammar)
                except GrammarError as exc:
                    raise InvalidRequest(f"The grammar could not be parsed (GBNF): {exc}", param="grammar") from None
                while len(self._grammars) > _GRAMMAR_CACHE:
                    self._grammars.popitem(last=False)
            self._grammars.move_to_end(grammar)
            return self._grammars[grammar]

    def generate(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        """Validate now (errors raise here, before any iteration) and return the stream."""
        self.requests.append((list(prompt_ids), params))
        if not self._ready:
            raise ModelNotReady("The model is still loading.")
        check_request(prompt_ids, params, n_vocab=self.info.vocab_size, n_ctx=self.info.context_length)
        self._capacity.check(params.owner)
        return self._stream(list(prompt_ids), params)

    async def _stream(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        if not self._ready:
            raise ModelNotReady("The model is not loaded.")
        self._capacity.enter(params.owner)  # re-checked: several generators may have been created at once
        queued_at = time.monotonic()
        try:
            await self._slots.acquire()
            self._running += 1
            try:
                queue_seconds: float | None = time.monotonic() - queued_at
                async for event in self._events(prompt_ids, params):
                    event.queue_seconds, queue_seconds = queue_seconds, None
                    yield event
            finally:
                self._running -= 1
                self._slots.release()
        finally:
            self._capacity.leave(params.owner)

    async def _events(self, prompt_ids: list[int], params: SamplingParams) -> AsyncIterator[TokenEvent]:
        reply, fail_after = await asyncio.to_thread(self._reply, prompt_ids, params.grammar)
        room = min(params.max_tokens, self.info.context_length - len(prompt_ids))
        pending = bytearray()
        predicted = prediction_counts(reply[:room] + [IM_END_ID], params.prediction_ids)
        for count, token in enumerate(reply[:room] + [IM_END_ID], start=1):
            if fail_after is not None and count > fail_after:
                raise InternalError("The inference engine failed (scripted).")
            await asyncio.sleep(self._delay)
            last = token == IM_END_ID or count == room
            finish = "stop" if token == IM_END_ID else ("length" if last else None)
            text = ""
            if token < 256:
                pending.append(token)
                try:
                    text, pending = pending.decode("utf-8"), bytearray()
                except UnicodeDecodeError:
                    text = ""
            logprob, top = (None, None)
            if params.logprobs is not None:
                logprob = -0.25
                top = [TopLogprob(token, self.token_text(token), -0.25)]
                top += [TopLogprob(i, chr(i), -2.0 - i / 100) for i in range(97, 97 + params.logprobs - 1)]
                top = top[: params.logprobs]
            event = TokenEvent(token, text, logprob, top, finish)
            event.accepted_prediction_tokens, event.rejected_prediction_tokens = predicted[count - 1]
            yield event
            if finish:
                return
