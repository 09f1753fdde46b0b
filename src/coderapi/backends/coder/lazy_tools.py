"""One choice's token events under tool_choice "auto": free text, and each call under its grammar.

Engine-agnostic lazy grammar (llama.cpp's own lazy grammars are not reachable through the Engine
protocol, and vLLM has none). The answer is generated in phases on the same engine:
- free: no grammar, exactly as without tools' grammars; the text goes through a TriggerScanner
  and only text that cannot begin a call is released (the rest is held);
- on a trigger: the free generation is closed. Its tokens before the call's markup are kept;
  the constrained phase continues from prompt + those tokens with the call grammar
  (lazy_grammar.py), which makes the model write again, under the grammar, the bit of its last
  kept token's text that preceded the markup, then the wrapper as it opened it, then the call;
- once the call is complete (the grammar ends, so the engine stops), free text resumes from
  everything so far; a second call is another trigger (with parallel_tool_calls false the
  answer ends after the first call).
Prefix caches (the in-process one, llama-server's cache_prompt) make each restart's prefill cheap.

Budget and usage: all phases share `max_tokens`; every token the engine generates counts, in
the budget and in usage: the tokens dropped at a cut (the markup's first few, generated again
under the grammar) and the end token of a completed call too. So usage never exceeds max_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import AsyncIterator

from coderapi.backends.coder.call_triggers import Trigger, TriggerScanner
from coderapi.backends.coder.lazy_grammar import LazyToolGrammar
from coderapi.engines.base import Engine, SamplingParams, TokenEvent


_SPECULATION_COUNTS = ("accepted_prediction_tokens", "rejected_prediction_tokens",
                       "accepted_ngram_tokens", "rejected_ngram_tokens")


@dataclass(frozen=True)
class LazyTools:
    grammar: LazyToolGrammar
    max_calls: int | None  # 1 with parallel_tool_calls false


@dataclass
class _Held:
    event: TokenEvent
    end: int  # offset in the phase's text where this event's text ends


class LazyToolRun:
    """`events()` is the choice's event stream; `discarded` counts tokens generated but not in it."""

    def __init__(self, engine: Engine, prompt_ids: list[int], params: SamplingParams, lazy: LazyTools) -> None:
        self.engine = engine
        self.params = params
        self.lazy = lazy
        self.discarded = 0
        self._context = list(prompt_ids)  # the prompt and the answer's tokens so far
        self._generated = 0
        self._first: TokenEvent | None = None
        self._phase_last: TokenEvent | None = None  # the last event of the running phase, as yielded
        self._spec_base = {name: 0 for name in _SPECULATION_COUNTS if hasattr(TokenEvent, name)}
        self._cut: tuple[Trigger, str] | None = None  # set by a free phase that met a trigger
        self._ended = False  # the answer's last event has been yielded

    def _budget(self) -> int:
        return self.params.max_tokens - self._generated

    def _seen(self, event: TokenEvent) -> TokenEvent:
        """Counts the token. Later phases report the first phase's prefix-cache hit and no queue time,
        and their cumulative speculation counts continue those of the phases before."""
        self._generated += 1
        self._phase_last = event
        if self._first is None:
            self._first = event
            return event
        totals = {name: getattr(event, name) + base for name, base in self._spec_base.items()}
        return replace(event, cached_prompt_tokens=self._first.cached_prompt_tokens, queue_seconds=None, **totals)

    def _new_phase(self) -> None:
        last, self._phase_last = self._phase_last, None
        if last is not None:
            self._spec_base = {name: base + getattr(last, name) for name, base in self._spec_base.items()}

    async def events(self) -> AsyncIterator[TokenEvent]:
        calls = 0
        while not self._ended:
            async for event in self._free_phase():
                yield event
            if self._cut is None:
                return
            trigger, residual = self._cut
            async for event in self._call_phase(trigger, residual, last=self._last_call(calls + 1)):
                yield event
            calls += 1

    def _last_call(self, count: int) -> bool:
        return self.lazy.max_calls is not None and count >= self.lazy.max_calls

    async def _free_phase(self) -> AsyncIterator[TokenEvent]:
        self._cut = None
        self._new_phase()
        scanner = TriggerScanner()
        held: list[_Held] = []
        stream = self.engine.generate(self._context, replace(self.params, max_tokens=self._budget()))
        try:
            async for raw in stream:
                event = self._seen(raw)
                final = event.finish_reason is not None
                trigger = scanner.feed(event.text, final=final)
                held.append(_Held(event, len(scanner.text)))
                if trigger is not None and not final and self._budget() > 0:
                    for kept in self._release(held, trigger.start):
                        yield kept
                    end = len(scanner.text) - sum(len(h.event.text) for h in held)
                    self.discarded += len(held)
                    self._cut = (trigger, scanner.text[end : trigger.start])
                    return
                for ready in self._release(held, scanner.safe, final=final):
                    yield ready
                if final:
                    self._ended = True
                    return
        finally:
            await stream.aclose()

    def _release(self, held: list[_Held], safe: int, *, final: bool = False) -> list[TokenEvent]:
        """The held events whose text lies before `safe`, up to the last one that has text (an event
        with no text yet is the start of a character that a later event completes); all at the end."""
        last = len(held) - 1 if final else max((i for i, h in enumerate(held) if h.event.text and h.end <= safe), default=-1)
        ready = [h.event for h in held[: last + 1]]
        del held[: last + 1]
        self._context.extend(e.token_id for e in ready if e.finish_reason is None)
        return ready

    async def _call_phase(self, trigger: Trigger, residual: str, *, last: bool) -> AsyncIterator[TokenEvent]:
        self._new_phase()
        grammar = self.lazy.grammar.for_trigger(trigger, residual)
        params = replace(self.params, max_tokens=self._budget(), grammar=grammar)
        stream = self.engine.generate(self._context, params)
        try:
            async for raw in stream:
                event = self._seen(raw)
                if event.finish_reason == "stop" and not last and self._budget() > 0:
                    # the call is complete (the grammar allows nothing but the end): free text resumes
                    if event.text:
                        yield replace(event, finish_reason=None)
                    else:
                        self.discarded += 1
                    return
                if event.finish_reason is None:
                    self._context.append(event.token_id)
                elif event.finish_reason == "stop" and not last:
                    # the call is complete but no budget is left for what would follow it
                    event = replace(event, finish_reason="length")
                yield event
                if event.finish_reason is not None:
                    self._ended = True
                    return
        finally:
            await stream.aclose()
