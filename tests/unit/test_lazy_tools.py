"""The lazy tool-call phases on the scripted engine (grammars turned off, so text is preserved).

The fake answers a continuation prompt with the rest of its scripted reply, as a deterministic
model would: so the restarts must give back exactly the scripted text, and the engine's log of
requests shows what each phase asked for (prompt continuation, grammar, budget).
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from coderapi.backends.coder.lazy_grammar import COMPACT_SPACE, LazyToolGrammar
from coderapi.backends.coder.lazy_tools import LazyToolRun, LazyTools
from coderapi.backends.coder.json_scan import JsonScanner
from coderapi.engines.base import SamplingParams, TokenEvent
from coderapi.engines.fake import IM_END_ID, FakeEngine

RULES = f'call ::= "{{" space "\\"name\\"" "}}"\n{COMPACT_SPACE}'
LAZY = LazyTools(LazyToolGrammar(RULES, parallel=True), max_calls=None)
PROMPT = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
CALL = '{"name": "get_weather", "arguments": {"location": "Paris"}}'


class GrammarBoundFake(FakeEngine):
    """The scripted engine without its grammar support (RULES is no real call grammar), but a
    constrained generation ends where its grammar would (after the first JSON value and the
    wrapper's closing), as llama.cpp ends it: the end token follows."""

    async def generate(self, prompt_ids, params):
        if params.grammar is None:
            async for event in super().generate(prompt_ids, params):
                yield event
            return
        stream = super().generate(prompt_ids, replace(params, grammar=None))
        self.requests[-1] = (list(prompt_ids), params)  # logged with the grammar it was asked for
        root = params.grammar.rstrip("\n").rsplit("\n", 1)[-1]
        closing = next((c for lit, c in _CLOSINGS.items() if root.endswith(lit)), "")
        text, scanner, fed, end = "", JsonScanner(), None, None
        async for event in stream:
            yield event
            if event.finish_reason is not None:
                return
            text += event.text
            if fed is None and any(c in text for c in "{["):
                fed = min(i for i in (text.find("{"), text.find("[")) if i >= 0)
            if fed is not None and end is None:
                fed += scanner.feed(text[fed:])
                end = fed + len(closing) if scanner.done else None
            if end is not None and len(text) >= end:
                yield TokenEvent(IM_END_ID, "", finish_reason="stop")
                return


_CLOSINGS = {'"\\n</tool_call>"': "\n</tool_call>", '"\\n```"': "\n```"}


def run(reply: str, max_tokens: int = 512, lazy: LazyTools = LAZY):
    """(events, engine, run, number of engine requests made when each event came out)."""
    engine = GrammarBoundFake(script=lambda prompt: reply)
    prompt_ids = engine.tokenize(PROMPT)
    lazy_run = LazyToolRun(engine, prompt_ids, SamplingParams(max_tokens=max_tokens, temperature=0), lazy)

    async def go():
        await engine.start()
        out = []
        async for event in lazy_run.events():
            out.append((event, len(engine.requests)))
        return out

    seen = asyncio.run(go())
    return [e for e, _ in seen], engine, lazy_run, [n for _, n in seen]


def text_of(events) -> str:
    return "".join(e.text for e in events)


def test_no_call_is_one_free_generation_exactly_as_without_tools():
    reply = "Hello! Use {} or [1] and `code`; no call here."
    events, engine, lazy_run, _ = run(reply)
    assert text_of(events) == reply and events[-1].finish_reason == "stop"
    assert len(engine.requests) == 1 and engine.requests[0][1].grammar is None
    assert lazy_run.discarded == 0


def test_a_call_restarts_with_the_grammar_from_the_text_before_its_markup():
    before = "Let me check. "
    events, engine, lazy_run, phases = run(before + CALL)
    assert text_of(events) == before + CALL
    free, call, after = [params for _, params in engine.requests]
    assert free.grammar is None and after.grammar is None
    assert call.grammar.startswith(RULES) and call.grammar.endswith("root ::= call\n")
    prompt_ids = engine.tokenize(PROMPT)
    assert engine.requests[1][0] == prompt_ids + engine.tokenize(before)  # the prompt, then the kept text
    # held back: nothing from the call's first "{" on came out of the free phase
    assert text_of(e for e, n in zip(events, phases) if n == 1) == before


def test_every_generated_token_counts_and_all_phases_share_max_tokens():
    reply = "Ok " + CALL
    events, engine, lazy_run, _ = run(reply, max_tokens=40)
    budgets = [params.max_tokens for _, params in engine.requests]
    dropped = len('{"name"')  # generated in the free phase up to the trigger, then generated again
    assert budgets == [40, 40 - 3 - dropped]
    assert len(events) + lazy_run.discarded == 40  # all of it counted, no more than max_tokens
    assert events[-1].finish_reason == "length" and text_of(events) == reply[:40 - dropped]


def test_after_a_call_free_text_resumes_and_a_second_call_gets_its_own_grammar():
    reply = f"<tool_call>\n{CALL}\n</tool_call>\nAnd also:\n```json\n{CALL}\n```"
    events, engine, lazy_run, _ = run(reply)
    assert text_of(events) == reply and events[-1].finish_reason == "stop"
    grammars = [params.grammar for _, params in engine.requests]
    assert grammars[0] is None and grammars[2] is None and grammars[4] is None
    assert grammars[1].endswith('root ::= "<tool_call>\\n" call "\\n</tool_call>"\n')
    assert grammars[3].endswith('root ::= "```json\\x0a" call "\\n```"\n')
    # the end token of each completed call and the re-generated markup are counted, not shown
    # (the scripted engine writes its reply byte by byte: the tag is 11 tokens here)
    assert lazy_run.discarded == len("<tool_call>") + 1 + len('```json\n{"name"') + 1


def test_parallel_tool_calls_false_ends_the_answer_after_the_first_call():
    one = LazyTools(LAZY.grammar, max_calls=1)
    events, engine, _, _ = run(f"{CALL}\n{CALL}", lazy=one)
    assert text_of(events) == CALL and events[-1].finish_reason == "stop"
    assert len(engine.requests) == 2


def test_a_multibyte_character_is_never_split_by_the_cut():
    reply = "Voilà é" + CALL
    events, engine, _, _ = run(reply)
    assert text_of(events) == reply
    assert engine.detokenize(engine.requests[1][0]).endswith("Voilà é")


FRAGMENTS = st.sampled_from([
    "Sure. ", "é", "\n", CALL, "<tool_call>\n" + CALL + "\n</tool_call>", "```json\n" + CALL + "\n```",
    "```python\nprint({\"name\": 1})\n```", '{"x": 1}', "[1, 2]", "{", "`", "<", '[{"name": "f"}]',
])


@settings(max_examples=150, deadline=None)
@given(st.lists(FRAGMENTS, max_size=6), st.integers(5, 400))
def test_any_answer_comes_out_unchanged_within_max_tokens(parts, max_tokens):
    reply = "".join(parts)
    events, engine, lazy_run, _ = run(reply, max_tokens=max_tokens)
    generated = len(events) + lazy_run.discarded
    assert generated <= max_tokens
    assert reply.startswith(text_of(events))
    if events[-1].finish_reason == "stop":
        assert text_of(events) == reply
    assert sum(1 for e in events if e.finish_reason) == 1 and events[-1].finish_reason is not None
