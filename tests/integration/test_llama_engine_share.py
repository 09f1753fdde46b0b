"""LlamaCppEngine between owners (users), on the real 0.5B: a freed slot to the owner with the fewest
running, a flooder's sequence set aside (and going on after, its state kept), and another owner's
prompt evaluated beside a flood of long ones. Fixtures and helpers: test_llama_engine.py."""

from __future__ import annotations

import asyncio
import re

import pytest

from coderapi.engines.base import SamplingParams
from tests.integration.embedded import embedded_gguf
from tests.integration.test_llama_engine import N_PARALLEL, chat, collect, engine, text, tokens, wait_until

pytestmark = pytest.mark.model

__all__ = ["engine"]  # the module's own engine (a module-scoped fixture)


async def test_a_freed_slot_goes_to_the_owner_with_fewest_running(engine):
    long = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True, owner="flood")
    ids = engine.tokenize(chat("Write an endless poem."))
    running = [engine.generate(ids, long) for _ in range(N_PARALLEL)]
    for gen in running:
        await gen.__anext__()
    done: list[str] = []

    async def queued(owner: str) -> None:
        await collect(engine, ids, SamplingParams(max_tokens=2, temperature=0.0, owner=owner))
        done.append(owner)

    # The flooder queued two more before the other owner's one: first come would serve it last.
    tasks = [asyncio.create_task(queued(owner)) for owner in ("flood", "flood")]
    await wait_until(lambda: engine.stats().waiting == 2)
    tasks.append(asyncio.create_task(queued("other")))
    await wait_until(lambda: engine.stats().waiting == 3)
    await running[0].aclose()  # one slot frees
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    assert done[0] == "other"
    for gen in running[1:]:
        await gen.aclose()
    await wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)


async def test_a_flooders_sequence_is_set_aside_for_another_user_and_goes_on_after(engine):
    prompt = engine.tokenize(chat("Count from one to ten in words."))
    short = SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True)
    alone = tokens(await collect(engine, prompt, short))
    preempted_before = engine.stats().preemptions
    long = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True, owner="flood")
    ids = engine.tokenize(chat("Write an endless poem about the sea, the sky and the mountains."))
    running = [engine.generate(ids, long) for _ in range(N_PARALLEL - 1)]
    for gen in running:
        await gen.__anext__()
    # The flooder's fourth sequence holds the least in its KV: it is the one set aside.
    mine = engine.generate(prompt, SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True, owner="flood"))
    got = [await mine.__anext__() for _ in range(5)]
    asked = SamplingParams(max_tokens=3, temperature=0.0, owner="other")
    other = await asyncio.wait_for(collect(engine, ids, asked), 60)
    assert len(other) == 3 and engine.stats().preemptions == preempted_before + 1
    assert engine.stats().running == N_PARALLEL - 1  # the flooder's long ones still run: none had to end
    got += [event async for event in mine]  # it goes on once the other's request has ended
    assert len(got) == 40 and got[-1].finish_reason == "length"
    assert sum(e.queue_seconds is not None for e in got) == 1  # the first event's, not again
    assert tokens(got) == alone, (text(got), engine.detokenize(alone))
    for gen in running:
        await gen.aclose()
    await wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)


async def test_a_sampled_sequence_under_a_grammar_keeps_its_state_when_set_aside(engine):
    long = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True, owner="flood")
    ids = engine.tokenize(chat("Write an endless poem about the sea, the sky and the mountains."))
    running = [engine.generate(ids, long) for _ in range(N_PARALLEL - 1)]
    for gen in running:
        await gen.__anext__()
    numbers = SamplingParams(max_tokens=48, temperature=1.0, seed=7, logprobs=2, owner="flood",
                             grammar='root ::= "[" num ("," num)* "]"\nnum ::= [1-9] [0-9]?')
    before = engine.stats().preemptions
    mine = engine.generate(engine.tokenize(chat("List numbers.")), numbers)
    got = [await mine.__anext__() for _ in range(4)]
    await asyncio.wait_for(collect(engine, ids, SamplingParams(max_tokens=3, temperature=0.0, owner="other")), 60)
    got += [event async for event in mine]
    assert engine.stats().preemptions == before + 1
    assert re.fullmatch(r"\[[1-9][0-9]?(,[1-9][0-9]?)*\]?", text(got)), text(got)  # the grammar held throughout
    assert all(e.logprob is not None and len(e.top_logprobs) == 2 for e in got[:-1])
    for gen in running:
        await gen.aclose()
    await wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)


async def test_a_sequence_set_aside_can_be_cancelled_while_it_waits(engine):
    long = SamplingParams(max_tokens=1000, temperature=0.7, seed=1, ignore_eos=True, owner="flood")
    ids = engine.tokenize(chat("Write an endless poem."))
    gens = [engine.generate(ids, long) for _ in range(N_PARALLEL)]
    for gen in gens:
        await gen.__anext__()
    before = engine.stats().preemptions
    asked = SamplingParams(max_tokens=200, temperature=0.0, ignore_eos=True, owner="other")
    other = asyncio.create_task(collect(engine, ids, asked))
    await wait_until(lambda: engine.stats().preemptions == before + 1)
    assert engine.stats().waiting == 1  # the one set aside, with its sampler
    for gen in gens:  # the one set aside among them: dropped from the queue, its sampler freed
        await gen.aclose()
    await wait_until(lambda: engine.stats().waiting == 0 and engine.stats().running == 1)
    assert len(await asyncio.wait_for(other, 60)) == 200
    await wait_until(lambda: engine.stats().running == 0)


async def test_another_users_prompt_is_evaluated_beside_a_flood_of_long_prompts(engine):
    words = "alpha beta gamma delta river stone cloud forest metal glass paper light shadow engine".split()
    firsts: list[str] = []

    async def long_prompt(i: int) -> None:  # ~1,960 tokens each, every one its own (no shared prefix)
        text = " ".join(f"{words[(i * 7 + j) % len(words)]}{i}{j}" for j in range(400))
        params = SamplingParams(max_tokens=1, temperature=0.0, owner="flood")
        async for _ in engine.generate(engine.tokenize(chat("Summarize: " + text)), params):
            firsts.append("flood")

    before = engine.stats().preemptions
    flood = [asyncio.create_task(long_prompt(i)) for i in range(N_PARALLEL)]
    await wait_until(lambda: engine.stats().running == N_PARALLEL)
    # Every slot holds a prompt being evaluated: one not yet begun is set aside, and the other
    # user's prompt is evaluated in the next step rather than after the flooder's.
    asked = SamplingParams(max_tokens=1, temperature=0.0, owner="other")
    other = await asyncio.wait_for(collect(engine, chat("Say hi."), asked), 60)
    firsts.append("other")
    # At most the flooder's oldest prompt, as far along as it was, ends in the same step; first
    # come, first served, it would come after all four.
    assert len(other) == 1 and firsts.index("other") <= 1, firsts
    assert engine.stats().preemptions > before
    for task in flood:
        task.cancel()
    await asyncio.gather(*flood, return_exceptions=True)
    await wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)


async def test_a_long_prompt_beside_a_stream_takes_the_capped_rows_each_step():
    """With `prompt_rows_while_decoding` 16, a ~400-token prompt arriving beside a decoding stream is
    evaluated 16 rows a step over ~25 steps, the stream getting a token in each; without the cap it
    would take one step of 511 rows."""
    from coderapi.engines.llama_cpp import LlamaCppEngine

    capped = LlamaCppEngine(embedded_gguf(), n_parallel=2, n_ctx_per_seq=1024, prompt_rows_while_decoding=16,
                            ngram_speculation=False, exact_speculation=False)
    await capped.start()
    try:
        stream = capped.generate(capped.tokenize(chat("Write an endless poem.")),
                                 SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True))
        await stream.__anext__()
        seen: list[str] = []

        async def read_stream() -> None:
            async for _ in stream:
                seen.append("stream")

        reader = asyncio.create_task(read_stream())
        text = " ".join(f"word{j}" for j in range(130))
        long = capped.tokenize(chat("Summarize: " + text))
        assert len(long) > 380
        async for _ in capped.generate(long, SamplingParams(max_tokens=1, temperature=0.0)):
            seen.append("prompt")
        assert seen.index("prompt") >= 15, seen.index("prompt")  # the stream went on while it was evaluated
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await stream.aclose()
    finally:
        await capped.close()
