"""LlamaCppEngine on the real Qwen2.5-Coder-0.5B GGUF: short greedy generations, hand-made ChatML."""

from __future__ import annotations

import asyncio

import pytest

from coderapi.engines.base import Engine, SamplingParams, TokenEvent
from coderapi.engines.capacity import EngineCapacity
from coderapi.errors import ContextLengthExceeded, InvalidRequest, Overloaded
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

GREEDY = SamplingParams(max_tokens=32, temperature=0.0)
N_PARALLEL = 4


def chat(user: str, system: str | None = None) -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine():
    path = embedded_gguf()
    from coderapi.engines.llama_cpp import LlamaCppEngine

    eng = LlamaCppEngine(path, n_parallel=N_PARALLEL, n_ctx_per_seq=2048)
    # The engine binds to no event loop (each request uses the loop that iterates it), so one
    # engine serves every test's own loop.
    asyncio.run(eng.start())
    yield eng
    asyncio.run(eng.close())


async def collect(engine, prompt: str | list[int], params: SamplingParams = GREEDY) -> list[TokenEvent]:
    ids = engine.tokenize(prompt) if isinstance(prompt, str) else prompt
    return [event async for event in engine.generate(ids, params)]


def tokens(events: list[TokenEvent]) -> list[int]:
    return [e.token_id for e in events]


def text(events: list[TokenEvent]) -> str:
    return "".join(e.text for e in events)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<tool_call>": 151657}


def test_info_and_vocabulary(engine):
    assert isinstance(engine, Engine)
    assert engine.ready
    info = engine.info
    assert info.context_length == 2048
    assert info.vocab_size == 151_936  # Qwen2.5's vocabulary as the GGUF holds it (padded)
    assert info.metadata["general.architecture"] == "qwen2"
    assert info.eos_token == "<|im_end|>"
    template = info.chat_template or ""
    assert "<|im_start|>" in template and "<tool_call>" in template  # Qwen2.5's own template, tools included
    for special, token_id in QWEN_SPECIALS.items():  # markup is one special token, both ways
        assert engine.tokenize(special) == [token_id] and engine.token_text(token_id) == special
    prompt = chat("def f(x): return x")
    ids = engine.tokenize(prompt)
    assert ids.count(151644) == 2 and ids.count(151645) == 1
    assert "".join(engine.token_text(i) for i in ids) == prompt  # every token's own text, in order
    unicode = chat("def f(x): return x  # ünïcode")
    assert engine.detokenize(engine.tokenize(unicode)) == unicode


async def test_greedy_generation_shape(engine):
    events = await collect(engine, chat("Write a Python function that adds two numbers."))
    assert 1 <= len(events) <= 32
    assert all(e.finish_reason is None for e in events[:-1])
    assert events[-1].finish_reason in ("stop", "length")
    assert "def " in text(events)
    assert all(e.logprob is None and e.top_logprobs is None for e in events)
    # the first event says how long the request waited for a slot; the others do not repeat it
    assert events[0].queue_seconds is not None and 0 <= events[0].queue_seconds < 5
    assert all(e.queue_seconds is None for e in events[1:])
    if events[-1].finish_reason == "stop":
        assert events[-1].text == ""
        assert engine.token_text(events[-1].token_id) in ("<|im_end|>", "<|endoftext|>")
    # the streamed text is exactly the detokenized completion (end token excluded)
    body = events[:-1] if events[-1].finish_reason == "stop" else events
    assert text(events) == engine.detokenize(tokens(body))


async def test_max_tokens_gives_length(engine):
    params = SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True)
    events = await collect(engine, chat("Count from 1 to 100."), params)
    assert len(events) == 5
    assert events[-1].finish_reason == "length"


async def test_stop_token_ids_end_without_text(engine):
    prompt = chat("List three fruits, comma separated.")
    reference = await collect(engine, prompt, SamplingParams(max_tokens=8, temperature=0.0))
    assert len(reference) >= 4
    stop_id = reference[2].token_id
    params = SamplingParams(max_tokens=8, temperature=0.0, stop_token_ids=frozenset({stop_id}))
    events = await collect(engine, prompt, params)
    first = tokens(reference).index(stop_id)
    assert tokens(events) == tokens(reference)[: first + 1]
    assert events[-1].finish_reason == "stop" and events[-1].text == ""


async def test_concurrent_requests_match_serial(engine):
    prompts = [
        chat("Write a haiku about Rust."),
        chat("What is a Python decorator? One sentence."),
        chat("Write a SQL query that counts rows in table users."),
        chat("Explain recursion to a child in one sentence."),
    ]
    params = SamplingParams(max_tokens=32, temperature=0.0, logprobs=5)
    alone = [await collect(engine, p, params) for p in prompts]
    together = await asyncio.gather(*(collect(engine, p, params) for p in prompts))
    # llama.cpp's CPU kernels are not batch-invariant: repacked quantized matmuls (the default)
    # take another path from 4 rows, so a step that mixes prompt chunks with decode tokens can move
    # a logit by ~0.1 (coderapi's build keeps attention invariant on AVX-512 CPUs, not the
    # matmuls). Greedy decoding can then only part ways where the two best tokens are
    # nearly tied. The bound: identical up to a first divergence, and there the serial run
    # rated the batched run's token within 0.3 nats of its own choice.
    identical = 0
    for serial, batched in zip(alone, together):
        s_ids, b_ids = tokens(serial), tokens(batched)
        if s_ids == b_ids:
            identical += 1
            continue
        i = next(k for k, (a, b) in enumerate(zip(s_ids, b_ids)) if a != b)
        rated = {t.token_id: t.logprob for t in serial[i].top_logprobs}
        assert b_ids[i] in rated, f"batched token at {i} is not among serial's top 5"
        assert rated[s_ids[i]] - rated[b_ids[i]] < 0.3
    # Measured with weight repacking on: three of four identical in 16 of 17 runs, once fewer
    # than two (each divergence still within the bound above).
    assert identical >= 1


async def test_close_frees_the_slot(engine):
    params = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True)
    gen = engine.generate(engine.tokenize(chat("Tell me a very long story.")), params)
    got = [await gen.__anext__() for _ in range(3)]
    assert len(got) == 3
    assert engine.stats().running == 1
    await gen.aclose()
    await wait_until(lambda: engine.stats().running == 0)


async def test_cancelling_the_consumer_frees_the_slot(engine):
    params = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True)
    started = asyncio.Event()

    async def consume():
        async for _ in engine.generate(engine.tokenize(chat("Write a long essay.")), params):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until(lambda: engine.stats().running == 0)


async def test_queue_limit_raises_overloaded(engine, monkeypatch):
    monkeypatch.setattr(engine, "_capacity", EngineCapacity(N_PARALLEL, max_waiting=1))
    params = SamplingParams(max_tokens=1000, temperature=0.0, ignore_eos=True)
    ids = engine.tokenize(chat("Write an endless poem."))
    gens = [engine.generate(ids, params) for _ in range(N_PARALLEL)]
    for gen in gens:  # a generator counts once it is iterated
        await gen.__anext__()
    assert engine.stats().running == N_PARALLEL
    queued = asyncio.create_task(collect(engine, ids, SamplingParams(max_tokens=2, temperature=0)))
    await wait_until(lambda: engine.stats().waiting == 1)
    with pytest.raises(Overloaded):
        engine.generate(ids, GREEDY)  # refused at once, before anything is yielded
    await gens[0].aclose()  # a slot frees: the waiting request is admitted and completes
    assert len(await asyncio.wait_for(queued, 30)) == 2
    for gen in gens[1:]:
        await gen.aclose()
    await wait_until(lambda: engine.stats().running == 0 and engine.stats().waiting == 0)


async def test_prefix_cache_reuses_a_shared_prefix(engine):
    system = "You are a careful senior engineer. " + " ".join(
        f"Rule {i}: write clear, tested, documented code." for i in range(40)
    )
    first = await collect(engine, chat("Name one sorting algorithm.", system), SamplingParams(max_tokens=4, temperature=0))
    before = engine.stats()
    prompt = engine.tokenize(chat("Name one graph algorithm.", system))
    second = await collect(engine, prompt, SamplingParams(max_tokens=4, temperature=0))
    after = engine.stats()
    shared = len(engine.tokenize(chat("", system).split("<|im_start|>user")[0]))
    assert first and second
    assert all(e.cached_prompt_tokens >= shared for e in second)
    assert all(e.cached_prompt_tokens < len(prompt) for e in second)
    assert after.prefix_cache_queries - before.prefix_cache_queries == len(prompt)
    assert after.prefix_cache_hits - before.prefix_cache_hits == second[0].cached_prompt_tokens
    assert 0 < after.kv_cache_usage <= 1


async def test_a_running_request_lends_its_prefix_to_a_concurrent_one(engine):
    """The shared system prompt is copied from the busy slot, not recomputed, and the copy is sound."""
    system = "You review pull requests for a payments team. " + " ".join(
        f"Check {i}: look for missing tests, unsafe input handling and unclear names." for i in range(30)
    )
    shared = len(engine.tokenize(chat("", system).split("<|im_start|>user")[0]))
    long_params = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
    runner = engine.generate(engine.tokenize(chat("Review: def add(a, b): return a - b", system)), long_params)
    await runner.__anext__()  # its prompt is in the KV cache and it keeps decoding
    params = SamplingParams(max_tokens=12, temperature=0.0, logprobs=5)
    ids = engine.tokenize(chat("Review: x = eval(input())", system))
    beside = await collect(engine, ids, params)
    await runner.aclose()
    await wait_until(lambda: engine.stats().running == 0)
    assert beside[0].cached_prompt_tokens >= shared
    alone = await collect(engine, ids, params)  # its own slot's cache now, no copy
    # Same bound as test_concurrent_requests_match_serial: copied KV that was wrong would
    # change the first tokens by far more than batched arithmetic does.
    a_ids, b_ids = tokens(alone), tokens(beside)
    if a_ids != b_ids:
        i = next(k for k, (x, y) in enumerate(zip(a_ids, b_ids)) if x != y)
        rated = {t.token_id: t.logprob for t in alone[i].top_logprobs}
        assert b_ids[i] in rated and rated[a_ids[i]] - rated[b_ids[i]] < 0.3


async def test_grammar_constrains_output(engine):
    params = SamplingParams(max_tokens=8, temperature=0.0, grammar='root ::= "yes" | "no"')
    events = await collect(engine, chat("Is Python a programming language? Answer in a sentence."), params)
    assert text(events) in ("yes", "no")
    assert events[-1].finish_reason == "stop"


async def test_bad_grammar_fails_only_that_request(engine):
    with pytest.raises(InvalidRequest):
        await collect(engine, chat("hi"), SamplingParams(max_tokens=4, grammar="root ::= ("))
    assert len(await collect(engine, chat("hi"), SamplingParams(max_tokens=2, temperature=0))) >= 1


def test_prompt_longer_than_context_is_refused(engine):
    with pytest.raises(ContextLengthExceeded):
        engine.generate([100] * 2048, GREEDY)


@pytest.mark.parametrize(
    ("ids", "params", "param"),
    [
        ([], GREEDY, "prompt"),
        ([100, 10_000_000], GREEDY, "prompt"),
        ([100], SamplingParams(max_tokens=0), "max_tokens"),
        ([100], SamplingParams(logprobs=-1), "top_logprobs"),
        ([100], SamplingParams(prediction_ids=(10_000_000,)), "prediction"),
        ([100], SamplingParams(logit_bias={10_000_000: 1.0}), "logit_bias"),
    ],
    ids=["empty", "unknown-id", "max-tokens", "logprobs", "prediction", "logit-bias"],
)
def test_refused_when_generate_is_called_as_the_scripted_engine_refuses(engine, ids, params, param):
    """The same refusals, at the same moment, as tests/unit/test_fake_engine.py checks on the fake."""
    with pytest.raises(InvalidRequest) as caught:
        engine.generate(ids, params)  # not iterated: the call itself raises
    assert caught.value.param == param


async def test_logprobs(engine):
    params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=5)
    events = await collect(engine, chat("Say hello."), params)
    for event in events:
        assert event.logprob is not None and event.logprob <= 0
        top = event.top_logprobs
        assert top is not None and len(top) == 5
        values = [t.logprob for t in top]
        assert all(v <= 0 for v in values)
        assert values == sorted(values, reverse=True)
        # greedy over the raw distribution picks its most likely token
        assert top[0].token_id == event.token_id
        assert abs(top[0].logprob - event.logprob) < 1e-5
        assert top[0].text == engine.token_text(event.token_id)


async def test_seeded_sampling_repeats(engine):
    params = SamplingParams(max_tokens=24, temperature=1.0, top_p=0.95, top_k=50, seed=1234)
    prompt = chat("Invent a name for a programming language.")
    first = await collect(engine, prompt, params)
    second = await collect(engine, prompt, params)
    assert tokens(first) == tokens(second)
    others = [tokens(await collect(engine, prompt, SamplingParams(**{**params.__dict__, "seed": s}))) for s in (1, 2, 3)]
    assert any(o != tokens(first) for o in others)


async def test_multibyte_text_is_never_split(engine):
    params = SamplingParams(max_tokens=32, temperature=0.0)
    events = await collect(engine, chat("请用中文写一句话介绍你自己。"), params)
    out = text(events)
    assert "\ufffd" not in out
    assert any("\u4e00" <= ch <= "\u9fff" for ch in out)
    body = events[:-1] if events[-1].finish_reason == "stop" else events
    assert out == engine.detokenize(tokens(body))


def test_a_reader_that_falls_behind_pauses_its_sequence(engine, monkeypatch):
    """Backpressure (worker.py): once MAX_UNREAD_EVENTS of a sequence's events are unread, it sits
    out the decode steps, keeping its slot, until they are taken; the answer is the one read at once."""
    from coderapi.engines.llama_cpp import worker

    monkeypatch.setattr(worker, "MAX_UNREAD_EVENTS", 8)
    ids = engine.tokenize(chat("Count from 1 to 500, one number per line."))
    params = SamplingParams(max_tokens=300, temperature=0.0, logit_bias={151645: -100.0, 151643: -100.0})
    read_at_once = asyncio.run(collect(engine, ids, params))

    async def read_late() -> list[TokenEvent]:
        stream = engine.generate(ids, params)
        events = [await anext(stream)]
        await wait_until(lambda: engine.stats().waiting_for_reader == 1)
        cached = engine.stats().kv_cache_usage
        await asyncio.sleep(0.5)  # unpaused, the model would decode 15+ tokens meanwhile
        held = engine.stats()
        assert (held.waiting_for_reader, held.running) == (1, 1)  # held, in its slot
        assert held.kv_cache_usage == cached  # and not one token decoded
        events += [event async for event in stream]
        return events

    read_late_events = asyncio.run(read_late())
    assert len(read_late_events) == 300 and tokens(read_late_events) == tokens(read_at_once)
    assert engine.stats().waiting_for_reader == 0
