"""Per-sequence sampler chains (llama.cpp's native samplers) and optional logprobs.

The chain, in order: grammar (GBNF, when set) -> logit bias -> penalties (repeat, frequency,
presence over the last 64 tokens) -> top-k -> top-p -> min-p -> temperature -> dist(seed);
with temperature 0 the tail is a plain greedy pick. Samplers that would do nothing (top_k 0,
top_p 1, min_p 0, no penalties, no bias) are left out: each one walks the whole vocabulary.

Like llama-server, the penalties also see the last 64 prompt tokens, so a repetition penalty
discourages repeating the prompt's tail, not only the completion.

Greedy requests skip the chain: `greedy.GreedyPicker` picks the same token with numpy, without
copying the vocabulary into a candidate array every step; with a grammar,
`grammar_greedy.GrammarGreedyPicker` asks the grammar about that token alone and masks the whole
vocabulary only when the grammar refuses it.

Logprobs are computed only when asked for, with numpy over the model's *raw* logits row, so
they describe the model's own distribution, before bias, penalties, grammar or temperature.
"""

from __future__ import annotations

import ctypes
import random
from dataclasses import dataclass

import llama_cpp as lc
import numpy as np

from coderapi.engines.base import SamplingParams, TopLogprob
from coderapi.errors import InvalidRequest

from .grammar_greedy import GrammarGreedyPicker, grammar_sampler
from .greedy import GreedyPicker
from .model import LlamaModel

PENALTY_LAST_N = 64
_SEED_SPACE = 0xFFFFFFFF  # llama.cpp reads seed 0xFFFFFFFF as "pick a random seed"
_sysrand = random.SystemRandom()


@dataclass(frozen=True)
class LogprobResult:
    logprob: float
    top: list[TopLogprob]


def make_sampler(
    model: LlamaModel, params: SamplingParams, prompt: list[int]
) -> "SamplerChain | GreedyPicker | GrammarGreedyPicker":
    """The cheapest sampler that picks exactly what the full llama.cpp chain would."""
    if params.temperature <= 0.0 and params.grammar:
        return GrammarGreedyPicker(model.vocab, model.n_vocab, params, prompt, PENALTY_LAST_N)
    if params.temperature <= 0.0:
        return GreedyPicker(model.n_vocab, params, prompt, PENALTY_LAST_N)
    return SamplerChain(model, params, prompt)


class SamplerChain:
    """Owns one llama_sampler chain; `free()` it exactly once."""

    def __init__(self, model: LlamaModel, params: SamplingParams, prompt: list[int]) -> None:
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        self.ptr = chain
        try:
            self._build(model, params, prompt)
        except BaseException:
            self.free()
            raise

    def _build(self, model: LlamaModel, params: SamplingParams, prompt: list[int]) -> None:
        add = self._add
        if params.grammar:
            add(grammar_sampler(model.vocab, params.grammar))
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


def compute_logprobs(
    logits_ptr, n_vocab: int, token_id: int, top_k: int, model: LlamaModel
) -> LogprobResult:
    """Log-softmax of the raw logits row: the chosen token's logprob and the top-k tokens."""
    if not logits_ptr:
        raise RuntimeError("llama.cpp returned no logits for this sequence")
    row = np.ctypeslib.as_array(ctypes.cast(logits_ptr, ctypes.POINTER(ctypes.c_float)), (n_vocab,))
    peak = float(row.max())
    log_z = peak + float(np.log(np.exp(row - peak, dtype=np.float32).sum(dtype=np.float64)))
    chosen = float(row[token_id]) - log_z
    top: list[TopLogprob] = []
    if top_k > 0:
        k = min(top_k, n_vocab)
        idx = np.argpartition(row, n_vocab - k)[n_vocab - k :]
        idx = idx[np.argsort(-row[idx], kind="stable")]
        top = [
            TopLogprob(
                token_id=int(i),
                text=model.token_text(int(i)),
                logprob=min(float(row[i]) - log_z, 0.0),
            )
            for i in idx
        ]
    return LogprobResult(logprob=min(chosen, 0.0), top=top)
