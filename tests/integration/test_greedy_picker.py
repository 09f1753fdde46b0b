"""GreedyPicker, GrammarGreedyPicker and GrammarSampledPicker against llama.cpp's own sampler chain,
on the real model's logits."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from coderapi.engines.base import SamplingParams
from tests.integration.embedded import embedded_gguf

pytestmark = pytest.mark.model

PROMPT = "<|im_start|>user\nWrite a Python function that merges two sorted lists.<|im_end|>\n<|im_start|>assistant\n"
STEPS = 40


@pytest.fixture(scope="module")
def model_and_prompt():
    path = embedded_gguf()
    from coderapi.engines.llama_cpp.model import LlamaModel

    model = LlamaModel(path)
    yield model, model.tokenize(PROMPT, add_special=False)
    model.free()


def run_both(model, prompt: list[int], params: SamplingParams, picker=None) -> tuple[list[int], list[int]]:
    """Decode up to STEPS tokens (to the end token), asking both samplers at every step; feeds the
    chain's choice. `picker`: the sampler under test (a GreedyPicker by default)."""
    import llama_cpp as lc

    from coderapi.engines.llama_cpp.greedy import GreedyPicker
    from coderapi.engines.llama_cpp.model import LlamaContext
    from coderapi.engines.llama_cpp.sampling import PENALTY_LAST_N, SamplerChain

    ctx = LlamaContext(model, n_ctx=512, n_seq_max=1, n_batch=256, n_threads=os.cpu_count() or 1)
    chain = SamplerChain(model, params, prompt)
    picker = picker or GreedyPicker(model.n_vocab, params, prompt, PENALTY_LAST_N)
    chain_tokens, picker_tokens = [], []
    try:
        feed = list(prompt)
        for _ in range(STEPS):
            arr = (lc.llama_token * len(feed))(*feed)
            assert lc.llama_decode(ctx.ptr, lc.llama_batch_get_one(arr, len(feed))) == 0
            row = np.ctypeslib.as_array(
                ctypes.cast(ctx.logits_row(-1), ctypes.POINTER(ctypes.c_float)), (model.n_vocab,)
            ).copy()
            picked = picker.sample(ctx.ptr, -1)
            after = np.ctypeslib.as_array(
                ctypes.cast(ctx.logits_row(-1), ctypes.POINTER(ctypes.c_float)), (model.n_vocab,)
            )
            assert np.array_equal(row, after), "the raw logits row must be left as it was"
            chosen = chain.sample(ctx.ptr, -1)
            chain_tokens.append(chosen)
            picker_tokens.append(picked)
            if model.is_eog(chosen):
                break
            feed = [chosen]
    finally:
        chain.free()
        ctx.free()
    return chain_tokens, picker_tokens


PLAIN = SamplingParams(max_tokens=STEPS, temperature=0.0)


@pytest.mark.parametrize(
    "params",
    [
        PLAIN,
        SamplingParams(max_tokens=STEPS, temperature=0.0, repetition_penalty=1.05),
        SamplingParams(max_tokens=STEPS, temperature=0.0, repetition_penalty=1.6,
                       frequency_penalty=0.7, presence_penalty=0.4),
        SamplingParams(max_tokens=STEPS, temperature=0.0, frequency_penalty=-0.8, presence_penalty=-0.5),
    ],
    ids=["plain", "qwen-default-penalty", "strong-penalties", "negative-penalties"],
)
def test_picker_matches_llama_chain(model_and_prompt, params):
    model, prompt = model_and_prompt
    chain_tokens, picker_tokens = run_both(model, prompt, params)
    assert picker_tokens == chain_tokens


def test_picker_matches_chain_with_logit_bias(model_and_prompt):
    model, prompt = model_and_prompt
    plain, _ = run_both(model, prompt, PLAIN)
    # Ban the plain run's first token and boost one it never chose: the output must change.
    boosted = next(t for t in range(1000, 2000) if t not in plain)
    params = SamplingParams(
        max_tokens=STEPS, temperature=0.0, repetition_penalty=1.3,
        logit_bias={plain[0]: -100.0, boosted: 12.0},
    )
    chain_tokens, picker_tokens = run_both(model, prompt, params)
    assert chain_tokens[0] != plain[0]
    assert picker_tokens == chain_tokens


def test_strong_penalties_change_the_output(model_and_prompt):
    """Guards the tests above: the penalties really act on these logits."""
    model, prompt = model_and_prompt
    plain, _ = run_both(model, prompt, PLAIN)
    strong = SamplingParams(max_tokens=STEPS, temperature=0.0, repetition_penalty=1.6,
                            frequency_penalty=0.7, presence_penalty=0.4)
    penalized, _ = run_both(model, prompt, strong)
    assert penalized != plain


def test_picker_matches_chain_with_logit_bias_at_the_cap(model_and_prompt):
    """300 entries (the protocol's cap), some on prompt tokens the penalties also touch."""
    model, prompt = model_and_prompt
    rng = np.random.default_rng(7)
    tokens = list(dict.fromkeys(prompt[-30:])) + [int(t) for t in rng.choice(model.n_vocab, 400, replace=False)]
    bias = {t: float(rng.uniform(-3, 3)) for t in list(dict.fromkeys(tokens))[:300]}
    params = SamplingParams(max_tokens=STEPS, temperature=0.0, repetition_penalty=1.3, frequency_penalty=0.2,
                            logit_bias=bias)
    chain_tokens, picker_tokens = run_both(model, prompt, params)
    assert picker_tokens == chain_tokens


# -- greedy under a grammar: GrammarGreedyPicker asks the grammar about the greedy token first --

CALL_GRAMMAR = r'''root ::= "{" ws "\"name\"" ws ":" ws "\"get_weather\"" ws "," ws "\"arguments\"" ws ":" ws obj ws "}"
obj ::= "{" ws ( pair ( ws "," ws pair )* )? ws "}"
pair ::= str ws ":" ws val
val ::= str | num | obj
str ::= "\"" ( [^"\\] | "\\" ["\\/bfnrt] )* "\""
num ::= "-"? [0-9]+ ("." [0-9]+)?
ws ::= [ \t\n]*'''
CALL_PROMPT = "<|im_start|>user\nWhat's the weather in Paris? Answer as JSON.<|im_end|>\n<|im_start|>assistant\n"


def run_grammar_both(model, params: SamplingParams) -> tuple[list[int], list[int], tuple[int, int]]:
    """run_both with a GrammarGreedyPicker; also its refusals and whole-vocabulary masks."""
    from coderapi.engines.llama_cpp.grammar_greedy import GrammarGreedyPicker
    from coderapi.engines.llama_cpp.sampling import PENALTY_LAST_N

    prompt = model.tokenize(CALL_PROMPT, add_special=False)
    picker = GrammarGreedyPicker(model.vocab, model.n_vocab, params, prompt, PENALTY_LAST_N)
    try:
        chain_tokens, picker_tokens = run_both(model, prompt, params, picker)
        return chain_tokens, picker_tokens, (picker.refusals, picker.full_applies)
    finally:
        picker.free()


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(max_tokens=STEPS, temperature=0.0, grammar=CALL_GRAMMAR),
        SamplingParams(max_tokens=STEPS, temperature=0.0, grammar=CALL_GRAMMAR, repetition_penalty=1.3,
                       frequency_penalty=0.3, logit_bias={90: 5.0, 1: -2.0}),
    ],
    ids=["plain", "penalties-and-bias"],
)
def test_grammar_picker_matches_llama_chain(model_and_prompt, params):
    model, _ = model_and_prompt
    chain_tokens, picker_tokens, (refusals, full_applies) = run_grammar_both(model, params)
    assert picker_tokens == chain_tokens
    # The paths ran: the grammar allowed most greedy tokens (checked alone) and refused some, for
    # most of which the shortlist held an allowed one.
    assert 0 < refusals < len(chain_tokens) / 2
    assert full_applies < refusals


def test_grammar_picker_masks_the_whole_vocabulary_when_the_shortlist_is_refused(model_and_prompt):
    """300 tokens pushed above all others (the protocol's cap on logit_bias), none of them JSON
    punctuation: where the grammar wants structure, the whole 256-token shortlist is refused."""
    model, _ = model_and_prompt
    words = [t for t in range(5000, 20000) if model.piece(t).strip().isalpha()][:300]
    params = SamplingParams(max_tokens=STEPS, temperature=0.0, grammar=CALL_GRAMMAR,
                            logit_bias={t: 40.0 for t in words})
    chain_tokens, picker_tokens, (refusals, full_applies) = run_grammar_both(model, params)
    assert picker_tokens == chain_tokens
    assert full_applies > 0


def test_grammar_requests_take_the_pickers(model_and_prompt):
    from coderapi.engines.llama_cpp.grammar_greedy import GrammarGreedyPicker
    from coderapi.engines.llama_cpp.grammar_sampled import GrammarSampledPicker
    from coderapi.engines.llama_cpp.sampling import SamplerChain, make_sampler

    model, prompt = model_and_prompt
    greedy = make_sampler(model, SamplingParams(max_tokens=4, temperature=0.0, grammar=CALL_GRAMMAR), prompt)
    sampled = make_sampler(model, SamplingParams(max_tokens=4, temperature=0.7, grammar=CALL_GRAMMAR), prompt)
    free = make_sampler(model, SamplingParams(max_tokens=4, temperature=0.7), prompt)
    try:
        assert isinstance(greedy, GrammarGreedyPicker)
        assert isinstance(sampled, GrammarSampledPicker)
        assert isinstance(free, SamplerChain)
    finally:
        for sampler in (greedy, sampled, free):
            sampler.free()


# -- sampling under a grammar: GrammarSampledPicker runs the chain's samplers on a filtered shortlist --

QWEN_DEFAULTS = dict(temperature=0.7, top_k=20, top_p=0.8, repetition_penalty=1.05)


def run_sampled_both(model, params: SamplingParams) -> tuple[list[int], list[int], tuple[int, int]]:
    """run_both with a GrammarSampledPicker (same seed as the chain); also its shortlist and full picks."""
    from coderapi.engines.llama_cpp.grammar_sampled import GrammarSampledPicker

    prompt = model.tokenize(CALL_PROMPT, add_special=False)
    picker = GrammarSampledPicker(model, params, prompt)
    try:
        chain_tokens, picker_tokens = run_both(model, prompt, params, picker)
        return chain_tokens, picker_tokens, (picker.shortlist_picks, picker.full_picks)
    finally:
        picker.free()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sampled_grammar_picker_draws_what_the_chain_draws(model_and_prompt, seed):
    """Qwen's defaults: the same seed gives the same tokens, and most come from the shortlist."""
    model, _ = model_and_prompt
    params = SamplingParams(max_tokens=STEPS, grammar=CALL_GRAMMAR, seed=seed, **QWEN_DEFAULTS)
    chain_tokens, picker_tokens, (short, full) = run_sampled_both(model, params)
    assert picker_tokens == chain_tokens
    assert short > len(chain_tokens) / 2


@pytest.mark.parametrize(
    "settings",
    [
        dict(temperature=1.3, top_k=40, top_p=0.95, repetition_penalty=1.3, frequency_penalty=0.5,
             presence_penalty=-0.4, logit_bias={90: 4.0, 1: -2.0, 330: 3.0}),
        dict(temperature=1.5, top_k=20),  # no top-p: only a shortlist with 20 sure tokens will do
        dict(temperature=1.0, top_k=200, top_p=0.999),  # a cut deep in the tail: the bound decides
        dict(temperature=1.2, top_k=20, min_p=0.05),
        dict(temperature=1.2, top_p=0.9),  # no top-k: every pick masks the whole vocabulary
    ],
    ids=["penalties-bias-wide", "top-k-only", "deep-top-p", "min-p", "no-top-k"],
)
def test_sampled_grammar_picker_matches_chain_across_settings(model_and_prompt, settings):
    model, _ = model_and_prompt
    for seed in (11, 12):
        params = SamplingParams(max_tokens=STEPS, grammar=CALL_GRAMMAR, seed=seed, **settings)
        chain_tokens, picker_tokens, _ = run_sampled_both(model, params)
        assert picker_tokens == chain_tokens


def test_sampled_grammar_picker_masks_the_whole_vocabulary_when_it_must(model_and_prompt):
    """300 words pushed above everything: where the grammar wants structure, nothing on the
    shortlist is allowed, so those picks take the full path; the tokens still match."""
    model, _ = model_and_prompt
    words = [t for t in range(5000, 20000) if model.piece(t).strip().isalpha()][:300]
    params = SamplingParams(max_tokens=STEPS, grammar=CALL_GRAMMAR, seed=5,
                            logit_bias={t: 40.0 for t in words}, **QWEN_DEFAULTS)
    chain_tokens, picker_tokens, (short, full) = run_sampled_both(model, params)
    assert picker_tokens == chain_tokens
    assert full > 0


def test_seeds_change_the_sampled_grammar_output(model_and_prompt):
    """Guards the tests above: at these settings the draw really depends on the seed."""
    model, _ = model_and_prompt
    outputs = {
        tuple(run_sampled_both(model, SamplingParams(max_tokens=STEPS, grammar=CALL_GRAMMAR, seed=seed,
                                                     temperature=1.3, top_k=40, top_p=0.95))[0])
        for seed in (21, 22, 23)
    }
    assert len(outputs) > 1
