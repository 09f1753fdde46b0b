"""llama.cpp's own sampler chain, per sequence.

The chain, in order: grammar (GBNF, when set) -> logit bias -> penalties (repeat, frequency,
presence over the last 64 tokens) -> top-k -> top-p -> min-p -> temperature -> dist(seed);
with temperature 0 the tail is a plain greedy pick. Samplers that would do nothing (top_k 0,
top_p 1, min_p 0, no penalties, no bias) are left out: each one walks the whole vocabulary.

Like llama-server, the penalties also see the last 64 prompt tokens, so a repetition penalty
discourages repeating the prompt's tail, not only the completion.
"""

from __future__ import annotations

import random

import llama_cpp as lc

from coderapi.engines.base import SamplingParams
from coderapi.errors import InvalidRequest

from .candidates import grammar_sampler
from .model import LlamaModel

PENALTY_LAST_N = 64
# The chain's stages, in order: the grammar's mask; the logit changes (bias, penalties); the pick.
GRAMMAR, ADJUST, PICK = "grammar", "adjust", "pick"
FULL_CHAIN = (GRAMMAR, ADJUST, PICK)
_SEED_SPACE = 0xFFFFFFFF  # llama.cpp reads seed 0xFFFFFFFF as "pick a random seed"
_sysrand = random.SystemRandom()


class SamplerChain:
    """Owns one llama_sampler chain; `free()` it exactly once. `stages`: which parts of the chain
    it holds (the grammar pickers run the adjust and pick stages on candidates of their own)."""

    def __init__(
        self, model: LlamaModel, params: SamplingParams, prompt: list[int], stages: tuple[str, ...] = FULL_CHAIN
    ) -> None:
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        self.ptr = chain
        try:
            if GRAMMAR in stages and params.grammar:
                self._add(grammar_sampler(model.vocab, params.grammar))
            if ADJUST in stages:
                self._add_adjusters(model, params, prompt)
            if PICK in stages:
                self._add_pick(params)
        except BaseException:
            self.free()
            raise

    def _add_adjusters(self, model: LlamaModel, params: SamplingParams, prompt: list[int]) -> None:
        add = self._add
        if params.logit_bias:
            n = len(params.logit_bias)
            arr = (lc.llama_logit_bias * n)(
                *(lc.llama_logit_bias(int(t), float(b)) for t, b in params.logit_bias.items())
            )
            add(lc.llama_sampler_init_logit_bias(model.n_vocab, n, arr))
        if (
            params.repetition_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        ):
            penalties = lc.llama_sampler_init_penalties(
                model.n_vocab,
                PENALTY_LAST_N,
                params.repetition_penalty,
                params.frequency_penalty,
                params.presence_penalty,
            )
            for token in prompt[-PENALTY_LAST_N:]:
                lc.llama_sampler_accept(penalties, token)
            add(penalties)

    def _add_pick(self, params: SamplingParams) -> None:
        add = self._add
        if params.temperature <= 0.0:
            add(lc.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            add(lc.llama_sampler_init_top_k(params.top_k))
        if params.top_p < 1.0:
            add(lc.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0.0:
            add(lc.llama_sampler_init_min_p(params.min_p, 1))
        add(lc.llama_sampler_init_temp(params.temperature))
        add(lc.llama_sampler_init_dist(resolve_seed(params.seed)))

    def _add(self, sampler) -> None:
        if not sampler:
            raise InvalidRequest("llama.cpp refused a sampling parameter.")
        lc.llama_sampler_chain_add(self.ptr, sampler)  # the chain now owns it

    def sample(self, ctx_ptr, batch_index: int) -> int:
        """Sample from the logits of batch row `batch_index` and accept the token."""
        return lc.llama_sampler_sample(self.ptr, ctx_ptr, batch_index)

    def free(self) -> None:
        if self.ptr:
            lc.llama_sampler_free(self.ptr)
            self.ptr = None


def resolve_seed(seed: int | None) -> int:
    """A 32-bit seed for llama.cpp's dist sampler; a random one when `seed` is None."""
    if seed is None:
        return _sysrand.randrange(_SEED_SPACE)
    return int(seed) % _SEED_SPACE
