"""Speculative decoding on the real Qwen2.5-Coder-0.5B: predictions and n-gram drafts never change
the answer (greedy: token for token; sampled: in distribution), and refused drafts leave the KV cache."""

from __future__ import annotations

import asyncio
import colorsys
import inspect
from collections import Counter

import llama_cpp as lc
import pytest

from coderapi.engines.base import SamplingParams, TokenEvent
from coderapi.engines.llama_cpp.draft_value import StepCosts
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

CODE = inspect.getsource(colorsys)[:900]


def chat(user: str) -> str:
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


PROMPTS = [
    chat("Rename the function rgb_to_yiq to to_yiq. Return the whole file.\n\n```python\n" + CODE + "\n```"),
    chat("Write a Python function that checks whether a number is prime."),
    chat("List the first ten square numbers, comma separated."),
]


@pytest.fixture(scope="module")
def engines():
    """(plain: no n-gram drafts, speculating: n-gram drafts on), two sequences each. Both verify every
    draft within the limits (draft_gate off): these tests are about verification, not about when it pays."""
    path = embedded_gguf()
    from coderapi.engines.llama_cpp import LlamaCppEngine

    plain = LlamaCppEngine(path, n_parallel=2, n_ctx_per_seq=2048, ngram_speculation=False, draft_gate=False)
    speculating = LlamaCppEngine(path, n_parallel=2, n_ctx_per_seq=2048, ngram_speculation=True, draft_gate=False)
    asyncio.run(plain.start())
    asyncio.run(speculating.start())
    yield plain, speculating
    asyncio.run(plain.close())
    asyncio.run(speculating.close())


async def run(engine, prompt: str, params: SamplingParams) -> list[TokenEvent]:
    return [e async for e in engine.generate(engine.tokenize(prompt), params)]


def ids(events: list[TokenEvent]) -> list[int]:
    return [e.token_id for e in events]


def kv_matches_slots(engine) -> bool:
    """Every slot's KV stream holds exactly the positions its token list says (prefix cache intact)."""
    worker = engine._worker
    return all(
        lc.llama_memory_seq_pos_max(worker.ctx.mem, slot.seq_id) == len(slot.tokens) - 1 for slot in worker.pool.slots
    )


async def test_greedy_output_is_identical_with_predictions_and_ngram_drafts(engines):
    plain, speculating = engines
    greedy = SamplingParams(max_tokens=160, temperature=0.0)
    for prompt in PROMPTS:
        reference = ids(await run(plain, prompt, greedy))
        exact = tuple(reference)
        # A prediction that is wrong in places: the original file, words swapped, a line dropped.
        edited = tuple(plain.tokenize(plain.detokenize(reference).replace("def ", "def  ").replace("\n", "\n#", 3)))
        for engine, params in [
            (plain, greedy.__class__(**{**greedy.__dict__, "prediction_ids": exact})),
            (plain, greedy.__class__(**{**greedy.__dict__, "prediction_ids": edited})),
            (speculating, greedy),
            (speculating, greedy.__class__(**{**greedy.__dict__, "prediction_ids": edited})),
        ]:
            events = await run(engine, prompt, params)
            assert ids(events) == reference, (prompt[:60], params.prediction_ids is not None)
            assert kv_matches_slots(engine)
        accepted = events[-1].accepted_prediction_tokens + events[-1].accepted_ngram_tokens
        # Drafts are verified only in steps the load-time probe found identical to one-row steps at
        # that length of context (ExactRows); where none is, greedy requests get no drafts at all.
        if speculating._worker.exact_rows.at(len(plain.tokenize(prompt)) + 1) > 1:
            assert accepted > 0, prompt[:60]
        else:
            assert accepted == 0, prompt[:60]


async def test_refused_drafts_are_counted_and_removed_from_the_kv_cache(engines):
    plain, _ = engines
    greedy = SamplingParams(max_tokens=60, temperature=0.0)
    prompt = PROMPTS[1]
    reference = ids(await run(plain, prompt, greedy))
    wrong = plain.tokenize(plain.detokenize(reference).replace("prime", "composite").replace("return", "yield"))
    events = await run(plain, prompt, SamplingParams(max_tokens=60, temperature=0.0, prediction_ids=tuple(wrong)))
    assert ids(events) == reference
    last = events[-1]
    assert last.rejected_prediction_tokens > 0 and last.accepted_prediction_tokens > 0
    assert last.accepted_ngram_tokens == last.rejected_ngram_tokens == 0  # this engine drafts no n-grams
    assert kv_matches_slots(plain)
    # The slot's KV (refused drafts removed) serves the same prompt again from the prefix cache.
    again = await run(plain, prompt, greedy)
    assert again[0].cached_prompt_tokens > 0
    assert ids(again) == reference


async def test_drafts_are_verified_only_where_the_step_costs_say_they_pay(engines):
    """The worker plans with its step costs (measured at load when draft_gate is on, set here): where
    extra rows cost nothing a prediction is verified; where every extra row costs two one-row steps, no
    draft can raise the tokens per unit of time and none is verified, and the answer is the same."""
    plain, _ = engines
    worker = plain._worker
    greedy = SamplingParams(max_tokens=40, temperature=0.0)
    prompt = PROMPTS[1]
    reference = ids(await run(plain, prompt, greedy))
    predicted = SamplingParams(max_tokens=40, temperature=0.0, prediction_ids=tuple(reference))
    try:
        worker.step_costs = StepCosts((1, 65), (0,), ((1.0, 1.0),))
        free = await run(plain, prompt, predicted)
        worker.step_costs = StepCosts((1, 65), (0,), ((1.0, 129.0),))  # each row costs two one-row steps
        linear = await run(plain, prompt, predicted)
    finally:
        worker.step_costs = None
    assert ids(free) == ids(linear) == reference
    assert free[-1].accepted_prediction_tokens > 0
    assert (linear[-1].accepted_prediction_tokens, linear[-1].rejected_prediction_tokens) == (0, 0)
    assert kv_matches_slots(plain)


def test_step_costs_are_measured_at_load_when_the_draft_gate_is_on():
    from coderapi.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(embedded_gguf(), n_parallel=1, n_ctx_per_seq=512, ngram_speculation=False)
    asyncio.run(engine.start())
    try:
        costs = engine._worker.step_costs
    finally:
        asyncio.run(engine.close())
    assert costs.rows == (1, 2, 3, 4, 8, 16, 32, 64) and costs.contexts == (128, 512 - 65 - 1)
    for seconds in costs.seconds:
        assert all(s > 0 for s in seconds) and seconds[-1] > 1.5 * seconds[0]  # 64 rows cost more than one


async def test_penalties_logprobs_and_grammar_stay_consistent_with_drafts(engines):
    plain, _ = engines
    prompt = PROMPTS[2]
    grammar = 'root ::= num ("," " "? num)*\nnum ::= [0-9]+'
    for extra in (
        {"frequency_penalty": 0.5, "presence_penalty": 0.3},
        {"logprobs": 2},
        {"grammar": grammar},
    ):
        params = SamplingParams(max_tokens=40, temperature=0.0, **extra)
        reference = await run(plain, prompt, params)
        guess = tuple(plain.tokenize("1, 4, 9, 16, 25, 36, 49, 64, 81, 100"))
        drafted = await run(plain, prompt, SamplingParams(max_tokens=40, temperature=0.0, prediction_ids=guess, **extra))
        assert ids(drafted) == ids(reference), extra
        assert drafted[-1].accepted_prediction_tokens > 0, extra
        if "logprobs" in extra:
            # exact mode: verification steps keep to rows llama.cpp computes as it does one alone
            assert [(e.logprob, e.top_logprobs) for e in drafted] == [(e.logprob, e.top_logprobs) for e in reference]


async def test_sampled_outputs_are_unchanged_in_distribution(engines):
    """Same seeds with and without a prediction: the draft is verified by sampling from the target
    at each position with the request's own chain, so each seed gives the same tokens (up to the
    float noise of batched rows) and the token frequencies at every position agree."""
    plain, _ = engines
    prompt = chat("Name a colour.")
    runs = 40
    base = SamplingParams(max_tokens=6, temperature=1.0)
    guess = tuple(plain.tokenize("The colour is blue."))
    without, with_draft = [], []
    accepted = rejected = 0
    for seed in range(runs):
        without.append(ids(await run(plain, prompt, SamplingParams(**{**base.__dict__, "seed": seed}))))
        events = await run(plain, prompt, SamplingParams(**{**base.__dict__, "seed": seed, "prediction_ids": guess}))
        with_draft.append(ids(events))
        accepted += events[-1].accepted_prediction_tokens
        rejected += events[-1].rejected_prediction_tokens
    assert accepted > 0 and rejected > 0  # both outcomes of verification were exercised
    assert len({tuple(w) for w in without}) > 3  # really sampled, not one answer
    same = sum(a == b for a, b in zip(without, with_draft))
    assert same >= runs - 2
    for position in range(3):
        a = Counter(w[position] for w in without if len(w) > position)
        b = Counter(w[position] for w in with_draft if len(w) > position)
        total_variation = sum(abs(a[t] - b[t]) for t in a | b) / (2 * runs)
        assert total_variation <= 0.1, position


async def test_without_weight_repacking_exact_drafts_are_longer_and_still_identical(engines):
    """weight_repack off: llama.cpp's one-row path holds for more rows while the context is short,
    so exact speculation verifies longer drafts; greedy answers still equal the same engine's plain ones."""
    from coderapi.engines.llama_cpp import LlamaCppEngine

    engine = LlamaCppEngine(embedded_gguf(), n_parallel=1, n_ctx_per_seq=2048, ngram_speculation=False, repack=False,
                            draft_gate=False)
    await engine.start()
    try:
        exact = engine._worker.exact_rows
        prompt = PROMPTS[1]  # short: drafts are verified while the context stays within the probed rows
        greedy = SamplingParams(max_tokens=100, temperature=0.0)
        reference = ids(await run(engine, prompt, greedy))
        edited = engine.tokenize(engine.detokenize(reference).replace("number", "value", 2))
        events = await run(engine, prompt, SamplingParams(max_tokens=100, temperature=0.0, prediction_ids=tuple(edited)))
        assert ids(events) == reference
        assert kv_matches_slots(engine)
        short = len(engine.tokenize(prompt)) + 1
        assert exact.at(short) >= engines[0]._worker.exact_rows.at(short)  # repacked kernels switch sooner
        if exact.at(short) > 1:
            assert events[-1].accepted_prediction_tokens > 0
    finally:
        await engine.close()
